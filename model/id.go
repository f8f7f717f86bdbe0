package model

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// An ID is 26 characters of Crockford base32 over 128 bits: 48 bits of Unix milliseconds, then 80 bits
// that are random per millisecond and incremented within it (ULID layout, monotonic per process). Byte
// order equals time order, so every listing keyed by ID is a prefix scan in creation order.
const IDLen = 26

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var decodeTable = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xFF
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
		t[crockford[i]|0x20] = byte(i) // accept lower case
	}
	return t
}()

// ErrBadID is returned by ParseID for anything that is not a well-formed ID.
var ErrBadID = errors.New("model: malformed id")

// IDGen makes monotonic IDs; the zero value is ready to use and safe for concurrent use.
type IDGen struct {
	mu       sync.Mutex // guards lastMS and lastRand
	lastMS   uint64
	lastRand [10]byte
}

var defaultGen IDGen

// NewID returns a new ID for time t using the process-wide generator.
func NewID(t time.Time) string { return defaultGen.New(t) }

// New returns an ID for t, strictly greater than every ID this generator returned before.
func (g *IDGen) New(t time.Time) string {
	ms := uint64(t.UnixMilli())
	g.mu.Lock()
	if ms <= g.lastMS {
		// Same (or earlier: clock stepped back) millisecond: keep the old time and increment the
		// random part so the order stays strict.
		ms = g.lastMS
		incr(&g.lastRand)
	} else {
		g.lastMS = ms
		if _, err := rand.Read(g.lastRand[:]); err != nil {
			panic("BUG: crypto/rand failed: " + err.Error())
		}
		g.lastRand[0] &= 0x7F // leave headroom so increments within a millisecond never wrap
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], g.lastRand[:])
	g.mu.Unlock()
	return encode(b)
}

func incr(r *[10]byte) {
	for i := len(r) - 1; i >= 0; i-- {
		r[i]++
		if r[i] != 0 {
			return
		}
	}
}

func encode(b [16]byte) string {
	var out [IDLen]byte
	// 128 bits in 26 chars of 5 bits: the first char carries the top 3 bits.
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := IDLen - 1; i >= 0; i-- {
		out[i] = crockford[lo&0x1F]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ParseID checks s is a well-formed ID and returns its canonical (upper-case) form.
func ParseID(s string) (string, error) {
	if len(s) != IDLen {
		return "", fmt.Errorf("%w: %q has length %d, want %d", ErrBadID, s, len(s), IDLen)
	}
	if decodeTable[s[0]] > 7 {
		return "", fmt.Errorf("%w: %q overflows 128 bits", ErrBadID, s)
	}
	out := []byte(s)
	for i := 0; i < len(s); i++ {
		v := decodeTable[s[i]]
		if v == 0xFF {
			return "", fmt.Errorf("%w: %q has invalid character %q", ErrBadID, s, s[i])
		}
		out[i] = crockford[v]
	}
	return string(out), nil
}

// IDTime returns the creation time encoded in a well-formed ID.
func IDTime(id string) time.Time {
	var ms uint64
	for i := 0; i < 10 && i < len(id); i++ {
		ms = ms<<5 | uint64(decodeTable[id[i]]&0x1F)
	}
	return time.UnixMilli(int64(ms))
}

// IDBound returns the smallest ID that can be made at t's millisecond: ids of events created at or
// after t sort at or above it, which turns a time range into a key range.
func IDBound(t time.Time) string {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
	return encode(b)
}
