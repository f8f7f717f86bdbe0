package raftstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/s2"
	"github.com/sluice-gw/sluice/model"
)

// Reads are served from the local state DB and catalog: on the leader they reflect every command
// whose Propose has returned.

// CompressData compresses an event's data once at ingest; it is stored and replicated compressed and
// decompressed only to be sent or shown.
func CompressData(data []byte) []byte { return s2.Encode(nil, data) }

// DecompressData reverses CompressData.
func DecompressData(b []byte) ([]byte, error) {
	data, err := s2.Decode(nil, b)
	if err != nil {
		return nil, fmt.Errorf("raftstore: decompress event data: %w", err)
	}
	return data, nil
}

// APIKey returns the key whose SHA-256 is hash, or nil.
func (s *Store) APIKey(hash [sha256.Size]byte) *model.APIKey { return s.fsm.cat.Load().key(hash) }

// HasRootKey reports whether a root key is stored.
func (s *Store) HasRootKey() bool { return s.fsm.cat.Load().hasRootKey() }

// Project returns a project or nil.
func (s *Store) Project(pid string) *model.Project { return s.fsm.cat.Load().project(pid) }

// Projects returns every project ordered by id.
func (s *Store) Projects() []*model.Project { return s.fsm.cat.Load().allProjects() }

// Endpoint returns an endpoint or nil.
func (s *Store) Endpoint(pid, eid string) *model.Endpoint { return s.fsm.cat.Load().endpoint(pid, eid) }

// Endpoints returns a project's endpoints ordered by id.
func (s *Store) Endpoints(pid string) []*model.Endpoint {
	return s.fsm.cat.Load().projectEndpoints(pid)
}

// Subscription returns a subscription or nil.
func (s *Store) Subscription(pid, sid string) *model.Subscription {
	return s.fsm.cat.Load().subscription(pid, sid)
}

// Subscriptions returns a project's subscriptions ordered by id, in a slice shared with other
// callers: read it, do not modify it.
func (s *Store) Subscriptions(pid string) []*model.Subscription {
	return s.fsm.cat.Load().projectSubscriptions(pid)
}

func getJSON(r pebble.Reader, k []byte, v any) error {
	val, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: read %x: %w", k, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("raftstore: decode %x: %w", k, err)
	}
	return nil
}

// getDelivery reads a delivery record (see codec.go for its formats).
func getDelivery(r pebble.Reader, pid, did string, d *model.Delivery) error {
	return getRecord(r, key(tagDelivery, pid, did), func(v []byte) error { return decodeDelivery(v, d) })
}

func getRecord(r pebble.Reader, k []byte, decode func(v []byte) error) error {
	val, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: read %x: %w", k, err)
	}
	defer closer.Close()
	if err := decode(val); err != nil {
		return fmt.Errorf("raftstore: decode %x: %w", k, err)
	}
	return nil
}

func eventData(r pebble.Reader, pid, evid string) ([]byte, error) {
	val, closer, err := r.Get(key(tagEventData, pid, evid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: data of event %s", ErrNotFound, evid)
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: read data of event %s: %w", evid, err)
	}
	defer closer.Close()
	data, err := s2.Decode(nil, val)
	if err != nil {
		return nil, fmt.Errorf("raftstore: decompress data of event %s: %w", evid, err)
	}
	return data, nil
}

// Event returns an event with its data and matched endpoints.
func (s *Store) Event(pid, evid string) (*model.Event, error) {
	var ev model.Event
	err := s.st.view(func(db *pebble.DB) error {
		if err := getEvent(db, pid, evid, &ev); err != nil {
			return fmt.Errorf("event %s: %w", evid, err)
		}
		if err := eventTargets(db, &ev); err != nil {
			return err
		}
		data, err := eventData(db, pid, evid)
		ev.Data = data
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

// getEvent reads an event's record (binary, or JSON as written by earlier versions): all but its
// matched endpoints and data.
func getEvent(r pebble.Reader, pid, evid string, ev *model.Event) error {
	return getRecord(r, key(tagEvent, pid, evid), func(v []byte) error { return decodeEvent(v, ev) })
}

// eventTargets fills the event's matched endpoint ids (stored apart from the event).
func eventTargets(db pebble.Reader, ev *model.Event) error {
	err := getRecord(db, key(tagEventTargets, ev.ProjectID, ev.UID), func(v []byte) error {
		ids, err := decodeTargets(v)
		ev.Endpoints = ids
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// EventForDelivery returns an event with its data but without its matched endpoints: what one
// delivery needs, at a cost that does not grow with the event's fan-out. Only UID, ProjectID,
// Headers and Data are set (a delivery record carries its event's type): decoding the rest of a
// JSON record (earlier versions) took a third of the load, and one without headers is not decoded.
func (s *Store) EventForDelivery(pid, evid string) (*model.Event, error) {
	ev := model.Event{UID: evid, ProjectID: pid}
	err := s.st.view(func(db *pebble.DB) error {
		err := getRecord(db, key(tagEvent, pid, evid), func(v []byte) error {
			if len(v) == 0 || v[0] != '{' {
				var rec model.Event
				err := decodeEvent(v, &rec)
				ev.Headers = rec.Headers
				return err
			}
			if !bytes.Contains(v, headersField) {
				return nil
			}
			var rec struct {
				Headers map[string]string `json:"headers"`
			}
			err := json.Unmarshal(v, &rec)
			ev.Headers = rec.Headers
			return err
		})
		if err != nil {
			return fmt.Errorf("event %s: %w", evid, err)
		}
		data, err := eventData(db, pid, evid)
		ev.Data = data
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ev, nil
}

// headersField is how encoding/json writes model.Event's headers key (omitted when empty). The
// sequence cannot occur inside a JSON string, where every quote is escaped.
var headersField = []byte(`"headers":`)

// EventData returns only an event's data, decompressed: the exact bytes published.
func (s *Store) EventData(pid, evid string) ([]byte, error) {
	var data []byte
	err := s.st.view(func(db *pebble.DB) (err error) {
		data, err = eventData(db, pid, evid)
		return err
	})
	return data, err
}

// IdempotentEvent returns the event id stored under an idempotency key. A key never used costs no
// read (see keyFilter).
func (s *Store) IdempotentEvent(pid, idemKey string) (string, bool) {
	k := key(tagIdempotency, pid, idemKey)
	if s.fsm.idem.Load().absent(k) {
		return "", false
	}
	var id string
	s.st.view(func(db *pebble.DB) error {
		v, closer, err := db.Get(k)
		if err != nil {
			return err
		}
		id = string(v)
		return closer.Close()
	})
	return id, id != ""
}

// Page asks for up to Limit items older than Cursor (an id; empty for the newest).
type Page struct {
	Cursor string
	Limit  int
}

// timeBounds narrows an id range to [From, To] by the time ids encode.
type timeBounds struct{ From, To time.Time }

func (tb timeBounds) apply(lo, hi string) (string, string) {
	if !tb.From.IsZero() {
		if b := model.IDBound(tb.From); b > lo {
			lo = b
		}
	}
	if !tb.To.IsZero() {
		if b := model.IDBound(tb.To.Add(time.Millisecond)); hi == "" || b < hi {
			hi = b
		}
	}
	return lo, hi
}

// scanNewest walks ids under prefix from newest to oldest within (lo, hi) and calls fn with each id
// until fn returns false. Index keys end with the id.
func scanNewest(db pebble.Reader, prefix []byte, lo, hi string, fn func(id string) (bool, error)) error {
	lower := append(append([]byte(nil), prefix...), lo...)
	upper := prefixEnd(prefix)
	if hi != "" {
		upper = append(append([]byte(nil), prefix...), hi...)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		k := it.Key()
		if len(k) < len(prefix)+model.IDLen {
			continue
		}
		more, err := fn(string(k[len(k)-model.IDLen:]))
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// EventFilter selects events.
type EventFilter struct {
	EventType string
	From, To  time.Time
	Page
}

// ListEvents returns a page of events, newest first, and the cursor of the next page ("" at the end).
func (s *Store) ListEvents(pid string, f EventFilter) ([]*model.Event, string, error) {
	limit := pageLimit(f.Limit)
	var out []*model.Event
	next := ""
	lo, hi := timeBounds{f.From, f.To}.apply("", f.Cursor)
	err := s.st.view(func(db *pebble.DB) error {
		return scanNewest(db, key(tagEvent, pid), lo, hi, func(id string) (bool, error) {
			var ev model.Event
			if err := getEvent(db, pid, id, &ev); err != nil {
				return false, err
			}
			if f.EventType != "" && ev.EventType != f.EventType {
				return true, nil
			}
			if len(out) == limit {
				next = out[len(out)-1].UID
				return false, nil
			}
			if err := eventTargets(db, &ev); err != nil {
				return false, err
			}
			data, err := eventData(db, pid, id)
			if err != nil {
				return false, err
			}
			ev.Data = data
			out = append(out, &ev)
			return true, nil
		})
	})
	return out, next, err
}

// DeliveryFilter selects deliveries; empty fields match everything.
type DeliveryFilter struct {
	Status     []model.DeliveryStatus
	EndpointID string
	EventID    string
	EventType  string
	From, To   time.Time
	Page
}

func (f *DeliveryFilter) matches(d *model.Delivery) bool {
	if f.EndpointID != "" && d.EndpointID != f.EndpointID {
		return false
	}
	if f.EventID != "" && d.EventID != f.EventID {
		return false
	}
	if f.EventType != "" && d.EventType != f.EventType {
		return false
	}
	if len(f.Status) > 0 {
		ok := false
		for _, st := range f.Status {
			ok = ok || d.Status == st
		}
		if !ok {
			return false
		}
	}
	return true
}

// index picks the narrowest index for the filter; the record check still applies to every hit.
func (f *DeliveryFilter) index(pid string) []byte {
	switch {
	case f.EventID != "":
		return key(tagByEvent, pid, f.EventID)
	case f.EndpointID != "" && len(f.Status) == 1:
		return epStatusKey(pid, f.EndpointID, f.Status[0], "")
	case f.EndpointID != "":
		return key(tagByEndpoint, pid, f.EndpointID)
	case len(f.Status) == 1:
		return statusKey(pid, f.Status[0], "")
	default:
		return key(tagDelivery, pid)
	}
}

// ListDeliveries returns a page of deliveries, newest first, and the next page's cursor.
func (s *Store) ListDeliveries(pid string, f DeliveryFilter) ([]*model.Delivery, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = pageLimit(0)
	}
	var out []*model.Delivery
	next := ""
	lo, hi := timeBounds{f.From, f.To}.apply("", f.Cursor)
	err := s.st.view(func(db *pebble.DB) error {
		return scanNewest(db, f.index(pid), lo, hi, func(id string) (bool, error) {
			var d model.Delivery
			if err := getDelivery(db, pid, id, &d); err != nil {
				if errors.Is(err, ErrNotFound) {
					return true, nil
				}
				return false, err
			}
			if !f.matches(&d) {
				return true, nil
			}
			if len(out) == limit {
				next = out[len(out)-1].UID
				return false, nil
			}
			out = append(out, &d)
			return true, nil
		})
	})
	return out, next, err
}

// Delivery returns one delivery.
func (s *Store) Delivery(pid, did string) (*model.Delivery, error) {
	var d model.Delivery
	err := s.st.view(func(db *pebble.DB) error { return getDelivery(db, pid, did, &d) })
	if err != nil {
		return nil, fmt.Errorf("delivery %s: %w", did, err)
	}
	return &d, nil
}

// Attempts returns a delivery's attempts, oldest first.
func (s *Store) Attempts(pid, did string) ([]*model.Attempt, error) {
	var out []*model.Attempt
	err := s.st.view(func(db *pebble.DB) error {
		p := key(tagAttempt, pid, did)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			a := new(model.Attempt)
			if err := decodeAttempt(it.Value(), a); err != nil {
				return fmt.Errorf("raftstore: decode attempt %x: %w", it.Key(), err)
			}
			out = append(out, a)
		}
		return it.Error()
	})
	return out, err
}

// Attempt returns one attempt of a delivery.
func (s *Store) Attempt(pid, did, aid string) (*model.Attempt, error) {
	var a model.Attempt
	err := s.st.view(func(db *pebble.DB) error {
		return getRecord(db, key(tagAttempt, pid, did, aid), func(v []byte) error { return decodeAttempt(v, &a) })
	})
	if err != nil {
		return nil, fmt.Errorf("attempt %s: %w", aid, err)
	}
	return &a, nil
}

// ForEachDue calls fn with every pending delivery in due-time order until fn returns false. It is how
// the scheduler is rebuilt when this node takes over dispatch.
func (s *Store) ForEachDue(fn func(Due) bool) error {
	return s.ForEachDueKey(func(at time.Time, pair, deliveryID []byte) bool {
		return fn(Due{
			ProjectID:  string(pair[:model.IDLen]),
			EndpointID: string(pair[model.IDLen:]),
			DeliveryID: string(deliveryID),
			At:         at,
		})
	})
}

// ForEachDueKey is ForEachDue without allocating: pair is the project id followed by the endpoint id
// (2 × model.IDLen bytes), and pair and deliveryID are valid only during the call. A restart rebuilds
// the timing wheel from a million of these, and three strings each would be ~100 MB of garbage.
func (s *Store) ForEachDueKey(fn func(at time.Time, pair, deliveryID []byte) bool) error {
	return s.st.view(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagDue}, UpperBound: []byte{tagDue + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			k, v := it.Key(), it.Value()
			if len(k) != 9+model.IDLen || len(v) != 2*model.IDLen {
				return fmt.Errorf("raftstore: malformed due index entry %x", k)
			}
			if !fn(time.UnixMilli(int64(binary.BigEndian.Uint64(k[1:9]))), v, k[9:]) {
				return nil
			}
		}
		return it.Error()
	})
}

func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 20
	case n > 1000:
		return 1000
	}
	return n
}

// EndpointHealth returns an endpoint's delivery health (zero before its first attempt).
func (s *Store) EndpointHealth(pid, eid string) model.EndpointHealth {
	h := model.EndpointHealth{SuccessRate: 1}
	s.st.view(func(db *pebble.DB) error { return getJSON(db, key(tagHealth, pid, eid), &h) })
	return h
}

// MetaEvent returns one meta event.
func (s *Store) MetaEvent(pid, uid string) (*model.MetaEvent, error) {
	var m model.MetaEvent
	if err := s.st.view(func(db *pebble.DB) error { return getJSON(db, key(tagMetaEvent, pid, uid), &m) }); err != nil {
		return nil, fmt.Errorf("meta event %s: %w", uid, err)
	}
	return &m, nil
}

// MetaEvents returns up to limit of a project's meta events, newest first; pendingOnly keeps those
// still to be sent.
func (s *Store) MetaEvents(pid string, limit int, pendingOnly bool) ([]*model.MetaEvent, error) {
	var out []*model.MetaEvent
	err := s.st.view(func(db *pebble.DB) error {
		p := key(tagMetaEvent, pid)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
			m := new(model.MetaEvent)
			if err := json.Unmarshal(it.Value(), m); err != nil {
				return fmt.Errorf("raftstore: decode meta event %x: %w", it.Key(), err)
			}
			if !pendingOnly || m.Status == "scheduled" {
				out = append(out, m)
			}
		}
		return it.Error()
	})
	return out, err
}

// Node returns a registered cluster node or nil.
func (s *Store) Node(id string) *model.Node { return s.fsm.cat.Load().node(id) }

// Nodes returns every registered node ordered by id.
func (s *Store) Nodes() []*model.Node { return s.fsm.cat.Load().allNodes() }

// LiveNodes returns the ids of the nodes taking part in dispatch, sorted (empty before the leader
// first records them).
func (s *Store) LiveNodes() []string { return s.fsm.cat.Load().liveNodes() }
