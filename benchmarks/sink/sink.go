package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/latency"
)

// HeaderDeliveryID is the header Sluice sends on every attempt; stable across retries.
const HeaderDeliveryID = "X-Sluice-Delivery-Id"

// Config is how a Server behaves. The zero value answers 200 at once on a random 127.0.0.1 port.
type Config struct {
	// Addr to listen on. Default "127.0.0.1:0" (a free port).
	Addr string
	// Delay before answering each request.
	Delay time.Duration
	// Hang holds every request until Close (or until the client gives up).
	Hang bool
	// FailFirstShare in [0, 1] is the share of delivery ids whose first attempt is answered FailStatus.
	FailFirstShare float64
	// FailStatus answers injected failures. Default 500.
	FailStatus int
	// FailRandom chooses the failing ids by hash (runs of failures happen) instead of evenly spaced.
	FailRandom bool
	// FailPerPath keeps the evenly spaced pattern per request path (one endpoint each) instead of over
	// all requests: every endpoint then sees its own regular pattern, e.g. at 0.8 never more than four
	// failures in a row, so Sluice's per-endpoint circuit breaker (10 consecutive failures) stays
	// closed while most first attempts fail.
	FailPerPath bool
	// Print, when set, receives one line per request (method, path, Sluice ids, signature, body):
	// for trying Sluice by hand, not for benchmarks.
	Print io.Writer
	// TrackEvents records the X-Sluice-Event-Id of every unique delivery (GET /_events lists them), so
	// a caller can check that every acknowledged event arrived.
	TrackEvents bool
}

// Stats is a snapshot of what the sink has seen.
type Stats struct {
	Requests         uint64          `json:"requests"`
	Unique           uint64          `json:"unique"`
	Duplicates       uint64          `json:"duplicates"`
	InjectedFailures uint64          `json:"injected_failures"`
	Hung             uint64          `json:"hung"`
	MaxInFlight      int64           `json:"max_in_flight"` // most requests being handled at once
	ConnsOpened      uint64          `json:"conns_opened"`
	ConnsPeak        int64           `json:"conns_peak"` // most connections open at once
	FirstAt          time.Time       `json:"first_at"`
	LastAt           time.Time       `json:"last_at"`
	Latency          latency.Summary `json:"publish_to_delivery"`
}

const (
	stateFailed    = 1 // first attempt was answered with an injected failure
	stateDelivered = 2 // answered 2xx at least once
	numShards      = 64
)

type shard struct {
	mu sync.Mutex
	// ids holds the state of each delivery id seen; guarded by mu.
	ids map[string]uint8
	// events holds the event ids of unique deliveries (Config.TrackEvents); guarded by mu.
	events map[string]struct{}
}

// Server is a running sink.
type Server struct {
	cfg  Config
	ln   net.Listener
	srv  *http.Server
	url  string
	seed maphash.Seed
	lat  atomic.Pointer[latency.Histogram]

	shards [numShards]shard

	requests, unique, dups, failed, hung, conns, newIDs atomic.Uint64
	firstAt, lastAt                                     atomic.Int64 // Unix ns; 0 until the first unique
	inFlight, maxInFlight                               atomic.Int64
	connsOpen, connsPeak                                atomic.Int64

	closing   chan struct{}
	closeOnce sync.Once
	bufs      sync.Pool
	pathIDs   sync.Map // path -> *atomic.Uint64: new ids per path (FailPerPath)
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.FailStatus == 0 {
		cfg.FailStatus = http.StatusInternalServerError
	}
	if cfg.FailFirstShare < 0 || cfg.FailFirstShare > 1 {
		return nil, errors.New("sink: FailFirstShare must be in [0, 1]")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, seed: maphash.MakeSeed(), closing: make(chan struct{})}
	s.lat.Store(latency.New())
	for i := range s.shards {
		s.shards[i].ids = make(map[string]uint8)
		s.shards[i].events = make(map[string]struct{})
	}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.conns.Add(1)
				raise(&s.connsPeak, s.connsOpen.Add(1))
			case http.StateClosed, http.StateHijacked:
				s.connsOpen.Add(-1)
			}
		},
	}
	go s.srv.Serve(ln)
	return s, nil
}

// URL is the sink's base URL, e.g. http://127.0.0.1:41234. Any path under it is a delivery target.
func (s *Server) URL() string { return s.url }

// Close releases hung requests, closes every connection and stops the server.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	return s.srv.Close()
}

// Latency is the publish-to-delivery histogram (unique deliveries whose body had sent_ns).
func (s *Server) Latency() *latency.Histogram { return s.lat.Load() }

// Reset forgets everything counted so far (delivery ids included), e.g. after a warm-up. Requests being
// handled meanwhile may be counted on either side.
func (s *Server) Reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.ids = make(map[string]uint8)
		sh.events = make(map[string]struct{})
		sh.mu.Unlock()
	}
	for _, c := range []*atomic.Uint64{&s.requests, &s.unique, &s.dups, &s.failed, &s.hung, &s.conns, &s.newIDs} {
		c.Store(0)
	}
	s.pathIDs.Clear()
	s.firstAt.Store(0)
	s.lastAt.Store(0)
	s.maxInFlight.Store(s.inFlight.Load())
	s.connsPeak.Store(s.connsOpen.Load())
	s.lat.Store(latency.New())
}

// Unique is the number of distinct deliveries answered 2xx (or requests without a delivery id).
func (s *Server) Unique() uint64 { return s.unique.Load() }

// Stats returns a snapshot.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:         s.requests.Load(),
		Unique:           s.unique.Load(),
		Duplicates:       s.dups.Load(),
		InjectedFailures: s.failed.Load(),
		Hung:             s.hung.Load(),
		ConnsOpened:      s.conns.Load(),
		ConnsPeak:        s.connsPeak.Load(),
		MaxInFlight:      s.maxInFlight.Load(),
		Latency:          s.lat.Load().Summary(),
	}
	if v := s.firstAt.Load(); v != 0 {
		st.FirstAt = time.Unix(0, v)
	}
	if v := s.lastAt.Load(); v != 0 {
		st.LastAt = time.Unix(0, v)
	}
	return st
}

// WaitUnique waits until at least n unique deliveries arrived or ctx ends; it returns the count seen.
func (s *Server) WaitUnique(ctx context.Context, n uint64) (uint64, error) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if u := s.unique.Load(); u >= n {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return s.unique.Load(), ctx.Err()
		case <-t.C:
		}
	}
}

// EventIDs returns the event ids of the unique deliveries seen (empty unless Config.TrackEvents).
func (s *Server) EventIDs() []string {
	var out []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for id := range sh.events {
			out = append(out, id)
		}
		sh.mu.Unlock()
	}
	return out
}

// control answers the sink's own routes (not counted as deliveries); false for any other request.
func (s *Server) control(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/_stats":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats())
	case r.Method == http.MethodGet && r.URL.Path == "/_unique":
		io.WriteString(w, strconv.FormatUint(s.unique.Load(), 10))
	case r.Method == http.MethodPost && r.URL.Path == "/_reset":
		s.Reset()
	case r.Method == http.MethodGet && r.URL.Path == "/_events":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.EventIDs())
	default:
		return false
	}
	return true
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) > 1 && r.URL.Path[1] == '_' && s.control(w, r) {
		return
	}
	s.requests.Add(1)
	raise(&s.maxInFlight, s.inFlight.Add(1))
	defer s.inFlight.Add(-1)
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer s.bufs.Put(buf)
	if _, err := io.Copy(buf, io.LimitReader(r.Body, 16<<20)); err != nil {
		return
	}
	now := time.Now()
	if s.cfg.Print != nil {
		fmt.Fprintf(s.cfg.Print, "%s %s %s delivery=%s event=%s type=%s attempt=%s signature=%s from=%s body=%s\n",
			now.Format(time.TimeOnly), r.Method, r.URL.Path, r.Header.Get("X-Sluice-Delivery-Id"), r.Header.Get("X-Sluice-Event-Id"),
			r.Header.Get("X-Sluice-Event-Type"), r.Header.Get("X-Sluice-Attempt"), r.Header.Get("X-Sluice-Signature"), r.RemoteAddr, buf.Bytes())
	}

	if s.cfg.Hang {
		s.hung.Add(1)
		select {
		case <-s.closing:
		case <-r.Context().Done():
		}
		return
	}
	if s.cfg.Delay > 0 {
		t := time.NewTimer(s.cfg.Delay)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
			return
		case <-r.Context().Done():
			t.Stop()
			return
		}
		now = time.Now()
	}

	id := r.Header.Get(HeaderDeliveryID)
	if id == "" {
		s.delivered(now, buf.Bytes())
		w.WriteHeader(http.StatusOK)
		return
	}
	sh := &s.shards[maphash.String(s.seed, id)%numShards]
	sh.mu.Lock()
	st, seen := sh.ids[id]
	if !seen && s.failFirst(id, r.URL.Path) {
		sh.ids[id] = stateFailed
		sh.mu.Unlock()
		s.failed.Add(1)
		w.WriteHeader(s.cfg.FailStatus)
		io.WriteString(w, "injected failure\n")
		return
	}
	sh.ids[id] = stateDelivered
	if st != stateDelivered && s.cfg.TrackEvents {
		sh.events[r.Header.Get("X-Sluice-Event-Id")] = struct{}{}
	}
	sh.mu.Unlock()
	if st == stateDelivered {
		s.dups.Add(1)
	} else {
		s.delivered(now, buf.Bytes())
	}
	w.WriteHeader(http.StatusOK)
}

// failFirst decides, once per new delivery id, whether its first attempt fails.
func (s *Server) failFirst(id, path string) bool {
	share := s.cfg.FailFirstShare
	if share <= 0 {
		return false
	}
	if s.cfg.FailRandom {
		return float64(maphash.String(s.seed, "fail:"+id)) < share*float64(^uint64(0))
	}
	ctr := &s.newIDs
	if s.cfg.FailPerPath {
		v, _ := s.pathIDs.LoadOrStore(path, new(atomic.Uint64))
		ctr = v.(*atomic.Uint64)
	}
	n := ctr.Add(1) // 1-based; fail when the running share crosses an integer
	return uint64(float64(n)*share) > uint64(float64(n-1)*share)
}

func (s *Server) delivered(now time.Time, body []byte) {
	s.unique.Add(1)
	ns := now.UnixNano()
	s.firstAt.CompareAndSwap(0, ns)
	for {
		cur := s.lastAt.Load()
		if ns <= cur || s.lastAt.CompareAndSwap(cur, ns) {
			break
		}
	}
	if sent, ok := SentNS(body); ok {
		s.lat.Load().Record(time.Duration(ns - sent))
	}
}

var sentKey = []byte(`"sent_ns":`)

// SentNS finds "sent_ns":<digits> in a JSON body without decoding it.
func SentNS(body []byte) (int64, bool) {
	i := bytes.Index(body, sentKey)
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(body[i+len(sentKey):], " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v, err == nil
}

// raise sets *m to v if v is larger.
func raise(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}
