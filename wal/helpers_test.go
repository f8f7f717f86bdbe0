package wal

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

var eventTypes = []string{
	"invoice.paid", "invoice.payment_failed", "customer.created", "customer.updated",
	"charge.succeeded", "charge.refunded", "subscription.renewed", "order.shipped",
}

var plans = []string{"Starter plan (monthly)", "Pro plan (monthly)", "Pro plan (yearly)", "Enterprise seats", "Overage: API calls"}

// webhookEvent returns one JSON webhook event of about 1 KiB, shaped like
// what publishers send (Stripe/Convoy style): time-ordered ids, amounts,
// nested customer and line items, metadata.
func webhookEvent(rng *rand.Rand, seq int) []byte {
	id := func(prefix string) string {
		return fmt.Sprintf("%s_%013x%011x", prefix, 1_760_000_000_000+seq*7+rng.IntN(7), rng.Uint64()>>20)
	}
	type line struct {
		ID          string `json:"id"`
		Description string `json:"description"`
		Amount      int    `json:"amount"`
		Quantity    int    `json:"quantity"`
		Period      struct {
			Start int64 `json:"start"`
			End   int64 `json:"end"`
		} `json:"period"`
	}
	lines := make([]line, 3+rng.IntN(2))
	total := 0
	start := int64(1_760_000_000 + rng.IntN(3_000_000))
	for i := range lines {
		lines[i].ID = id("il")
		lines[i].Description = plans[rng.IntN(len(plans))]
		lines[i].Quantity = 1 + rng.IntN(20)
		lines[i].Amount = (100 + rng.IntN(50_000)) * lines[i].Quantity
		lines[i].Period.Start = start
		lines[i].Period.End = start + 30*86400
		total += lines[i].Amount
	}
	cust := rng.IntN(100_000)
	ev := map[string]any{
		"id":         id("evt"),
		"event_type": eventTypes[rng.IntN(len(eventTypes))],
		"created_at": time.Unix(start+int64(seq), int64(rng.IntN(1e9))).UTC().Format(time.RFC3339Nano),
		"data": map[string]any{
			"object":      "invoice",
			"id":          id("in"),
			"number":      fmt.Sprintf("INV-%06d", rng.IntN(1_000_000)),
			"customer":    map[string]any{"id": id("cus"), "email": fmt.Sprintf("billing+%d@customer%d.example.com", cust, cust%977), "name": fmt.Sprintf("Customer %d GmbH", cust)},
			"amount_due":  total,
			"amount_paid": total,
			"currency":    []string{"usd", "eur", "gbp"}[rng.IntN(3)],
			"status":      "paid",
			"hosted_url":  fmt.Sprintf("https://pay.example.com/i/acct_%x/%x", rng.Uint32(), rng.Uint64()),
			"lines":       lines,
			"metadata":    map[string]string{"order_id": id("ord"), "region": []string{"eu-west-1", "us-east-1", "ap-south-1"}[rng.IntN(3)]},
		},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// eventBatch returns n events joined by newlines, the way a proposer packs
// many events into one Raft command.
func eventBatch(rng *rand.Rand, seq, n int) []byte {
	var out []byte
	for i := range n {
		out = append(out, webhookEvent(rng, seq+i)...)
		out = append(out, '\n')
	}
	return out
}

// makeLogs returns n command entries starting at index first, each with
// about 1 KiB of event data, Extensions and AppendedAt set.
func makeLogs(first uint64, n int, seed uint64) []*raft.Log {
	rng := rand.New(rand.NewPCG(seed, first))
	logs := make([]*raft.Log, n)
	for i := range logs {
		idx := first + uint64(i)
		logs[i] = &raft.Log{
			Index:      idx,
			Term:       1 + idx/100,
			Type:       raft.LogCommand,
			Data:       webhookEvent(rng, int(idx)),
			Extensions: fmt.Appendf(nil, "ext-%d", idx),
			AppendedAt: time.Unix(1_760_000_000, int64(idx)*1000),
		}
	}
	return logs
}

func openMem(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("wal", Options{FS: fs, Logger: quiet})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func mustStore(t testing.TB, s *Store, logs []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d..): %v", logs[0].Index, err)
	}
}

func bounds(t testing.TB, s *Store) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	return first, last
}

// quiet drops Pebble's open/recovery chatter from test output.
var quiet = slog.New(slog.DiscardHandler)
