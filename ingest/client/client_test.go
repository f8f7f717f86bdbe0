package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/internal/clock"
)

var quiet = slog.New(slog.DiscardHandler)

// recClock is a fake clock that reports every timer the client arms, so a test knows when the client
// is parked on a backoff without sleeping.
type recClock struct {
	*clock.Fake
	armed chan time.Duration
}

func (c *recClock) NewTimer(d time.Duration) clock.Timer {
	t := recTimer{c.Fake.NewTimer(d), c}
	c.report(d) // after arming, so a test that advances on this report fires the timer
	return t
}

func (c *recClock) report(d time.Duration) {
	select {
	case c.armed <- d:
	default:
	}
}

type recTimer struct {
	clock.Timer
	c *recClock
}

func (t recTimer) Reset(d time.Duration) bool {
	was := t.Timer.Reset(d)
	t.c.report(d)
	return was
}

// waitArmed returns the first timer armed within [lo, hi].
func (c *recClock) waitArmed(t *testing.T, lo, hi time.Duration) time.Duration {
	t.Helper()
	end := time.NewTimer(10 * time.Second)
	defer end.Stop()
	for {
		select {
		case d := <-c.armed:
			if d >= lo && d <= hi {
				return d
			}
		case <-end.C:
			t.Fatalf("no timer in [%s, %s] was armed", lo, hi)
		}
	}
}

// fakeServer accepts connections and hands them to the test.
type fakeServer struct {
	ln    net.Listener
	conns chan *peer
}

type peer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln, conns: make(chan *peer, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fs.conns <- &peer{t: t, nc: nc, br: bufio.NewReader(nc)}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return fs
}

func (fs *fakeServer) accept(t *testing.T) *peer {
	t.Helper()
	select {
	case p := <-fs.conns:
		t.Cleanup(func() { p.nc.Close() })
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

func (p *peer) read() wire.Frame {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := readFrameAny(p.br)
	if err != nil {
		p.t.Fatalf("server read: %v", err)
	}
	return f
}

// readFrameAny reads a client frame (publish payloads allowed).
func readFrameAny(br *bufio.Reader) (wire.Frame, error) {
	hdr := make([]byte, wire.HeaderLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return wire.Frame{}, err
	}
	h, err := wire.ParseHeader(hdr, wire.DefaultMaxPayload)
	if err != nil {
		return wire.Frame{}, err
	}
	pl := make([]byte, h.PayloadLen)
	if _, err := io.ReadFull(br, pl); err != nil {
		return wire.Frame{}, err
	}
	return wire.Frame{Header: h, Payload: pl}, nil
}

func (p *peer) write(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatalf("server write: %v", err)
	}
}

// handshake reads AUTH and answers AUTH_OK.
func (p *peer) handshake() wire.Auth {
	p.t.Helper()
	f := p.read()
	if f.Type != wire.TypeAuth {
		p.t.Fatalf("first frame %s", f.Type)
	}
	var a wire.Auth
	json.Unmarshal(f.Payload, &a)
	ok, _ := json.Marshal(wire.AuthOK{ProjectID: "P", MaxPayload: 1 << 20, MaxPublishBytes: 1 << 16, MaxInFlight: 64, MaxBatch: 16})
	p.write(wire.AppendFrame(nil, wire.TypeAuthOK, 0, f.Seq, ok))
	return a
}

// readPublish reads one PUBLISH and decodes its JSON.
func (p *peer) readPublish() (uint64, wire.Publish, []byte) {
	p.t.Helper()
	f := p.read()
	if f.Type != wire.TypePublish {
		p.t.Fatalf("got %s, want PUBLISH", f.Type)
	}
	var w wire.Publish
	if err := json.Unmarshal(f.Payload, &w); err != nil {
		p.t.Fatal(err)
	}
	return f.Seq, w, f.Payload
}

func dialTest(t *testing.T, addr string, clk clock.Clock) *Client {
	t.Helper()
	cl, err := Dial(context.Background(), addr, Options{Key: "sk_k", Clock: clk, Logger: quiet, MaxBatch: 1,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestResendAfterReconnectKeepsIdempotencyKey: a publish unanswered when the connection dies is sent
// again, byte for byte with the same generated idempotency key, on a connection made after a backoff
// on the injected clock.
func TestResendAfterReconnectKeepsIdempotencyKey(t *testing.T) {
	fs := newFakeServer(t)
	clk := &recClock{Fake: clock.NewFake(time.Unix(1_700_000_000, 0)), armed: make(chan time.Duration, 64)}
	accepted := make(chan *Client, 1)
	go func() { accepted <- dialTest(t, fs.ln.Addr().String(), clk) }()
	p1 := fs.accept(t)
	if a := p1.handshake(); a.Key != "sk_k" {
		t.Fatalf("AUTH key %q", a.Key)
	}
	cl := <-accepted
	fut := cl.PublishAsync(&Request{EndpointID: "E", EventType: "x", Data: json.RawMessage(`{"b": 2,  "a":"<&>"}`)})
	_, first, raw1 := p1.readPublish()
	if first.IdempotencyKey == "" || string(first.Data) != `{"b": 2,  "a":"<&>"}` {
		t.Fatalf("first send: key %q data %s", first.IdempotencyKey, first.Data)
	}
	p1.nc.Close()

	d := clk.waitArmed(t, 50*time.Millisecond, 100*time.Millisecond) // reconnect backoff, attempt 1
	select {
	case <-fs.conns:
		t.Fatal("reconnected before the backoff elapsed on the client's clock")
	default:
	}
	clk.Advance(d)
	p2 := fs.accept(t)
	p2.handshake()
	seq, again, raw2 := p2.readPublish()
	if again.IdempotencyKey != first.IdempotencyKey || string(raw1) != string(raw2) {
		t.Fatalf("resent %s, first sent %s", raw2, raw1)
	}
	p2.write(wire.AppendAck(nil, seq, wire.Ack{EventID: "EV1", Matched: 1, Duplicate: true}))
	ack, err := fut.Wait(context.Background())
	if err != nil || ack.EventID != "EV1" || !ack.Duplicate {
		t.Fatalf("ack %+v %v", ack, err)
	}
	if st := cl.Stats(); st.Connects != 2 || st.Resent != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRetryableNackIsResentAndFinalNackFails.
func TestRetryableNackIsResentAndFinalNackFails(t *testing.T) {
	fs := newFakeServer(t)
	clk := &recClock{Fake: clock.NewFake(time.Unix(1_700_000_000, 0)), armed: make(chan time.Duration, 64)}
	accepted := make(chan *Client, 1)
	go func() { accepted <- dialTest(t, fs.ln.Addr().String(), clk) }()
	p := fs.accept(t)
	p.handshake()
	cl := <-accepted

	f1 := cl.PublishAsync(&Request{EventType: "x", Data: json.RawMessage(`1`), IdempotencyKey: "mine"})
	seq, w, _ := p.readPublish()
	if w.IdempotencyKey != "mine" {
		t.Fatalf("key %q, want the caller's", w.IdempotencyKey)
	}
	p.write(wire.AppendProblem(nil, wire.TypeNack, seq, wire.Problem{Code: wire.CodeUnavailable, Message: "no leader"}))
	d := clk.waitArmed(t, 50*time.Millisecond, 100*time.Millisecond) // retry backoff
	clk.Advance(d)
	seq, w, _ = p.readPublish()
	if w.IdempotencyKey != "mine" {
		t.Fatalf("retry key %q", w.IdempotencyKey)
	}
	p.write(wire.AppendAck(nil, seq, wire.Ack{EventID: "EV"}))
	if a, err := f1.Result(); err != nil || a.EventID != "EV" {
		t.Fatalf("%+v %v", a, err)
	}

	f2 := cl.PublishAsync(&Request{EventType: "x", Data: json.RawMessage(`1`)})
	seq, _, _ = p.readPublish()
	p.write(wire.AppendProblem(nil, wire.TypeNack, seq, wire.Problem{Code: wire.CodeNotFound, Message: "endpoint E not found"}))
	_, err := f2.Result()
	var ne *NackError
	if !errors.As(err, &ne) || ne.Code != wire.CodeNotFound || ne.Retryable() {
		t.Fatalf("err %v", err)
	}
}

// TestRefusedAuthFailsDial: a non-retryable ERROR on AUTH is returned by Dial.
func TestRefusedAuthFailsDial(t *testing.T) {
	fs := newFakeServer(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Dial(context.Background(), fs.ln.Addr().String(), Options{Key: "bad", Logger: quiet})
		errc <- err
	}()
	p := fs.accept(t)
	p.read()
	p.write(wire.AppendProblem(nil, wire.TypeError, 0, wire.Problem{Code: wire.CodeUnauthorized, Message: "invalid API key"}))
	err := <-errc
	var se *ServerError
	if !errors.As(err, &se) || se.Code != wire.CodeUnauthorized {
		t.Fatalf("Dial: %v", err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	min, max := 50*time.Millisecond, time.Second
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		lo, hi := Backoff(min, max, n, 0), Backoff(min, max, n, 0.999999)
		if lo < prev || hi > max || lo > hi || lo < min/2 {
			t.Fatalf("attempt %d: [%s, %s] after %s", n, lo, hi, prev)
		}
		prev = lo
	}
	if Backoff(min, max, 100, 0) != max/2 {
		t.Fatal("no cap")
	}
}

func TestEncodeRequestKeepsDataBytes(t *testing.T) {
	data := `{"b": 2,   "a": "<&>",  "n": 1.50}`
	b, err := encodeRequest(&Request{EndpointID: "E", EventType: "x", Data: json.RawMessage(data)})
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Data           json.RawMessage `json:"data"`
		IdempotencyKey string          `json:"idempotency_key"`
	}
	if err := json.Unmarshal(b, &w); err != nil || string(w.Data) != data || len(w.IdempotencyKey) < 20 {
		t.Fatalf("%s: %v", b, err)
	}
	b, _ = encodeRequest(&Request{EventType: "x"})
	if json.Unmarshal(b, &w) != nil {
		t.Fatalf("no data: %s", b)
	}
}
