package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/dispatcher"
)

// serveConfig is every setting of `sluice serve`. Each field has one flag and one environment
// variable (SLUICE_ + the flag name upper-cased with - as _); a flag given on the command line wins
// over the environment, which wins over the default.
type serveConfig struct {
	DataDir         string
	HTTPAddr        string
	TCPAddr         string
	TCPTLSAddr      string
	TCPTLSCert      string
	TCPTLSKey       string
	RaftAddr        string
	AdvertiseRaft   string
	NodeID          string
	RootKey         string
	MaxPayloadBytes int64
	EgressIPs       string
	EgressAllow     string
	EgressProxy     string
	EgressStdHTTP1  bool
	LogFormat       string
	LogLevel        string
	SnapshotEvery   uint64
	ShutdownTimeout time.Duration
	Workers         int
	BreakerFailures int
	BreakerCooldown time.Duration
	Bootstrap       bool
	Join            string
	Region          string
	AdvertiseHTTP   string
	TrailingLogs    uint64
	MinFreeDiskMB   int64
	MetricsAddr     string
	Pprof           bool
	SMTP            smtpConfig
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "./sluice-data", "directory for the Raft log, snapshots and state")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:5005", "REST API listen address")
	fs.StringVar(&c.TCPAddr, "tcp-addr", "127.0.0.1:5006", "TCP ingest listen address (docs/tcp-protocol.md); empty disables it")
	fs.StringVar(&c.TCPTLSAddr, "tcp-tls-addr", "", "TLS listener for TCP ingest (relays to --tcp-addr, which should then stay on loopback)")
	fs.StringVar(&c.TCPTLSCert, "tcp-tls-cert", "", "PEM certificate (chain) file for --tcp-tls-addr")
	fs.StringVar(&c.TCPTLSKey, "tcp-tls-key", "", "PEM private key file for --tcp-tls-addr")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:5007", "Raft transport listen address")
	fs.StringVar(&c.AdvertiseRaft, "advertise-raft-addr", "", "Raft address other nodes dial (default: --raft-addr)")
	fs.StringVar(&c.NodeID, "node-id", "node1", "this node's id in the cluster")
	fs.StringVar(&c.RootKey, "root-key", "", "root API key (default: generated on first start and printed once)")
	fs.Int64Var(&c.MaxPayloadBytes, "max-payload-bytes", 1<<20, "largest accepted request body in bytes (413 above)")
	fs.StringVar(&c.EgressIPs, "egress-ips", "", "comma-separated local IPs deliveries leave from (default: the system's choice)")
	fs.StringVar(&c.EgressAllow, "egress-allow-cidrs", "", "comma-separated CIDRs deliveries may reach although private/loopback (the SSRF guard refuses those by default)")
	fs.StringVar(&c.EgressProxy, "egress-proxy", "", "HTTP CONNECT proxy URL all deliveries go through (another way to a static egress IP)")
	fs.BoolVar(&c.EgressStdHTTP1, "egress-stdlib-http1", false, "send plain-http deliveries through Go's net/http client instead of Sluice's own HTTP/1.1 client (https always uses net/http)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Uint64Var(&c.SnapshotEvery, "snapshot-threshold", 8192, "Raft entries between snapshots")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown waits for in-flight work")
	fs.IntVar(&c.Workers, "workers", 256, "global budget of concurrent delivery requests")
	fs.IntVar(&c.BreakerFailures, "breaker-failures", dispatcher.DefaultFailureThreshold, "consecutive failed attempts to one endpoint that open its circuit breaker (its deliveries wait while open)")
	fs.DurationVar(&c.BreakerCooldown, "breaker-cooldown", dispatcher.DefaultCooldown, "how long an open circuit breaker waits before one probe attempt")
	fs.BoolVar(&c.Bootstrap, "bootstrap", true, "with no Raft state yet, form a one-node cluster (false: wait to be added to one)")
	fs.StringVar(&c.Join, "join", "", "HTTP address of any cluster member to join (implies --bootstrap=false)")
	fs.StringVar(&c.Region, "region", "", "this node's region label (endpoints may pin a region)")
	fs.StringVar(&c.AdvertiseHTTP, "advertise-http-addr", "", "HTTP address other nodes reach this one at (default: --http-addr)")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", 10240, "Raft entries kept behind a snapshot (a node further behind catches up by snapshot)")
	fs.Int64Var(&c.MinFreeDiskMB, "min-free-disk-mb", 256, "refuse new events (507) while the data directory's filesystem has less free space, in MiB: a full disk stops the node; 0 disables")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "optional separate listener for /metrics, /healthz, /readyz (and pprof)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on --metrics-addr (never on --http-addr)")
	fs.StringVar(&c.SMTP.Addr, "smtp-addr", "", "SMTP server host:port for endpoint alert emails (empty: no email)")
	fs.StringVar(&c.SMTP.From, "smtp-from", "sluice@localhost", "From address of alert emails")
	fs.StringVar(&c.SMTP.Username, "smtp-username", "", "SMTP username (PLAIN auth when set)")
	fs.StringVar(&c.SMTP.Password, "smtp-password", "", "SMTP password")
}

// parseServe fills c from defaults, then the environment, then args.
func parseServe(args []string, c *serveConfig) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.flags(fs)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SLUICE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format: %q is not text or json", c.LogFormat)
	}
	if c.Join != "" {
		c.Bootstrap = false
		if !strings.HasPrefix(c.Join, "http://") && !strings.HasPrefix(c.Join, "https://") {
			c.Join = "http://" + c.Join
		}
	}
	if c.AdvertiseHTTP == "" {
		c.AdvertiseHTTP = c.HTTPAddr
	}
	if !c.Bootstrap && c.RootKey == "" {
		return fmt.Errorf("a node joining a cluster needs the cluster's root key (--root-key or SLUICE_ROOT_KEY): nodes use it to call each other")
	}
	if c.TCPTLSAddr != "" && (c.TCPAddr == "" || c.TCPTLSCert == "" || c.TCPTLSKey == "") {
		return fmt.Errorf("--tcp-tls-addr needs --tcp-addr (the plain listener it relays to), --tcp-tls-cert and --tcp-tls-key")
	}
	if c.Pprof && c.MetricsAddr == "" {
		return fmt.Errorf("--pprof needs --metrics-addr: profiling is never served on the API listener")
	}
	if !validEmailHeader(c.SMTP.From) {
		return fmt.Errorf("--smtp-from: %q contains a line break", c.SMTP.From)
	}
	if c.BreakerFailures <= 0 {
		return fmt.Errorf("--breaker-failures: must be > 0, got %d", c.BreakerFailures)
	}
	if c.BreakerCooldown <= 0 {
		return fmt.Errorf("--breaker-cooldown: must be > 0, got %v", c.BreakerCooldown)
	}
	if c.MaxPayloadBytes <= 0 {
		return fmt.Errorf("--max-payload-bytes: must be > 0, got %s", strconv.FormatInt(c.MaxPayloadBytes, 10))
	}
	return nil
}
