package raftstore

import "strings"

// recordCache holds the encoded records of pending deliveries as the FSM last wrote them, so that
// applying a delivery's result (most of what the FSM does under egress) reads no state: the point
// read it replaces was about 6% of a delivery's CPU when the record had been flushed.
//
// It mirrors the state exactly. Every delivery record is written through applier.putDelivery,
// which updates it; deletions by range (a project's) and replacing the state (reload, after a
// snapshot's restore) clear it. A record leaves when its delivery stops pending. When full it admits
// nothing new rather than evicting: backlogs drain oldest first, so evicting the oldest would drop
// exactly the records needed next.
//
// Owned by the goroutine that applies entries (raft's FSM goroutine; newFSM before raft starts):
// no lock.
type recordCache struct {
	m   map[string]string // delivery id → encoded record
	max int
}

// recordCacheMax bounds the cache: about 250 B per pending delivery (key, record, map overhead),
// ~8 MiB at the bound, enough for backlogs of tens of thousands to be applied without reads.
const recordCacheMax = 32 << 10

func newRecordCache(max int) *recordCache {
	return &recordCache{m: make(map[string]string), max: max}
}

// get returns the record of did, if cached.
func (c *recordCache) get(did string) (string, bool) {
	v, ok := c.m[did]
	return v, ok
}

// put records did's new record: kept while the delivery is pending, dropped once it is not.
func (c *recordCache) put(did string, rec []byte, pending bool) {
	if !pending {
		delete(c.m, did)
		return
	}
	if _, ok := c.m[did]; ok {
		c.m[did] = string(rec)
		return
	}
	if len(c.m) >= c.max {
		return
	}
	// The id may be a substring of a whole decoded Raft entry: a key of its own keeps that
	// from being retained.
	c.m[strings.Clone(did)] = string(rec)
}

// clear empties the cache, for writes that remove records it cannot enumerate cheaply.
func (c *recordCache) clear() { clear(c.m) }

// len reports the number of cached records (tests).
func (c *recordCache) len() int { return len(c.m) }
