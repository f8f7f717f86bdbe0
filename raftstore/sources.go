package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"weak"

	"github.com/cockroachdb/pebble/v2"
	"github.com/sluice-gw/sluice/model"
)

// Incoming sources: the state machine half. A source is a row 'O' pid sid -> model.Source JSON
// (deleted with its project). Ingest looks sources up by mask id in an in-memory index, never by a
// scan; the index belongs to one catalog generation (it is rebuilt when a snapshot restore replaces
// the catalog), is built from the committed state on first use and is kept current by the apply
// functions' after-commit hooks.

// Source command types (from the range reserved for sources). Persisted in the log: never renumber.
const (
	CmdPutSource       = cmdRangeSources     // PutSource
	CmdDeleteSource    = cmdRangeSources + 1 // DeleteRef
	CmdPutDeadLetters  = cmdRangeSources + 2 // PutDeadLetters
	CmdDropDeadLetters = cmdRangeSources + 3 // DeleteRef (ID is the source)
)

// tagSource is the sources table: 'O' pid sid -> model.Source JSON. tagDeadLetter holds broker
// messages that could not become events: 'F' pid sid dlid -> model.DeadLetter JSON.
const (
	tagSource     = 'O'
	tagDeadLetter = 'F'
)

// PutDeadLetters records malformed broker messages. Ids and times are chosen by the caller.
type PutDeadLetters struct {
	Letters []model.DeadLetter `json:"letters"`
}

// PutSource creates or replaces a source. Create fails if it exists; otherwise it must exist. The
// mask id, ids and times are chosen by the caller.
type PutSource struct {
	Source model.Source `json:"source"`
	Create bool         `json:"create,omitempty"`
}

func init() {
	registerApplier(CmdPutSource, applyPutSource)
	registerApplier(CmdDeleteSource, applyDeleteSource)
	registerApplier(CmdPutDeadLetters, applyPutDeadLetters)
	registerApplier(CmdDropDeadLetters, applyDropDeadLetters)
	registerProjectTag(tagSource)
	registerProjectTag(tagDeadLetter)
	registerReloader(checkSources)
}

func applyPutSource(a *applier, c *Command) (Result, error) {
	var p PutSource
	if err := decode(c, &p); err != nil {
		return Result{}, err
	}
	src := p.Source
	if src.UID == "" || src.MaskID == "" {
		return Result{}, fmt.Errorf("%w: source without id or mask id", ErrBadCmd)
	}
	proj := a.project(src.ProjectID)
	if proj == nil {
		return Result{}, fmt.Errorf("%w: project %s", ErrNotFound, src.ProjectID)
	}
	// HTTP sources receive third parties' webhooks, so they belong to incoming projects; a broker
	// source may feed either kind (an outgoing project fans its messages out to customers).
	if proj.Type != model.ProjectIncoming && !model.IsBrokerSource(src.Type) {
		return Result{}, fmt.Errorf("%w: project %s is not an incoming project", ErrBadCmd, src.ProjectID)
	}
	sk := key(tagSource, src.ProjectID, src.UID)
	var old model.Source
	err := a.getJSON(sk, &old)
	switch {
	case err != nil && !errors.Is(err, ErrNotFound):
		return Result{}, err
	case p.Create && err == nil:
		return Result{}, fmt.Errorf("%w: source %s", ErrExists, src.UID)
	case !p.Create && err != nil:
		return Result{}, fmt.Errorf("%w: source %s", ErrNotFound, src.UID)
	case !p.Create && old.MaskID != src.MaskID:
		return Result{}, fmt.Errorf("%w: the mask id of source %s cannot change", ErrBadCmd, src.UID)
	}
	a.setJSON(sk, &src)
	cat := a.cat
	a.after = append(a.after, func() {
		if idx := loadedSourceIndex(cat); idx != nil {
			idx.put(&src)
		}
	})
	return Result{}, nil
}

func applyDeleteSource(a *applier, c *Command) (Result, error) {
	var d DeleteRef
	if err := decode(c, &d); err != nil {
		return Result{}, err
	}
	sk := key(tagSource, d.ProjectID, d.ID)
	var old model.Source
	if err := a.getJSON(sk, &old); err != nil {
		return Result{}, fmt.Errorf("%w: source %s", ErrNotFound, d.ID)
	}
	// The subscriptions routing this source's events go with it.
	var subs []string
	err := a.forEach(key(tagSubscription, d.ProjectID), func(k, v []byte) error {
		var s model.Subscription
		if json.Unmarshal(v, &s) == nil && s.SourceID == d.ID {
			subs = append(subs, s.UID)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	for _, sid := range subs {
		a.b.Delete(key(tagSubscription, d.ProjectID, sid), nil)
	}
	a.b.Delete(sk, nil)
	dl := key(tagDeadLetter, d.ProjectID, d.ID)
	a.b.DeleteRange(dl, prefixEnd(dl), nil)
	cat := a.cat
	a.after = append(a.after, func() {
		for _, sid := range subs {
			cat.deleteSubscription(d.ProjectID, sid)
		}
		if idx := loadedSourceIndex(cat); idx != nil {
			idx.remove(d.ProjectID, d.ID)
		}
	})
	return Result{Count: len(subs)}, nil
}

func applyPutDeadLetters(a *applier, c *Command) (Result, error) {
	var p PutDeadLetters
	if err := decode(c, &p); err != nil {
		return Result{}, err
	}
	for i := range p.Letters {
		l := &p.Letters[i]
		if len(l.UID) != model.IDLen || l.SourceID == "" {
			return Result{}, fmt.Errorf("%w: dead letter without id or source", ErrBadCmd)
		}
		if !a.exists(key(tagSource, l.ProjectID, l.SourceID)) {
			return Result{}, fmt.Errorf("%w: source %s", ErrNotFound, l.SourceID)
		}
	}
	for i := range p.Letters {
		l := &p.Letters[i]
		a.setJSON(key(tagDeadLetter, l.ProjectID, l.SourceID, l.UID), l)
	}
	return Result{Count: len(p.Letters)}, nil
}

func applyDropDeadLetters(a *applier, c *Command) (Result, error) {
	var d DeleteRef
	if err := decode(c, &d); err != nil {
		return Result{}, err
	}
	if !a.exists(key(tagSource, d.ProjectID, d.ID)) {
		return Result{}, fmt.Errorf("%w: source %s", ErrNotFound, d.ID)
	}
	p := key(tagDeadLetter, d.ProjectID, d.ID)
	a.b.DeleteRange(p, prefixEnd(p), nil)
	return Result{}, nil
}

// DeadLetters returns up to limit of a source's dead letters, newest first, starting below the
// id before (empty: the newest).
func (s *Store) DeadLetters(pid, sid, before string, limit int) ([]*model.DeadLetter, error) {
	var out []*model.DeadLetter
	err := s.st.view(func(db *pebble.DB) error {
		p := key(tagDeadLetter, pid, sid)
		hi := prefixEnd(p)
		if before != "" {
			hi = key(tagDeadLetter, pid, sid, before)
		}
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
			l := new(model.DeadLetter)
			if err := json.Unmarshal(it.Value(), l); err != nil {
				return fmt.Errorf("raftstore: decode dead letter %x: %w", it.Key(), err)
			}
			out = append(out, l)
		}
		return it.Error()
	})
	return out, err
}

// checkSources fails an open or restore whose source records do not decode, as the catalog does for
// its tables. (The index itself is built on first use for the new catalog.)
func checkSources(r pebble.Reader) error {
	_, err := readSources(r)
	return err
}

func readSources(r pebble.Reader) ([]*model.Source, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagSource}, UpperBound: []byte{tagSource + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*model.Source
	for ok := it.First(); ok; ok = it.Next() {
		s := new(model.Source)
		if err := json.Unmarshal(it.Value(), s); err != nil {
			return nil, fmt.Errorf("raftstore: load source record %x: %w", it.Key(), err)
		}
		out = append(out, s)
	}
	return out, it.Error()
}

// sourceIndex maps mask ids and (project, id) to sources. Records are immutable: an update replaces
// the pointer.
type sourceIndex struct {
	mu        sync.RWMutex // guards the maps; held for writing while the index is built
	byMask    map[string]*model.Source
	byProject map[string]map[string]*model.Source
}

func (x *sourceIndex) putLocked(s *model.Source) {
	m := x.byProject[s.ProjectID]
	if m == nil {
		m = map[string]*model.Source{}
		x.byProject[s.ProjectID] = m
	}
	if old := m[s.UID]; old != nil && old.MaskID != s.MaskID {
		delete(x.byMask, old.MaskID)
	}
	m[s.UID] = s
	x.byMask[s.MaskID] = s
}

func (x *sourceIndex) put(s *model.Source) {
	x.mu.Lock()
	x.putLocked(s)
	x.mu.Unlock()
}

func (x *sourceIndex) remove(pid, sid string) {
	x.mu.Lock()
	if s := x.byProject[pid][sid]; s != nil {
		delete(x.byMask, s.MaskID)
		delete(x.byProject[pid], sid)
	}
	x.mu.Unlock()
}

// dropProject forgets a deleted project's sources (their rows went with the project).
func (x *sourceIndex) dropProject(pid string) {
	x.mu.Lock()
	for _, s := range x.byProject[pid] {
		delete(x.byMask, s.MaskID)
	}
	delete(x.byProject, pid)
	x.mu.Unlock()
}

// sourceIndexes holds the index of each live catalog. Keys are weak so a catalog replaced by a
// restore is collected, and its index with it.
var sourceIndexes sync.Map // weak.Pointer[catalog] -> *sourceIndex

// loadedSourceIndex returns cat's index if it has been built (or is being built), else nil: an
// after-commit hook with no index to update has nothing to do, because the index is built later
// from state that already holds the commit.
func loadedSourceIndex(cat *catalog) *sourceIndex {
	if v, ok := sourceIndexes.Load(weak.Make(cat)); ok {
		return v.(*sourceIndex)
	}
	return nil
}

// sources returns the index of the current catalog, building it from the state DB on first use.
// The index is published (locked) before the scan, so after-commit hooks that find it wait for the
// scan and then apply their change on top of it; hooks that ran before it was published committed
// before the scan began.
func (s *Store) sources() *sourceIndex {
	cat := s.fsm.cat.Load()
	if idx := loadedSourceIndex(cat); idx != nil {
		return idx
	}
	idx := &sourceIndex{byMask: map[string]*model.Source{}, byProject: map[string]map[string]*model.Source{}}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	k := weak.Make(cat)
	if v, loaded := sourceIndexes.LoadOrStore(k, idx); loaded {
		return v.(*sourceIndex)
	}
	runtime.AddCleanup(cat, func(k weak.Pointer[catalog]) { sourceIndexes.Delete(k) }, k)
	var all []*model.Source
	err := s.st.view(func(db *pebble.DB) (err error) {
		all, err = readSources(db)
		return err
	})
	if err != nil {
		// The records were checked when the state was opened; a read error now is the disk's.
		s.fsm.log.Error("raftstore: building the source index", "err", err)
	}
	for _, src := range all {
		idx.putLocked(src)
	}
	return idx
}

// Source returns a source or nil.
func (s *Store) Source(pid, sid string) *model.Source {
	if s.Project(pid) == nil {
		return nil
	}
	idx := s.sources()
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	return idx.byProject[pid][sid]
}

// Sources returns a project's sources ordered by id.
func (s *Store) Sources(pid string) []*model.Source {
	if s.Project(pid) == nil {
		return nil
	}
	idx := s.sources()
	idx.mu.RLock()
	out := make([]*model.Source, 0, len(idx.byProject[pid]))
	for _, src := range idx.byProject[pid] {
		out = append(out, src)
	}
	idx.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// BrokerSources returns every broker source of every project (what the leader consumes).
func (s *Store) BrokerSources() []*model.Source {
	idx := s.sources()
	idx.mu.RLock()
	var out []*model.Source
	for pid, m := range idx.byProject {
		if s.Project(pid) == nil {
			continue
		}
		for _, src := range m {
			if model.IsBrokerSource(src.Type) {
				out = append(out, src)
			}
		}
	}
	idx.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// SourceByMask returns the source served at /ingest/{mask}, or nil: a map lookup.
func (s *Store) SourceByMask(mask string) *model.Source {
	idx := s.sources()
	idx.mu.RLock()
	src := idx.byMask[mask]
	idx.mu.RUnlock()
	if src != nil && s.Project(src.ProjectID) == nil {
		idx.dropProject(src.ProjectID)
		return nil
	}
	return src
}
