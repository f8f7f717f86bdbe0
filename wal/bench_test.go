package wal

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkCodec compares the codecs on the data the log really carries:
// one ~1 KiB JSON event, a proposer batch of 50 of them in one entry,
// and the same batch already compressed at ingest, which must come out raw.
// MB/s is of uncompressed bytes; ratio is raw/stored.
func BenchmarkCodec(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := []struct {
		name string
		data []byte
	}{
		{"event1KiB", webhookEvent(rng, 1)},
		{"batch50", eventBatch(rng, 100, 50)},
		// Payloads compressed at ingest: the codec should give up fast.
		{"precompressed50", zstdEnc.EncodeAll(eventBatch(rng, 200, 50), nil)},
	}
	for _, in := range inputs {
		for _, c := range []Compression{CompressionS2, CompressionZstd} {
			out, tag, _ := compress(c, in.data, nil)
			ratio := float64(len(in.data)) / float64(len(out))
			b.Run(fmt.Sprintf("%s/%s/encode", in.name, c), func(b *testing.B) {
				b.SetBytes(int64(len(in.data)))
				var scratch []byte
				for b.Loop() {
					_, _, scratch = compress(c, in.data, scratch)
				}
				b.ReportMetric(ratio, "ratio")
			})
			b.Run(fmt.Sprintf("%s/%s/decode", in.name, c), func(b *testing.B) {
				b.SetBytes(int64(len(in.data)))
				for b.Loop() {
					if _, err := decompress(tag, out, uint64(len(in.data))); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(ratio, "ratio")
			})
		}
	}
}

// BenchmarkStoreLogs measures synced appends on a real directory, one
// StoreLogs call per iteration: batch=1 is the naive one-fsync-per-entry
// baseline, 64 is raft's default MaxAppendEntries, 1024 a deep pipeline.
// MB/s counts uncompressed Data bytes.
func BenchmarkStoreLogs(b *testing.B) {
	pool := makeLogs(1, 1024, 11)
	var poolBytes int64
	for _, l := range pool {
		poolBytes += int64(len(l.Data))
	}
	for _, n := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			logs := make([]*raft.Log, n)
			for i := range logs {
				l := *pool[i]
				logs[i] = &l
			}
			b.SetBytes(poolBytes * int64(n) / int64(len(pool)))
			next := uint64(1)
			for b.Loop() {
				for _, l := range logs {
					l.Index = next
					next++
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(s.Stats().CompressionRatio(), "ratio")
		})
	}
}
