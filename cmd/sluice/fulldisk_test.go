//go:build linux

package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fullDiskNode is a sluice process whose data directory is on a tmpfs of its own, with a project and
// a paused endpoint to publish 12 KiB events of random (incompressible) bytes to. Mounting needs
// CAP_SYS_ADMIN (root, as in CI); without it the test skips and says why.
type fullDiskNode struct {
	t                  *testing.T
	p                  *proc
	disk, dataDir      string
	httpAddr, raftAddr string
	flags              []string
	project, endpoint  string
	payload            string
}

func newFullDiskNode(t *testing.T, size string, flags ...string) *fullDiskNode {
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("full-disk test skipped: cannot mount a tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(disk, syscall.MNT_DETACH) })
	n := &fullDiskNode{t: t, disk: disk, dataDir: filepath.Join(disk, "data"), httpAddr: freePort(t), raftAddr: freePort(t), flags: flags}
	n.p = startProc(t, n.dataDir, n.httpAddr, n.raftAddr, flags...)
	var proj struct{ UID string }
	if c := n.p.call("POST", "/projects", map[string]any{"name": "full-disk"}, &proj); c != 201 {
		t.Fatalf("create project: %d", c)
	}
	var ep struct{ UID string }
	if c := n.p.call("POST", "/projects/"+proj.UID+"/endpoints", map[string]any{"url": "http://127.0.0.1:9/x", "status": "paused"}, &ep); c != 201 {
		t.Fatalf("create endpoint: %d", c)
	}
	n.project, n.endpoint = proj.UID, ep.UID
	blob := make([]byte, 12<<10)
	rand.Read(blob)
	n.payload = base64.StdEncoding.EncodeToString(blob)
	// One event first, so the state DB has created (and preallocated) its WAL before the disk fills.
	if code, _ := n.publish("first"); code != 201 {
		t.Fatalf("first publish: %d", code)
	}
	return n
}

func (n *fullDiskNode) publish(key string) (int, string) {
	var ev struct{ UID string }
	code := n.p.call("POST", "/projects/"+n.project+"/events", map[string]any{
		"endpoint_id": n.endpoint, "event_type": "blob.stored", "data": map[string]any{"blob": n.payload}, "idempotency_key": key,
	}, &ev)
	return code, ev.UID
}

// fill writes a file that leaves about leave bytes free.
func (n *fullDiskNode) fill(leave int64) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.disk, &st); err != nil {
		n.t.Fatal(err)
	}
	filler := filepath.Join(n.disk, "filler")
	if free := int64(st.Bavail) * st.Bsize; free > leave {
		if err := writeZeros(filler, free-leave); err != nil {
			n.t.Fatalf("fill the disk: %v", err)
		}
	}
	return filler
}

// restartAndCheck kills the process, starts it again on the same data and finds every acknowledged
// event (idempotency key -> event id), then publishes once more. An acknowledgement whose body was
// cut off (the process stopped while writing it: the 201 arrived, the event id did not) has an empty
// id; such an event must be found by its idempotency key: publishing it again is a replay (200).
func (n *fullDiskNode) restartAndCheck(acked map[string]string) {
	n.t.Helper()
	n.p.kill()
	n.p = startProc(n.t, n.dataDir, n.httpAddr, n.raftAddr, n.flags...)
	for key, id := range acked {
		if id == "" {
			if c, _ := n.publish(key); c != 200 {
				n.t.Fatalf("acknowledged event (%s, its id cut off) lost: publishing it again gave %d, not a replay\n%s", key, c, n.p.output())
			}
			continue
		}
		var ev struct {
			IdempotencyKey string `json:"idempotency_key"`
		}
		if c := n.p.call("GET", "/projects/"+n.project+"/events/"+id, nil, &ev); c != 200 || ev.IdempotencyKey != key {
			n.t.Fatalf("acknowledged event %s (%s) lost: status %d\n%s", id, key, c, n.p.output())
		}
	}
	if code, _ := n.publish("after-restart"); code != 201 {
		n.t.Fatalf("publish after freeing the disk and restarting: %d\n%s", code, n.p.output())
	}
}

// TestFullDiskLosesNoAcknowledgedEvent fills the node's filesystem for real while concurrent clients
// publish, with the free-space guard off: the Raft log's Pebble meets ENOSPC, treats the failed write
// as fatal and the process exits. No publish was acknowledged that is not there after space is freed
// and the node restarted.
func TestFullDiskLosesNoAcknowledgedEvent(t *testing.T) {
	n := newFullDiskNode(t, "96m", "--min-free-disk-mb", "0")
	filler := n.fill(8 << 20)         // a few hundred events, each written to the Raft log and the state DB
	const clients, perClient = 8, 400 // bounded: the disk is full long before 3,200 events
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // idempotency key -> event id
		refused  = map[int]int{}       // status -> count (0: the process was gone)
		deadline = time.Now().Add(90 * time.Second)
		wg       sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			failures := 0
			for i := 0; i < perClient && failures < 20 && time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("c%d-%d", c, i)
				code, id := n.publish(key)
				mu.Lock()
				if code == 201 {
					acked[key] = id
					failures = 0
				} else {
					refused[code]++
					failures++
				}
				mu.Unlock()
				if code == 0 {
					return // the process stopped
				}
			}
		}(c)
	}
	wg.Wait()
	t.Logf("%d publishes acknowledged before the disk filled; refused by status: %v", len(acked), refused)
	for _, line := range strings.Split(n.p.output(), "\n") {
		if strings.Contains(line, "fatal") {
			t.Logf("server: %s", line)
		}
	}
	if len(acked) == 0 || len(refused) == 0 {
		t.Fatalf("acknowledged %d, refused %v: the disk did not fill mid-stream", len(acked), refused)
	}
	for code := range refused {
		if code >= 200 && code < 300 {
			t.Fatalf("a publish got %d on a full disk without an event id", code)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.restartAndCheck(acked)
}

// TestDiskGuardRefusesEventsUntilSpaceIsFreed: with less free space than --min-free-disk-mb (here the
// default, 256 MiB) the node stays up and refuses new events with 507, storing nothing, and accepts
// them again once space is freed, without a restart.
func TestDiskGuardRefusesEventsUntilSpaceIsFreed(t *testing.T) {
	n := newFullDiskNode(t, "640m")
	filler := n.fill(200 << 20)
	poll := func(want int, what string) {
		t.Helper()
		end := time.Now().Add(30 * time.Second)
		for i := 0; ; i++ {
			code, _ := n.publish(fmt.Sprintf("%s-%d", what, i))
			if code == want {
				return
			}
			if (code != 201 && code != 507) || time.Now().After(end) {
				t.Fatalf("%s: a publish got %d, want %d\n%s", what, code, want, n.p.output())
			}
			time.Sleep(20 * time.Millisecond) // polling interval: the guard measures ten times a second
		}
	}
	poll(507, "below-minimum")
	// Refused publishes stored nothing: a refused key is still free after the guard lifts.
	code, _ := n.publish("refused-key")
	if code != 507 {
		t.Fatalf("publish below the minimum: %d, want 507", code)
	}
	var metrics string
	if resp, err := http.Get("http://" + n.httpAddr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
	}
	if !strings.Contains(metrics, "sluice_data_disk_free_bytes ") {
		t.Fatalf("/metrics has no sluice_data_disk_free_bytes")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	poll(201, "space-freed")
	var ev struct{ UID string }
	if c := n.p.call("POST", "/projects/"+n.project+"/events", map[string]any{
		"endpoint_id": n.endpoint, "event_type": "blob.stored", "data": 1, "idempotency_key": "refused-key",
	}, &ev); c != 201 {
		t.Fatalf("the refused key after the guard lifted: %d, want 201 (a new event)", c)
	}
	n.restartAndCheck(map[string]string{"refused-key": ev.UID})
}

// writeZeros writes n bytes to a new file (tmpfs allocates what is written, not what is truncated).
func writeZeros(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}
