package latency

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits  = 8
	subCount = 1 << subBits
	// numBuckets covers every uint64: values below subCount are exact, then 256 buckets per octave.
	numBuckets = (64 - subBits) * subCount
)

// Histogram records durations. The zero value is not usable: call New. Safe for concurrent use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	min    atomic.Uint64 // nanoseconds; math.MaxUint64 when empty
	max    atomic.Uint64 // nanoseconds
}

// New returns an empty Histogram.
func New() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxUint64)
	return h
}

func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// bucketRange is the [lo, hi] range of values that map to bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	lo = m << uint(shift)
	return lo, lo + (1 << uint(shift)) - 1
}

// Record adds one duration; negative durations (a clock step) are recorded as 0.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[index(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	for {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Quantile returns the nearest-rank q-quantile (q in [0, 1]); 0 when empty. Concurrent Records may or
// may not be included.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min.Load())
			v = min(v, h.max.Load())
			return time.Duration(v)
		}
	}
	return time.Duration(h.max.Load())
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count.Load() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.count.Add(o.count.Load())
	h.sum.Add(o.sum.Load())
	for v := o.min.Load(); ; {
		cur := h.min.Load()
		if v >= cur || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for v := o.max.Load(); ; {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Summary is a histogram's report, in milliseconds for JSON readers.
type Summary struct {
	Count  uint64  `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary reports count, min, mean, p50, p90, p99, p999 and max.
func (h *Histogram) Summary() Summary {
	n := h.count.Load()
	if n == 0 {
		return Summary{}
	}
	return Summary{
		Count:  n,
		MinMS:  ms(time.Duration(h.min.Load())),
		MeanMS: ms(time.Duration(h.sum.Load() / n)),
		P50MS:  ms(h.Quantile(0.50)),
		P90MS:  ms(h.Quantile(0.90)),
		P99MS:  ms(h.Quantile(0.99)),
		P999MS: ms(h.Quantile(0.999)),
		MaxMS:  ms(time.Duration(h.max.Load())),
	}
}
