package model

import (
	"sort"
	"testing"
	"time"
)

func TestIDsSortInCreationOrder(t *testing.T) {
	var g IDGen
	base := time.UnixMilli(1_700_000_000_000)
	var ids []string
	for i := 0; i < 5000; i++ {
		// Several per millisecond, and one clock step backwards, must still sort in creation order.
		at := base.Add(time.Duration(i/7) * time.Millisecond)
		if i == 2500 {
			at = base
		}
		ids = append(ids, g.New(at))
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids are not in creation order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if _, err := ParseID(id); err != nil {
			t.Fatal(err)
		}
	}
	if got := IDTime(ids[0]); !got.Equal(base) {
		t.Fatalf("IDTime = %v, want %v", got, base)
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, s := range []string{"", "abc", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVX", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01ARZ3NDEKTSV4RRFFQ69G5FA!"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
	got, err := ParseID("01arz3ndektsv4rrffq69g5fav")
	if err != nil || got != "01ARZ3NDEKTSV4RRFFQ69G5FAV" {
		t.Fatalf("ParseID lower case = %q, %v", got, err)
	}
}
