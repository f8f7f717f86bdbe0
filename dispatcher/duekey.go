package dispatcher

import (
	"encoding/binary"
	"strconv"
	"sync"

	"github.com/sluice-gw/sluice/model"
)

// DueKey is the timing wheel's key for one pending delivery: 20 bytes and no pointers. A node may hold
// a million pending retries, and a Ref of three strings costs ~300 bytes of heap per delivery in the
// wheel and its index (three 26-byte allocations the garbage collector must also scan). A DueKey keeps
// the delivery id as its 128-bit value and the (project, endpoint) pair as a small number from a
// KeyTable; the strings are made again only when the delivery is due.
type DueKey struct {
	id [16]byte // the delivery id's 128 bits; for an odd id (see oddFlag), its KeyTable number in id[:4]
	// lane numbers the (project, endpoint) pair in the KeyTable; oddFlag says id holds an interned id.
	lane uint32
}

// oddFlag marks a DueKey whose delivery id is not a canonical model id (26 upper-case Crockford chars)
// and was interned instead. The store only makes canonical ids; this keeps any other string exact.
const oddFlag = 1 << 31

type lanePair struct{ project, endpoint string }

// KeyTable turns Refs into DueKeys and back. Each distinct (project, endpoint) pair gets a number the
// first time it is seen and keeps it for the table's life, so a key made before an endpoint was deleted
// still resolves (its load then finds the endpoint gone): the table grows by one entry (~150 bytes) per
// endpoint ever scheduled on this node, not per delivery. Safe for concurrent use.
type KeyTable struct {
	// mu guards the fields below; lookups of known pairs take only the read lock.
	mu    sync.RWMutex
	lanes map[lanePair]uint32
	// byPair holds the lanes of canonical pairs again, keyed by project id + endpoint id (the due
	// index's value), which a []byte looks up without allocating (KeyOfPair).
	byPair map[string]uint32
	pairs  []lanePair // by lane number
	odd    map[string]uint32
	odds   []string // by odd number
}

// NewKeyTable returns an empty table.
func NewKeyTable() *KeyTable {
	return &KeyTable{lanes: make(map[lanePair]uint32), byPair: make(map[string]uint32), odd: make(map[string]uint32)}
}

// Key returns the DueKey of a delivery. It does not retain deliveryID.
func (t *KeyTable) Key(projectID, endpointID, deliveryID string) DueKey {
	var k DueKey
	k.lane = t.lane(lanePair{projectID, endpointID})
	if id, ok := idBytes(deliveryID); ok {
		k.id = id
	} else {
		binary.BigEndian.PutUint32(k.id[:4], t.oddID(deliveryID))
		k.lane |= oddFlag
	}
	return k
}

// KeyOfPair is Key for the due index's encoding (raftstore.Store.ForEachDueKey): pair is the project
// id followed by the endpoint id, model.IDLen bytes each. For a pair and id already seen it allocates
// nothing, which is what lets a restart rebuild a million pending deliveries without a million
// times three strings of garbage. It does not retain pair or deliveryID.
func (t *KeyTable) KeyOfPair(pair, deliveryID []byte) DueKey {
	t.mu.RLock()
	n, ok := t.byPair[string(pair)]
	t.mu.RUnlock()
	if !ok {
		if len(pair) != 2*model.IDLen {
			panic("BUG: dispatcher: KeyOfPair with a pair of " + strconv.Itoa(len(pair)) + " bytes")
		}
		n = t.lane(lanePair{string(pair[:model.IDLen]), string(pair[model.IDLen:])})
	}
	k := DueKey{lane: n}
	if id, ok := idBytes(deliveryID); ok {
		k.id = id
	} else {
		binary.BigEndian.PutUint32(k.id[:4], t.oddID(string(deliveryID)))
		k.lane |= oddFlag
	}
	return k
}

// KeyOf is Key for a Ref.
func (t *KeyTable) KeyOf(r Ref) DueKey { return t.Key(r.ProjectID, r.EndpointID, r.DeliveryID) }

// Refs appends the Ref of every key to dst and returns it. The project and endpoint strings are the
// table's own (shared, not copied); only the delivery id is allocated.
func (t *KeyTable) Refs(dst []Ref, keys []DueKey) []Ref {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, k := range keys {
		n := k.lane &^ oddFlag
		if int(n) >= len(t.pairs) {
			continue // BUG guard: keys only come from this table
		}
		p := t.pairs[n]
		r := Ref{ProjectID: p.project, EndpointID: p.endpoint}
		if k.lane&oddFlag != 0 {
			r.DeliveryID = t.odds[binary.BigEndian.Uint32(k.id[:4])]
		} else {
			r.DeliveryID = idString(k.id)
		}
		dst = append(dst, r)
	}
	return dst
}

// Lanes is how many (project, endpoint) pairs the table holds.
func (t *KeyTable) Lanes() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.pairs)
}

func (t *KeyTable) lane(p lanePair) uint32 {
	t.mu.RLock()
	n, ok := t.lanes[p]
	t.mu.RUnlock()
	if ok {
		return n
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.lanes[p]; ok {
		return n
	}
	if len(t.pairs) >= oddFlag {
		panic("BUG: dispatcher: more than 2^31 endpoints in a key table")
	}
	// Copy the strings so a pair decoded from a large buffer does not pin it.
	p = lanePair{string([]byte(p.project)), string([]byte(p.endpoint))}
	n = uint32(len(t.pairs))
	t.pairs = append(t.pairs, p)
	t.lanes[p] = n
	if len(p.project) == model.IDLen && len(p.endpoint) == model.IDLen {
		t.byPair[p.project+p.endpoint] = n
	}
	return n
}

func (t *KeyTable) oddID(id string) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.odd[id]; ok {
		return n
	}
	n := uint32(len(t.odds))
	id = string([]byte(id))
	t.odds = append(t.odds, id)
	t.odd[id] = n
	return n
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := range len(crockford) {
		t[crockford[i]] = byte(i)
	}
	return t
}()

// idBytes decodes a canonical model id (model.IDLen upper-case Crockford base32 chars over 128 bits)
// into its 16 bytes; false for anything else, so idString(idBytes(s)) == s whenever it is true.
func idBytes[T string | []byte](s T) (b [16]byte, ok bool) {
	if len(s) != model.IDLen || crockfordValue[s[0]] > 7 {
		return b, false
	}
	var hi, lo uint64
	for i := range len(s) {
		v := crockfordValue[s[i]]
		if v == 0xFF {
			return b, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return b, true
}

// idString is model's id encoding of 16 bytes.
func idString(b [16]byte) string {
	var out [model.IDLen]byte
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := model.IDLen - 1; i >= 0; i-- {
		out[i] = crockford[lo&0x1F]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
