package dispatcher

import (
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-gw/sluice/model"
)

func TestKeyTableRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	p1, p2 := model.NewID(now), model.NewID(now)
	e1, e2 := model.NewID(now), model.NewID(now)
	cases := []struct {
		name string
		ref  Ref
	}{
		{"canonical ids", Ref{p1, e1, model.NewID(now)}},
		{"same delivery id, other endpoint", Ref{p1, e2, "01KB0000000000000000000000"}},
		{"same delivery id, other project", Ref{p2, e2, "01KB0000000000000000000000"}},
		{"all-zero id", Ref{p1, e1, "00000000000000000000000000"}},
		{"largest id", Ref{p1, e1, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"}},
		{"lower case is not canonical: kept as is", Ref{p1, e1, "01kb0000000000000000000000"}},
		{"over 128 bits", Ref{p1, e1, "8ZZZZZZZZZZZZZZZZZZZZZZZZZ"}},
		{"short test id", Ref{p1, e1, "d1"}},
		{"excluded letter", Ref{p1, e1, "01KB000000000000000000000U"}},
		{"empty", Ref{"", "", ""}},
	}
	tab := NewKeyTable()
	keys := map[DueKey]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := tab.KeyOf(c.ref)
			if k2 := tab.KeyOf(c.ref); k2 != k {
				t.Fatalf("two keys for %+v: %+v, %+v", c.ref, k, k2)
			}
			if other, dup := keys[k]; dup {
				t.Fatalf("%+v has the key of case %q", c.ref, other)
			}
			keys[k] = c.name
			got := tab.Refs(nil, []DueKey{k})
			if len(got) != 1 || got[0] != c.ref {
				t.Fatalf("Refs(KeyOf(%+v)) = %+v", c.ref, got)
			}
		})
	}
	if n := tab.Lanes(); n != 4 {
		t.Fatalf("%d lanes interned, want 4", n)
	}
}

// KeyOfPair, the rebuild's path from the due index's bytes, must give the key Key gives for the same
// delivery whichever of the two sees the pair first, and allocate nothing once the pair is known.
func TestKeyOfPairMatchesKey(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	p1, e1, e2 := model.NewID(now), model.NewID(now), model.NewID(now)
	tab := NewKeyTable()
	for _, c := range []struct {
		name                        string
		project, endpoint, delivery string
		keyFirst                    bool
	}{
		{"pair first seen by KeyOfPair", p1, e1, model.NewID(now), false},
		{"pair first seen by Key", p1, e2, model.NewID(now), true},
		{"known pair, other delivery", p1, e1, model.NewID(now), false},
		{"non-canonical delivery id", p1, e1, "01kb0000000000000000000000", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var k DueKey
			if c.keyFirst {
				k = tab.Key(c.project, c.endpoint, c.delivery)
			}
			got := tab.KeyOfPair([]byte(c.project+c.endpoint), []byte(c.delivery))
			if !c.keyFirst {
				k = tab.Key(c.project, c.endpoint, c.delivery)
			}
			if got != k {
				t.Fatalf("KeyOfPair = %+v, Key = %+v", got, k)
			}
		})
	}
	pair, id := []byte(p1+e1), []byte(model.NewID(now))
	if n := testing.AllocsPerRun(100, func() { tab.KeyOfPair(pair, id) }); n != 0 {
		t.Fatalf("KeyOfPair of a known pair allocates %.0f times", n)
	}
	if n := tab.Lanes(); n != 2 {
		t.Fatalf("%d lanes, want 2", n)
	}
}

// The wheel's memory per pending delivery depends on the key staying small and pointer-free.
func TestDueKeySize(t *testing.T) {
	if got := unsafe.Sizeof(DueKey{}); got != 20 {
		t.Fatalf("DueKey is %d bytes, want 20", got)
	}
}

// FuzzIDBytes checks the id decoder: whatever it accepts encodes back to the same string, and every
// id model makes is accepted.
func FuzzIDBytes(f *testing.F) {
	f.Add(model.NewID(time.Now()))
	f.Add("7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
	f.Add("8ZZZZZZZZZZZZZZZZZZZZZZZZZ")
	f.Add("01kb0000000000000000000000")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := idBytes(s)
		if ok && idString(b) != s {
			t.Fatalf("idBytes(%q) accepted, but encodes back to %q", s, idString(b))
		}
		if canon, err := model.ParseID(s); err == nil && canon == s && !ok {
			t.Fatalf("canonical id %q refused", s)
		}
	})
}
