package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/sink"
)

// The sink runs in a process of its own (this binary, re-executed with sinkChildFlag) so that its CPU
// time is measured apart from the load generator's: every result row carries CPU per 1,000 events for
// Sluice and for the sink. The runner drives it through the sink's control routes.
const sinkChildFlag = "-sink-child"

// sinkSpec is the part of sink.Config a child process can be given.
type sinkSpec struct {
	Delay          time.Duration `json:"delay,omitempty"`
	Hang           bool          `json:"hang,omitempty"`
	FailFirstShare float64       `json:"fail_first_share,omitempty"`
	FailStatus     int           `json:"fail_status,omitempty"`
	FailRandom     bool          `json:"fail_random,omitempty"`
	FailPerPath    bool          `json:"fail_per_path,omitempty"`
	TrackEvents    bool          `json:"track_events,omitempty"`
}

// sinkChild is the child's main: serve until stdin closes (the runner exited) or SIGTERM.
func sinkChild(spec string) {
	var sp sinkSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "sink child:", err)
		os.Exit(2)
	}
	s, err := sink.Start(sink.Config{Delay: sp.Delay, Hang: sp.Hang, FailFirstShare: sp.FailFirstShare, FailStatus: sp.FailStatus,
		FailRandom: sp.FailRandom, FailPerPath: sp.FailPerPath, TrackEvents: sp.TrackEvents})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink child:", err)
		os.Exit(1)
	}
	fmt.Println(s.URL())
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.Close()
}

// sinkProc is a sink child process.
type sinkProc struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	http  *http.Client
}

func startSinkProc(sp sinkSpec) (*sinkProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(sp)
	cmd := exec.Command(self, sinkChildFlag, string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
		io.Copy(io.Discard, out)
	}()
	p := &sinkProc{cmd: cmd, stdin: stdin, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}}
	select {
	case p.url = <-line:
	case <-time.After(10 * time.Second):
	}
	if !strings.HasPrefix(p.url, "http://") {
		p.Close()
		return nil, fmt.Errorf("sink child did not start (said %q)", p.url)
	}
	return p, nil
}

// URL is the sink's base URL; any path under it (but /_...) is a delivery target.
func (p *sinkProc) URL() string { return p.url }

func (p *sinkProc) Pid() int { return p.cmd.Process.Pid }

// CPU is the sink process's CPU time so far.
func (p *sinkProc) CPU() time.Duration { return harness.ProcCPU(p.Pid()) }

func (p *sinkProc) get(path string, out any) error {
	resp, err := p.http.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sink %s: %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Stats is the sink's counters (zero if the sink cannot be reached).
func (p *sinkProc) Stats() sink.Stats {
	var st sink.Stats
	p.get("/_stats", &st)
	return st
}

// Unique is the count of unique deliveries.
func (p *sinkProc) Unique() uint64 {
	var n uint64
	p.get("/_unique", &n)
	return n
}

// WaitUnique waits until at least n unique deliveries arrived or ctx ends; it returns the count seen.
func (p *sinkProc) WaitUnique(ctx context.Context, n uint64) (uint64, error) {
	for {
		if u := p.Unique(); u >= n {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return p.Unique(), ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Reset forgets everything counted so far.
func (p *sinkProc) Reset() error {
	resp, err := p.http.Post(p.url+"/_reset", "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// EventIDs is the set of event ids of unique deliveries (sinkSpec.TrackEvents).
func (p *sinkProc) EventIDs() (map[string]bool, error) {
	var ids []string
	if err := p.get("/_events", &ids); err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m, nil
}

// Close stops the child (closing its stdin ends it; SIGKILL after 5 s).
func (p *sinkProc) Close() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}
