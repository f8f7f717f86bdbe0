package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/sink"
)

func main() {
	var cfg sink.Config
	var every time.Duration
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:9000", "listen address (keep it on loopback)")
	flag.DurationVar(&cfg.Delay, "delay", 0, "answer every request after this long")
	flag.BoolVar(&cfg.Hang, "hang", false, "never answer (until the sink exits or the client gives up)")
	flag.Float64Var(&cfg.FailFirstShare, "fail-share", 0, "share of delivery ids whose first attempt fails, 0..1")
	flag.IntVar(&cfg.FailStatus, "fail-status", 500, "status answered to failed first attempts")
	flag.BoolVar(&cfg.FailRandom, "fail-random", false, "pick failing ids by hash (runs of failures) instead of evenly spaced")
	flag.DurationVar(&every, "every", 5*time.Second, "print the counters this often (0: only on exit)")
	print := flag.Bool("print", false, "print every request received (for trying Sluice by hand)")
	flag.Parse()
	if *print {
		cfg.Print = os.Stdout
		every = 0
	}
	if !strings.HasPrefix(cfg.Addr, "127.") && !strings.HasPrefix(cfg.Addr, "localhost:") && !strings.HasPrefix(cfg.Addr, "[::1]:") {
		log.Fatalf("-addr %s: the sink is for loopback benchmarks; listen on 127.0.0.1", cfg.Addr)
	}
	s, err := sink.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "sink listening on %s\n", s.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			enc.Encode(s.Stats())
		case <-ctx.Done():
			s.Close()
			enc.Encode(s.Stats())
			return
		}
	}
}
