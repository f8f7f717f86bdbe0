package netpool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// benchServerEnv makes the test binary act as the benchmark's HTTP server. The server runs in its own
// process so that getrusage in the benchmark counts the client's CPU only, as the design brief did.
const benchServerEnv = "NETPOOL_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) == "1" {
		runBenchServer()
		return
	}
	os.Exit(m.Run())
}

// runBenchServer answers every request like a webhook receiver (read the body, small JSON reply),
// prints its address, and exits when stdin closes.
func runBenchServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reply := []byte(`{"ok":true}`)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	})}
	go srv.Serve(ln)
	fmt.Println(ln.Addr())
	io.Copy(io.Discard, os.Stdin)
}

// startBenchServer runs the server process and returns its URL.
func startBenchServer(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the server exits on EOF
		cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench server: %v", err)
	}
	return "http://" + addr[:len(addr)-1] + "/hook"
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDo compares Pool.Do on its lean HTTP/1.1 client (netpool), Pool.Do through net/http
// (netpool-stdlib, Config.StdlibHTTP1) and a bare http.Client (the naive baseline) for 1 KiB POSTs from
// 64 goroutines over keep-alive connections. cpu-us/req is this process's (the client's) CPU time.
func BenchmarkDo(b *testing.B) {
	url := startBenchServer(b)
	body := bytes.Repeat([]byte("x"), 1<<10)
	header := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Sluice"}}

	run := func(b *testing.B, attempt func() error) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		b.SetParallelism(32) // x GOMAXPROCS goroutines: the brief measured 16-256 connections
		cpu0, t0 := cpuTime(), time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := attempt(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu, elapsed := cpuTime()-cpu0, time.Since(t0)
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/req")
	}

	for _, c := range []struct {
		name   string
		stdlib bool
	}{{"netpool", false}, {"netpool-stdlib", true}} {
		b.Run(c.name, func(b *testing.B) {
			p, err := New(Config{EgressIPs: []netip.Addr{ip2}, StdlibHTTP1: c.stdlib})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			run(b, func() error {
				res := p.Do(context.Background(), &Request{URL: url, Header: header, Body: body, Key: "ep_bench"})
				if res.Err == nil && res.StatusCode != 200 {
					return fmt.Errorf("status %d", res.StatusCode)
				}
				return res.Err
			})
		})
	}
	b.Run("http.Client", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: defaultMaxIdleConnsPerHost, IdleConnTimeout: defaultIdleConnTimeout}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: defaultTimeout}
		run(b, func() error {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header = header
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	})
}
