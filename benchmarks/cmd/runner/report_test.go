package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateDocsRewritesOnlyTheMarkedSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.md")
	doc := "# Intro\nhand-written\n\n" + markStart + "\nold table\n" + markEnd + "\n\ntrailer\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &Report{Date: "2026-01-02", Scenarios: []*ScenarioResult{{Name: "ingest-http", Cases: []*Case{{
		Name: "16 clients", Figure: "acked publishes/s", Value: 1234, Baseline: "upstream", BaselineValue: 5000, Ratio: 0.25, Complete: true}}}}}
	for range 2 { // idempotent
		if err := updateDocs(path, rep, "benchmarks/results/2026-01-02.json"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if !strings.HasPrefix(got, "# Intro\nhand-written\n\n"+markStart) || !strings.HasSuffix(got, markEnd+"\n\ntrailer\n") {
		t.Fatalf("text outside the markers changed:\n%s", got)
	}
	if strings.Contains(got, "old table") || !strings.Contains(got, "| ingest-http | 16 clients | acked publishes/s | 1234 | upstream: 5000 | 0.25 |") {
		t.Fatalf("table not rewritten:\n%s", got)
	}
	if strings.Count(got, markStart) != 1 {
		t.Fatal("markers duplicated")
	}
}

func TestScenarioTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range scenarios {
		if seen[s.name] || s.run == nil || s.about == "" {
			t.Fatalf("scenario %q is duplicated or incomplete", s.name)
		}
		seen[s.name] = true
	}
	for _, want := range []string{"upstream", "ingest-http", "ingest-tcp", "egress", "slow-endpoint", "failing-endpoint", "e2e-tcp", "e2e-fixed-rate", "noisy-neighbour", "backlog-growth", "scheduler-scale", "cluster"} {
		if !seen[want] {
			t.Errorf("scenario %s missing", want)
		}
	}
}
