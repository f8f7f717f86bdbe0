package ingest

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/internal/clock"
)

// Config configures the TCP ingest server. Zero values take the defaults of DefaultConfig.
//
// There is no TLS: gnet drives raw sockets from its event loops and has no TLS layer. Run the
// listener on a private network or loopback, or terminate TLS in front of it (HAProxy, Envoy,
// stunnel); the Go client can dial TLS (client.Options.TLS) for exactly that setup.
type Config struct {
	// Addr is the TCP listen address. Default 127.0.0.1:5006. Port 0 picks a free port (see Addr).
	Addr string
	// MaxPublishBytes caps one publish's JSON, as the HTTP API caps a body: the node's
	// --max-payload-bytes. Default 1 MiB.
	MaxPublishBytes int
	// MaxFrameBytes caps a PUBLISH or PUBLISH_BATCH frame, header included, before and after
	// decompression. Default MaxPublishBytes + 64 KiB (room for the header, the TCP-only fields and
	// batch framing). Other frame types are capped at wire.MaxControlPayload.
	MaxFrameBytes int
	// MaxInFlightPerConn is how many publishes of one connection may be between read and ACK/NACK.
	// At the cap the connection is not read until some are answered. Default 4096.
	MaxInFlightPerConn int
	// MaxInFlight is the same across all connections: the cap on concurrent Publish calls (each one
	// a goroutine). Default 8192, at least MaxInFlightPerConn.
	MaxInFlight int
	// MaxBatch is the largest item count of one PUBLISH_BATCH. Default 1024, at most
	// MaxInFlightPerConn.
	MaxBatch int
	// MaxConns caps open connections; one more is answered with ERROR too_many_connections. Default
	// 4096.
	MaxConns int
	// MaxBufferedBytes caps the unread input the server holds for a connection it has paused. gnet
	// cannot stop reading a socket, so a paused connection's bytes pile up in its inbound buffer; past
	// this many the connection gets ERROR overloaded and is closed. Default 4 MiB, at least
	// 2*MaxFrameBytes.
	MaxBufferedBytes int
	// MaxOutboundBytes caps the ACKs and other replies queued for a connection that is not reading
	// them; past it the connection is closed. Default 4 MiB.
	MaxOutboundBytes int
	// AuthTimeout is how long a new connection has to authenticate. Default 10 s.
	AuthTimeout time.Duration
	// IdleTimeout closes an authenticated connection that sent no complete frame for this long while
	// none of its publishes were in flight. Default 2 min.
	IdleTimeout time.Duration
	// DrainTimeout is how long Stop lets in-flight publishes finish (and be acknowledged) before
	// cancelling them. Default 10 s.
	DrainTimeout time.Duration
	// EventLoops is the number of gnet event loops. Default: one per CPU.
	EventLoops int
	Logger     *slog.Logger
	// OnPublish, when set, is called after each new event acknowledged over TCP (not for
	// duplicates), from a publish goroutine: for metrics, so it must be cheap.
	OnPublish func(projectID string)
	// Clock times the auth and idle timeouts and the drain. Default clock.Real.
	Clock clock.Clock
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	c := Config{}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:5006"
	}
	if c.MaxPublishBytes <= 0 {
		c.MaxPublishBytes = 1 << 20
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = c.MaxPublishBytes + 64<<10
	}
	if c.MaxInFlightPerConn <= 0 {
		c.MaxInFlightPerConn = 4096
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = max(8192, c.MaxInFlightPerConn)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = min(1024, c.MaxInFlightPerConn)
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 4096
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = max(4<<20, 2*c.MaxFrameBytes)
	}
	if c.MaxOutboundBytes <= 0 {
		c.MaxOutboundBytes = 4 << 20
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Validate checks a configuration after defaults are applied.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("ingest: Addr %q: %w", c.Addr, err)
	}
	if c.MaxFrameBytes < wire.HeaderLen+c.MaxPublishBytes {
		return fmt.Errorf("ingest: MaxFrameBytes %d cannot hold a %d-byte publish", c.MaxFrameBytes, c.MaxPublishBytes)
	}
	if c.MaxFrameBytes > 1<<30 {
		return fmt.Errorf("ingest: MaxFrameBytes %d is over 1 GiB", c.MaxFrameBytes)
	}
	if c.MaxInFlight < c.MaxInFlightPerConn {
		return fmt.Errorf("ingest: MaxInFlight %d is below MaxInFlightPerConn %d", c.MaxInFlight, c.MaxInFlightPerConn)
	}
	if c.MaxBatch > c.MaxInFlightPerConn {
		return fmt.Errorf("ingest: MaxBatch %d is above MaxInFlightPerConn %d", c.MaxBatch, c.MaxInFlightPerConn)
	}
	if c.MaxBufferedBytes < 2*c.MaxFrameBytes {
		return fmt.Errorf("ingest: MaxBufferedBytes %d is below two frames (%d)", c.MaxBufferedBytes, 2*c.MaxFrameBytes)
	}
	return nil
}

// tick is how often the reaper looks for connections past their auth or idle timeout.
func (c *Config) tick() time.Duration {
	d := min(c.AuthTimeout, c.IdleTimeout) / 4
	return min(max(d, 10*time.Millisecond), time.Second)
}
