package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configures Start. Bin is required.
type Options struct {
	// Bin is the path of the sluice binary.
	Bin string
	// Workers overrides --workers when > 0.
	Workers int
	// Args are extra `sluice serve` arguments.
	Args []string
	// LogLevel is --log-level (default "warn": the benchmark should not measure logging).
	LogLevel string
	// KeepData keeps the data directory after Stop.
	KeepData bool
	// Host is the loopback address every listener binds (default 127.0.0.1; a three-node cluster uses
	// 127.0.0.1, .2 and .3).
	Host string
	// TCP enables TCP ingest (--tcp-addr) on a free port of Host.
	TCP bool
	// Pprof serves /metrics and /debug/pprof on a separate free port (--metrics-addr, --pprof).
	Pprof bool
	// NodeID, Join (HTTP address of a member), EgressIPs and Region are the cluster flags.
	NodeID, Join, EgressIPs, Region string
	// RootKey is the root key (default: a fresh one); the nodes of one cluster share it.
	RootKey string
	// ReadyTimeout bounds the wait for readiness (default 60 s).
	ReadyTimeout time.Duration
}

// Sluice is a `sluice serve` process (restartable on the same data directory and ports).
type Sluice struct {
	// URL is the HTTP base, e.g. http://127.0.0.1:40123.
	URL     string
	RootKey string
	DataDir string
	LogPath string
	// HTTPAddr, RaftAddr and TCPAddr are host:port; TCPAddr is "" without Options.TCP.
	HTTPAddr, RaftAddr, TCPAddr string
	// OpsURL is the --metrics-addr base URL with Options.Pprof ("" otherwise).
	OpsURL string
	NodeID string

	opts    Options
	dir     string
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logFile *os.File
	// skip holds, for every start of the process, the log range from the start until it was ready:
	// lines there (start-up election warnings, join retries) are not counted against the run.
	skip [][2]int64
	// killed is set when Kill ended the process on purpose.
	killed bool
}

// StopReport says how a Stop went.
type StopReport struct {
	ShutdownS float64 `json:"shutdown_s"`
	Clean     bool    `json:"clean"` // exited 0 after SIGTERM, without SIGKILL
	// ExitedEarly is set when the process had already exited before Stop (a crash or a signal from
	// outside): its exit status.
	ExitedEarly string `json:"exited_early,omitempty"`
	// WarnLines and ErrorLines count the process's log lines at those levels.
	WarnLines  int      `json:"warn_lines"`
	ErrorLines int      `json:"error_lines"`
	Samples    []string `json:"log_samples,omitempty"` // the first few warning/error lines
	// Killed is set when the benchmark itself ended the process with SIGKILL (a failover test).
	Killed bool `json:"killed_by_benchmark,omitempty"`
}

func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start runs `sluice serve` and waits until it is ready and its root key is accepted.
func Start(ctx context.Context, opts Options) (*Sluice, error) {
	var lastErr error
	for range 3 { // a free port can be taken between the probe and the bind: try again
		s, err := start(ctx, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, opts Options) (*Sluice, error) {
	if opts.Bin == "" {
		return nil, errors.New("harness: Options.Bin is required")
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	dir, err := os.MkdirTemp("", "sgwbench-")
	if err != nil {
		return nil, err
	}
	var ports [4]int
	var perr error
	for i := range ports {
		p, err := freePort(opts.Host)
		ports[i], perr = p, errors.Join(perr, err)
	}
	if perr != nil {
		os.RemoveAll(dir)
		return nil, perr
	}
	hp := func(p int) string { return net.JoinHostPort(opts.Host, strconv.Itoa(p)) }
	s := &Sluice{
		URL:      "http://" + hp(ports[0]),
		HTTPAddr: hp(ports[0]),
		RaftAddr: hp(ports[1]),
		RootKey:  opts.RootKey,
		DataDir:  filepath.Join(dir, "data"),
		LogPath:  filepath.Join(dir, "sluice.log"),
		NodeID:   opts.NodeID,
		opts:     opts,
		dir:      dir,
	}
	if s.RootKey == "" {
		s.RootKey = "sk_bench_root_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if opts.TCP {
		s.TCPAddr = hp(ports[2])
	}
	args := []string{"serve",
		"--data-dir", s.DataDir,
		"--http-addr", s.HTTPAddr,
		"--raft-addr", s.RaftAddr,
		"--root-key", s.RootKey,
		"--log-level", opts.LogLevel,
		// The sink is on loopback, which the SSRF guard refuses by default.
		"--egress-allow-cidrs", "127.0.0.0/8",
		"--tcp-addr", s.TCPAddr,
	}
	if opts.Pprof {
		s.OpsURL = "http://" + hp(ports[3])
		args = append(args, "--metrics-addr", hp(ports[3]), "--pprof")
	}
	if opts.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(opts.Workers))
	}
	for _, f := range [][2]string{{"--node-id", opts.NodeID}, {"--join", opts.Join}, {"--egress-ips", opts.EgressIPs}, {"--region", opts.Region}} {
		if f[1] != "" {
			args = append(args, f[0], f[1])
		}
	}
	s.args = append(args, opts.Args...)
	if s.logFile, err = os.Create(s.LogPath); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.launch(); err != nil {
		s.logFile.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.WaitReady(ctx, opts.ReadyTimeout); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w (log: %s)", err, s.logTail(5))
	}
	return s, nil
}

// launch starts the process with s.args, appending to the log.
func (s *Sluice) launch() error {
	exited := make(chan struct{})
	cmd := exec.Command(s.opts.Bin, s.args...)
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	// The Makefile's `run` allows loopback egress this way; harmless where the binary does not check it.
	cmd.Env = append(os.Environ(), "SLUICE_EGRESS_ALLOW_CIDRS=127.0.0.0/8")
	off := s.LogSize()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("harness: start %s: %w", s.opts.Bin, err)
	}
	s.cmd, s.exited, s.killed = cmd, exited, false
	s.skip = append(s.skip, [2]int64{off, -1})
	go func() { s.waitErr = cmd.Wait(); close(exited) }()
	return nil
}

// WaitReady waits until /readyz answers 200 and the root key is accepted; the log up to then is not
// counted against the run.
func (s *Sluice) WaitReady(ctx context.Context, limit time.Duration) error {
	if err := s.waitReady(ctx, limit); err != nil {
		return err
	}
	if n := len(s.skip); n > 0 && s.skip[n-1][1] < 0 {
		s.skip[n-1][1] = s.LogSize()
	}
	return nil
}

func (s *Sluice) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := s.Root()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("harness: sluice exited during start: %v", s.waitErr)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if _, err := c.ListProjects(ctx); err == nil {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: sluice not ready within %v", limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LogSize is the current size of the server log (an offset for WaitLog).
func (s *Sluice) LogSize() int64 {
	if fi, err := os.Stat(s.LogPath); err == nil {
		return fi.Size()
	}
	return 0
}

// WaitLog waits until a log line after offset from contains substr, and returns the line and its
// time (the line's time= field when it has one, else when it was seen).
func (s *Sluice) WaitLog(ctx context.Context, substr string, from int64, limit time.Duration) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		seen := time.Now()
		if b, err := os.ReadFile(s.LogPath); err == nil && int64(len(b)) > from {
			for _, line := range strings.Split(string(b[from:]), "\n") {
				if !strings.Contains(line, substr) {
					continue
				}
				return line, logTime(line, seen), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("harness: no log line with %q within %v", substr, limit)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// logTime is the time= field of a text log line, or def.
func logTime(line string, def time.Time) time.Time {
	i := strings.Index(line, "time=")
	if i < 0 {
		return def
	}
	f := strings.Fields(line[i+5:])
	if len(f) == 0 {
		return def
	}
	t, err := time.Parse(time.RFC3339Nano, strings.Trim(f[0], `"`))
	if err != nil {
		return def
	}
	return t
}

// LogField returns the value of key=value in a text log line ("" when absent).
func LogField(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// Kill ends the process with SIGKILL (a crash, on purpose) and waits for it; the data stays.
func (s *Sluice) Kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.killed = true
	s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts the process again on the same data directory, ports and flags after Kill or
// Terminate; it does not wait for readiness (see WaitReady).
func (s *Sluice) Restart() error {
	select {
	case <-s.exited:
	default:
		return errors.New("harness: Restart of a running process")
	}
	return s.launch()
}

// Terminate sends SIGTERM and waits up to 20 s (then SIGKILL), keeping the data directory.
func (s *Sluice) Terminate() (clean bool, took time.Duration) {
	t0 := time.Now()
	select {
	case <-s.exited:
		return false, 0
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		clean = s.waitErr == nil
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return clean, time.Since(t0)
}

// Running reports whether the process has not exited.
func (s *Sluice) Running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Pid is the process id.
func (s *Sluice) Pid() int { return s.cmd.Process.Pid }

// Root is an API client holding the root key.
func (s *Sluice) Root() *Client { return NewClient(s.URL, s.RootKey) }

// Stop sends SIGTERM, waits up to 20 s (then SIGKILL), counts warning and error log lines and removes
// the data directory unless Options.KeepData.
func (s *Sluice) Stop() StopReport {
	var rep StopReport
	select {
	case <-s.exited:
		if s.killed {
			rep.Killed = true
		} else {
			rep.ExitedEarly = fmt.Sprint(s.waitErr)
			if s.waitErr == nil {
				rep.ExitedEarly = "exit status 0"
			}
		}
	default:
		clean, took := s.Terminate()
		rep.Clean, rep.ShutdownS = clean, took.Seconds()
	}
	s.logFile.Close()
	rep.WarnLines, rep.ErrorLines, rep.Samples = scanLog(s.LogPath, s.skip)
	if !s.opts.KeepData {
		os.RemoveAll(s.dir)
	}
	return rep
}

// scanLog counts WARN and ERROR lines (and Go crash output) outside the skipped [from, to) ranges (to
// -1: the range never closed, i.e. the process never became ready).
func scanLog(path string, skip [][2]int64) (warns, errs int, samples []string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var off int64
	for sc.Scan() {
		line := sc.Text()
		at := off
		off += int64(len(line)) + 1
		skipped := false
		for _, r := range skip {
			if at >= r[0] && (r[1] < 0 || at < r[1]) {
				skipped = true
				break
			}
		}
		if skipped {
			continue
		}
		switch {
		case strings.Contains(line, "level=WARN"), strings.Contains(line, `"level":"WARN"`):
			warns++
		case strings.Contains(line, "level=ERROR"), strings.Contains(line, `"level":"ERROR"`), strings.HasPrefix(line, "panic:"),
			strings.HasPrefix(line, "fatal error:"), strings.HasPrefix(line, "SIGQUIT"), strings.HasPrefix(line, "SIGABRT"):
			errs++
		default:
			continue
		}
		if len(samples) < 3 {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			samples = append(samples, line)
		}
	}
	return
}

func (s *Sluice) logTail(n int) string {
	b, _ := os.ReadFile(s.LogPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// CPU is the process's user+system CPU time so far, from /proc (0 where unavailable). After a
// restart it counts the current process only.
func (s *Sluice) CPU() time.Duration { return ProcCPU(s.Pid()) }

// PeakRSS is the process's peak resident set size in bytes, from /proc (0 where unavailable).
func (s *Sluice) PeakRSS() uint64 { return procStatus(s.Pid(), "VmHWM:") }

// RSS is the process's current resident set size in bytes (0 where unavailable).
func (s *Sluice) RSS() uint64 { return procStatus(s.Pid(), "VmRSS:") }

// ResetPeakRSS starts a new peak: PeakRSS then reports the largest RSS since this call (Linux
// /proc/<pid>/clear_refs "5"); false where the kernel does not allow it.
func (s *Sluice) ResetPeakRSS() bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.Pid()), []byte("5"), 0) == nil
}

// ProcCPU reads utime+stime of pid from /proc/<pid>/stat.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+2:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// ProcRSS is pid's current resident set size in bytes, from /proc (0 where unavailable).
func ProcRSS(pid int) uint64 { return procStatus(pid, "VmRSS:") }

// ProcPeakRSS is pid's peak resident set size in bytes, from /proc (0 where unavailable).
func ProcPeakRSS(pid int) uint64 { return procStatus(pid, "VmHWM:") }

func procStatus(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Profile fetches a CPU profile of seconds from the process's pprof listener (Options.Pprof) into path.
func (s *Sluice) Profile(ctx context.Context, seconds int, path string) error {
	if s.OpsURL == "" {
		return errors.New("harness: profile needs Options.Pprof")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.OpsURL, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(seconds+30) * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("harness: profile: %d %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
