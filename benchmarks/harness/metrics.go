package harness

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var scrapeClient = &http.Client{Timeout: 15 * time.Second}

// Metrics is one /metrics scrape: every sample by its full series name (name{labels}).
type Metrics map[string]float64

// Scrape reads s's /metrics.
func (s *Sluice) Scrape(ctx context.Context) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("harness: /metrics answered %d", resp.StatusCode)
	}
	return ParseMetrics(bufio.NewScanner(resp.Body))
}

// ParseMetrics parses the Prometheus text format (comments skipped, timestamps ignored).
func ParseMetrics(sc *bufio.Scanner) (Metrics, error) {
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	m := Metrics{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series, which may contain spaces inside label values.
		end := strings.LastIndexByte(line, '}')
		rest := line
		series := ""
		if end >= 0 {
			series, rest = line[:end+1], line[end+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			series, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if series == "" || len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[series] = v
	}
	return m, sc.Err()
}

// Sum adds every series of the metric name (any labels).
func (m Metrics) Sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}

// Delta is after.Sum(name) - m.Sum(name).
func (m Metrics) Delta(after Metrics, name string) float64 { return after.Sum(name) - m.Sum(name) }
