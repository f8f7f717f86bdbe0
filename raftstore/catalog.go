package raftstore

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/sluice-gw/sluice/model"
	"sync"
)

// catalog is an in-memory copy of the small, hot configuration tables (keys, projects, endpoints,
// subscriptions) so authentication is a map lookup and fan-out resolution never touches disk. The FSM
// updates it after each batch commits; readers get immutable records (an update replaces the pointer).
type catalog struct {
	mu        sync.RWMutex // guards all maps below
	keys      map[[sha256.Size]byte]*model.APIKey
	projects  map[string]*model.Project
	endpoints map[string]map[string]*model.Endpoint     // project id -> endpoint id
	subs      map[string]map[string]*model.Subscription // project id -> subscription id
	// subList is a project's subscriptions sorted by id, built on first use after the project's
	// set changes: every publish matches against all of them, and copied and sorted them each time
	// (n log n per publish for a broadcast to n subscriptions). Shared read-only with callers.
	subList map[string][]*model.Subscription
	nodes   map[string]*model.Node
	live    []string // node ids taking part in dispatch, sorted
}

func newCatalog() *catalog {
	return &catalog{
		keys:      map[[sha256.Size]byte]*model.APIKey{},
		projects:  map[string]*model.Project{},
		endpoints: map[string]map[string]*model.Endpoint{},
		subs:      map[string]map[string]*model.Subscription{},
		subList:   map[string][]*model.Subscription{},
		nodes:     map[string]*model.Node{},
	}
}

// loadCatalog reads the configuration tables from r.
func loadCatalog(r pebble.Reader) (*catalog, error) {
	c := newCatalog()
	load := func(tag byte, fn func(v []byte) error) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := fn(it.Value()); err != nil {
				return fmt.Errorf("raftstore: load %q record %x: %w", tag, it.Key(), err)
			}
		}
		return it.Error()
	}
	err := load(tagKey, func(v []byte) error {
		k := new(model.APIKey)
		if err := json.Unmarshal(v, k); err != nil {
			return err
		}
		c.putKey(k)
		return nil
	})
	if err == nil {
		err = load(tagProject, func(v []byte) error {
			p := new(model.Project)
			if err := json.Unmarshal(v, p); err != nil {
				return err
			}
			c.putProject(p)
			return nil
		})
	}
	if err == nil {
		err = load(tagEndpoint, func(v []byte) error {
			e := new(model.Endpoint)
			if err := json.Unmarshal(v, e); err != nil {
				return err
			}
			c.putEndpoint(e)
			return nil
		})
	}
	if err == nil {
		err = load(tagSubscription, func(v []byte) error {
			s := new(model.Subscription)
			if err := json.Unmarshal(v, s); err != nil {
				return err
			}
			c.putSubscription(s)
			return nil
		})
	}
	if err == nil {
		err = load(tagNode, func(v []byte) error {
			n := new(model.Node)
			if err := json.Unmarshal(v, n); err != nil {
				return err
			}
			c.putNode(n)
			return nil
		})
	}
	if err == nil {
		var live SetLive
		if v, closer, gerr := r.Get(keyLive); gerr == nil {
			err = json.Unmarshal(v, &live)
			closer.Close()
			c.setLive(live.Nodes)
		}
	}
	return c, err
}

func (c *catalog) putNode(n *model.Node) {
	c.mu.Lock()
	c.nodes[n.ID] = n
	c.mu.Unlock()
}

func (c *catalog) deleteNode(id string) {
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
}

func (c *catalog) setLive(ids []string) {
	live := append([]string(nil), ids...)
	sort.Strings(live)
	c.mu.Lock()
	c.live = live
	c.mu.Unlock()
}

func (c *catalog) node(id string) *model.Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nodes[id]
}

func (c *catalog) allNodes() []*model.Node {
	c.mu.RLock()
	out := make([]*model.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (c *catalog) liveNodes() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.live
}

func (c *catalog) putKey(k *model.APIKey) {
	var h [sha256.Size]byte
	copy(h[:], k.Hash)
	c.mu.Lock()
	c.keys[h] = k
	c.mu.Unlock()
}

func (c *catalog) putProject(p *model.Project) {
	c.mu.Lock()
	c.projects[p.UID] = p
	c.mu.Unlock()
}

func (c *catalog) deleteProject(pid string) {
	c.mu.Lock()
	delete(c.projects, pid)
	delete(c.endpoints, pid)
	delete(c.subs, pid)
	delete(c.subList, pid)
	for h, k := range c.keys {
		if k.ProjectID == pid {
			delete(c.keys, h)
		}
	}
	c.mu.Unlock()
}

func (c *catalog) putEndpoint(e *model.Endpoint) {
	c.mu.Lock()
	m := c.endpoints[e.ProjectID]
	if m == nil {
		m = map[string]*model.Endpoint{}
		c.endpoints[e.ProjectID] = m
	}
	m[e.UID] = e
	c.mu.Unlock()
}

func (c *catalog) deleteEndpoint(pid, eid string) {
	c.mu.Lock()
	delete(c.endpoints[pid], eid)
	for id, s := range c.subs[pid] {
		if s.EndpointID == eid {
			delete(c.subs[pid], id)
			delete(c.subList, pid)
		}
	}
	c.mu.Unlock()
}

func (c *catalog) putSubscription(s *model.Subscription) {
	c.mu.Lock()
	m := c.subs[s.ProjectID]
	if m == nil {
		m = map[string]*model.Subscription{}
		c.subs[s.ProjectID] = m
	}
	m[s.UID] = s
	delete(c.subList, s.ProjectID)
	c.mu.Unlock()
}

func (c *catalog) deleteSubscription(pid, sid string) {
	c.mu.Lock()
	delete(c.subs[pid], sid)
	delete(c.subList, pid)
	c.mu.Unlock()
}

func (c *catalog) key(hash [sha256.Size]byte) *model.APIKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keys[hash]
}

func (c *catalog) hasRootKey() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, k := range c.keys {
		if k.Role == model.RoleRoot {
			return true
		}
	}
	return false
}

func (c *catalog) project(pid string) *model.Project {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.projects[pid]
}

func (c *catalog) allProjects() []*model.Project {
	c.mu.RLock()
	out := make([]*model.Project, 0, len(c.projects))
	for _, p := range c.projects {
		out = append(out, p)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

func (c *catalog) endpoint(pid, eid string) *model.Endpoint {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.endpoints[pid][eid]
}

func (c *catalog) projectEndpoints(pid string) []*model.Endpoint {
	c.mu.RLock()
	out := make([]*model.Endpoint, 0, len(c.endpoints[pid]))
	for _, e := range c.endpoints[pid] {
		out = append(out, e)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

func (c *catalog) subscription(pid, sid string) *model.Subscription {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.subs[pid][sid]
}

// projectSubscriptions returns the project's subscriptions sorted by id. The slice is shared:
// callers must not modify it.
func (c *catalog) projectSubscriptions(pid string) []*model.Subscription {
	c.mu.RLock()
	out, ok := c.subList[pid]
	c.mu.RUnlock()
	if ok {
		return out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, ok := c.subList[pid]; ok {
		return out
	}
	out = make([]*model.Subscription, 0, len(c.subs[pid]))
	for _, s := range c.subs[pid] {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	c.subList[pid] = out
	return out
}
