#!/usr/bin/env bash
# Starts a local three-node Sluice cluster on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux routes all
# of 127.0.0.0/8 to loopback) for trying it out. Ctrl-C stops all three.
#   HTTP API:  127.0.0.1:5005, 127.0.0.2:5005, 127.0.0.3:5005
#   TCP ingest: 127.0.0.x:5006    Raft: 127.0.0.x:5007    data: ./cluster-data/nX
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin/sluice
KEY=${SLUICE_ROOT_KEY:-sk_local_cluster_root_key}
DATA=${CLUSTER_DATA:-./cluster-data}
mkdir -p "$DATA"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
start() { # id host region extra...
  local id=$1 host=$2 region=$3; shift 3
  "$BIN" serve --node-id "$id" --data-dir "$DATA/$id" --region "$region" --root-key "$KEY" \
    --http-addr "$host:5005" --tcp-addr "$host:5006" --raft-addr "$host:5007" \
    --egress-ips "$host" --egress-allow-cidrs 127.0.0.0/8 "$@" >"$DATA/$id.log" 2>&1 &
  pids+=($!)
}
start n1 127.0.0.1 zone-a
for _ in $(seq 100); do curl -sf http://127.0.0.1:5005/readyz >/dev/null && break; sleep 0.1; done
start n2 127.0.0.2 zone-b --join 127.0.0.1:5005
start n3 127.0.0.3 zone-c --join 127.0.0.1:5005
sleep 3
SLUICE_ROOT_KEY=$KEY "$BIN" cluster list --addr 127.0.0.1:5005
echo
echo "root key: $KEY   logs: $DATA/n*.log   try: SLUICE_ROOT_KEY=$KEY $BIN cluster list --addr 127.0.0.2:5005"
wait
