package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func TestEmptyStore(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	if first, last := bounds(t, s); first != 0 || last != 0 {
		t.Fatalf("bounds of empty store = %d,%d, want 0,0", first, last)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(1) on empty store = %v, want raft.ErrLogNotFound unwrapped", err)
	}
	if !s.IsMonotonic() {
		t.Fatal("IsMonotonic = false")
	}
}

func equalLog(t *testing.T, got, want *raft.Log) {
	t.Helper()
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
		!got.AppendedAt.Equal(want.AppendedAt) || got.AppendedAt.IsZero() != want.AppendedAt.IsZero() {
		t.Fatalf("log %d mismatch:\n got  %+v\n want %+v", want.Index, *got, *want)
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	json := eventBatch(rng, 1, 50)
	variants := []struct {
		name string
		log  raft.Log
		tag  byte // expected codec for S2
	}{
		{"empty", raft.Log{Type: raft.LogNoop}, tagRaw},
		{"small", raft.Log{Type: raft.LogCommand, Data: []byte("hello")}, tagRaw},
		{"json", raft.Log{Type: raft.LogCommand, Data: json, Extensions: []byte{0, 1, 2}}, tagS2},
		{"incompressible", raft.Log{Type: raft.LogCommand, Data: random}, tagRaw},
		{"config", raft.Log{Type: raft.LogConfiguration, Data: bytes.Repeat([]byte("server-1"), 20)}, tagS2},
		{"barrier-no-time", raft.Log{Type: raft.LogBarrier, Extensions: []byte("x")}, tagRaw},
		{"max-fields", raft.Log{Type: raft.LogType(255), Term: math.MaxUint64, Data: json[:2000]}, tagS2},
		{"negative-time", raft.Log{Type: raft.LogCommand, Data: []byte("old"), AppendedAt: time.Unix(-5, 7)}, tagRaw},
		{"epoch", raft.Log{Type: raft.LogCommand, AppendedAt: time.Unix(0, 0)}, tagRaw},
	}
	for _, c := range []Compression{CompressionDefault, CompressionNone, CompressionS2, CompressionZstd} {
		t.Run(c.String(), func(t *testing.T) {
			s, err := Open("wal", Options{FS: vfs.NewMem(), Compression: c, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			logs := make([]*raft.Log, len(variants))
			for i, v := range variants {
				l := v.log
				l.Index = uint64(i + 1)
				if l.Term == 0 {
					l.Term = 3
				}
				if l.AppendedAt.IsZero() && !strings.Contains(v.name, "no-time") && v.name != "empty" {
					l.AppendedAt = time.Unix(1_760_000_000, int64(i))
				}
				logs[i] = &l
			}
			mustStore(t, s, logs)
			for i, v := range variants {
				var got raft.Log
				if err := s.GetLog(uint64(i+1), &got); err != nil {
					t.Fatalf("%s: GetLog: %v", v.name, err)
				}
				equalLog(t, &got, logs[i])
				// The codec tag is what we meant to write.
				raw, closer, err := s.db.Get(logKey(uint64(i + 1)))
				if err != nil {
					t.Fatal(err)
				}
				want := v.tag
				if c == CompressionNone {
					want = tagRaw
				} else if c == CompressionZstd && want == tagS2 {
					want = tagZstd
				}
				if raw[1] != want {
					t.Errorf("%s: codec tag %d, want %d", v.name, raw[1], want)
				}
				closer.Close()
			}
			if first, last := bounds(t, s); first != 1 || last != uint64(len(variants)) {
				t.Fatalf("bounds = %d,%d", first, last)
			}
		})
	}
}

func TestOpenRejectsUnknownCompression(t *testing.T) {
	if _, err := Open("wal", Options{FS: vfs.NewMem(), Compression: 9, Logger: quiet}); err == nil {
		t.Fatal("Open accepted Compression(9)")
	}
}

func TestDeleteRange(t *testing.T) {
	cases := []struct {
		name                string
		min, max            uint64
		wantFirst, wantLast uint64
	}{
		{"prefix", 1, 3, 4, 10},
		{"prefix-below-first", 0, 3, 4, 10},
		{"suffix", 8, 10, 1, 7},
		{"suffix-past-last", 8, 100, 1, 7},
		{"all", 1, 10, 0, 0},
		{"everything", 0, math.MaxUint64, 0, 0},
		{"one-first", 1, 1, 2, 10},
		{"one-last", 10, 10, 1, 9},
		{"middle", 4, 6, 1, 10},
		{"outside", 11, 20, 1, 10},
		{"inverted-noop", 5, 4, 1, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openMem(t, fs)
			mustStore(t, s, makeLogs(1, 10, 1))
			if err := s.DeleteRange(c.min, c.max); err != nil {
				t.Fatalf("DeleteRange(%d,%d): %v", c.min, c.max, err)
			}
			check := func(s *Store, when string) {
				if first, last := bounds(t, s); first != c.wantFirst || last != c.wantLast {
					t.Fatalf("%s: bounds = %d,%d, want %d,%d", when, first, last, c.wantFirst, c.wantLast)
				}
				for i := uint64(1); i <= 10; i++ {
					var l raft.Log
					err := s.GetLog(i, &l)
					deleted := c.min <= c.max && i >= c.min && i <= c.max
					if deleted && err != raft.ErrLogNotFound {
						t.Fatalf("%s: GetLog(%d) after delete = %v, want ErrLogNotFound", when, i, err)
					}
					if !deleted && err != nil {
						t.Fatalf("%s: GetLog(%d) = %v", when, i, err)
					}
				}
			}
			check(s, "live")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openMem(t, fs)
			defer s.Close()
			check(s, "reopened")
		})
	}
}

func TestStoreLogsContiguity(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	// An empty log accepts any start: raft starts at 1, or after a snapshot.
	mustStore(t, s, makeLogs(100, 5, 1))
	cases := []struct {
		name string
		logs []*raft.Log
	}{
		{"gap-after-last", makeLogs(106, 2, 1)},
		{"overwrite", makeLogs(104, 2, 1)},
		{"gap-in-batch", append(makeLogs(105, 1, 1), makeLogs(107, 1, 1)...)},
	}
	for _, c := range cases {
		if err := s.StoreLogs(c.logs); !errors.Is(err, ErrNotContiguous) {
			t.Errorf("%s: StoreLogs = %v, want ErrNotContiguous", c.name, err)
		}
	}
	if first, last := bounds(t, s); first != 100 || last != 104 {
		t.Fatalf("rejected batches changed bounds to %d,%d", first, last)
	}
	// Truncating a suffix lets the log continue from the new end (raft's
	// conflict resolution), and clearing it lets it restart anywhere
	// (snapshot install on a MonotonicLogStore).
	if err := s.DeleteRange(103, 104); err != nil {
		t.Fatal(err)
	}
	mustStore(t, s, makeLogs(103, 3, 2))
	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	mustStore(t, s, makeLogs(5000, 1, 3))
	if first, last := bounds(t, s); first != 5000 || last != 5000 {
		t.Fatalf("bounds = %d,%d, want 5000,5000", first, last)
	}
}

// TestStableStoreLikeInmem runs the same operations on raft.InmemStore and
// on Store and requires identical results, including the exact error text
// raft compares against.
func TestStableStoreLikeInmem(t *testing.T) {
	type op struct {
		kind string // set, get, setu, getu
		key  string
		val  []byte
		u    uint64
	}
	ops := []op{
		{kind: "get", key: "missing"},
		{kind: "getu", key: "missing"},
		{kind: "getu", key: "CurrentTerm"},
		{kind: "set", key: "LastVoteCand", val: []byte("node-1")},
		{kind: "get", key: "LastVoteCand"},
		{kind: "setu", key: "CurrentTerm", u: 7},
		{kind: "getu", key: "CurrentTerm"},
		{kind: "setu", key: "CurrentTerm", u: math.MaxUint64},
		{kind: "getu", key: "CurrentTerm"},
		// Bytes and uint64 keyspaces are separate in InmemStore.
		{kind: "get", key: "CurrentTerm"},
		{kind: "getu", key: "LastVoteCand"},
		{kind: "set", key: "empty", val: []byte{}},
		{kind: "get", key: "empty"},
		{kind: "set", key: "LastVoteCand", val: nil},
		{kind: "get", key: "LastVoteCand"},
		{kind: "set", key: "", val: []byte("empty key")},
		{kind: "get", key: ""},
		{kind: "setu", key: "zero", u: 0},
		{kind: "getu", key: "zero"},
	}
	fs := vfs.NewMem()
	s := openMem(t, fs)
	mem := raft.NewInmemStore()
	run := func(st raft.StableStore, o op) (val []byte, u uint64, errText string) {
		var err error
		switch o.kind {
		case "set":
			err = st.Set([]byte(o.key), o.val)
		case "setu":
			err = st.SetUint64([]byte(o.key), o.u)
		case "get":
			val, err = st.Get([]byte(o.key))
		case "getu":
			u, err = st.GetUint64([]byte(o.key))
		}
		if err != nil {
			errText = err.Error()
		}
		return val, u, errText
	}
	var reads []op
	for i, o := range ops {
		wv, wu, we := run(mem, o)
		gv, gu, ge := run(s, o)
		if !bytes.Equal(gv, wv) || (gv == nil) != (wv == nil) || gu != wu || ge != we {
			t.Errorf("op %d %+v: got (%q nil=%v, %d, %q), InmemStore (%q nil=%v, %d, %q)",
				i, o, gv, gv == nil, gu, ge, wv, wv == nil, wu, we)
		}
		if o.kind == "get" || o.kind == "getu" {
			reads = append(reads, o)
		}
	}
	// A reopened store answers the final reads the same way.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	defer s.Close()
	for _, o := range reads {
		wv, wu, we := run(mem, o)
		gv, gu, ge := run(s, o)
		if !bytes.Equal(gv, wv) || gu != wu || ge != we {
			t.Errorf("reopened %+v: got (%q, %d, %q), InmemStore (%q, %d, %q)", o, gv, gu, ge, wv, wu, we)
		}
	}
	if _, err := s.Get([]byte("missing")); err != ErrKeyNotFound {
		t.Fatalf("Get(missing) = %v, want ErrKeyNotFound unwrapped", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir() // a real directory: this is what production opens
	s, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	logs := makeLogs(1, 300, 9)
	for i := 0; i < len(logs); i += 100 {
		mustStore(t, s, logs[i:i+100])
	}
	if err := s.DeleteRange(1, 50); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if first, last := bounds(t, s); first != 51 || last != 300 {
		t.Fatalf("bounds after reopen = %d,%d, want 51,300", first, last)
	}
	for _, want := range logs[50:] {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		equalLog(t, &got, want)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 4 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "n1" {
		t.Fatalf("LastVoteCand = %q, %v", cand, err)
	}
	// The log continues where it stopped.
	mustStore(t, s, makeLogs(301, 1, 9))
}

func TestStats(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	steps := []struct {
		name  string
		do    func() error
		syncs uint64
	}{
		{"StoreLogs", func() error { return s.StoreLogs(makeLogs(1, 64, 1)) }, 1},
		{"StoreLog", func() error { return s.StoreLog(makeLogs(65, 1, 1)[0]) }, 1},
		{"StoreLogs-empty", func() error { return s.StoreLogs(nil) }, 0},
		{"Set", func() error { return s.Set([]byte("k"), []byte("v")) }, 1},
		{"SetUint64", func() error { return s.SetUint64([]byte("k"), 1) }, 1},
		{"DeleteRange", func() error { return s.DeleteRange(1, 10) }, 1},
		{"DeleteRange-inverted", func() error { return s.DeleteRange(10, 1) }, 0},
		{"GetLog", func() error { var l raft.Log; return s.GetLog(20, &l) }, 0},
	}
	for _, st := range steps {
		before := s.Stats().Syncs
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := s.Stats().Syncs - before; got != st.syncs {
			t.Errorf("%s made %d syncs, want %d", st.name, got, st.syncs)
		}
	}
	st := s.Stats()
	if st.Entries != 65 || st.FirstIndex != 11 || st.LastIndex != 65 {
		t.Fatalf("stats = %+v", st)
	}
	// ~1 KiB JSON events compress with S2 by about 1.4x each.
	if r := st.CompressionRatio(); r < 1.2 || st.Compressed != 65 {
		t.Fatalf("compression ratio %.2f over %d compressed entries (%+v)", r, st.Compressed, st)
	}
}

func TestClosed(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	calls := map[string]error{
		"Close":       s.Close(),
		"GetLog":      s.GetLog(1, &l),
		"StoreLogs":   s.StoreLogs(makeLogs(1, 1, 1)),
		"DeleteRange": s.DeleteRange(1, 2),
		"Set":         s.Set([]byte("k"), []byte("v")),
		"SetUint64":   s.SetUint64([]byte("k"), 1),
	}
	_, calls["FirstIndex"] = s.FirstIndex()
	_, calls["LastIndex"] = s.LastIndex()
	_, calls["Get"] = s.Get([]byte("k"))
	_, calls["GetUint64"] = s.GetUint64([]byte("k"))
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// TestCorruption damages stored records behind the store's back and
// requires GetLog to name the index and the cause instead of returning
// garbage.
func TestCorruption(t *testing.T) {
	reseal := func(rec []byte) []byte { // recompute the CRC after an edit
		body := rec[:len(rec)-crcLen]
		return appendCRC(append([]byte(nil), body...))
	}
	cases := []struct {
		name   string
		damage func(rec, other []byte) []byte
		want   string
	}{
		{"flip-data", func(rec, _ []byte) []byte { rec[len(rec)-20] ^= 0x40; return rec }, "checksum mismatch"},
		{"flip-term", func(rec, _ []byte) []byte { rec[headerLen+1] ^= 1; return rec }, "checksum mismatch"},
		{"flip-crc", func(rec, _ []byte) []byte { rec[len(rec)-1] ^= 0xff; return rec }, "checksum mismatch"},
		{"truncated", func(rec, _ []byte) []byte { return rec[:len(rec)/2] }, "checksum mismatch"},
		{"tiny", func(rec, _ []byte) []byte { return rec[:3] }, "shorter than its header"},
		{"empty", func(rec, _ []byte) []byte { return rec[:0] }, "shorter than its header"},
		{"wrong-index", func(_, other []byte) []byte { return other }, "record holds index 4"},
		{"future-version", func(rec, _ []byte) []byte { rec[0] = 9; return reseal(rec) }, ""},
		{"unknown-codec", func(rec, _ []byte) []byte { rec[1] = 7; return reseal(rec) }, "unknown codec tag 7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openMem(t, vfs.NewMem())
			defer s.Close()
			mustStore(t, s, makeLogs(1, 5, 1))
			get := func(i uint64) []byte {
				v, closer, err := s.db.Get(logKey(i))
				if err != nil {
					t.Fatal(err)
				}
				defer closer.Close()
				return append([]byte(nil), v...)
			}
			bad := c.damage(get(3), get(4))
			if err := s.db.Set(logKey(3), bad, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			var l raft.Log
			err := s.GetLog(3, &l)
			if c.name == "future-version" {
				if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorrupt) || err.Error() != "wal: unsupported record version 9 at index 3" {
					t.Fatalf("GetLog(3) = %v, want only ErrUnsupportedVersion naming version and index", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("GetLog(3) = %v, want ErrCorrupt", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "wal: corrupt entry at index 3: ") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not name index 3 and %q", msg, c.want)
			}
			// Neighbours are unaffected.
			if err := s.GetLog(2, &l); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("stable-uint64", func(t *testing.T) {
		s := openMem(t, vfs.NewMem())
		defer s.Close()
		if err := s.db.Set(stableKey(prefixUint64, []byte("CurrentTerm")), []byte{1, 2, 3}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrCorruptStable) || !strings.Contains(err.Error(), "CurrentTerm") {
			t.Fatalf("GetUint64 = %v, want ErrCorruptStable naming the key", err)
		}
	})
}

// TestKeyOrder pins the key layout doc.go promises: big-endian indexes
// sort in index order inside the log prefix, away from stable keys.
func TestKeyOrder(t *testing.T) {
	idx := []uint64{0, 1, 255, 256, 1 << 32, math.MaxUint64}
	for i := 1; i < len(idx); i++ {
		if bytes.Compare(logKey(idx[i-1]), logKey(idx[i])) >= 0 {
			t.Fatalf("logKey(%d) !< logKey(%d)", idx[i-1], idx[i])
		}
	}
	if k := logKey(math.MaxUint64); bytes.Compare(k, logEnd) >= 0 || bytes.Compare(logStart, logKey(0)) > 0 {
		t.Fatal("log keys escape [logStart, logEnd)")
	}
	if binary.BigEndian.Uint64(logKey(42)[1:]) != 42 || keyIndex(logKey(42)) != 42 {
		t.Fatal("keyIndex does not invert logKey")
	}
}

func appendCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// TestBlockCacheHoldsBlocksBesideFullMemtables: Pebble charges each memtable to the block cache, so
// a cache of CacheSize bytes beside memtables larger than it kept no blocks at all, and every read of
// a flushed entry (a follower catching up, the FSM replaying after a restart) went to disk.
func TestBlockCacheHoldsBlocksBesideFullMemtables(t *testing.T) {
	const memtable = 2 << 20
	s, err := Open(t.TempDir(), Options{Logger: quiet, MemTableSize: memtable, CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustStore(t, s, makeLogs(1, 500, 1))
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	next := uint64(501)
	for s.db.Metrics().MemTable.Size < memtable {
		if next > 50_000 {
			t.Fatalf("memtable still %d bytes after %d entries", s.db.Metrics().MemTable.Size, next)
		}
		mustStore(t, s, makeLogs(next, 100, 2))
		next += 100
	}
	read := func() {
		var l raft.Log
		for i := uint64(1); i <= 500; i += 5 {
			if err := s.GetLog(i, &l); err != nil {
				t.Fatalf("GetLog(%d): %v", i, err)
			}
		}
	}
	read()
	before := s.db.Metrics().BlockCache
	read()
	after := s.db.Metrics().BlockCache
	if after.Count == 0 || after.Hits == before.Hits || after.Misses != before.Misses {
		t.Fatalf("block cache not holding blocks beside full memtables: before %+v, after %+v", before, after)
	}
}
