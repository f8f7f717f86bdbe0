package raftstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
	"github.com/sluice-gw/sluice/model"
)

// Errors a command can apply with. They are deterministic outcomes (every replica reaches the same
// one), returned to the proposer's caller.
var (
	ErrNotFound = errors.New("raftstore: not found")
	ErrExists   = errors.New("raftstore: already exists")
	ErrClosed   = errors.New("raftstore: closed")
	ErrBadCmd   = errors.New("raftstore: malformed command")
)

// Result is the outcome of applying one command.
type Result struct {
	Err error
	// Publish: the event id (the original one when Duplicate), and how many deliveries were created.
	EventID   string
	Matched   int
	Duplicate bool
	// Resend: how many deliveries were made pending again.
	Count int
	// Index is the Raft log index the command was applied at.
	Index uint64
}

// Due is a pending delivery and when it should next be attempted.
type Due struct {
	ProjectID, EndpointID, DeliveryID string
	At                                time.Time
	// EventID, EventType and Attempts are the delivery record as it became due, so the dispatcher
	// can send it without reading the record back; empty where the producer does not carry them
	// (ForEachDue).
	EventID, EventType string
	Attempts           int
}

// Effects is what a committed batch means for dispatch. Observers get it on the FSM goroutine right
// after the batch is durable in the state DB's memtable, so they must be quick (a timing wheel insert).
type Effects struct {
	// Due lists deliveries that became pending (new, retried, resent, or whose endpoint reactivated).
	Due []Due
	// Endpoints lists endpoints whose status changed or that were deleted: lanes drop queued work
	// for them and reload config.
	Endpoints []EndpointChange
	// MetaEvents lists meta events that became due for sending.
	MetaEvents []MetaRef
	// Events lists the events published in the batch that have deliveries, so the delivery engine
	// can send them without reading them back from the store.
	Events []NewEvent
	// Heartbeats lists nodes whose registration (heartbeat) was applied.
	Heartbeats []string
	// LiveChanged says the set of nodes taking part in dispatch changed: ownership moves.
	LiveChanged bool
	// Reset says the whole state was replaced (snapshot restore): rebuild from the due index.
	Reset bool
}

// EndpointChange says an endpoint's status changed (Status is the new one) or it was deleted.
type EndpointChange struct {
	ProjectID, EndpointID string
	Status                string
	Deleted               bool
	// Reason is why an endpoint was disabled ("410 Gone", "N consecutive failures").
	Reason string
}

// NewEvent is what a delivery needs of a newly published event. Data is compressed (CompressData)
// and owned by the receiver; Headers is shared and must only be read.
type NewEvent struct {
	ProjectID, EventID string
	Headers            map[string]string
	Data               []byte
	// Deliveries is how many deliveries the publish created (on every node, owned or not): a cache
	// can tell when the last of them has read the event.
	Deliveries int
}

// MetaRef names a meta event to send.
type MetaRef struct{ ProjectID, UID string }

// FSM applies committed commands to the state DB. Apply, ApplyBatch, Snapshot and Restore are called
// by raft from its single FSM goroutine; applied is written there and read atomically elsewhere.
type FSM struct {
	st  *stateDB
	cat atomic.Pointer[catalog]
	// idem is the filter of idempotency keys, replaced (and rebuilt in the background) by reload.
	idem    atomic.Pointer[keyFilter]
	applied atomic.Uint64
	// appliedCh is closed (and replaced) each time applied advances, so waiters need not poll.
	appliedCh atomic.Pointer[chan struct{}]
	log       *slog.Logger
	// observe is set before raft starts and never changed; called on the FSM goroutine.
	observe func(Effects)
	// recs is the pending deliveries' records; used on the FSM goroutine only.
	recs *recordCache
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

func newFSM(st *stateDB, log *slog.Logger, observe func(Effects)) (*FSM, error) {
	f := &FSM{st: st, log: log, observe: observe, recs: newRecordCache(recordCacheMax)}
	ch := make(chan struct{})
	f.appliedCh.Store(&ch)
	if f.observe == nil {
		f.observe = func(Effects) {}
	}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// reload re-reads the applied index and the catalog after open or restore, and starts rebuilding the
// idempotency key filter (see keyFilter: until it is complete, lookups read Pebble).
func (f *FSM) reload() error {
	f.recs.clear()
	flt := newKeyFilter()
	f.idem.Store(flt)
	go flt.build(f.st, f.idem.Load)
	return f.st.view(func(db *pebble.DB) error {
		idx, err := readApplied(db)
		if err != nil {
			return err
		}
		cat, err := loadCatalog(db)
		if err != nil {
			return err
		}
		for _, fn := range extReloaders {
			if err := fn(db); err != nil {
				return err
			}
		}
		f.applied.Store(idx)
		f.cat.Store(cat)
		return nil
	})
}

// AppliedIndex is the last Raft index whose effects are in the state DB.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a run of committed entries in one Pebble batch together with the new applied
// index, so the state and its position in the log can never disagree. Entries at or below the stored
// applied index were applied before a restart and are skipped.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if len(logs) == 0 {
		return out
	}
	applied := f.applied.Load()
	var ap applier
	ap.recs = f.recs
	ap.cat = f.cat.Load()
	ap.idem = f.idem.Load()
	var last uint64
	err := f.st.view(func(db *pebble.DB) error {
		ap.b = db.NewIndexedBatchWithSize(batchSizeFor(logs))
		defer ap.b.Close()
		for i, l := range logs {
			if l.Index <= applied {
				continue
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			cmds, err := decodeEntry(l.Data)
			if err != nil {
				// Deterministic on every replica: the entry is refused as a whole.
				f.log.Error("skipping malformed raft entry", "index", l.Index, "err", err)
				out[i] = []Result{{Err: err}}
				continue
			}
			rs := make([]Result, len(cmds))
			for j := range cmds {
				rs[j] = ap.apply(&cmds[j])
			}
			out[i] = rs
		}
		if last == 0 {
			return nil
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], last)
		ap.b.Set(keyApplied, v[:], nil)
		return ap.b.Commit(pebble.NoSync)
	})
	if err != nil {
		// The log holds these entries durably; refusing to continue keeps the state from skipping
		// them. A restart re-applies from the last applied index.
		panic(fmt.Sprintf("BUG: raftstore: commit state batch through index %d: %v", last, err))
	}
	if last == 0 {
		return out
	}
	f.applied.Store(last)
	next := make(chan struct{})
	close(*f.appliedCh.Swap(&next))
	for _, fn := range ap.after {
		fn()
	}
	if len(ap.eff.Due) > 0 || len(ap.eff.Endpoints) > 0 || len(ap.eff.MetaEvents) > 0 || len(ap.eff.Heartbeats) > 0 || ap.eff.LiveChanged {
		f.observe(ap.eff)
	}
	return out
}

// batchSizeFor estimates the bytes a state batch applying logs will hold, so that it is allocated
// once. Pebble's pool keeps batches of up to 1 MiB; a results entry of 1,024 attempts writes more
// (each attempt record as proposed, plus its delivery record and index keys, about twice the
// entry), and growing by doubling from there copied the batch several times per apply (1.6% of the
// egress benchmark's CPU). An estimate too small only falls back to growing. It is capped: entries
// that write little (duplicate publishes, refused commands) must not reserve twice a run of 4 MiB
// entries, and past the cap the copies of doubling are small beside the apply itself.
func batchSizeFor(logs []*raft.Log) int {
	n := 0
	for _, l := range logs {
		n += entryLen(l.Data)
	}
	return min(2*n+1024, maxBatchReserve)
}

// entryLen is an entry's length once expanded: a compressed entry (codec 2) writes what it expands
// to, and a results entry expands about thirteen times (its attempts repeat ids and headers), so
// estimating from the stored bytes grew the batch several times per apply. The header says; a
// damaged one counts as stored.
func entryLen(data []byte) int {
	if len(data) >= 1 && data[0] == entryCompressed {
		if n, err := s2.DecodedLen(data[1:]); err == nil && n <= maxEntryLen {
			return n
		}
	}
	return len(data)
}

// maxBatchReserve caps batchSizeFor: room for a results entry of 1,024 attempts of ~1.5 KiB.
const maxBatchReserve = 4 << 20

// waitApplied blocks until the state has applied index or ctx ends.
func (f *FSM) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := *f.appliedCh.Load()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("raftstore: waiting to apply index %d (at %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// Snapshot captures the state at the applied index and starts flushing it: the state DB has no WAL,
// and raft may truncate the log behind the snapshot once Persist returns, so Persist waits for the
// flush. Raft calls Snapshot on the FSM goroutine, between applies, so the memtables being flushed
// hold every write up to the captured index and nothing is applied while it is captured.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	flushed, err := f.st.asyncFlush()
	if err != nil {
		return nil, err
	}
	var s *fsmSnapshot
	err = f.st.view(func(db *pebble.DB) error {
		s = &fsmSnapshot{snap: db.NewSnapshot(), applied: f.applied.Load(), flushed: flushed, log: f.log}
		return nil
	})
	return s, err
}

// Restore replaces the whole state with a snapshot stream.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.st.restoreFrom(rc); err != nil {
		return err
	}
	if err := f.reload(); err != nil {
		return err
	}
	f.log.Info("state restored from snapshot", "applied_index", f.applied.Load())
	f.observe(Effects{Reset: true})
	return nil
}

// applier applies the commands of one batch. Reads go through the indexed batch so a command sees
// the writes of the commands before it in the same batch.
type applier struct {
	b     *pebble.Batch
	cat   *catalog
	idem  *keyFilter
	eff   Effects
	after []func() // catalog updates, run once the batch is committed
	// projects holds this batch's project writes (nil: deleted) until after runs them on the catalog:
	// between batches the catalog is exactly the applied state, so project lookups need no read.
	projects map[string]*model.Project
	// health holds the endpoint health records a results command updates, written once at its end
	// rather than once per result.
	health map[string]*model.EndpointHealth
	// buf and kbuf are reused to encode values and keys; pebble copies both on Set.
	buf, kbuf []byte
	// recs is the FSM's cache of pending deliveries' records, kept in step by putDelivery.
	recs *recordCache
}

// getDelivery reads a delivery record (binary, or JSON as written by earlier versions), from the
// cache of pending deliveries when it holds it.
func (a *applier) getDelivery(pid, did string, d *model.Delivery) error {
	if rec, ok := a.recs.get(did); ok {
		if err := decodeDeliveryString(rec, d); err == nil && d.ProjectID == pid {
			return nil
		}
	}
	a.kbuf = appendKey(a.kbuf[:0], tagDelivery, pid, did)
	val, closer, err := a.b.Get(a.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := decodeDelivery(val, d); err != nil {
		return fmt.Errorf("raftstore: delivery %s: %w", did, err)
	}
	return nil
}

// putDelivery writes a delivery record; it is the only writer of delivery records, which keeps the
// record cache in step.
func (a *applier) putDelivery(d *model.Delivery) {
	a.buf = appendDelivery(a.buf[:0], d)
	a.kbuf = appendKey(a.kbuf[:0], tagDelivery, d.ProjectID, d.UID)
	a.b.Set(a.kbuf, a.buf, nil)
	a.recs.put(d.UID, a.buf, d.Status.Pending())
}

func (a *applier) apply(c *Command) Result {
	var err error
	res := Result{}
	switch c.Type {
	case CmdPutAPIKey:
		var k model.APIKey
		if err = decode(c, &k); err == nil {
			err = a.putAPIKey(&k)
		}
	case CmdPutProject:
		var p PutProject
		if err = decode(c, &p); err == nil {
			err = a.putProject(&p)
		}
	case CmdDeleteProject:
		var d DeleteRef
		if err = decode(c, &d); err == nil {
			err = a.deleteProject(d.ProjectID)
		}
	case CmdPutEndpoint:
		var p PutEndpoint
		if err = decode(c, &p); err == nil {
			err = a.putEndpoint(&p)
		}
	case CmdDeleteEndpoint:
		var d DeleteRef
		if err = decode(c, &d); err == nil {
			err = a.deleteEndpoint(&d)
		}
	case CmdPutSubscription:
		var p PutSubscription
		if err = decode(c, &p); err == nil {
			err = a.putSubscription(&p)
		}
	case CmdDeleteSubscription:
		var d DeleteRef
		if err = decode(c, &d); err == nil {
			err = a.deleteSubscription(&d)
		}
	case CmdPublish:
		var p Publish
		if err = decodePublish(c, &p); err == nil {
			res, err = a.publish(&p, c.Blob)
		}
	case CmdResults:
		rs, raw, derr := decodeResults(c.Meta, false)
		if derr != nil {
			err = fmt.Errorf("%w: %s: %v", ErrBadCmd, c.Type, derr)
		} else {
			err = a.results(rs, raw)
		}
	case CmdResend:
		var r Resend
		if err = decode(c, &r); err == nil {
			res.Count, err = a.resend(&r)
		}
	case CmdMetaResult:
		var r MetaResult
		if err = decode(c, &r); err == nil {
			err = a.metaResult(&r)
		}
	case CmdPutNode:
		var n model.Node
		if err = decode(c, &n); err == nil {
			err = a.putNode(&n)
		}
	case CmdDeleteNode:
		var d DeleteRef
		if err = decode(c, &d); err == nil {
			a.b.Delete(key(tagNode, d.ID), nil)
			a.after = append(a.after, func() { a.cat.deleteNode(d.ID) })
		}
	case CmdSetLive:
		var l SetLive
		if err = decode(c, &l); err == nil {
			a.setJSON(keyLive, &l)
			a.after = append(a.after, func() { a.cat.setLive(l.Nodes) })
			a.eff.LiveChanged = true
		}
	default:
		if fn := extAppliers[c.Type]; fn != nil {
			res, err = fn(a, c)
		} else {
			err = fmt.Errorf("%w: unknown type %d", ErrBadCmd, c.Type)
		}
	}
	res.Err = err
	return res
}

// Commands of separate features (sources, portal links) register their apply functions here from
// their own files' init, so each feature keeps its state machine code in one file.
var (
	extAppliers = map[CmdType]func(a *applier, c *Command) (Result, error){}
	// extReloaders rebuild a feature's in-memory index after open or snapshot restore.
	extReloaders []func(r pebble.Reader) error
)

// registerApplier adds the apply function of a command type. Call it from init.
func registerApplier(t CmdType, fn func(a *applier, c *Command) (Result, error)) {
	if _, dup := extAppliers[t]; dup {
		panic(fmt.Sprintf("BUG: raftstore: command type %d registered twice", t))
	}
	extAppliers[t] = fn
}

// registerProjectTag adds a table whose keys start with a project id, so deleting the project
// deletes its rows. Call it from init.
func registerProjectTag(tag byte) { projectTags = append(projectTags, tag) }

// registerReloader adds a function run with the state whenever it is opened or restored.
func registerReloader(fn func(r pebble.Reader) error) { extReloaders = append(extReloaders, fn) }

func decode(c *Command, v any) error {
	if err := json.Unmarshal(c.Meta, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadCmd, c.Type, err)
	}
	return nil
}

func (a *applier) exists(k []byte) bool {
	_, closer, err := a.b.Get(k)
	if err != nil {
		return false
	}
	closer.Close()
	return true
}

// projectRec is the project as applied so far, including this batch's earlier commands. The catalog
// is read only by the FSM goroutine's after-commit updates and here, so it is the state DB's project
// table as of the batch's start.
func (a *applier) projectRec(pid string) *model.Project {
	if p, ok := a.projects[pid]; ok {
		return p
	}
	return a.cat.project(pid)
}

func (a *applier) projectExists(pid string) bool { return a.projectRec(pid) != nil }

// setProject records a project write of this batch (p nil: deleted) for projectRec.
func (a *applier) setProject(pid string, p *model.Project) {
	if a.projects == nil {
		a.projects = map[string]*model.Project{}
	}
	a.projects[pid] = p
}

func (a *applier) getJSON(k []byte, v any) error {
	val, closer, err := a.b.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	return json.Unmarshal(val, v)
}

func (a *applier) setJSON(k []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: raftstore: marshal record: " + err.Error())
	}
	a.b.Set(k, b, nil)
}

// forEach calls fn with each key (and value) under prefix, in order; fn must not write to the batch
// (pebble iterators over an indexed batch do not see writes made after they were opened).
func (a *applier) forEach(prefix []byte, fn func(k, v []byte) error) error {
	it, err := a.b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

func (a *applier) putNode(n *model.Node) error {
	if n.ID == "" {
		return fmt.Errorf("%w: node without id", ErrBadCmd)
	}
	a.setJSON(key(tagNode, n.ID), n)
	a.after = append(a.after, func() { a.cat.putNode(n) })
	a.eff.Heartbeats = append(a.eff.Heartbeats, n.ID)
	return nil
}

func (a *applier) putAPIKey(k *model.APIKey) error {
	if len(k.Hash) != 32 {
		return fmt.Errorf("%w: api key hash has %d bytes", ErrBadCmd, len(k.Hash))
	}
	if k.Role == model.RoleRoot {
		// One root key at a time: setting a new one (a changed --root-key) revokes the old.
		var old [][]byte
		a.forEach([]byte{tagKey}, func(kk, v []byte) error {
			var x model.APIKey
			if json.Unmarshal(v, &x) == nil && x.Role == model.RoleRoot {
				old = append(old, append([]byte(nil), kk...))
			}
			return nil
		})
		for _, kk := range old {
			a.b.Delete(kk, nil)
		}
		cat := a.cat
		a.after = append(a.after, func() {
			cat.mu.Lock()
			for h, x := range cat.keys {
				if x.Role == model.RoleRoot {
					delete(cat.keys, h)
				}
			}
			cat.mu.Unlock()
		})
	} else if !a.projectExists(k.ProjectID) {
		return fmt.Errorf("%w: project %s", ErrNotFound, k.ProjectID)
	}
	a.setJSON(key(tagKey, string(k.Hash)), k)
	a.after = append(a.after, func() { a.cat.putKey(k) })
	return nil
}

func (a *applier) putProject(p *PutProject) error {
	pk := key(tagProject, p.Project.UID)
	had := a.projectExists(p.Project.UID)
	if p.Create && had {
		return fmt.Errorf("%w: project %s", ErrExists, p.Project.UID)
	}
	if !p.Create && !had {
		return fmt.Errorf("%w: project %s", ErrNotFound, p.Project.UID)
	}
	a.setJSON(pk, &p.Project)
	proj := p.Project
	a.setProject(proj.UID, &proj)
	a.after = append(a.after, func() { a.cat.putProject(&proj) })
	if p.Key != nil {
		p.Key.ProjectID = p.Project.UID
		return a.putAPIKey(p.Key)
	}
	return nil
}

func (a *applier) deleteProject(pid string) error {
	if !a.projectExists(pid) {
		return fmt.Errorf("%w: project %s", ErrNotFound, pid)
	}
	// The due index is keyed by time, not project: remove the project's pending entries first.
	for _, st := range []model.DeliveryStatus{model.StatusScheduled, model.StatusRetry} {
		var dues [][]byte
		err := a.forEach(statusKey(pid, st, ""), func(k, _ []byte) error {
			did := string(k[len(k)-model.IDLen:])
			var d model.Delivery
			if err := a.getDelivery(pid, did, &d); err == nil && d.NextAttemptAt != nil {
				dues = append(dues, dueKey(*d.NextAttemptAt, did))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dues {
			a.b.Delete(k, nil)
		}
	}
	var keys [][]byte
	a.forEach([]byte{tagKey}, func(k, v []byte) error {
		var x model.APIKey
		if json.Unmarshal(v, &x) == nil && x.ProjectID == pid {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range keys {
		a.b.Delete(k, nil)
	}
	for _, tag := range projectTags {
		p := key(tag, pid)
		a.b.DeleteRange(p, prefixEnd(p), nil)
	}
	a.recs.clear() // the project's delivery records are gone
	for _, e := range a.cat.projectEndpoints(pid) {
		a.eff.Endpoints = append(a.eff.Endpoints, EndpointChange{ProjectID: pid, EndpointID: e.UID, Deleted: true})
	}
	a.setProject(pid, nil)
	a.after = append(a.after, func() { a.cat.deleteProject(pid) })
	return nil
}

func (a *applier) putEndpoint(p *PutEndpoint) error {
	e := p.Endpoint
	if !a.projectExists(e.ProjectID) {
		return fmt.Errorf("%w: project %s", ErrNotFound, e.ProjectID)
	}
	ek := key(tagEndpoint, e.ProjectID, e.UID)
	var old model.Endpoint
	err := a.getJSON(ek, &old)
	switch {
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	case p.Create && err == nil:
		return fmt.Errorf("%w: endpoint %s", ErrExists, e.UID)
	case !p.Create && err != nil:
		return fmt.Errorf("%w: endpoint %s", ErrNotFound, e.UID)
	}
	a.setJSON(ek, &e)
	a.after = append(a.after, func() { a.cat.putEndpoint(&e) })
	if !p.Create && old.Status != e.Status {
		a.eff.Endpoints = append(a.eff.Endpoints, EndpointChange{ProjectID: e.ProjectID, EndpointID: e.UID, Status: e.Status})
		if e.Status == model.EndpointActive {
			// Paused or disabled endpoints keep their pending deliveries in the due index; lanes drop
			// them. Reactivation hands them back to the scheduler.
			return a.requeueEndpoint(e.ProjectID, e.UID)
		}
	}
	return nil
}

func (a *applier) requeueEndpoint(pid, eid string) error {
	for _, st := range []model.DeliveryStatus{model.StatusScheduled, model.StatusRetry} {
		err := a.forEach(epStatusKey(pid, eid, st, ""), func(k, _ []byte) error {
			did := string(k[len(k)-model.IDLen:])
			var d model.Delivery
			if err := a.getDelivery(pid, did, &d); err != nil || d.NextAttemptAt == nil {
				return nil
			}
			a.eff.Due = append(a.eff.Due, Due{ProjectID: pid, EndpointID: eid, DeliveryID: did, At: *d.NextAttemptAt,
				EventID: d.EventID, EventType: d.EventType, Attempts: d.Attempts})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) deleteEndpoint(d *DeleteRef) error {
	ek := key(tagEndpoint, d.ProjectID, d.ID)
	if !a.exists(ek) {
		return fmt.Errorf("%w: endpoint %s", ErrNotFound, d.ID)
	}
	// Pending deliveries to a deleted endpoint can never be sent: discard them so they leave the due
	// index instead of being rescheduled on every restart.
	var pending []string
	for _, st := range []model.DeliveryStatus{model.StatusScheduled, model.StatusRetry} {
		a.forEach(epStatusKey(d.ProjectID, d.ID, st, ""), func(k, _ []byte) error {
			pending = append(pending, string(k[len(k)-model.IDLen:]))
			return nil
		})
	}
	for _, did := range pending {
		var dl model.Delivery
		if err := a.getDelivery(d.ProjectID, did, &dl); err != nil {
			continue
		}
		dl.LastError = "endpoint deleted"
		a.setStatus(&dl, model.StatusDiscarded, nil, d.At)
	}
	var subs [][]byte
	a.forEach(key(tagSubscription, d.ProjectID), func(k, v []byte) error {
		var s model.Subscription
		if json.Unmarshal(v, &s) == nil && s.EndpointID == d.ID {
			subs = append(subs, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range subs {
		a.b.Delete(k, nil)
	}
	a.b.Delete(ek, nil)
	a.b.Delete(key(tagHealth, d.ProjectID, d.ID), nil)
	a.eff.Endpoints = append(a.eff.Endpoints, EndpointChange{ProjectID: d.ProjectID, EndpointID: d.ID, Deleted: true})
	a.after = append(a.after, func() { a.cat.deleteEndpoint(d.ProjectID, d.ID) })
	return nil
}

func (a *applier) putSubscription(p *PutSubscription) error {
	s := p.Subscription
	if !a.exists(key(tagEndpoint, s.ProjectID, s.EndpointID)) {
		return fmt.Errorf("%w: endpoint %s", ErrNotFound, s.EndpointID)
	}
	sk := key(tagSubscription, s.ProjectID, s.UID)
	had := a.exists(sk)
	if p.Create && had {
		return fmt.Errorf("%w: subscription %s", ErrExists, s.UID)
	}
	if !p.Create && !had {
		return fmt.Errorf("%w: subscription %s", ErrNotFound, s.UID)
	}
	a.setJSON(sk, &s)
	a.after = append(a.after, func() { a.cat.putSubscription(&s) })
	return nil
}

func (a *applier) deleteSubscription(d *DeleteRef) error {
	sk := key(tagSubscription, d.ProjectID, d.ID)
	if !a.exists(sk) {
		return fmt.Errorf("%w: subscription %s", ErrNotFound, d.ID)
	}
	a.b.Delete(sk, nil)
	a.after = append(a.after, func() { a.cat.deleteSubscription(d.ProjectID, d.ID) })
	return nil
}

func (a *applier) publish(p *Publish, data []byte) (Result, error) {
	ev := &p.Event
	pid := ev.ProjectID
	if !a.projectExists(pid) {
		return Result{}, fmt.Errorf("%w: project %s", ErrNotFound, pid)
	}
	if p.Replay {
		if !a.exists(key(tagEvent, pid, ev.UID)) {
			return Result{}, fmt.Errorf("%w: event %s", ErrNotFound, ev.UID)
		}
	} else {
		if ev.IdempotencyKey != "" {
			ik := key(tagIdempotency, pid, ev.IdempotencyKey)
			// The filter only answers "certainly absent", which a read would answer too, so apply
			// stays a function of the state; a new key (the common case) then costs no read.
			if !a.idem.absent(ik) {
				v, closer, err := a.b.Get(ik)
				if err == nil {
					orig := string(v)
					closer.Close()
					return Result{EventID: orig, Duplicate: true}, nil
				}
			}
			a.idem.add(ik)
			a.b.Set(ik, []byte(ev.UID), nil)
		}
		ev.Data = nil
		targets := ev.Endpoints
		ev.Endpoints = nil
		a.buf = appendEvent(a.buf[:0], ev)
		a.kbuf = appendKey(a.kbuf[:0], tagEvent, pid, ev.UID)
		a.b.Set(a.kbuf, a.buf, nil)
		a.buf = appendTargets(a.buf[:0], targets)
		a.kbuf = appendKey(a.kbuf[:0], tagEventTargets, pid, ev.UID)
		a.b.Set(a.kbuf, a.buf, nil)
		a.b.Set(key(tagEventData, pid, ev.UID), data, nil)
		if len(p.Targets) > 0 {
			// data aliases the whole Raft entry (up to 4 MiB); a cached copy must not pin it.
			a.eff.Events = append(a.eff.Events, NewEvent{ProjectID: pid, EventID: ev.UID, Headers: ev.Headers,
				Data: append([]byte(nil), data...), Deliveries: len(p.Targets)})
		}
	}
	for _, t := range p.Targets {
		d := model.Delivery{
			UID: t.DeliveryID, ProjectID: pid, EventID: ev.UID, EndpointID: t.EndpointID,
			EventType: ev.EventType, OwnerID: t.OwnerID, CreatedAt: ev.CreatedAt,
		}
		a.b.Set(key(tagByEndpoint, pid, t.EndpointID, t.DeliveryID), nil, nil)
		a.b.Set(key(tagByEvent, pid, ev.UID, t.DeliveryID), nil, nil)
		at := ev.CreatedAt
		a.setStatus(&d, model.StatusScheduled, &at, ev.CreatedAt)
	}
	return Result{EventID: ev.UID, Matched: len(p.Targets)}, nil
}

// setStatus moves a delivery to status st (due at next when pending), keeping the status and due
// indexes in step, and writes the record.
func (a *applier) setStatus(d *model.Delivery, st model.DeliveryStatus, next *time.Time, at time.Time) {
	pid, did := d.ProjectID, d.UID
	if d.Status != "" && d.Status != st {
		a.kbuf = appendStatusKey(a.kbuf[:0], pid, d.Status, did)
		a.b.Delete(a.kbuf, nil)
		a.kbuf = appendEPStatusKey(a.kbuf[:0], pid, d.EndpointID, d.Status, did)
		a.b.Delete(a.kbuf, nil)
	}
	if d.Status.Pending() && d.NextAttemptAt != nil {
		a.kbuf = appendDueKey(a.kbuf[:0], *d.NextAttemptAt, did)
		a.b.Delete(a.kbuf, nil)
	}
	if d.Status != st {
		a.kbuf = appendStatusKey(a.kbuf[:0], pid, st, did)
		a.b.Set(a.kbuf, nil, nil)
		a.kbuf = appendEPStatusKey(a.kbuf[:0], pid, d.EndpointID, st, did)
		a.b.Set(a.kbuf, nil, nil)
	}
	d.Status, d.UpdatedAt = st, at
	d.NextAttemptAt = nil
	if st.Pending() && next != nil {
		n := *next
		d.NextAttemptAt = &n
		a.kbuf = appendDueKey(a.kbuf[:0], n, did)
		a.buf = append(append(a.buf[:0], pid...), d.EndpointID...)
		a.b.Set(a.kbuf, a.buf, nil)
		a.eff.Due = append(a.eff.Due, Due{ProjectID: pid, EndpointID: d.EndpointID, DeliveryID: did, At: n,
			EventID: d.EventID, EventType: d.EventType, Attempts: d.Attempts})
	}
	a.putDelivery(d)
}

// results applies attempt results. raw, when set, holds each result's attempt record as encoded by the
// proposer, stored as is.
func (a *applier) results(rs []AttemptResult, raw [][]byte) error {
	for i := range rs {
		if !rs[i].Status.Valid() {
			return fmt.Errorf("%w: result for %s has status %q", ErrBadCmd, rs[i].DeliveryID, rs[i].Status)
		}
	}
	defer a.flushHealth()
	for i := range rs {
		r := &rs[i]
		var d model.Delivery
		if err := a.getDelivery(r.ProjectID, r.DeliveryID, &d); err != nil {
			continue // deleted with its project meanwhile
		}
		if r.Attempt != nil {
			a.kbuf = appendKey(a.kbuf[:0], tagAttempt, r.ProjectID, r.DeliveryID, r.Attempt.UID)
			if raw != nil && raw[i] != nil {
				a.b.Set(a.kbuf, raw[i], nil)
			} else {
				a.buf = appendAttempt(a.buf[:0], r.Attempt)
				a.b.Set(a.kbuf, a.buf, nil)
			}
			if r.Attempt.Number > d.Attempts {
				d.Attempts = r.Attempt.Number
			}
			d.LastStatus = r.Attempt.StatusCode
			d.LastError = r.Attempt.Error
		}
		if d.Status == model.StatusSuccess && r.Status != model.StatusSuccess {
			// A late result from an attempt that was in flight across a failover must not undo a
			// success: keep the attempt in the log, leave the status.
			a.putDelivery(&d)
			continue
		}
		var next *time.Time
		if r.Status.Pending() {
			n := r.NextAttemptAt
			next = &n
		}
		a.setStatus(&d, r.Status, next, r.At)
		proj := a.project(d.ProjectID)
		h := a.recordHealth(&d, r)
		reason := ""
		switch {
		case r.DisableEndpoint:
			reason = "the endpoint answered 410 Gone"
		case proj != nil && proj.Config.DisableEndpointAfter > 0 && h.ConsecutiveFailures >= proj.Config.DisableEndpointAfter:
			reason = fmt.Sprintf("%d consecutive failed attempts", h.ConsecutiveFailures)
		}
		if reason != "" {
			a.disableEndpoint(proj, d.ProjectID, d.EndpointID, reason, r)
		}
		if r.Status == model.StatusFailed && proj != nil && proj.Config.MetaEvent.Wants(model.MetaDeliveryFailed) {
			a.addMetaEvent(proj, model.MetaDeliveryFailed, r, map[string]any{"delivery": &d})
		}
	}
	return nil
}

// project returns the project (shared with the catalog: read only), or nil.
func (a *applier) project(pid string) *model.Project { return a.projectRec(pid) }

// healthWeight is the weight of the newest attempt in an endpoint's success rate.
const healthWeight = 0.1

// recordHealth updates an endpoint's health with one result. Within a results command the record is
// read once and kept in a.health; flushHealth writes it.
func (a *applier) recordHealth(d *model.Delivery, r *AttemptResult) model.EndpointHealth {
	hk := string(key(tagHealth, d.ProjectID, d.EndpointID))
	hp := a.health[hk]
	if hp == nil {
		hp = new(model.EndpointHealth)
		if a.getJSON([]byte(hk), hp) != nil {
			*hp = model.EndpointHealth{SuccessRate: 1}
		}
		if a.health == nil {
			a.health = make(map[string]*model.EndpointHealth)
		}
		a.health[hk] = hp
	}
	h := hp
	h.Attempts++
	score := 0.0
	if r.Status == model.StatusSuccess {
		score = 1
		h.ConsecutiveFailures = 0
		h.LastError = ""
	} else {
		h.Failures++
		h.ConsecutiveFailures++
		if r.Attempt != nil {
			h.LastError = r.Attempt.Error
		}
	}
	h.SuccessRate = (1-healthWeight)*h.SuccessRate + healthWeight*score
	if r.Attempt != nil {
		h.LastStatus = r.Attempt.StatusCode
	}
	at := r.At
	h.LastAttemptAt = &at
	return *h
}

// flushHealth writes the health records a results command updated, in key order (the batch's
// contents do not depend on map order).
func (a *applier) flushHealth() {
	if len(a.health) == 0 {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(a.health)) {
		a.setJSON([]byte(k), a.health[k])
	}
	clear(a.health)
}

func (a *applier) disableEndpoint(proj *model.Project, pid, eid, reason string, r *AttemptResult) {
	var e model.Endpoint
	if err := a.getJSON(key(tagEndpoint, pid, eid), &e); err != nil || e.Status == model.EndpointDisabled {
		return
	}
	e.Status, e.UpdatedAt = model.EndpointDisabled, r.At
	a.setJSON(key(tagEndpoint, pid, eid), &e)
	a.after = append(a.after, func() { a.cat.putEndpoint(&e) })
	a.eff.Endpoints = append(a.eff.Endpoints, EndpointChange{ProjectID: pid, EndpointID: eid, Status: e.Status, Reason: reason})
	if proj != nil && proj.Config.MetaEvent.Wants(model.MetaEndpointDisabled) {
		a.addMetaEvent(proj, model.MetaEndpointDisabled, r, map[string]any{"endpoint": &e, "reason": reason})
	}
}

// addMetaEvent stores a meta event to send. Its id derives from the attempt that caused it (an id
// chosen before proposing), so every replica stores the same record.
func (a *applier) addMetaEvent(proj *model.Project, typ string, r *AttemptResult, data map[string]any) {
	if r.Attempt == nil {
		return
	}
	uid := r.Attempt.UID + "-" + strings.ReplaceAll(typ, ".", "-")
	body, err := json.Marshal(map[string]any{"event_type": typ, "project_id": proj.UID, "created_at": r.At, "data": data})
	if err != nil {
		panic("BUG: raftstore: marshal meta event: " + err.Error())
	}
	m := model.MetaEvent{UID: uid, ProjectID: proj.UID, EventType: typ, Data: body, Status: "scheduled", CreatedAt: r.At, UpdatedAt: r.At}
	a.setJSON(key(tagMetaEvent, proj.UID, uid), &m)
	a.eff.MetaEvents = append(a.eff.MetaEvents, MetaRef{ProjectID: proj.UID, UID: uid})
}

func (a *applier) metaResult(r *MetaResult) error {
	mk := key(tagMetaEvent, r.ProjectID, r.UID)
	var m model.MetaEvent
	if err := a.getJSON(mk, &m); err != nil {
		return nil // its project is gone
	}
	m.Attempts++
	m.Status, m.LastStatus, m.LastError, m.UpdatedAt = r.Status, r.StatusCode, r.Error, r.At
	a.setJSON(mk, &m)
	return nil
}

func (a *applier) resend(r *Resend) (int, error) {
	n := 0
	for _, did := range r.DeliveryIDs {
		var d model.Delivery
		if err := a.getDelivery(r.ProjectID, did, &d); err != nil {
			if len(r.DeliveryIDs) == 1 {
				return 0, fmt.Errorf("%w: delivery %s", ErrNotFound, did)
			}
			continue
		}
		at := r.At
		a.setStatus(&d, model.StatusScheduled, &at, r.At)
		n++
	}
	return n, nil
}
