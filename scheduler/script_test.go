package scheduler

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestScripts runs the scenario files in testdata, in the spirit of etcd raft's interaction tests. Each
// command line is followed by its expected output on lines starting with "> ":
//
//	config tick=10ms levels=2   (first command only; defaults otherwise)
//	schedule KEY OFFSET         (deadline = start + OFFSET, which may be negative)
//	cancel KEY                  > true | false
//	advance OFFSET              > keys fired, by due tick then key, or (none)
//	where KEY                   > level N | pending | overflow | absent
//	len                         > N
//
// Every advance is also checked against the naive reference, so a script only pins what it prints.
// Run with -update to rewrite the expectations after a deliberate change.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var h *harness
	var out []string // the file as it should be, for -update
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, ">") {
			t.Fatalf("%s:%d: output line without a command", file, i+1)
		}
		out = append(out, line)
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if h == nil {
			cfg := Config{}
			if f[0] == "config" {
				cfg = parseConfig(t, file, i+1, f[1:])
			}
			h = newHarness(t, cfg)
			if f[0] == "config" {
				continue
			}
		}
		got := scriptCommand(t, h, fmt.Sprintf("%s:%d", file, i+1), f)
		var want []string
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], ">") {
			i++
			want = append(want, strings.TrimSpace(strings.TrimPrefix(lines[i], ">")))
		}
		if got != "" {
			out = append(out, "> "+got)
		}
		if !*update && strings.Join(want, " ") != got {
			t.Errorf("%s:%d: %s\n got: %s\nwant: %s", file, i+1-len(want), line, got, strings.Join(want, " "))
		}
	}
	if *update {
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func scriptCommand(t *testing.T, h *harness, pos string, f []string) string {
	arg := func(n int) string {
		if len(f) <= n {
			t.Fatalf("%s: %s needs %d argument(s)", pos, f[0], n)
		}
		return f[n]
	}
	offset := func(s string) time.Time {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		return start.Add(d)
	}
	switch f[0] {
	case "schedule":
		h.schedule(arg(1), offset(arg(2)))
		return ""
	case "cancel":
		return strconv.FormatBool(h.cancel(arg(1)))
	case "advance":
		fired := h.advanceTo(offset(arg(1)))
		if len(fired) == 0 {
			return "(none)"
		}
		return strings.Join(fired, " ")
	case "where":
		switch l := h.w.levelOf(arg(1)); l {
		case -2:
			return "absent"
		case -1:
			return "pending"
		case h.w.levels:
			return "overflow"
		default:
			return fmt.Sprint("level ", l)
		}
	case "len":
		return strconv.Itoa(h.w.Len())
	}
	t.Fatalf("%s: unknown command %q", pos, f[0])
	return ""
}

func parseConfig(t *testing.T, file string, line int, kvs []string) Config {
	var cfg Config
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "tick":
			cfg.Tick, err = time.ParseDuration(v)
		case "levels":
			cfg.Levels, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown config key %q", k)
		}
		if err != nil {
			t.Fatalf("%s:%d: %v", file, line, err)
		}
	}
	return cfg
}
