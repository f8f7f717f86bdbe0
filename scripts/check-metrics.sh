#!/usr/bin/env bash
# Starts a real node, drives a little traffic, and lints a live /metrics scrape with promtool.
# Fails on a parse error, or on any lint problem of a sluice_* metric other than missing HELP text
# (VictoriaMetrics/metrics writes TYPE lines but no HELP; docs/metrics.md documents every metric).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { echo "promtool not installed (Debian package prometheus)"; exit 1; }
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http="127.0.0.1:$(port)"; raft="127.0.0.1:$(port)"
./bin/sluice serve --data-dir "$dir/data" --http-addr "$http" --raft-addr "$raft" --root-key sk_ci_metrics --egress-allow-cidrs 127.0.0.0/8 \
  --log-level warn >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do curl -sf "http://$http/readyz" >/dev/null && break; sleep 0.05; done
auth="Authorization: Bearer sk_ci_metrics"
api="http://$http/api/v1"
uid() { sed -E 's/.*"data":\{"uid":"([^"]+)".*/\1/'; }
project=$(curl -sf -H "$auth" -d '{"name":"ci"}' "$api/projects" | uid)
endpoint=$(curl -sf -H "$auth" -d '{"url":"http://127.0.0.1:9/unreachable"}' "$api/projects/$project/endpoints" | uid)
for i in 1 2 3; do
  curl -sf -H "$auth" -d '{"endpoint_id":"'"$endpoint"'","event_type":"ci.test","data":{"i":'$i'}}' \
    "$api/projects/$project/events" >/dev/null
done
for _ in $(seq 100); do
  curl -sf "http://$http/metrics" | grep -q '^sluice_deliveries_total' && break; sleep 0.05
done
curl -sf "http://$http/metrics" >"$dir/metrics"
set +e
promtool check metrics <"$dir/metrics" >"$dir/lint" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
  echo "promtool could not parse /metrics (exit $rc):"; cat "$dir/lint"; exit 1
fi
bad=$(grep '^sluice_' "$dir/lint" | grep -v 'no help text' || true)
if [ -n "$bad" ]; then
  echo "promtool lint problems in sluice metrics:"; echo "$bad"; exit 1
fi
echo "promtool: /metrics parses; $(grep -c '^sluice_' "$dir/metrics") sluice_* samples, no naming problems"
