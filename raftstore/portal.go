package raftstore

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/cockroachdb/pebble/v2"
	"github.com/sluice-gw/sluice/model"
)

// Portal links: a scoped token for one owner id in one project (see model.PortalLink).
//
//	'L' pid lid                    portal link                     -> model.PortalLink JSON
//
// The table is range-deleted with its project. Tokens are looked up by SHA-256 in an in-memory
// index, like API keys: no disk read and no password hashing per request.
const tagPortalLink = 'L'

// Portal link commands (range cmdRangePortal, 48..63). Values are persisted: never renumber.
const (
	CmdPutPortalLink    = cmdRangePortal + iota // create a link
	CmdRevokePortalLink                         // revoke a link (idempotent)
)

// PutPortalLink creates a portal link. The link's id, hash, times and owner are chosen by the caller.
type PutPortalLink struct {
	Link model.PortalLink `json:"link"`
}

// RevokePortalLink revokes a link at At.
type RevokePortalLink struct {
	ProjectID string    `json:"project_id"`
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
}

func init() {
	registerApplier(CmdPutPortalLink, applyPutPortalLink)
	registerApplier(CmdRevokePortalLink, applyRevokePortalLink)
	registerProjectTag(tagPortalLink)
}

func applyPutPortalLink(a *applier, c *Command) (Result, error) {
	var p PutPortalLink
	if err := decode(c, &p); err != nil {
		return Result{}, err
	}
	l := p.Link
	switch {
	case len(l.Hash) != sha256.Size:
		return Result{}, fmt.Errorf("%w: portal link hash has %d bytes", ErrBadCmd, len(l.Hash))
	case l.OwnerID == "" || l.UID == "":
		return Result{}, fmt.Errorf("%w: portal link without owner or id", ErrBadCmd)
	case !a.exists(key(tagProject, l.ProjectID)):
		return Result{}, fmt.Errorf("%w: project %s", ErrNotFound, l.ProjectID)
	}
	k := key(tagPortalLink, l.ProjectID, l.UID)
	if a.exists(k) {
		return Result{}, fmt.Errorf("%w: portal link %s", ErrExists, l.UID)
	}
	a.setJSON(k, &l)
	cat := a.cat
	a.after = append(a.after, func() { updatePortalIndex(cat, &l) })
	return Result{}, nil
}

func applyRevokePortalLink(a *applier, c *Command) (Result, error) {
	var r RevokePortalLink
	if err := decode(c, &r); err != nil {
		return Result{}, err
	}
	k := key(tagPortalLink, r.ProjectID, r.ID)
	var l model.PortalLink
	if err := a.getJSON(k, &l); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Result{}, fmt.Errorf("%w: portal link %s", ErrNotFound, r.ID)
		}
		return Result{}, err
	}
	if l.RevokedAt != nil {
		return Result{}, nil
	}
	at := r.At
	l.RevokedAt = &at
	a.setJSON(k, &l)
	cat := a.cat
	a.after = append(a.after, func() { updatePortalIndex(cat, &l) })
	return Result{}, nil
}

// portalIndex maps sha256(token) to the link for every unrevoked link of one catalog generation.
//
// The FSM replaces its catalog whenever the state is (re)loaded (open, snapshot restore), so an index
// belongs to one catalog: it is created on the first lookup from that catalog by scanning the 'L'
// table, and apply keeps it current afterwards. Keying by the catalog (weakly, so a replaced
// catalog's index is dropped with it) keeps several stores in one process apart.
type portalIndex struct {
	mu    sync.RWMutex // guards links; held for writing while the index is first loaded
	links map[[sha256.Size]byte]*model.PortalLink
	err   error // set when loading failed; the index is then discarded
}

var portalIndexes sync.Map // weak.Pointer[catalog] -> *portalIndex

// updatePortalIndex records a committed link change in its catalog's index, if one was built. If none
// was, the next lookup builds it from the state, which already holds the change.
func updatePortalIndex(cat *catalog, l *model.PortalLink) {
	v, ok := portalIndexes.Load(weak.Make(cat))
	if !ok {
		return
	}
	idx := v.(*portalIndex)
	idx.mu.Lock()
	idx.putLocked(l)
	idx.mu.Unlock()
}

func (idx *portalIndex) putLocked(l *model.PortalLink) {
	var h [sha256.Size]byte
	copy(h[:], l.Hash)
	if l.RevokedAt != nil {
		delete(idx.links, h)
		return
	}
	idx.links[h] = l
}

// portalIndex returns the index for the current catalog, building it on first use. A concurrent
// apply either finds the index (and waits for the load to finish before updating it) or commits
// before the load reads the state.
func (s *Store) portalIndex() (*portalIndex, error) {
	cat := s.fsm.cat.Load()
	k := weak.Make(cat)
	if v, ok := portalIndexes.Load(k); ok {
		return v.(*portalIndex), nil
	}
	idx := &portalIndex{links: map[[sha256.Size]byte]*model.PortalLink{}}
	idx.mu.Lock()
	v, loaded := portalIndexes.LoadOrStore(k, idx)
	if loaded {
		idx.mu.Unlock()
		return v.(*portalIndex), nil
	}
	runtime.AddCleanup(cat, func(k weak.Pointer[catalog]) { portalIndexes.Delete(k) }, k)
	idx.err = s.st.view(func(db *pebble.DB) error {
		return forEachPortalLink(db, []byte{tagPortalLink}, func(l *model.PortalLink) error {
			idx.putLocked(l)
			return nil
		})
	})
	err := idx.err
	if err != nil {
		portalIndexes.CompareAndDelete(k, idx)
	}
	idx.mu.Unlock()
	return idx, err
}

func forEachPortalLink(r pebble.Reader, prefix []byte, fn func(l *model.PortalLink) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		l := new(model.PortalLink)
		if err := json.Unmarshal(it.Value(), l); err != nil {
			return fmt.Errorf("raftstore: decode portal link %x: %w", it.Key(), err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return it.Error()
}

// PortalLinkByToken returns the unrevoked link whose token hashes to hash, or nil. Expiry is the
// caller's to check (it depends on the clock).
func (s *Store) PortalLinkByToken(hash [sha256.Size]byte) (*model.PortalLink, error) {
	idx, err := s.portalIndex()
	if err != nil {
		return nil, err
	}
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	if idx.err != nil {
		return nil, idx.err
	}
	l := idx.links[hash]
	if l == nil || s.Project(l.ProjectID) == nil {
		return nil, nil // unknown, revoked, or its project was deleted
	}
	return l, nil
}

// PortalLink returns one link.
func (s *Store) PortalLink(pid, lid string) (*model.PortalLink, error) {
	var l model.PortalLink
	if err := s.st.view(func(db *pebble.DB) error { return getJSON(db, key(tagPortalLink, pid, lid), &l) }); err != nil {
		return nil, fmt.Errorf("portal link %s: %w", lid, err)
	}
	return &l, nil
}

// PortalLinks returns a page of a project's links, newest first, optionally of one owner, and the
// next page's cursor.
func (s *Store) PortalLinks(pid, owner string, p Page) ([]*model.PortalLink, string, error) {
	limit := pageLimit(p.Limit)
	var out []*model.PortalLink
	next := ""
	err := s.st.view(func(db *pebble.DB) error {
		return scanNewest(db, key(tagPortalLink, pid), "", p.Cursor, func(id string) (bool, error) {
			var l model.PortalLink
			if err := getJSON(db, key(tagPortalLink, pid, id), &l); err != nil {
				return false, err
			}
			if owner != "" && l.OwnerID != owner {
				return true, nil
			}
			if len(out) == limit {
				next = out[len(out)-1].UID
				return false, nil
			}
			out = append(out, &l)
			return true, nil
		})
	})
	return out, next, err
}
