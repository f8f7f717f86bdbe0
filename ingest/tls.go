package ingest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// TLSTerminator gives the TCP ingest port TLS: gnet has no TLS of its own, so this accepts TLS
// connections and relays their plaintext to the ingest server's plain listener (keep that one on
// loopback). Each connection costs two goroutines (one per direction) that end when either side
// closes; Close stops accepting, closes every relayed connection and waits for them.
type TLSTerminator struct {
	ln      net.Listener
	backend string
	log     *slog.Logger
	wg      sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// ServeTLS listens on addr with cfg and relays each connection to backend (the ingest server's
// plain address).
func ServeTLS(addr string, cfg *tls.Config, backend string, log *slog.Logger) (*TLSTerminator, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("ingest: listen for TLS on %s: %w", addr, err)
	}
	t := &TLSTerminator{ln: ln, backend: backend, log: log, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is the TLS listener's address.
func (t *TLSTerminator) Addr() net.Addr { return t.ln.Addr() }

func (t *TLSTerminator) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.log.Warn("tls ingest accept", "err", err)
			}
			return
		}
		t.wg.Add(1)
		go t.relay(c)
	}
}

func (t *TLSTerminator) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TLSTerminator) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *TLSTerminator) relay(front net.Conn) {
	defer t.wg.Done()
	defer front.Close()
	// A client that never completes the handshake must not hold a goroutine forever.
	front.SetDeadline(time.Now().Add(10 * time.Second))
	if err := front.(*tls.Conn).Handshake(); err != nil {
		return
	}
	front.SetDeadline(time.Time{})
	back, err := net.DialTimeout("tcp", t.backend, 5*time.Second)
	if err != nil {
		t.log.Warn("tls ingest: dial the plain ingest listener", "backend", t.backend, "err", err)
		return
	}
	defer back.Close()
	if !t.track(front) || !t.track(back) {
		return
	}
	defer t.untrack(front)
	defer t.untrack(back)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// Either direction ending ends the connection: frames only make sense in both directions.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(back, front)
	go pipe(front, back)
	<-done
	<-done
}

// Close stops accepting, closes relayed connections and waits for their goroutines.
func (t *TLSTerminator) Close() {
	t.ln.Close()
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}
