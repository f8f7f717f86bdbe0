package natsjs

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/ingest/broker/brokertest"
	"github.com/sluice-gw/sluice/model"
)

func natsSource(urls []string, edit func(n *model.NATSSource)) *model.Source {
	n := &model.NATSSource{URLs: urls, Stream: "ORDERS"}
	if edit != nil {
		edit(n)
	}
	return &model.Source{UID: "src1", ProjectID: "p1", Type: model.SourceNATS, Broker: &model.BrokerConfig{NATS: n}}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		edit func(n *model.NATSSource)
		want string // substring of the error; "" for valid
	}{
		{"minimal", nil, ""},
		{"everything", func(n *model.NATSSource) {
			n.URLs = []string{"nats://a:4222", "tls://b:4222", "wss://c"}
			n.Subject, n.Durable, n.DeadLetterSubject, n.AckWait = "orders.*.created.>", "d1", "dead.orders", 120
			n.Username, n.Password = "u", "p"
			n.TLS = &model.BrokerTLS{Enabled: true}
		}, ""},
		{"token", func(n *model.NATSSource) { n.Token = "t" }, ""},
		{"no urls", func(n *model.NATSSource) { n.URLs = nil }, "urls: at least one"},
		{"bad scheme", func(n *model.NATSSource) { n.URLs = []string{"http://a:4222"} }, "scheme"},
		{"no host", func(n *model.NATSSource) { n.URLs = []string{"nats://:4222"} }, "no host"},
		{"no stream", func(n *model.NATSSource) { n.Stream = "" }, "stream: required"},
		{"dotted stream", func(n *model.NATSSource) { n.Stream = "a.b" }, "stream"},
		{"bad durable", func(n *model.NATSSource) { n.Durable = "a b" }, "durable"},
		{"empty token", func(n *model.NATSSource) { n.Subject = "orders..x" }, "empty token"},
		{"inner >", func(n *model.NATSSource) { n.Subject = "orders.>.x" }, "only ends"},
		{"partial wildcard", func(n *model.NATSSource) { n.Subject = "orders.a*" }, "whole token"},
		{"wild dead letter", func(n *model.NATSSource) { n.DeadLetterSubject = "dead.*" }, "no wildcards"},
		{"user without password", func(n *model.NATSSource) { n.Username = "u" }, "go together"},
		{"token and user", func(n *model.NATSSource) { n.Token, n.Username, n.Password = "t", "u", "p" }, "exclusive"},
		{"negative ack wait", func(n *model.NATSSource) { n.AckWait = -1 }, "ack_wait"},
		{"huge ack wait", func(n *model.NATSSource) { n.AckWait = 7200 }, "ack_wait"},
		{"bad ca", func(n *model.NATSSource) { n.TLS = &model.BrokerTLS{Enabled: true, CAPEM: "x"} }, "ca_pem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Driver{}.Check(natsSource([]string{"nats://127.0.0.1:4222"}, tc.edit))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := (Driver{}).Check(&model.Source{Type: model.SourceNATS, Broker: &model.BrokerConfig{}}); err == nil {
		t.Fatal("Check accepted a source without a nats section")
	}
}

// startServer runs an embedded JetStream server on 127.0.0.1; edit adjusts its options.
func startServer(t *testing.T, edit func(o *server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	if edit != nil {
		edit(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// setup connects a test client and creates the streams (name -> subjects).
func setup(t *testing.T, url string, streams map[string][]string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, subjects := range streams {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
	}
	return nc, js
}

func publish(t *testing.T, js jetstream.JetStream, msgs ...*nats.Msg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range msgs {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publishing to %s: %v", m.Subject, err)
		}
	}
}

func msg(subject, body string, hdr ...string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	return m
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs src's consumer until the returned stop is called; stop returns Run's result.
func start(t *testing.T, src *model.Source, h broker.Handler, batch int) (stop func() error) {
	t.Helper()
	if err := (Driver{}).Check(src); err != nil {
		t.Fatal(err)
	}
	c, err := Driver{}.Open(src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if batch > 0 {
		c.(*consumer).maxBatch = batch
	}
	return brokertest.Run(t, c, h)
}

// TestConsume: every message of the filter is processed once under a stream/sequence id,
// rejected ones reach the dead-letter stream and are terminated, lag is reported, and everything
// is acked: the durable has nothing pending and a new consumer sees only what comes next.
func TestConsume(t *testing.T) {
	s := startServer(t, nil)
	_, js := setup(t, s.ClientURL(), map[string][]string{"ORDERS": {"orders.>"}, "DEAD": {"dead.>"}})
	const n = 200
	var msgs []*nats.Msg
	for i := range n {
		if i%40 == 0 {
			msgs = append(msgs, msg("orders.created", fmt.Sprintf("bad %d", i), "why", "test"))
		} else {
			msgs = append(msgs, msg("orders.created", fmt.Sprintf(`{"i":%d}`, i)))
		}
		if i%20 == 0 {
			msgs = append(msgs, msg("orders.other", "other"))
		}
	}
	publish(t, js, msgs...)

	src := natsSource([]string{s.ClientURL()}, func(n *model.NATSSource) {
		n.Subject, n.Durable, n.DeadLetterSubject = "orders.created", "d1", "dead.orders"
	})
	rec := brokertest.NewRecorder()
	stop := start(t, src, rec, 20)
	brokertest.WaitFor(t, "every message processed", func() bool { d, _ := rec.Count(nil); return d == n })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokertest.WaitFor(t, "every message acked or terminated", func() bool {
		info, err := js.Consumer(ctx, "ORDERS", "d1")
		if err != nil {
			return false
		}
		ci := info.CachedInfo()
		return ci.NumAckPending == 0 && ci.NumPending == 0 && ci.AckFloor.Stream == uint64(len(msgs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.Mu.Lock()
	for id, times := range rec.Seen {
		if times != 1 || !strings.HasPrefix(id, "ORDERS/") {
			t.Errorf("%s processed %d times (want once, as ORDERS/<seq>)", id, times)
		}
		if rec.Bodies[id] == "other" {
			t.Errorf("%s is outside the filter subject but was processed", id)
		}
	}
	maxLag := int64(0)
	for _, l := range rec.Lags {
		maxLag = max(maxLag, l)
	}
	last := rec.Lags[len(rec.Lags)-1]
	rec.Mu.Unlock()
	if maxLag == 0 || last != 0 {
		t.Errorf("lags: max %d, last %d; want some above 0 while 200 messages go 20 at a time, and 0 at the end", maxLag, last)
	}

	dead, err := js.Stream(ctx, "DEAD")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= n/40; seq++ {
		m, err := dead.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		if !strings.HasPrefix(string(m.Data), "bad") || m.Header.Get("why") != "test" ||
			m.Header.Get(HeaderError) != "malformed: test" || !strings.HasPrefix(m.Header.Get(HeaderMessageID), "ORDERS/") {
			t.Errorf("dead letter %q headers %v: want the bad message with its headers, the reason and its id", m.Data, m.Header)
		}
	}
	if info, err := dead.Info(ctx); err != nil || info.State.Msgs != n/40 {
		t.Errorf("dead-letter stream: %v messages (err %v), want %d", info.State.Msgs, err, n/40)
	}

	rec2 := brokertest.NewRecorder()
	start(t, src, rec2, 0)
	publish(t, js, msg("orders.created", `"marker"`))
	brokertest.WaitFor(t, "the marker", func() bool { _, m := rec2.Count(func(b string) bool { return b == `"marker"` }); return m == 1 })
	if d, _ := rec2.Count(nil); d != 1 {
		t.Errorf("the durable's next run processed %d messages, want only the marker", d)
	}
}

// TestDeadLetterPlainSubject: with no stream capturing the dead-letter subject, the dead letter is
// a plain NATS message, and the stream goes on.
func TestDeadLetterPlainSubject(t *testing.T) {
	s := startServer(t, nil)
	nc, js := setup(t, s.ClientURL(), map[string][]string{"ORDERS": {"orders.>"}})
	sub, err := nc.SubscribeSync("nowhere.dead")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	publish(t, js, msg("orders.a", "bad one", "why", "plain"), msg("orders.a", `{"ok":true}`))
	rec := brokertest.NewRecorder()
	start(t, natsSource([]string{s.ClientURL()}, func(n *model.NATSSource) { n.DeadLetterSubject = "nowhere.dead" }), rec, 0)
	got, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no dead letter on the plain subject: %v", err)
	}
	if string(got.Data) != "bad one" || got.Header.Get(HeaderError) != "malformed: plain" || got.Header.Get(HeaderMessageID) != "ORDERS/1" {
		t.Errorf("dead letter %q headers %v", got.Data, got.Header)
	}
	brokertest.WaitFor(t, "the message after the dead letter", func() bool { d, _ := rec.Count(nil); return d == 2 })
}

// TestStopMidBatch: a batch whose Process did not return is not acked but handed back, and the
// next run gets it at once (well before AckWait) under the same ids.
func TestStopMidBatch(t *testing.T) {
	s := startServer(t, nil)
	_, js := setup(t, s.ClientURL(), map[string][]string{"ORDERS": {"orders.>"}})
	const n = 50
	for i := range n {
		publish(t, js, msg("orders.a", fmt.Sprintf(`{"i":%d}`, i)))
	}
	src := natsSource([]string{s.ClientURL()}, func(n *model.NATSSource) { n.AckWait = 600 })
	blocked := brokertest.NewRecorder()
	blocked.Block = true
	stop := start(t, src, blocked, 10)
	select {
	case <-blocked.Entered:
	case <-time.After(20 * time.Second):
		t.Fatal("Process was never called")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run after its context ended = %v, want nil", err)
	}
	rec := brokertest.NewRecorder()
	start(t, src, rec, 0)
	brokertest.WaitFor(t, "every message after the restart", func() bool { d, _ := rec.Count(nil); return d == n })
	rec.Mu.Lock()
	defer rec.Mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("ORDERS/%d", i+1)
		if rec.Seen[id] != 1 || rec.Bodies[id] != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("%s: processed %d times with body %q", id, rec.Seen[id], rec.Bodies[id])
		}
	}
}

// TestAuth connects with a user and password, a token, and over TLS; wrong credentials fail Run.
func TestAuth(t *testing.T) {
	caPEM, serverTLS := brokertest.SelfSigned(t, "nats")
	cases := []struct {
		name   string
		server func(o *server.Options)
		client []nats.Option // for the test's own connection
		edit   func(n *model.NATSSource)
		ok     bool
	}{
		{"user", func(o *server.Options) { o.Username, o.Password = "u", "pw" }, []nats.Option{nats.UserInfo("u", "pw")},
			func(n *model.NATSSource) { n.Username, n.Password = "u", "pw" }, true},
		{"wrong password", func(o *server.Options) { o.Username, o.Password = "u", "pw" }, []nats.Option{nats.UserInfo("u", "pw")},
			func(n *model.NATSSource) { n.Username, n.Password = "u", "nope" }, false},
		{"token", func(o *server.Options) { o.Authorization = "tok" }, []nats.Option{nats.Token("tok")},
			func(n *model.NATSSource) { n.Token = "tok" }, true},
		{"tls", func(o *server.Options) { o.TLSConfig, o.TLS = serverTLS, true }, []nats.Option{nats.Secure(&tls.Config{InsecureSkipVerify: true})},
			func(n *model.NATSSource) { n.TLS = &model.BrokerTLS{Enabled: true, CAPEM: caPEM} }, true},
		{"tls unknown ca", func(o *server.Options) { o.TLSConfig, o.TLS = serverTLS, true }, []nats.Option{nats.Secure(&tls.Config{InsecureSkipVerify: true})},
			func(n *model.NATSSource) { n.TLS = &model.BrokerTLS{Enabled: true} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.server)
			_, js := setup(t, s.ClientURL(), map[string][]string{"ORDERS": {"orders.>"}}, tc.client...)
			publish(t, js, msg("orders.a", `{"i":1}`))
			src := natsSource([]string{s.ClientURL()}, tc.edit)
			if !tc.ok {
				c, err := Driver{}.Open(src, quiet)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := c.Run(ctx, brokertest.NewRecorder()); err == nil || ctx.Err() != nil {
					t.Fatalf("Run = %v (context: %v), want a connection error", err, ctx.Err())
				}
				return
			}
			rec := brokertest.NewRecorder()
			start(t, src, rec, 0)
			brokertest.WaitFor(t, "the message", func() bool { d, _ := rec.Count(nil); return d == 1 })
		})
	}
}

// FuzzCheck: Check never panics on any URL, stream or subject, and what it accepts is well formed.
func FuzzCheck(f *testing.F) {
	for _, s := range [][3]string{{"nats://127.0.0.1:4222", "ORDERS", "orders.*.>"}, {"tls://h", "a.b", "a..b"}, {"ws://:1", "", ">.a"}, {"nats://h:1", "S", "a*"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, url, stream, subject string) {
		src := natsSource([]string{url}, func(n *model.NATSSource) { n.Stream, n.Subject = stream, subject })
		if (Driver{}).Check(src) != nil {
			return
		}
		if stream == "" || strings.ContainsAny(stream, " .*>") {
			t.Fatalf("accepted stream %q", stream)
		}
		if subject != "" && (strings.Contains(subject, "..") || strings.HasPrefix(subject, ".") || strings.HasSuffix(subject, ".") ||
			strings.Contains(subject, ">.") || strings.ContainsAny(subject, " \t")) {
			t.Fatalf("accepted subject %q", subject)
		}
		if _, err := (Driver{}).Open(src, quiet); err != nil {
			t.Fatalf("Check accepted it but Open failed: %v", err)
		}
	})
}
