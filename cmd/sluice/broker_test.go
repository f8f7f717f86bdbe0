package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// Shared process test for broker sources: every driver's test (broker_<type>_test.go) describes
// its broker as a brokerPeer and calls runBrokerSourceTest, which proves the contract
// against the real binary: N messages in, N events delivered; kill -9 mid-stream and restart, still
// exactly N events; a malformed message is dead-lettered (recorded, and at the broker's
// dead-letter destination when the peer has one) and the stream goes on.

// peerMessage is one message a test produces.
type peerMessage struct {
	Body    []byte
	Headers map[string]string
	// ID is a producer-chosen message id for brokers whose ids come from the producer (AMQP
	// message-id); other peers ignore it.
	ID string
}

// brokerPeer is a broker under test, running outside the Sluice process (in the test process or
// as a server .ci/run started), so kill -9 of Sluice leaves it running.
type brokerPeer struct {
	typ string
	// section fills the source's broker section (connection, topic/queue, dead-letter target).
	section func(cfg *model.BrokerConfig)
	// produce sends messages in order and returns once the broker has them.
	produce func(t *testing.T, msgs []peerMessage)
	// deadLetters returns the bodies at the source's dead-letter destination so far; nil when
	// the peer configures none (the message is then only recorded).
	deadLetters func(t *testing.T) [][]byte
}

// brokerSink records deliveries: event id -> the message index in its payload.
type brokerSink struct {
	mu     sync.Mutex       // guards the maps
	events map[string]int   // event id -> i
	byI    map[int][]string // i -> distinct event ids
	hits   int              // deliveries, duplicates included
	url    string
}

func newBrokerSink(t *testing.T) *brokerSink {
	s := &brokerSink{events: map[string]int{}, byI: map[int][]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ I *int }
		raw, _ := io.ReadAll(r.Body)
		if json.Unmarshal(raw, &body) != nil || body.I == nil {
			http.Error(w, "no i", http.StatusBadRequest)
			return
		}
		evid := r.Header.Get("X-Sluice-Event-Id")
		s.mu.Lock()
		s.hits++
		if _, seen := s.events[evid]; !seen {
			s.events[evid] = *body.I
			s.byI[*body.I] = append(s.byI[*body.I], evid)
		}
		s.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.url = "http://" + ln.Addr().String() + "/hook"
	return s
}

func (s *brokerSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byI)
}

// runBrokerSourceTest runs the shared scenario with n messages (n >= 20).
func runBrokerSourceTest(t *testing.T, peer brokerPeer, n int) {
	sink := newBrokerSink(t)
	dataDir := t.TempDir()
	httpAddr, raftAddr := freePort(t), freePort(t)
	p := startProc(t, dataDir, httpAddr, raftAddr)

	var proj, ep, src struct{ UID string }
	if c := p.call("POST", "/projects", map[string]any{"name": "brokers"}, &proj); c != 201 {
		t.Fatalf("create project: %d", c)
	}
	if c := p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.url}, &ep); c != 201 {
		t.Fatalf("create endpoint: %d", c)
	}
	cfg := model.BrokerConfig{EventType: "order.created", EndpointID: ep.UID, Workers: 16}
	peer.section(&cfg)
	if c := p.call("POST", "/projects/"+proj.UID+"/sources", map[string]any{"name": peer.typ, "type": peer.typ, "broker": cfg}, &src); c != 201 {
		t.Fatalf("create %s source: %d", peer.typ, c)
	}

	// The message contract's three shapes: bare data with the source's type, an envelope, and a
	// header naming the type.
	msg := func(i int) peerMessage {
		m := peerMessage{ID: fmt.Sprintf("m-%d", i)}
		switch i % 3 {
		case 0:
			m.Body = fmt.Appendf(nil, `{"i":%d}`, i)
		case 1:
			m.Body = fmt.Appendf(nil, `{"event_type":"order.envelope","endpoint_id":%q,"data":{"i":%d}}`, ep.UID, i)
		case 2:
			m.Body = fmt.Appendf(nil, `{"i":%d}`, i)
			m.Headers = map[string]string{"sluice-event-type": "order.header"}
		}
		return m
	}
	first := make([]peerMessage, 0, n/2)
	for i := range n / 2 {
		first = append(first, msg(i))
	}
	peer.produce(t, first)
	waitFor(t, "some deliveries before the kill", func() bool { return sink.distinct() >= n/8 })
	p.kill()
	t.Logf("kill -9 after %d of %d messages delivered", sink.distinct(), n)

	malformed := []byte(`{"i": not json`)
	second := make([]peerMessage, 0, n-n/2+1)
	for i := n / 2; i < n; i++ {
		if i == n/2+(n-n/2)/2 {
			second = append(second, peerMessage{ID: "m-malformed", Body: malformed})
		}
		second = append(second, msg(i))
	}
	peer.produce(t, second)

	p = startProc(t, dataDir, httpAddr, raftAddr)
	deadline := time.Now().Add(60 * time.Second)
	for sink.distinct() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d messages delivered; log:\n%s", sink.distinct(), n, p.output())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	sink.mu.Lock()
	for i, ids := range sink.byI {
		if len(ids) != 1 {
			t.Errorf("message %d became %d events: %v", i, len(ids), ids)
		}
	}
	t.Logf("%d messages, %d events delivered (%d deliveries with retries of unrecorded attempts)", n, len(sink.events), sink.hits)
	sink.mu.Unlock()

	// The store agrees: exactly n events.
	total, cursor := 0, ""
	for {
		var page struct {
			Content    []struct{ UID string }
			Pagination struct {
				HasNextPage    bool   `json:"has_next_page"`
				NextPageCursor string `json:"next_page_cursor"`
			}
		}
		if c := p.call("GET", "/projects/"+proj.UID+"/events?perPage=1000&next_page_cursor="+cursor, nil, &page); c != 200 {
			t.Fatalf("list events: %d", c)
		}
		total += len(page.Content)
		if !page.Pagination.HasNextPage {
			break
		}
		cursor = page.Pagination.NextPageCursor
	}
	if total != n {
		t.Errorf("the store holds %d events for %d messages", total, n)
	}

	// The malformed message was recorded and, where the peer has one, dead-lettered at the broker.
	var letters []struct {
		Body   json.RawMessage // a JSON string when the body is not JSON
		Reason string
	}
	waitFor(t, "the dead letter record", func() bool {
		var page struct{ Content json.RawMessage } // the list is paged: {"content": [...], "pagination": ...}
		ok := p.call("GET", "/projects/"+proj.UID+"/sources/"+src.UID+"/dead_letters", nil, &page) == 200
		return ok && json.Unmarshal(page.Content, &letters) == nil && len(letters) > 0
	})
	var body string
	if len(letters) == 1 {
		json.Unmarshal(letters[0].Body, &body)
	}
	if len(letters) != 1 || body != string(malformed) || !strings.Contains(letters[0].Reason, "JSON") {
		t.Errorf("dead letters = %s, want the one malformed message with a JSON reason", fmt.Sprint(letters))
	}
	if peer.deadLetters != nil {
		waitFor(t, "the message at the broker's dead-letter destination", func() bool {
			for _, b := range peer.deadLetters(t) {
				if string(b) == string(malformed) {
					return true
				}
			}
			return false
		})
	}
	metrics := scrape(t, httpAddr)
	lbl := map[string]string{"source": src.UID, "outcome": "dead_lettered"}
	if v, ok := value(metrics, "sluice_source_messages_total", lbl); !ok || v != 1 {
		t.Errorf("sluice_source_messages_total%v = %v (found %v), want 1", lbl, v, ok)
	}
	if v, ok := value(metrics, "sluice_source_consumer_running", map[string]string{"source": src.UID}); !ok || v != 1 {
		t.Errorf("sluice_source_consumer_running = %v (found %v), want 1", v, ok)
	}
}
