package latency

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestIndexRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 123456789, 1<<62 + 12345, 1<<64 - 1} {
		lo, hi := bucketRange(index(v))
		if v < lo || v > hi {
			t.Fatalf("value %d maps to bucket %d = [%d, %d]", v, index(v), lo, hi)
		}
		if v >= subCount && float64(hi-lo)/float64(lo) > 1.0/subCount+1e-9 {
			t.Fatalf("bucket of %d is [%d, %d]: wider than 1/%d", v, lo, hi, subCount)
		}
	}
}

// TestQuantilesMatchSortedSample checks nearest-rank quantiles against a sorted copy of the input.
func TestQuantilesMatchSortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := New()
	var vals []time.Duration
	for range 20000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		vals = append(vals, d)
		h.Record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := vals[int(q*float64(len(vals))+0.999999)-1]
		got := h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff > 0.004 || diff < -0.004 {
			t.Errorf("q%.3f = %v, sorted sample says %v", q, got, want)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] {
		t.Errorf("max %v, want %v", h.Quantile(1), vals[len(vals)-1])
	}
}

func TestConcurrentRecordAndMerge(t *testing.T) {
	h := New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.Record(time.Duration(g*1000 + i))
			}
		}()
	}
	wg.Wait()
	if h.Count() != 8000 {
		t.Fatalf("count %d, want 8000", h.Count())
	}
	o := New()
	o.Record(time.Hour)
	h.Merge(o)
	if h.Count() != 8001 || h.Quantile(1) != time.Hour || h.Quantile(0) != 0 {
		t.Fatalf("after merge: count %d max %v min %v", h.Count(), h.Quantile(1), h.Quantile(0))
	}
}
