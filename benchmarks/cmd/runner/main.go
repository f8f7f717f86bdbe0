package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gw/sluice/benchmarks/harness"
	"github.com/sluice-gw/sluice/benchmarks/loadgen"
)

type options struct {
	bin        string
	scenarios  []string
	quick      bool
	outDir     string
	docPath    string
	updateDocs string
	keepData   bool
	failRandom bool
	profile    bool
	scale      bool
	// e2eHTTP stands in for e2e-tcp's HTTP rate when e2e-tcp does not run, so that e2e-fixed-rate
	// can measure its half-rate case alone (about a minute) while a fix is iterated on.
	e2eHTTP float64
	// e2eRates, when set, replaces the plan's fixed rates (and drops the stretch rate); empty
	// after "-e2e-rates none".
	e2eRates    []float64
	e2eRatesSet bool
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == sinkChildFlag {
		sinkChild(os.Args[2])
		return
	}
	if len(os.Args) == 3 && os.Args[1] == wheelChildFlag {
		wheelChild(os.Args[2])
		return
	}
	var o options
	var list bool
	var e2eRates string
	var sc, render string
	flag.StringVar(&o.bin, "bin", "bin/sluice", "sluice binary to benchmark (build it with `make build`)")
	flag.StringVar(&sc, "scenarios", "", "comma-separated scenarios to run (default: all; see -list)")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: every scenario scaled down, about a minute in all")
	flag.StringVar(&o.outDir, "out", "benchmarks/results", "directory for the results JSON")
	flag.StringVar(&o.docPath, "docs", "docs/benchmarks.md", "markdown file whose results section is regenerated")
	flag.StringVar(&o.updateDocs, "update-docs", "auto", "rewrite the docs table: auto (full standard runs only), yes or no")
	flag.BoolVar(&o.keepData, "keep-data", false, "keep each sluice data directory and log (printed at the end)")
	flag.BoolVar(&o.failRandom, "failing-random", false, "failing-endpoint: pick failing delivery ids at random (lets the circuit breaker open) instead of evenly spaced")
	flag.BoolVar(&o.profile, "profile", false, "serve pprof on every node and take a CPU profile of the server during each scenario's main case (files under <out>/profiles/)")
	flag.BoolVar(&o.scale, "scale", false, "long mode of the scale scenarios: backlog-growth also at 10M stored (tens of minutes, ~10 GB of disk); use with -scenarios backlog-growth")
	flag.BoolVar(&list, "list", false, "list the scenarios and exit")
	flag.Float64Var(&o.e2eHTTP, "e2e-http-rate", 0, "e2e-fixed-rate: e2e-tcp's HTTP rate to halve for the issue's latency case when e2e-tcp does not run in this invocation (e.g. 3280 for a 1,640/s case)")
	flag.StringVar(&e2eRates, "e2e-rates", "", "e2e-fixed-rate: comma-separated rates replacing the plan's fixed and stretch rates (\"none\": only the half-rate case)")
	flag.StringVar(&render, "render", "", "rewrite the docs table from this results JSON instead of running anything")
	flag.Parse()
	if render != "" {
		var rep Report
		b, err := os.ReadFile(render)
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if err == nil {
			err = updateDocs(o.docPath, &rep, filepath.ToSlash(render))
		}
		if err != nil {
			log.Fatal(err)
		}
		return
	}
	if list {
		for _, s := range scenarios {
			fmt.Printf("%-18s %s\n", s.name, s.about)
		}
		return
	}
	if sc != "" {
		for _, n := range strings.Split(sc, ",") {
			n = strings.TrimSpace(n)
			if findScenario(n) == nil {
				log.Fatalf("unknown scenario %q (see -list)", n)
			}
			o.scenarios = append(o.scenarios, n)
		}
	}
	if e2eRates != "" {
		o.e2eRatesSet = true
		if e2eRates != "none" {
			for _, f := range strings.Split(e2eRates, ",") {
				x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil || x <= 0 {
					log.Fatalf("-e2e-rates: %q is not a positive rate", f)
				}
				o.e2eRates = append(o.e2eRates, x)
			}
		}
	}
	if o.e2eHTTP < 0 {
		log.Fatalf("-e2e-http-rate: %v is negative", o.e2eHTTP)
	}
	switch o.updateDocs {
	case "auto", "yes", "no":
	default:
		log.Fatalf("-update-docs: %q is not auto, yes or no", o.updateDocs)
	}
	if _, err := os.Stat(o.bin); err != nil {
		log.Fatalf("%s: %v (run `make build` first, or pass -bin)", o.bin, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

// snapshotBin copies the binary to a private directory so that a `make build` elsewhere in the
// checkout during the run cannot swap it between scenarios, and returns the copy and its SHA-256. The
// copy is named sgw-server so that name-based kills aimed at other "sluice" processes miss it.
func snapshotBin(src string) (path, sum string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "sgwbench-bin-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	b, err := os.ReadFile(src)
	if err != nil {
		cleanup()
		return "", "", nil, err
	}
	path = filepath.Join(dir, "sgw-server")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		cleanup()
		return "", "", nil, err
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:8]), cleanup, nil
}

func findScenario(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name {
			return &scenarios[i]
		}
	}
	return nil
}

// runner holds one run's options, plan, memoised baselines and report.
type runner struct {
	ctx  context.Context
	opts options
	plan plan
	rep  *Report

	upstream  map[int]*loadgen.Result // by connection count
	egress100 *Case                   // scenario 3's 100-endpoint case
	// e2eHTTP is this run's closed-loop end-to-end rate with HTTP ingest (e2e-tcp), 0 if not measured:
	// e2e-fixed-rate adds a case at half of it (the latency target).
	e2eHTTP float64
	// profileDir is where -profile writes profiles.
	profileDir string
	// clusterProj and clusterEndpoint are the three-node deployment's project and active endpoint.
	clusterProj     *harness.Project
	clusterEndpoint string
}

func run(ctx context.Context, o options) error {
	started := time.Now()
	binCopy, binSum, cleanup, err := snapshotBin(o.bin)
	if err != nil {
		return err
	}
	defer cleanup()
	version := binVersion(o.bin) + " sha256:" + binSum
	o.bin = binCopy
	r := &runner{ctx: ctx, opts: o, plan: standardPlan(), upstream: map[int]*loadgen.Result{}}
	if o.quick {
		r.plan = quickPlan()
	}
	if o.e2eRatesSet {
		r.plan.E2ERates, r.plan.E2EStretch = o.e2eRates, nil
	}
	if o.scale {
		r.plan.BacklogTargets = append(r.plan.BacklogTargets, 10_000_000)
		r.plan.BacklogSeed = 60 * time.Minute
	}
	commit, dirty := gitCommit()
	r.rep = &Report{
		Date:       started.Format("2006-01-02"),
		StartedAt:  started.UTC().Format(time.RFC3339),
		Quick:      o.quick,
		Commit:     commit,
		DirtyPaths: dirty,
		Binary:     version,
		GoVersion:  runtime.Version(),
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		LoadStart:  loadAvg(),
		PayloadB:   r.plan.Payload,
	}
	if o.profile {
		r.profileDir = filepath.Join(o.outDir, "profiles", runName(r.rep.Date, o))
		if err := os.MkdirAll(r.profileDir, 0o755); err != nil {
			return err
		}
	}
	selected := o.scenarios
	if len(selected) == 0 {
		for _, s := range scenarios {
			selected = append(selected, s.name)
		}
	}
	r.rep.Selected = selected
	// The upstream ceiling is everyone's baseline: measure it first when anything needs it.
	needUpstream := false
	for _, n := range selected {
		needUpstream = needUpstream || findScenario(n).needsUpstream
	}
	if needUpstream && !slices.Contains(selected, "upstream") {
		selected = append([]string{"upstream"}, selected...)
	}
	for _, name := range selected {
		if ctx.Err() != nil {
			break
		}
		s := findScenario(name)
		logf("== %s: %s", s.name, s.about)
		var retried []string
		for attempt := 0; ; attempt++ {
			sr := &ScenarioResult{Name: s.name, About: s.about}
			sc := &scenarioRun{r: r, res: sr}
			t0 := time.Now()
			err := s.run(r, sc)
			sc.stopAll()
			sr.DurationS = round(time.Since(t0).Seconds(), 1)
			if err != nil && sc.exitedEarly && attempt == 0 && ctx.Err() == nil {
				// Something outside the runner ended the server (a shared machine): once more, on record.
				logf("!! %s: the server exited under it (%v); running the scenario again", s.name, err)
				retried = append(retried, fmt.Sprintf("a first attempt was discarded after its server exited from outside (%v)", err))
				continue
			}
			if err != nil {
				sr.Error = err.Error()
				logf("!! %s failed: %v", s.name, err)
			}
			sr.Notes = append(retried, sr.Notes...)
			r.rep.Scenarios = append(r.rep.Scenarios, sr)
			break
		}
	}
	// Re-measure the ceiling at the end: the drift says how much the machine's load moved meanwhile.
	if first := r.upstream[r.plan.UpstreamConns[len(r.plan.UpstreamConns)-1]]; first != nil && ctx.Err() == nil {
		conns := first.Conns
		m, err := r.measureUpstream(conns, r.plan.UpstreamDur)
		if err == nil {
			end := m.res
			r.rep.UpstreamDrift = &Drift{Conns: conns, StartPerS: round(first.PerSecond, 0), EndPerS: round(end.PerSecond, 0),
				Change: round(end.PerSecond/first.PerSecond-1, 3)}
			logf("upstream drift at %d conns: %.0f/s at start, %.0f/s at end (%+.1f%%)", conns, first.PerSecond, end.PerSecond, 100*r.rep.UpstreamDrift.Change)
		}
	}
	r.rep.LoadEnd = loadAvg()
	r.rep.TotalS = round(time.Since(started).Seconds(), 1)

	partial := len(o.scenarios) > 0
	name := runName(r.rep.Date, o)
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	out := filepath.Join(o.outDir, name+".json")
	if err := writeJSON(out, r.rep); err != nil {
		return err
	}
	logf("wrote %s", out)
	// A profiled run is perturbed by the profiling: it never replaces the published table by itself.
	if o.updateDocs == "yes" || (o.updateDocs == "auto" && !o.quick && !partial && !o.profile && ctx.Err() == nil) {
		if err := updateDocs(o.docPath, r.rep, filepath.ToSlash(out)); err != nil {
			return err
		}
		logf("updated %s", o.docPath)
	}
	fmt.Println(markdownTable(r.rep))
	if ctx.Err() != nil {
		return errors.New("interrupted: results are partial")
	}
	return nil
}

// runName names a run's results: <date>, then -quick, -partial (a subset of scenarios), -profile.
func runName(date string, o options) string {
	name := date
	if o.quick {
		name += "-quick"
	}
	if len(o.scenarios) > 0 {
		name += "-partial"
	}
	if o.profile {
		name += "-profile"
	}
	if o.scale {
		name += "-scale"
	}
	return name
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// gitCommit is `git rev-parse --short HEAD`, with "-dirty" when tracked files differ from HEAD, and
// those files.
func gitCommit() (string, []string) {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown", nil
	}
	c := strings.TrimSpace(string(out))
	out, err = exec.Command("git", "diff", "--name-only", "HEAD").Output()
	if err != nil {
		return c, nil
	}
	paths := strings.Fields(string(out))
	if len(paths) > 0 {
		c += "-dirty"
	}
	return c, paths
}

func binVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	v := strings.TrimSpace(string(out))
	if fi, err := os.Stat(bin); err == nil {
		v += " (built " + fi.ModTime().UTC().Format(time.RFC3339) + ")"
	}
	return v
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// scenarioRun collects one scenario's cases and owns the processes and sinks it started.
type scenarioRun struct {
	r       *runner
	res     *ScenarioResult
	sluices []*harness.Sluice
	closers []func()
	// exitedEarly is set when a server had exited before the scenario stopped it.
	exitedEarly bool
	profiles    sync.WaitGroup
	mu          sync.Mutex // guards res.Profiles
}

// startSluice starts a node with the run's binary; opts may set anything but Bin and KeepData.
func (sc *scenarioRun) startSluice(opts ...harness.Options) (*harness.Sluice, error) {
	var o harness.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Bin, o.KeepData = sc.r.opts.bin, sc.r.opts.keepData
	o.Pprof = o.Pprof || sc.r.opts.profile
	s, err := harness.Start(sc.r.ctx, o)
	if err != nil {
		return nil, err
	}
	sc.sluices = append(sc.sluices, s)
	return s, nil
}

// stopSluice stops s now (SIGTERM) and records how the shutdown went.
func (sc *scenarioRun) stopSluice(s *harness.Sluice) {
	i := slices.Index(sc.sluices, s)
	if i < 0 {
		return
	}
	sc.sluices = slices.Delete(sc.sluices, i, i+1)
	rep := s.Stop()
	sc.res.Processes = append(sc.res.Processes, rep)
	if rep.ExitedEarly != "" {
		sc.exitedEarly = true
		logf("   !! sluice had exited before the scenario stopped it: %s", rep.ExitedEarly)
	}
	if !rep.Clean || rep.ErrorLines > 0 {
		logf("   sluice stop: clean=%v in %.1fs, %d warn / %d error log lines %v", rep.Clean, rep.ShutdownS, rep.WarnLines, rep.ErrorLines, rep.Samples)
	}
	if sc.r.opts.keepData {
		logf("   kept %s", s.LogPath)
	}
}

func (sc *scenarioRun) onClose(f func()) { sc.closers = append(sc.closers, f) }

func (sc *scenarioRun) stopAll() {
	sc.profiles.Wait()
	for len(sc.sluices) > 0 {
		sc.stopSluice(sc.sluices[0])
	}
	for i := len(sc.closers) - 1; i >= 0; i-- {
		sc.closers[i]()
	}
	sc.closers = nil
}

func (sc *scenarioRun) add(c *Case) {
	if c.Commit == "" {
		c.Commit = sc.r.rep.Commit
	}
	sc.res.Cases = append(sc.res.Cases, c)
	logf("   %s", c.line())
}

func (sc *scenarioRun) note(format string, args ...any) {
	sc.res.Notes = append(sc.res.Notes, fmt.Sprintf(format, args...))
}
