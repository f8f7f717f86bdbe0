package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binPath is the sluice binary built once for the process tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "sluice")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build sluice: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string { return freePortOn(t, "127.0.0.1") }

// freePortOn returns host:port with a port free on host (127.0.0.2 and 127.0.0.3 stand for other hosts).
func freePortOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running sluice process.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	api  string
	key  string
	mu   sync.Mutex // guards logs, written by the process's output copier
	logs *bytes.Buffer
}

// lockedWriter lets the test read a process's output while exec copies into it.
type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.logs.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startRaw starts sluice serve (deliveries to 127.0.0.0/8 allowed) without waiting for readiness.
func startRaw(t *testing.T, dataDir, httpAddr, raftAddr string, extra ...string) *proc {
	t.Helper()
	return startRawArgs(t, dataDir, httpAddr, raftAddr, true, extra...)
}

func startRawArgs(t *testing.T, dataDir, httpAddr, raftAddr string, allowLoopback bool, extra ...string) *proc {
	t.Helper()
	key := "sk_test_root_key"
	args := []string{"serve", "--data-dir", dataDir, "--http-addr", httpAddr, "--raft-addr", raftAddr,
		"--root-key", key, "--log-level", "warn", "--tcp-addr", ""}
	if allowLoopback {
		args = append(args, "--egress-allow-cidrs", "127.0.0.0/8")
	}
	args = append(args, extra...)
	cmd := exec.Command(binPath, args...)
	p := &proc{t: t, cmd: cmd, api: "http://" + httpAddr + "/api/v1", key: key, logs: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill() })
	return p
}

func startProc(t *testing.T, dataDir, httpAddr, raftAddr string, extra ...string) *proc {
	t.Helper()
	return startProcArgs(t, dataDir, httpAddr, raftAddr, true, extra...)
}

func startProcArgs(t *testing.T, dataDir, httpAddr, raftAddr string, allowLoopback bool, extra ...string) *proc {
	t.Helper()
	p := startRawArgs(t, dataDir, httpAddr, raftAddr, allowLoopback, extra...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				// Ready means a leader; the root key is stored right after.
				if p.call("GET", "/projects", nil, nil) == 200 {
					return p
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice did not become ready: %s", p.output())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	}
}

func (p *proc) kill() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// call does one API request; it returns the status (0 on a transport error) and decodes data.
func (p *proc) call(method, path string, body any, data any) int {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &env) == nil && data != nil {
		json.Unmarshal(env.Data, data)
	}
	return resp.StatusCode
}

// TestKill9LosesNoAcknowledgedEvent publishes from concurrent clients, kill -9s the process while
// publishes are in flight, restarts it on the same data dir and finds every acknowledged event and
// exactly one delivery record for each.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	dataDir := t.TempDir()
	httpAddr, raftAddr := freePort(t), freePort(t)
	p := startProc(t, dataDir, httpAddr, raftAddr)

	var proj struct{ UID string }
	if c := p.call("POST", "/projects", map[string]any{"name": "crash"}, &proj); c != 201 {
		t.Fatalf("create project: %d", c)
	}
	var ep struct{ UID string }
	// Paused: deliveries stay scheduled, so the check below sees exactly what publish created.
	if c := p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x", "status": "paused"}, &ep); c != 201 {
		t.Fatalf("create endpoint: %d", c)
	}

	const clients, perClient = 8, 2000
	var (
		mu    sync.Mutex
		acked = map[string]string{} // idempotency key -> event id
		nAck  atomic.Int64
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("c%d-%d", c, i)
				var ev struct{ UID string }
				code := p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{
					"endpoint_id": ep.UID, "event_type": "order.created", "data": map[string]any{"c": c, "i": i}, "idempotency_key": key,
				}, &ev)
				if code == 0 {
					return // the process is gone
				}
				if code == 201 {
					mu.Lock()
					acked[key] = ev.UID
					mu.Unlock()
					nAck.Add(1)
				}
			}
		}(c)
	}
	// Kill while publishes are in flight: after a few hundred acks, not at a quiet moment.
	deadline := time.Now().Add(60 * time.Second)
	for nAck.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling interval
	}
	p.kill()
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	t.Logf("%d events acknowledged before kill -9", len(acked))

	p = startProc(t, dataDir, httpAddr, raftAddr)
	for key, id := range acked {
		var ev struct {
			UID            string `json:"uid"`
			IdempotencyKey string `json:"idempotency_key"`
		}
		if c := p.call("GET", "/projects/"+proj.UID+"/events/"+id, nil, &ev); c != 200 || ev.IdempotencyKey != key {
			t.Fatalf("acknowledged event %s (%s) lost after kill -9: status %d", id, key, c)
		}
	}
	// Exactly one delivery per stored event, none twice.
	perEvent := map[string]int{}
	cursor := ""
	for pages := 0; pages < 1000; pages++ {
		var page struct {
			Content []struct {
				EventID string `json:"event_id"`
			} `json:"content"`
			Pagination struct {
				HasNext bool   `json:"has_next_page"`
				Next    string `json:"next_page_cursor"`
			} `json:"pagination"`
		}
		if c := p.call("GET", "/projects/"+proj.UID+"/eventdeliveries?perPage=1000&next_page_cursor="+cursor, nil, &page); c != 200 {
			t.Fatalf("list deliveries: %d", c)
		}
		for _, d := range page.Content {
			perEvent[d.EventID]++
		}
		if !page.Pagination.HasNext {
			break
		}
		cursor = page.Pagination.Next
	}
	for key, id := range acked {
		if perEvent[id] != 1 {
			t.Fatalf("event %s (%s) has %d delivery records, want 1", id, key, perEvent[id])
		}
	}
	for id, n := range perEvent {
		if n != 1 {
			t.Fatalf("event %s has %d deliveries", id, n)
		}
	}
	// Retrying a publish with its idempotency key returns the original and creates nothing new.
	for key, id := range acked {
		var ev struct{ UID string }
		if c := p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{
			"endpoint_id": ep.UID, "event_type": "order.created", "data": 1, "idempotency_key": key,
		}, &ev); c != 200 || ev.UID != id {
			t.Fatalf("retry of %s = %d %s, want 200 and the original %s", key, c, ev.UID, id)
		}
		break
	}
}
