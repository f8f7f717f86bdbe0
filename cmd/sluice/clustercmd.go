package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gw/sluice/cluster"
)

const clusterUsage = `Usage: sluice cluster <command> [flags]

Commands (each talks to one node's admin API; writes reach the leader through it):
  list                                   servers: id, addresses, region, voter, leader, live, last contact, applied index, version, codec
  add --id ID --raft-addr HOST:PORT      add a voter (--non-voter for a non-voter)
  remove ID                              remove a server
  transfer-leader [--to ID]              hand leadership to ID (or any up-to-date voter)
  snapshot                               take a snapshot on the addressed node

Flags for every command:
  --addr URL   a node's HTTP address (default http://127.0.0.1:5005, or $SLUICE_ADDR)
  --key KEY    the root API key (default $SLUICE_ROOT_KEY)
  --json       print JSON instead of a table
`

// clusterCmd implements `sluice cluster`.
func clusterCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, clusterUsage)
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("cluster "+sub, flag.ContinueOnError)
	addr := fs.String("addr", envDefault("SLUICE_ADDR", "http://127.0.0.1:5005"), "a node's HTTP address")
	key := fs.String("key", os.Getenv("SLUICE_ROOT_KEY"), "the root API key")
	asJSON := fs.Bool("json", false, "print JSON")
	id := fs.String("id", "", "server id (add)")
	raftAddr := fs.String("raft-addr", "", "server Raft address (add)")
	nonVoter := fs.Bool("non-voter", false, "add as a non-voter (add)")
	to := fs.String("to", "", "target server id (transfer-leader)")
	// Accept flags before or after the positional id.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	if *key == "" {
		return fmt.Errorf("cluster %s: no key: pass --key or set SLUICE_ROOT_KEY", sub)
	}
	base := strings.TrimRight(*addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &adminClient{base: base, key: *key, out: stdout, json: *asJSON}
	switch sub {
	case "list":
		return c.list()
	case "add":
		if *id == "" || *raftAddr == "" {
			return fmt.Errorf("cluster add: --id and --raft-addr are required")
		}
		voter := !*nonVoter
		return c.do("POST", "/api/v1/cluster/servers", cluster.AddRequest{ID: *id, RaftAddr: *raftAddr, Voter: &voter})
	case "remove":
		target := *id
		if len(pos) > 0 {
			target = pos[0]
		}
		if target == "" {
			return fmt.Errorf("cluster remove: name the server: sluice cluster remove ID")
		}
		return c.do("DELETE", "/api/v1/cluster/servers/"+target, nil)
	case "transfer-leader":
		return c.do("POST", "/api/v1/cluster/transfer-leader", map[string]string{"to": *to})
	case "snapshot":
		return c.do("POST", "/api/v1/cluster/snapshot", nil)
	}
	return fmt.Errorf("cluster: unknown command %q\n\n%s", sub, clusterUsage)
}

func envDefault(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type adminClient struct {
	base, key string
	out       io.Writer
	json      bool
}

type adminReply struct {
	Status  bool            `json:"status"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (c *adminClient) call(method, path string, body any) (*adminReply, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r adminReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if resp.StatusCode >= 400 {
		return &r, fmt.Errorf("%s", r.Message)
	}
	return &r, nil
}

func (c *adminClient) do(method, path string, body any) error {
	r, err := c.call(method, path, body)
	if err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(c.out).Encode(r)
	}
	fmt.Fprintln(c.out, r.Message)
	return nil
}

func (c *adminClient) list() error {
	r, err := c.call("GET", "/api/v1/cluster", nil)
	if err != nil {
		return err
	}
	var srvs []cluster.ServerInfo
	if err := json.Unmarshal(r.Data, &srvs); err != nil {
		return fmt.Errorf("cluster list: %w", err)
	}
	if c.json {
		return json.NewEncoder(c.out).Encode(srvs)
	}
	tw := tabwriter.NewWriter(c.out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT ADDR\tHTTP ADDR\tREGION\tSUFFRAGE\tLEADER\tLIVE\tLAST CONTACT\tAPPLIED\tVERSION\tCODEC")
	for _, s := range srvs {
		suffrage := "voter"
		if !s.Voter {
			suffrage = "non-voter"
		}
		contact := "-"
		if !s.LastContact.IsZero() {
			contact = time.Since(s.LastContact).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\t%s\t%d\t%s\t%d\n", s.ID, s.RaftAddr, dash(s.HTTPAddr), dash(s.Region), suffrage, s.Leader, s.Live, contact, s.AppliedIndex, dash(s.Version), s.Codec)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
