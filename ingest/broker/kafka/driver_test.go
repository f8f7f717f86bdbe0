package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluice-gw/sluice/ingest/broker"
	"github.com/sluice-gw/sluice/ingest/broker/brokertest"
	"github.com/sluice-gw/sluice/model"
)

func kafkaSource(brokers []string, edit func(k *model.KafkaSource)) *model.Source {
	k := &model.KafkaSource{Brokers: brokers, Topics: []string{"orders"}}
	if edit != nil {
		edit(k)
	}
	return &model.Source{UID: "src1", ProjectID: "p1", Type: model.SourceKafka, Broker: &model.BrokerConfig{Kafka: k}}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		edit func(k *model.KafkaSource)
		want string // substring of the error; "" for valid
	}{
		{"minimal", nil, ""},
		{"everything", func(k *model.KafkaSource) {
			k.Topics = []string{"a.b", "c_d-1"}
			k.ConsumerGroup, k.StartOffset, k.DeadLetterTopic = "g", "latest", "dlq"
			k.SASL = &model.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}
			k.TLS = &model.BrokerTLS{Enabled: true}
		}, ""},
		{"no brokers", func(k *model.KafkaSource) { k.Brokers = nil }, "brokers: at least one"},
		{"broker without port", func(k *model.KafkaSource) { k.Brokers = []string{"kafka"} }, `brokers: "kafka"`},
		{"broker bad port", func(k *model.KafkaSource) { k.Brokers = []string{"kafka:99999"} }, "not host:port"},
		{"no topics", func(k *model.KafkaSource) { k.Topics = nil }, "topics: at least one"},
		{"bad topic", func(k *model.KafkaSource) { k.Topics = []string{"a b"} }, "topic names hold only"},
		{"dot topic", func(k *model.KafkaSource) { k.Topics = []string{".."} }, "not a valid topic"},
		{"long topic", func(k *model.KafkaSource) { k.Topics = []string{strings.Repeat("t", 250)} }, "not a valid topic"},
		{"dead letter consumed", func(k *model.KafkaSource) { k.DeadLetterTopic = "orders" }, "also consumed"},
		{"bad dead letter", func(k *model.KafkaSource) { k.DeadLetterTopic = "x/y" }, "dead_letter_topic"},
		{"bad offset", func(k *model.KafkaSource) { k.StartOffset = "middle" }, "start_offset"},
		{"bad mechanism", func(k *model.KafkaSource) { k.SASL = &model.SASL{Mechanism: "gssapi", Username: "u", Password: "p"} }, "sasl.mechanism"},
		{"sasl without password", func(k *model.KafkaSource) { k.SASL = &model.SASL{Mechanism: "plain", Username: "u"} }, "username and password"},
		{"bad ca", func(k *model.KafkaSource) { k.TLS = &model.BrokerTLS{Enabled: true, CAPEM: "nope"} }, "ca_pem"},
		{"long group", func(k *model.KafkaSource) { k.ConsumerGroup = strings.Repeat("g", 256) }, "consumer_group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Driver{}.Check(kafkaSource([]string{"127.0.0.1:9092"}, tc.edit))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := (Driver{}).Check(&model.Source{Type: model.SourceKafka, Broker: &model.BrokerConfig{}}); err == nil {
		t.Fatal("Check accepted a source without a kafka section")
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs src's consumer until the returned stop is called; stop returns Run's result.
func start(t *testing.T, src *model.Source, h broker.Handler, edit func(*consumer)) (stop func() error) {
	t.Helper()
	if err := (Driver{}).Check(src); err != nil {
		t.Fatal(err)
	}
	c, err := Driver{}.Open(src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c.(*consumer))
	}
	return brokertest.Run(t, c, h)
}

func produce(t *testing.T, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(recs), err)
	}
}

// readTopic returns the records of topic, reading until want arrived.
func readTopic(t *testing.T, addrs []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), want, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestConsume: every record is processed once with a topic/partition/offset id, rejected ones
// reach the dead-letter topic, lag is reported, and the offsets are committed: a second member
// of the group starts after the last record.
func TestConsume(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(3, "orders"), kfake.SeedTopics(1, "dlq"))
	addrs := c.ListenAddrs()
	const n = 300
	var recs []*kgo.Record
	for i := range n {
		r := &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, `{"i":%d}`, i)}
		if i%50 == 0 {
			r.Value = fmt.Appendf(nil, "bad %d", i)
			r.Headers = []kgo.RecordHeader{{Key: "why", Value: []byte("test")}}
		}
		recs = append(recs, r)
	}
	produce(t, addrs, recs...)

	src := kafkaSource(addrs, func(k *model.KafkaSource) { k.DeadLetterTopic = "dlq" })
	rec := brokertest.NewRecorder()
	stop := start(t, src, rec, func(c *consumer) { c.maxPoll = 40 })
	brokertest.WaitFor(t, "every record processed", func() bool { d, _ := rec.Count(nil); return d == n })
	brokertest.WaitFor(t, "lag 0 reported", func() bool {
		rec.Mu.Lock()
		defer rec.Mu.Unlock()
		return len(rec.Lags) > 0 && rec.Lags[len(rec.Lags)-1] == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.Mu.Lock()
	for id, times := range rec.Seen {
		if times != 1 {
			t.Errorf("%s processed %d times", id, times)
		}
		if parts := strings.Split(id, "/"); len(parts) != 3 || parts[0] != "orders" {
			t.Errorf("message id %q is not orders/<partition>/<offset>", id)
		}
	}
	maxLag := int64(0)
	for _, l := range rec.Lags {
		maxLag = max(maxLag, l)
	}
	rec.Mu.Unlock()
	if maxLag == 0 {
		t.Error("no lag above 0 was reported while 300 records were read 40 at a time")
	}

	dead := readTopic(t, addrs, "dlq", n/50)
	if len(dead) != n/50 {
		t.Fatalf("dead-letter topic holds %d records, want %d", len(dead), n/50)
	}
	for _, d := range dead {
		h := headers(d)
		if !strings.HasPrefix(string(d.Value), "bad") || h["why"] != "test" || h[HeaderError] != "malformed: test" || !strings.HasPrefix(h[HeaderMessageID], "orders/") {
			t.Errorf("dead letter %q headers %v: want the bad record with its headers, the reason and its id", d.Value, h)
		}
	}

	// The group's committed offsets are past everything: a new member sees only what comes next.
	rec2 := brokertest.NewRecorder()
	start(t, src, rec2, nil)
	produce(t, addrs, &kgo.Record{Topic: "orders", Value: []byte(`"marker"`)})
	brokertest.WaitFor(t, "the marker", func() bool { _, m := rec2.Count(func(b string) bool { return b == `"marker"` }); return m == 1 })
	if d, _ := rec2.Count(nil); d != 1 {
		t.Errorf("the second member processed %d records, want only the marker: offsets were not committed", d)
	}
}

// TestStopMidBatch: a batch whose Process did not return is not committed, and the next run gets
// the same records with the same ids.
func TestStopMidBatch(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, "orders"))
	addrs := c.ListenAddrs()
	const n = 50
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "orders", Value: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	produce(t, addrs, recs...)
	src := kafkaSource(addrs, nil)

	blocked := brokertest.NewRecorder()
	blocked.Block = true
	stop := start(t, src, blocked, nil)
	select {
	case <-blocked.Entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Process was never called")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run after its context ended = %v, want nil", err)
	}

	rec := brokertest.NewRecorder()
	start(t, src, rec, nil)
	brokertest.WaitFor(t, "every record after the restart", func() bool { d, _ := rec.Count(nil); return d == n })
	for i := range n {
		id := fmt.Sprintf("orders/0/%d", i)
		if rec.Seen[id] != 1 || rec.Bodies[id] != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("%s: processed %d times with body %q", id, rec.Seen[id], rec.Bodies[id])
		}
	}
}

// TestRebalance: two members share the partitions; between them every record is processed and
// committed, whatever moved where.
func TestRebalance(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(4, "orders"))
	addrs := c.ListenAddrs()
	src := kafkaSource(addrs, nil)
	a, b := brokertest.NewRecorder(), brokertest.NewRecorder()
	stopA := start(t, src, a, func(c *consumer) { c.maxPoll = 10 })
	const n = 400
	batch := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i)})
		}
		produce(t, addrs, recs...)
	}
	batch(0, n/2)
	brokertest.WaitFor(t, "the first member consuming", func() bool { d, _ := a.Count(nil); return d > 0 })
	stopB := start(t, src, b, func(c *consumer) { c.maxPoll = 10 })
	batch(n/2, n)
	all := func() int {
		ids := map[string]bool{}
		for _, r := range []*brokertest.Recorder{a, b} {
			r.Mu.Lock()
			for id := range r.Seen {
				ids[id] = true
			}
			r.Mu.Unlock()
		}
		return len(ids)
	}
	brokertest.WaitFor(t, "every record by one member or the other", func() bool { return all() == n })
	if err := stopA(); err != nil {
		t.Errorf("member a: %v", err)
	}
	if err := stopB(); err != nil {
		t.Errorf("member b: %v", err)
	}
	// Everything was committed: a fresh member sees only the marker.
	after := brokertest.NewRecorder()
	start(t, src, after, nil)
	produce(t, addrs, &kgo.Record{Topic: "orders", Value: []byte(`"marker"`)})
	brokertest.WaitFor(t, "the marker", func() bool { _, m := after.Count(func(b string) bool { return b == `"marker"` }); return m == 1 })
	if d, _ := after.Count(nil); d != 1 {
		t.Errorf("a fresh member processed %d records, want only the marker", d)
	}
}

// TestAuth connects over TLS with each SASL mechanism; a wrong password fails Run.
func TestAuth(t *testing.T) {
	caPEM, serverTLS := brokertest.SelfSigned(t, "kfake")
	c := cluster(t, kfake.SeedTopics(1, "orders"), kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "pw1"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pw2"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pw3"))
	addrs := c.ListenAddrs()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(caPEM))
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.SASL(saslOrFatal(t, &model.SASL{Mechanism: "plain", Username: "plainuser", Password: "pw1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte(`{"i":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		mech, user, pass string
		ok               bool
	}{
		{"plain", "plainuser", "pw1", true},
		{"scram-sha-256", "scram256", "pw2", true},
		{"scram-sha-512", "scram512", "pw3", true},
		{"scram-sha-256", "scram256", "wrong", false},
	}
	for _, tc := range cases {
		t.Run(tc.mech+"/"+tc.pass, func(t *testing.T) {
			src := kafkaSource(addrs, func(k *model.KafkaSource) {
				k.ConsumerGroup = "g-" + tc.user + "-" + tc.pass
				k.TLS = &model.BrokerTLS{Enabled: true, CAPEM: caPEM, ServerName: "127.0.0.1"}
				k.SASL = &model.SASL{Mechanism: tc.mech, Username: tc.user, Password: tc.pass}
			})
			if !tc.ok {
				cons, err := Driver{}.Open(src, quiet)
				if err != nil {
					t.Fatal(err)
				}
				if err := cons.Run(ctx, brokertest.NewRecorder()); err == nil {
					t.Fatal("Run with a wrong password returned nil")
				}
				return
			}
			rec := brokertest.NewRecorder()
			start(t, src, rec, nil)
			brokertest.WaitFor(t, "the record over TLS and SASL", func() bool { d, _ := rec.Count(nil); return d == 1 })
		})
	}
}

func saslOrFatal(t *testing.T, s *model.SASL) sasl.Mechanism {
	m, err := saslMechanism(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// FuzzCheck: Check never panics on any broker address, topic or mechanism, and what it accepts
// the client can use.
func FuzzCheck(f *testing.F) {
	for _, s := range [][3]string{{"127.0.0.1:9092", "orders", "plain"}, {"[::1]:9092", "a.b-c_d", "SCRAM-SHA-256"}, {"k:0", "..", "x"}, {":1", "a b", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, addr, topic, mech string) {
		src := kafkaSource([]string{addr}, func(k *model.KafkaSource) {
			k.Topics = []string{topic}
			if mech != "" {
				k.SASL = &model.SASL{Mechanism: mech, Username: "u", Password: "p"}
			}
		})
		if (Driver{}).Check(src) != nil {
			return
		}
		if checkTopic(topic) != nil || strings.ContainsAny(topic, " /") {
			t.Fatalf("accepted topic %q", topic)
		}
		if _, err := (Driver{}).Open(src, quiet); err != nil {
			t.Fatalf("Check accepted %q/%q/%q but Open failed: %v", addr, topic, mech, err)
		}
	})
}
