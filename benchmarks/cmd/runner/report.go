package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/latency"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
	"github.com/sluice-gw/sluice/benchmarks/sink"
)

// Report is one run, as written to benchmarks/results/<date>.json.
type Report struct {
	Date      string   `json:"date"`
	StartedAt string   `json:"started_at"`
	Quick     bool     `json:"quick"`
	Selected  []string `json:"selected"`
	// Commit is `git rev-parse --short HEAD`, with "-dirty" when tracked files differ from HEAD
	// (DirtyPaths lists them: on a shared checkout they are often other people's work in progress; the
	// binary's own version string is in Binary).
	Commit     string   `json:"commit"`
	DirtyPaths []string `json:"dirty_paths,omitempty"`
	Binary     string   `json:"binary"`
	GoVersion  string   `json:"go_version"`
	CPUs       int      `json:"cpus"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	// LoadStart and LoadEnd are /proc/loadavg (1, 5, 15 min) before and after the run.
	LoadStart     string            `json:"loadavg_start"`
	LoadEnd       string            `json:"loadavg_end"`
	PayloadB      int               `json:"payload_bytes"`
	UpstreamDrift *Drift            `json:"upstream_drift,omitempty"`
	TotalS        float64           `json:"total_s"`
	Scenarios     []*ScenarioResult `json:"scenarios"`
}

// Drift compares the upstream ceiling measured first and last.
type Drift struct {
	Conns     int     `json:"conns"`
	StartPerS float64 `json:"start_per_s"`
	EndPerS   float64 `json:"end_per_s"`
	Change    float64 `json:"change"` // end/start - 1
}

// ScenarioResult is one scenario's cases.
type ScenarioResult struct {
	Name      string               `json:"name"`
	About     string               `json:"about"`
	DurationS float64              `json:"duration_s"`
	Cases     []*Case              `json:"cases"`
	Notes     []string             `json:"notes,omitempty"`
	Error     string               `json:"error,omitempty"`
	Processes []harness.StopReport `json:"sluice_processes,omitempty"`
	// Profiles are CPU profiles of the server taken during the scenario (-profile).
	Profiles []ProfileSummary `json:"profiles,omitempty"`
}

// ProfileSummary is one CPU profile: where it is and its top functions by flat and cumulative time.
type ProfileSummary struct {
	Case    string   `json:"case"`
	File    string   `json:"file"`
	Seconds int      `json:"seconds"`
	TopFlat []string `json:"top_flat,omitempty"`
	TopCum  []string `json:"top_cum,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Target is the target for a case and whether this run met it.
type Target struct {
	Text string `json:"text"` // e.g. "ratio ≥ 3"
	Met  bool   `json:"met"`
	// Miss is how far off a missed target is, as a share of the target (e.g. -0.31).
	Miss float64 `json:"miss,omitempty"`
	// Extrapolated is set when the figure compared is projected from a smaller N.
	Extrapolated bool `json:"extrapolated,omitempty"`
}

// Case is one measured figure with its same-run baseline.
type Case struct {
	Name   string  `json:"name"`
	Figure string  `json:"figure"` // what Value is, e.g. "acked publishes/s"
	Value  float64 `json:"value"`
	// Baseline names the same-run reference; Ratio is Value/BaselineValue (or as the case explains).
	Baseline      string  `json:"baseline,omitempty"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
	// LatencyKind is "ack" (publish answered) or "publish-to-delivery" (at the sink).
	LatencyKind string           `json:"latency_kind,omitempty"`
	Latency     *latency.Summary `json:"latency,omitempty"`
	Also        []Metric         `json:"also,omitempty"`
	CPU         *CPUUse          `json:"cpu,omitempty"`
	Complete    bool             `json:"complete"` // false when a bound (time) cut the case short
	Load        *loadgen.Result  `json:"load,omitempty"`
	Sink        *sink.Stats      `json:"sink,omitempty"`
	// MetricsDelta is the change of selected /metrics series over the measurement.
	MetricsDelta map[string]float64 `json:"metrics_delta,omitempty"`

	// Cost, on every row: CPU seconds per 1,000 events (CostEvents: the events, deliveries or requests
	// of the case) for Sluice (all nodes) and for the sink process, Sluice's peak RSS during the case
	// (the largest node's), and the commit measured.
	CostEvents     float64  `json:"cost_events,omitempty"`
	SluiceCPUPer1k *float64 `json:"sluice_cpu_s_per_1k,omitempty"`
	SinkCPUPer1k   *float64 `json:"sink_cpu_s_per_1k,omitempty"`
	PeakRSSMB      float64  `json:"sluice_peak_rss_mb,omitempty"`
	Commit         string   `json:"commit"`
	// Target is the target for this case, when it has one.
	Target *Target `json:"target,omitempty"`
}

// atLeast records a target "figure ≥ want" on the case's ratio (ratio true) or value.
func (c *Case) atLeast(text string, want float64, ratio bool) {
	got := c.Value
	if ratio {
		got = c.Ratio
	}
	c.Target = &Target{Text: text, Met: got >= want}
	if !c.Target.Met && want != 0 {
		c.Target.Miss = round(got/want-1, 3)
	}
}

// atMost records a target "figure ≤ want" on got.
func (c *Case) atMost(text string, got, want float64) {
	c.Target = &Target{Text: text, Met: got <= want}
	if !c.Target.Met && want != 0 {
		c.Target.Miss = round(got/want-1, 3)
	}
}

// Metric is a secondary figure of a case.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

func (c *Case) also(name string, v float64, unit string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	c.Also = append(c.Also, Metric{name, v, unit})
}

func (c *Case) setBaseline(name string, v float64) {
	c.Baseline, c.BaselineValue = name, round(v, 1)
	if v > 0 {
		c.Ratio = round(c.Value/v, 3)
	}
}

func (c *Case) line() string {
	s := fmt.Sprintf("%-24s %s = %s", c.Name, c.Figure, num(c.Value))
	if c.Baseline != "" {
		s += fmt.Sprintf("  (%.2f× %s %s)", c.Ratio, c.Baseline, num(c.BaselineValue))
	}
	if c.Latency != nil && c.Latency.Count > 0 {
		s += fmt.Sprintf("  %s p50/p99/p999 %s/%s/%s ms", c.LatencyKind, ms(c.Latency.P50MS), ms(c.Latency.P99MS), ms(c.Latency.P999MS))
	}
	for _, m := range c.Also {
		s += fmt.Sprintf("  %s %s%s", m.Name, num(m.Value), m.Unit)
	}
	if c.CPU != nil {
		s += fmt.Sprintf("  cores: sluice %.2f runner %.2f others %.2f", c.CPU.Sluice, c.CPU.Runner, c.CPU.Others)
	}
	if c.SluiceCPUPer1k != nil || c.SinkCPUPer1k != nil {
		s += "  CPU s/1k: " + costText(c)
	}
	if c.PeakRSSMB > 0 {
		s += fmt.Sprintf("  peak RSS %s MB", num(c.PeakRSSMB))
	}
	if c.Target != nil {
		s += "  target " + targetText(c.Target)
	}
	if !c.Complete {
		s += "  [INCOMPLETE]"
	}
	return s
}

func costText(c *Case) string {
	f := func(p *float64) string {
		if p == nil {
			return "–"
		}
		return num(*p)
	}
	return f(c.SluiceCPUPer1k) + " / " + f(c.SinkCPUPer1k)
}

func targetText(t *Target) string {
	s := t.Text + ": "
	if t.Met {
		s += "met"
	} else {
		s += fmt.Sprintf("**missed** (%+.0f%%)", 100*t.Miss)
	}
	if t.Extrapolated {
		s += ", extrapolated"
	}
	return s
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// num formats with 3 significant digits, thousands as "12.3k".
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.3g", v)
	case a == 0:
		return "0"
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func writeJSON(path string, rep *Report) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rep); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// markdownTable renders the report's figures: one row per case.
func markdownTable(rep *Report) string {
	var b strings.Builder
	kind := "standard"
	if rep.Quick {
		kind = "quick"
	}
	fmt.Fprintf(&b, "Run %s (%s), checkout `%s`, binary `%s`, %s, %d CPUs (GOMAXPROCS %d), load average %s at start and %s at end, %d-byte event data, %.0f s in all.",
		rep.Date, kind, rep.Commit, rep.Binary, rep.GoVersion, rep.CPUs, rep.GOMAXPROCS, rep.LoadStart, rep.LoadEnd, rep.PayloadB, rep.TotalS)
	if d := rep.UpstreamDrift; d != nil {
		fmt.Fprintf(&b, " The upstream ceiling (%d conns) moved from %s/s at the start to %s/s at the end (%+.0f%%): read ratios with that much doubt.",
			d.Conns, num(d.StartPerS), num(d.EndPerS), 100*d.Change)
	}
	if n := len(rep.DirtyPaths); n > 0 {
		shown := rep.DirtyPaths[:min(n, 6)]
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf(" and %d more", n-len(shown))
		}
		fmt.Fprintf(&b, " *-dirty*: tracked files differed from the commit when the run started: `%s`%s.", strings.Join(shown, "`, `"), more)
	}
	b.WriteString("\n\n")
	b.WriteString("| scenario | case | figure | value | same-run baseline | ratio | issue target | latency p50 / p99 / p999 (ms) | CPU s per 1k events: sluice / sink | sluice peak RSS (MB) | also measured | commit |\n")
	b.WriteString("|---|---|---|---:|---|---:|---|---|---|---:|---|---|\n")
	for _, s := range rep.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | **failed** | %s | | | | | | | | | |\n", s.Name, mdEscape(s.Error))
		}
		for _, c := range s.Cases {
			base, ratio := "", ""
			if c.Baseline != "" {
				base = fmt.Sprintf("%s: %s", c.Baseline, num(c.BaselineValue))
				ratio = fmt.Sprintf("%.2f", c.Ratio)
			}
			lat := ""
			if c.Latency != nil && c.Latency.Count > 0 {
				lat = fmt.Sprintf("%s: %s / %s / %s", c.LatencyKind, ms(c.Latency.P50MS), ms(c.Latency.P99MS), ms(c.Latency.P999MS))
			}
			var also []string
			for _, m := range c.Also {
				also = append(also, fmt.Sprintf("%s %s%s", m.Name, num(m.Value), m.Unit))
			}
			if c.CPU != nil {
				also = append(also, fmt.Sprintf("cores used by others %.2f", c.CPU.Others))
			}
			val := num(c.Value)
			if !c.Complete {
				val += " (incomplete)"
			}
			target, cost, rss := "", "", ""
			if c.Target != nil {
				target = targetText(c.Target)
			}
			if c.SluiceCPUPer1k != nil || c.SinkCPUPer1k != nil {
				cost = costText(c)
			}
			if c.PeakRSSMB > 0 {
				rss = num(c.PeakRSSMB)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Name, c.Name, c.Figure, val, base, ratio,
				target, lat, cost, rss, mdEscape(strings.Join(also, "; ")), c.Commit)
		}
	}
	var notes []string
	for _, s := range rep.Scenarios {
		for _, n := range s.Notes {
			notes = append(notes, fmt.Sprintf("- **%s**: %s", s.Name, n))
		}
		for i, p := range s.Processes {
			if p.ExitedEarly != "" {
				notes = append(notes, fmt.Sprintf("- **%s** (sluice process %d): had exited before the scenario stopped it: %s", s.Name, i+1, p.ExitedEarly))
			}
			if p.Killed {
				notes = append(notes, fmt.Sprintf("- **%s** (sluice process %d): killed with SIGKILL by the scenario; %d WARN and %d ERROR log lines after start-up%s",
					s.Name, i+1, p.WarnLines, p.ErrorLines, sampleText(p.Samples)))
				continue
			}
			if !p.Clean || p.ErrorLines > 0 || p.WarnLines > 0 {
				notes = append(notes, fmt.Sprintf("- **%s** (sluice process %d): shutdown clean=%v in %.1f s; %d WARN and %d ERROR log lines after start-up%s",
					s.Name, i+1, p.Clean, p.ShutdownS, p.WarnLines, p.ErrorLines, sampleText(p.Samples)))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes from this run:\n\n")
		b.WriteString(strings.Join(notes, "\n"))
		b.WriteString("\n")
	}
	return b.String()
}

func sampleText(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return ", first: `" + mdEscape(strings.ReplaceAll(s[0], "`", "'")) + "`"
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

const (
	markStart = "<!-- results:start -->"
	markEnd   = "<!-- results:end -->"
)

// updateDocs replaces the marked section of path with the report's table; the rest is hand-written.
func updateDocs(path string, rep *Report, jsonPath string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	i, j := strings.Index(doc, markStart), strings.Index(doc, markEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s section to rewrite", path, markStart, markEnd)
	}
	section := markStart + "\n<!-- Generated by `go run ./benchmarks/cmd/runner`; edits here are overwritten. -->\n\n" +
		markdownTable(rep) + fmt.Sprintf("\nEvery figure, latency summary and /metrics delta: [`%s`](../%s).\n\n", jsonPath, jsonPath) + markEnd
	return os.WriteFile(path, []byte(doc[:i]+section+doc[j+len(markEnd):]), 0o644)
}
