package raftstore

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/s2"
	"github.com/sluice-gw/sluice/model"
)

// Queries behind the dashboard and the customer portal: listings restricted to a set of endpoints
// (one owner's), and search in event payloads. Each walks time-ordered indexes newest first and
// stops after a page of matches or after ScanBudget index entries, whichever comes first; in the
// second case the returned cursor continues the walk, so a selective filter over a million deliveries
// costs bounded work per request instead of a full scan.

// DefaultScanBudget is how many index entries one query reads at most.
const DefaultScanBudget = 20000

// DeliveryQuery selects deliveries: the filter, optionally restricted to Endpoints (when
// ByEndpoints; an empty list then matches nothing), optionally whose event data contains Search.
type DeliveryQuery struct {
	DeliveryFilter
	Endpoints   []string
	ByEndpoints bool
	Search      string
	// ScanBudget bounds the index entries read (0: DefaultScanBudget).
	ScanBudget int
}

// EventQuery selects events: the filter, optionally restricted to events delivered to Endpoints
// (when ByEndpoints), optionally whose data contains Search.
type EventQuery struct {
	EventFilter
	Endpoints   []string
	ByEndpoints bool
	Search      string
	ScanBudget  int
}

func budget(n int) int {
	if n <= 0 {
		return DefaultScanBudget
	}
	return n
}

// mergeNewest walks ids under several prefixes at once, newest first across all of them, within
// (lo, hi), calling fn with each id and its value (valid only during the call) until it returns false.
func mergeNewest(db pebble.Reader, prefixes [][]byte, lo, hi string, fn func(id string, val []byte) (bool, error)) error {
	type cur struct {
		it     *pebble.Iterator
		prefix int
		id     string
		ok     bool
	}
	curs := make([]*cur, 0, len(prefixes))
	defer func() {
		for _, c := range curs {
			c.it.Close()
		}
	}()
	read := func(c *cur) {
		for c.ok {
			k := c.it.Key()
			if len(k) >= c.prefix+model.IDLen {
				c.id = string(k[len(k)-model.IDLen:])
				return
			}
			c.ok = c.it.Prev()
		}
	}
	for _, p := range prefixes {
		lower := append(append([]byte(nil), p...), lo...)
		upper := prefixEnd(p)
		if hi != "" {
			upper = append(append([]byte(nil), p...), hi...)
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		c := &cur{it: it, prefix: len(p)}
		curs = append(curs, c)
		c.ok = it.Last()
		read(c)
	}
	for {
		var best *cur
		for _, c := range curs {
			if c.ok && (best == nil || c.id > best.id) {
				best = c
			}
		}
		if best == nil {
			break
		}
		more, err := fn(best.id, best.it.Value())
		if err != nil || !more {
			return err
		}
		best.ok = best.it.Prev()
		read(best)
	}
	for _, c := range curs {
		if err := c.it.Error(); err != nil {
			return err
		}
	}
	return nil
}

// dataSearch matches event data against a search string, decompressing each event once per query.
type dataSearch struct {
	db    pebble.Reader
	pid   string
	q     []byte
	cache map[string]bool
}

func (s *dataSearch) match(evid string) (bool, error) {
	if len(s.q) == 0 {
		return true, nil
	}
	if m, ok := s.cache[evid]; ok {
		return m, nil
	}
	data, err := eventData(s.db, s.pid, evid)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return s.matchData(evid, data), nil
}

// matchData matches data already read (decompressed) for event evid.
func (s *dataSearch) matchData(evid string, data []byte) bool {
	m := bytes.Contains(data, s.q)
	if s.cache == nil {
		s.cache = map[string]bool{}
	}
	s.cache[evid] = m
	return m
}

// QueryDeliveries returns a page of deliveries, newest first, and the cursor that continues the walk
// ("" when it reached the end).
func (s *Store) QueryDeliveries(pid string, q DeliveryQuery) ([]*model.Delivery, string, error) {
	f := &q.DeliveryFilter
	limit := pageLimit(f.Limit)
	prefixes := [][]byte{f.index(pid)}
	if q.ByEndpoints {
		eps := q.Endpoints
		if f.EndpointID != "" {
			eps = nil
			for _, e := range q.Endpoints {
				if e == f.EndpointID {
					eps = []string{e}
				}
			}
		}
		if len(eps) == 0 {
			return nil, "", nil
		}
		if f.EventID == "" {
			prefixes = prefixes[:0]
			for _, e := range eps {
				g := *f
				g.EndpointID = e
				prefixes = append(prefixes, g.index(pid))
			}
		} // else: the event's deliveries are few; walk them and keep the allowed endpoints'.
	}
	allowed := map[string]bool{}
	for _, e := range q.Endpoints {
		allowed[e] = true
	}
	var out []*model.Delivery
	next, last := "", ""
	scanned, max := 0, budget(q.ScanBudget)
	lo, hi := timeBounds{f.From, f.To}.apply("", f.Cursor)
	err := s.st.view(func(db *pebble.DB) error {
		search := &dataSearch{db: db, pid: pid, q: []byte(q.Search)}
		return mergeNewest(db, prefixes, lo, hi, func(id string, _ []byte) (bool, error) {
			if scanned == max {
				next = last // id is not read yet; the cursor excludes last only
				return false, nil
			}
			scanned++
			defer func() { last = id }()
			var d model.Delivery
			if err := getDelivery(db, pid, id, &d); err != nil {
				if errors.Is(err, ErrNotFound) {
					return true, nil
				}
				return false, err
			}
			if !f.matches(&d) || q.ByEndpoints && !allowed[d.EndpointID] {
				return true, nil
			}
			if m, err := search.match(d.EventID); err != nil || !m {
				return err == nil, err
			}
			if len(out) == limit {
				next = last
				return false, nil
			}
			out = append(out, &d)
			return true, nil
		})
	})
	return out, next, err
}

// QueryEvents returns a page of events (with data), newest first, and the cursor that continues the
// walk. With ByEndpoints it walks the endpoints' deliveries and returns their events, once per page;
// the cursor is then a delivery id.
func (s *Store) QueryEvents(pid string, q EventQuery) ([]*model.Event, string, error) {
	f := &q.EventFilter
	limit := pageLimit(f.Limit)
	var prefixes [][]byte
	if q.ByEndpoints {
		if len(q.Endpoints) == 0 {
			return nil, "", nil
		}
		for _, e := range q.Endpoints {
			prefixes = append(prefixes, key(tagByEndpoint, pid, e))
		}
	} else if q.Search != "" {
		// Walk the data table itself: one sequential pass over compressed payloads, and event
		// records are read only for matches.
		prefixes = [][]byte{key(tagEventData, pid)}
	} else {
		prefixes = [][]byte{key(tagEvent, pid)}
	}
	walkData := !q.ByEndpoints && q.Search != ""
	var out []*model.Event
	seen := map[string]bool{}
	next, last := "", ""
	scanned, max := 0, budget(q.ScanBudget)
	lo, hi := timeBounds{f.From, f.To}.apply("", f.Cursor)
	err := s.st.view(func(db *pebble.DB) error {
		search := &dataSearch{db: db, pid: pid, q: []byte(q.Search)}
		return mergeNewest(db, prefixes, lo, hi, func(id string, val []byte) (bool, error) {
			if scanned == max {
				next = last
				return false, nil
			}
			scanned++
			defer func() { last = id }()
			evid := id
			if q.ByEndpoints {
				var d model.Delivery
				if err := getDelivery(db, pid, id, &d); err != nil {
					if errors.Is(err, ErrNotFound) {
						return true, nil
					}
					return false, err
				}
				evid = d.EventID
			}
			if seen[evid] {
				return true, nil
			}
			seen[evid] = true
			var data []byte
			if walkData {
				var err error
				if data, err = s2.Decode(nil, val); err != nil {
					return false, fmt.Errorf("raftstore: decompress data of event %s: %w", evid, err)
				}
				if !search.matchData(evid, data) {
					return true, nil
				}
			}
			var ev model.Event
			if err := getEvent(db, pid, evid, &ev); err != nil {
				if errors.Is(err, ErrNotFound) {
					return true, nil
				}
				return false, err
			}
			if f.EventType != "" && ev.EventType != f.EventType {
				return true, nil
			}
			if m, err := search.match(evid); err != nil || !m {
				return err == nil, err
			}
			if len(out) == limit {
				next = last // continue with this entry: it has not been returned
				return false, nil
			}
			if err := eventTargets(db, &ev); err != nil {
				return false, err
			}
			if data == nil {
				var err error
				if data, err = eventData(db, pid, evid); err != nil {
					return false, err
				}
			}
			ev.Data = data
			out = append(out, &ev)
			return true, nil
		})
	})
	return out, next, err
}

// EventDeliveredTo reports whether any delivery of event evid went to one of endpoints. It reads the
// event's matched endpoints first and falls back to the event's deliveries (replays add some), at
// most limit of them.
func (s *Store) EventDeliveredTo(pid, evid string, endpoints map[string]bool, limit int) (bool, error) {
	found := false
	err := s.st.view(func(db *pebble.DB) error {
		ev := model.Event{ProjectID: pid, UID: evid}
		if err := eventTargets(db, &ev); err != nil {
			return err
		}
		for _, e := range ev.Endpoints {
			if endpoints[e] {
				found = true
				return nil
			}
		}
		n := 0
		return scanNewest(db, key(tagByEvent, pid, evid), "", "", func(did string) (bool, error) {
			if n++; n > limit {
				return false, nil
			}
			var d model.Delivery
			if err := getDelivery(db, pid, did, &d); err != nil {
				if errors.Is(err, ErrNotFound) {
					return true, nil
				}
				return false, fmt.Errorf("delivery %s of event %s: %w", did, evid, err)
			}
			found = endpoints[d.EndpointID]
			return !found, nil
		})
	})
	return found, err
}
