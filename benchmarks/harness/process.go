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
}

// Sluice is a running `sluice serve` process.
type Sluice struct {
	// URL is the HTTP base, e.g. http://127.0.0.1:40123.
	URL     string
	RootKey string
	DataDir string
	LogPath string

	opts    Options
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logFile *os.File
	// readyAt is the log size when the process became ready: lines before it (start-up election
	// warnings) are not counted against the run.
	readyAt int64
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
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
	dir, err := os.MkdirTemp("", "sgwbench-")
	if err != nil {
		return nil, err
	}
	httpPort, err1 := freePort()
	raftPort, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Sluice{
		URL:     fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		RootKey: "sk_bench_root_" + strconv.FormatInt(time.Now().UnixNano(), 36),
		DataDir: filepath.Join(dir, "data"),
		LogPath: filepath.Join(dir, "sluice.log"),
		opts:    opts,
		dir:     dir,
		exited:  make(chan struct{}),
	}
	args := []string{"serve",
		"--data-dir", s.DataDir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", raftPort),
		"--root-key", s.RootKey,
		"--log-level", opts.LogLevel,
		// The sink is on loopback, which the SSRF guard refuses by default; no TCP listener is needed.
		"--egress-allow-cidrs", "127.0.0.0/8",
		"--tcp-addr", "",
	}
	if opts.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(opts.Workers))
	}
	args = append(args, opts.Args...)
	if s.logFile, err = os.Create(s.LogPath); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(opts.Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.logFile, s.logFile
	// The Makefile's `run` allows loopback egress this way; harmless where the binary does not check it.
	s.cmd.Env = append(os.Environ(), "SLUICE_EGRESS_ALLOW_CIDRS=127.0.0.0/8")
	if err := s.cmd.Start(); err != nil {
		s.logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("harness: start %s: %w", opts.Bin, err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w (log: %s)", err, s.logTail(5))
	}
	if fi, err := s.logFile.Stat(); err == nil {
		s.readyAt = fi.Size()
	}
	return s, nil
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

// Pid is the process id.
func (s *Sluice) Pid() int { return s.cmd.Process.Pid }

// Root is an API client holding the root key.
func (s *Sluice) Root() *Client { return NewClient(s.URL, s.RootKey) }

// Stop sends SIGTERM, waits up to 20 s (then SIGKILL), counts warning and error log lines and removes
// the data directory unless Options.KeepData.
func (s *Sluice) Stop() StopReport {
	var rep StopReport
	t0 := time.Now()
	select {
	case <-s.exited:
		rep.ExitedEarly = fmt.Sprint(s.waitErr)
		if s.waitErr == nil {
			rep.ExitedEarly = "exit status 0"
		}
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			rep.Clean = s.waitErr == nil
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	rep.ShutdownS = time.Since(t0).Seconds()
	s.logFile.Close()
	rep.WarnLines, rep.ErrorLines, rep.Samples = scanLog(s.LogPath, s.readyAt)
	if !s.opts.KeepData {
		os.RemoveAll(s.dir)
	}
	return rep
}

func scanLog(path string, from int64) (warns, errs int, samples []string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	f.Seek(from, io.SeekStart)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
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

// CPU is the process's user+system CPU time so far, from /proc (0 where unavailable).
func (s *Sluice) CPU() time.Duration { return ProcCPU(s.Pid()) }

// PeakRSS is the process's peak resident set size in bytes, from /proc (0 where unavailable).
func (s *Sluice) PeakRSS() uint64 { return procPeakRSS(s.Pid()) }

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

func procPeakRSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
