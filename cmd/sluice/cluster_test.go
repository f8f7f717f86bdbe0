package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/cluster"
)

// clusterNode is one of the test's sluice processes.
type clusterNode struct {
	id, host, httpAddr, raftAddr, dataDir string
	p                                     *proc
}

func (n *clusterNode) start(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"--node-id", n.id, "--egress-ips", n.host, "--snapshot-threshold", "256", "--trailing-logs", "64"}, extra...)
	n.p = startRaw(t, n.dataDir, n.httpAddr, n.raftAddr, args...)
}

func newClusterNode(t *testing.T, id, host string) *clusterNode {
	return &clusterNode{id: id, host: host, httpAddr: freePortOn(t, host), raftAddr: freePortOn(t, host), dataDir: t.TempDir()}
}

func runCLI(args ...string) ([]byte, error) {
	cmd := exec.Command(binPath, append([]string{"cluster"}, args...)...)
	cmd.Env = append(cmd.Environ(), "SLUICE_ROOT_KEY=sk_test_root_key")
	return cmd.CombinedOutput()
}

func cli(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := runCLI(args...)
	if err != nil {
		t.Fatalf("sluice cluster %v: %v\n%s", args, err, out)
	}
	return out
}

// cliRetrying runs a cluster command until it stops answering the documented 503 "… right now;
// retry" (no leader known yet, e.g. just after a re-election on a loaded machine), which changed
// nothing; any other failure is fatal.
func cliRetrying(t *testing.T, args ...string) []byte {
	t.Helper()
	var out []byte
	var err error
	waitFor(t, fmt.Sprintf("sluice cluster %v to find a leader", args), func() bool {
		out, err = runCLI(args...)
		return err == nil || !bytes.Contains(out, []byte("right now; retry"))
	})
	if err != nil {
		t.Fatalf("sluice cluster %v: %v\n%s", args, err, out)
	}
	return out
}

func list(t *testing.T, addr string) []cluster.ServerInfo {
	t.Helper()
	srvs, err := tryList(addr)
	if err != nil {
		t.Fatal(err)
	}
	return srvs
}

// tryList is list for polling a node that may not be up yet.
func tryList(addr string) ([]cluster.ServerInfo, error) {
	cmd := exec.Command(binPath, "cluster", "list", "--json", "--addr", addr)
	cmd.Env = append(cmd.Environ(), "SLUICE_ROOT_KEY=sk_test_root_key")
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var srvs []cluster.ServerInfo
	return srvs, json.Unmarshal(out, &srvs)
}

func leaderOf(srvs []cluster.ServerInfo) string {
	for _, s := range srvs {
		if s.Leader {
			return s.ID
		}
	}
	return ""
}

func TestThreeNodeClusterSurvivesLosingItsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	nodes := []*clusterNode{newClusterNode(t, "n1", "127.0.0.1"), newClusterNode(t, "n2", "127.0.0.2"), newClusterNode(t, "n3", "127.0.0.3")}
	nodes[0].start(t)
	nodes[1].start(t, "--bootstrap=false")
	nodes[2].start(t, "--bootstrap=false")
	waitFor(t, "n1 ready", func() bool { return nodes[0].p.call("GET", "/projects", nil, nil) == 200 })

	// Form the cluster with the CLI only.
	cli(t, "add", "--id", "n2", "--raft-addr", nodes[1].raftAddr, "--addr", nodes[0].httpAddr)
	cli(t, "add", "--id", "n3", "--raft-addr", nodes[2].raftAddr, "--addr", nodes[0].httpAddr)
	waitFor(t, "three live voters, one leader", func() bool {
		srvs := list(t, nodes[1].httpAddr)
		voters, leaders, live := 0, 0, 0
		for _, s := range srvs {
			if s.Voter {
				voters++
			}
			if s.Leader {
				leaders++
			}
			if s.Live {
				live++
			}
		}
		return voters == 3 && leaders == 1 && live == 3
	})
	byID := map[string]*clusterNode{}
	for _, n := range nodes {
		byID[n.id] = n
	}

	var delivered sync.Map // event id -> deliveries seen
	var dupes atomic.Int64
	seenDelivery := sync.Map{}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, loaded := seenDelivery.LoadOrStore(r.Header.Get("X-Sluice-Delivery-Id"), true); loaded {
			dupes.Add(1)
		}
		delivered.Store(r.Header.Get("X-Sluice-Event-Id"), true)
	}))
	defer sink.Close()

	// A follower that has not yet heard which node leads answers 503 "retry", as documented; a
	// client retries, and so does the test.
	var proj, ep struct{ UID string }
	createThrough := func(n *clusterNode, what, path string, body map[string]any, out any) {
		t.Helper()
		c := 0
		waitFor(t, what+" through "+n.id, func() bool {
			c = n.p.call("POST", path, body, out)
			return c != http.StatusServiceUnavailable
		})
		if c != http.StatusCreated {
			t.Fatalf("create %s through %s: %d", what, n.id, c)
		}
	}
	createThrough(nodes[2], "project", "/projects", map[string]any{"name": "ha"}, &proj)
	createThrough(nodes[1], "endpoint", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL}, &ep)

	// Publish continuously to all three nodes.
	var (
		mu       sync.Mutex
		acked    []string
		lastFail atomic.Int64
		dead     atomic.Value // id of the killed node
	)
	dead.Store("")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := nodes[(c+i)%3]
				if n.id == dead.Load().(string) {
					continue
				}
				var ev struct{ UID string }
				code := n.p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{
					"endpoint_id": ep.UID, "event_type": "order.paid", "data": map[string]int{"c": c, "i": i},
					"idempotency_key": fmt.Sprintf("c%d-%d", c, i)}, &ev)
				if code == 201 {
					mu.Lock()
					acked = append(acked, ev.UID)
					mu.Unlock()
				} else {
					lastFail.Store(time.Now().UnixNano())
				}
			}
		}(c)
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, "publishing under way", func() bool { return ackedCount() >= 200 })

	leader := byID[leaderOf(list(t, nodes[0].httpAddr))]
	before := ackedCount()
	killedAt := time.Now()
	dead.Store(leader.id)
	leader.p.kill()
	// Failover: publishing resumes on the survivors.
	waitFor(t, "publishes acknowledged again after the leader died", func() bool {
		return ackedCount() > before+50 && lastFail.Load() < time.Now().Add(-500*time.Millisecond).UnixNano()
	})
	resumed := time.Unix(0, lastFail.Load())
	if resumed.Before(killedAt) {
		resumed = killedAt
	}
	t.Logf("leader %s killed; last failed publish %v after the kill", leader.id, resumed.Sub(killedAt).Round(time.Millisecond))
	close(stop)
	wg.Wait()

	mu.Lock()
	all := append([]string(nil), acked...)
	mu.Unlock()
	waitFor(t, "every acknowledged event delivered", func() bool {
		for _, id := range all {
			if _, ok := delivered.Load(id); !ok {
				return false
			}
		}
		return true
	})
	t.Logf("%d events acknowledged, all delivered at least once; %d duplicate deliveries", len(all), dupes.Load())

	// The killed node restarts, catches up and rejoins as a follower.
	leader.start(t, "--bootstrap=false")
	waitFor(t, "restarted node caught up", func() bool {
		srvs, err := tryList(leader.httpAddr)
		if err != nil {
			return false
		}
		var max, mine uint64
		ok := false
		for _, s := range srvs {
			if s.AppliedIndex > max {
				max = s.AppliedIndex
			}
			if s.ID == leader.id {
				mine, ok = s.AppliedIndex, !s.Leader && s.Live
			}
		}
		return ok && mine+5 >= max
	})
	waitFor(t, "rejoined node holds the acknowledged events", func() bool {
		for _, id := range all[:10] {
			if leader.p.call("GET", "/projects/"+proj.UID+"/events/"+id, nil, nil) != 200 {
				return false
			}
		}
		return true
	})

	// Replace a follower with a fresh node: far behind a truncated log, it catches up by snapshot.
	cur := ""
	waitFor(t, "a known leader", func() bool {
		srvs, err := tryList(nodes[0].httpAddr)
		cur = leaderOf(srvs)
		return err == nil && byID[cur] != nil
	})
	var victim *clusterNode
	for _, n := range nodes {
		if n.id != cur {
			victim = n
			break
		}
	}
	cliRetrying(t, "snapshot", "--addr", byID[cur].httpAddr)
	cliRetrying(t, "remove", victim.id, "--addr", byID[cur].httpAddr)
	victim.p.kill()
	fresh := newClusterNode(t, "n4", victim.host)
	fresh.start(t, "--join", byID[cur].httpAddr, "--log-level", "info")
	waitFor(t, "fresh node holds the acknowledged events", func() bool {
		for _, id := range []string{all[0], all[len(all)/2], all[len(all)-1]} {
			if fresh.p.call("GET", "/projects/"+proj.UID+"/events/"+id, nil, nil) != 200 {
				return false
			}
		}
		return true
	})
	if !strings.Contains(fresh.p.output(), "state restored from snapshot") {
		t.Fatalf("the fresh node did not catch up by snapshot install:\n%s", fresh.p.output())
	}
	srvs := list(t, fresh.httpAddr)
	if len(srvs) != 3 || leaderOf(srvs) == "" {
		t.Fatalf("after replacing %s: %+v", victim.id, srvs)
	}

	// Rolling restart of all three nodes, one at a time, under load: nothing acknowledged is lost.
	current := []*clusterNode{}
	for _, n := range append(nodes, fresh) {
		if n != victim {
			current = append(current, n)
		}
	}
	var rmu sync.Mutex
	var rolled []string
	var down atomic.Value
	down.Store("")
	rstop := make(chan struct{})
	var rwg sync.WaitGroup
	for c := 0; c < 3; c++ {
		rwg.Add(1)
		go func(c int) {
			defer rwg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-rstop:
					return
				default:
				}
				n := current[(c+i)%3]
				if n.id == down.Load().(string) {
					continue
				}
				var ev struct{ UID string }
				if n.p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{
					"endpoint_id": ep.UID, "event_type": "order.paid", "data": map[string]int{"r": c, "i": i},
					"idempotency_key": fmt.Sprintf("r%d-%d", c, i)}, &ev) == 201 {
					rmu.Lock()
					rolled = append(rolled, ev.UID)
					rmu.Unlock()
				}
			}
		}(c)
	}
	rolledCount := func() int { rmu.Lock(); defer rmu.Unlock(); return len(rolled) }
	for _, n := range current {
		mark := rolledCount()
		waitFor(t, "publishing continues before restarting "+n.id, func() bool { return rolledCount() >= mark+30 })
		down.Store(n.id)
		n.p.stop()
		n.start(t, "--bootstrap=false")
		waitFor(t, n.id+" back, live and caught up", func() bool {
			srvs, err := tryList(n.httpAddr)
			if err != nil || leaderOf(srvs) == "" {
				return false
			}
			live := 0
			for _, s := range srvs {
				if s.Live {
					live++
				}
			}
			return live == 3
		})
		down.Store("")
	}
	close(rstop)
	rwg.Wait()
	rmu.Lock()
	all = append(all, rolled...)
	rmu.Unlock()
	waitFor(t, "every event acknowledged during the rolling restart delivered", func() bool {
		for _, id := range all {
			if _, ok := delivered.Load(id); !ok {
				return false
			}
		}
		return true
	})
	// Followers serve reads from their own state, which may lag the leader by a moment: each node
	// must come to hold every checked event (a lost one never would).
	for _, n := range current {
		waitFor(t, n.id+" holds the acknowledged events after the rolling restart", func() bool {
			for _, id := range []string{all[0], rolled[0], rolled[len(rolled)-1]} {
				if n.p.call("GET", "/projects/"+proj.UID+"/events/"+id, nil, nil) != 200 {
					return false
				}
			}
			return true
		})
	}
	t.Logf("rolling restart: %d more events acknowledged, all delivered", len(rolled))
}

// TestRegionPinnedDeliveriesLeaveFromThatRegion checks the egress IP a sink sees for an endpoint
// pinned to a region: only nodes of that region deliver it.
func TestRegionPinnedDeliveriesLeaveFromThatRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	nodes := []*clusterNode{newClusterNode(t, "eu1", "127.0.0.1"), newClusterNode(t, "us1", "127.0.0.2"), newClusterNode(t, "ap1", "127.0.0.3")}
	regions := []string{"eu", "us", "ap"}
	nodes[0].start(t, "--region", regions[0])
	waitFor(t, "first node ready", func() bool { return nodes[0].p.call("GET", "/projects", nil, nil) == 200 })
	nodes[1].start(t, "--region", regions[1], "--join", nodes[0].httpAddr)
	nodes[2].start(t, "--region", regions[2], "--join", nodes[0].httpAddr)
	waitFor(t, "three live nodes", func() bool {
		live := 0
		srvs, _ := tryList(nodes[0].httpAddr)
		for _, s := range srvs {
			if s.Live {
				live++
			}
		}
		return live == 3
	})
	from := make(chan [2]string, 100)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.RemoteAddr[:len(r.RemoteAddr)-len(r.RemoteAddr[lastColon(r.RemoteAddr):])]
		from <- [2]string{r.URL.Path, host}
	}))
	defer sink.Close()
	var proj struct{ UID string }
	nodes[0].p.call("POST", "/projects", map[string]any{"name": "regions"}, &proj)
	want := map[string]string{}
	for i, reg := range regions {
		var ep struct{ UID string }
		nodes[(i+1)%3].p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": sink.URL + "/" + reg, "region": reg}, &ep)
		want["/"+reg] = nodes[i].host
		for j := 0; j < 3; j++ {
			if c := nodes[j].p.call("POST", "/projects/"+proj.UID+"/events", map[string]any{"endpoint_id": ep.UID, "event_type": "a", "data": j}, nil); c != 201 {
				t.Fatalf("publish: %d", c)
			}
		}
	}
	for i := 0; i < 9; i++ {
		select {
		case got := <-from:
			if want[got[0]] != got[1] {
				t.Fatalf("delivery for %s left from %s, want %s (its region's node)", got[0], got[1], want[got[0]])
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 9 deliveries arrived", i)
		}
	}
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return len(s)
}
