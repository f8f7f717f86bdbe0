package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-gw/sluice/netpool"
	"github.com/sluice-gw/sluice/raftstore"
	"github.com/sluice-gw/sluice/scheduler"
)

// Meta events tell a project owner about its own endpoints (endpoint.disabled, eventdelivery.failed).
// They are stored by the FSM with the result that caused them, so they survive crashes; the leader
// sends them with a short retry schedule of its own, signed with the project's meta-event secret.
var metaBackoff = []time.Duration{0, 10 * time.Second, time.Minute, 10 * time.Minute, time.Hour}

const (
	metaTimeout     = 10 * time.Second
	metaConcurrency = 8
	// HeaderMetaEventType names the meta event type on a meta-event request.
	HeaderMetaEventType = "X-Sluice-Meta-Event-Type"
	// HeaderMetaEventID carries the meta event's id (stable across retries).
	HeaderMetaEventID = "X-Sluice-Meta-Event-Id"
)

type metaSender struct {
	e     *Engine
	wheel *scheduler.Wheel[raftstore.MetaRef]
	sem   chan struct{}
	wg    sync.WaitGroup
	ctx   context.Context
	once  sync.Once
	ready chan struct{} // closed when run has set ctx
}

func newMetaSender(e *Engine) *metaSender {
	m := &metaSender{e: e, sem: make(chan struct{}, metaConcurrency), ready: make(chan struct{})}
	m.wheel = scheduler.New[raftstore.MetaRef](scheduler.Config{Clock: e.clock, Tick: 10 * time.Millisecond}, m.fire)
	return m
}

func (m *metaSender) run(ctx context.Context) {
	m.ctx = ctx
	close(m.ready)
	m.wheel.Run(ctx)
	m.wg.Wait()
}

func (m *metaSender) schedule(ref raftstore.MetaRef, at time.Time) { m.wheel.Schedule(ref, at) }

// rebuild schedules every meta event still to be sent (after this node becomes the dispatcher).
func (m *metaSender) rebuild() {
	now := m.e.clock.Now()
	for _, p := range m.e.st.Projects() {
		if p.Config.MetaEvent == nil {
			continue
		}
		pending, err := m.e.st.MetaEvents(p.UID, 1000, true)
		if err != nil {
			m.e.log.Error("list pending meta events", "project", p.UID, "err", err)
			continue
		}
		for _, me := range pending {
			m.schedule(raftstore.MetaRef{ProjectID: p.UID, UID: me.UID}, now)
		}
	}
}

func (m *metaSender) fire(due []raftstore.MetaRef) {
	<-m.ready
	for _, ref := range due {
		select {
		case m.sem <- struct{}{}:
		case <-m.ctx.Done():
			return
		}
		m.wg.Add(1)
		go func(ref raftstore.MetaRef) {
			defer func() { <-m.sem; m.wg.Done() }()
			m.send(ref)
		}(ref)
	}
}

func (m *metaSender) send(ref raftstore.MetaRef) {
	e := m.e
	if !e.leader.Load() {
		return
	}
	me, err := e.st.MetaEvent(ref.ProjectID, ref.UID)
	if err != nil || me.Status != "scheduled" {
		return
	}
	proj := e.st.Project(ref.ProjectID)
	res := raftstore.MetaResult{ProjectID: ref.ProjectID, UID: ref.UID}
	if proj == nil || proj.Config.MetaEvent == nil || proj.Config.MetaEvent.URL == "" {
		res.Status, res.Error = "failed", "the project has no meta_event url"
	} else {
		cfg := proj.Config.MetaEvent
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		h.Set(HeaderMetaEventType, me.EventType)
		h.Set(HeaderMetaEventID, me.UID)
		if cfg.Secret != "" {
			h.Set(HeaderSignature, SignHex(cfg.Secret, me.Data))
		}
		ctx, cancel := context.WithTimeout(m.ctx, metaTimeout)
		resp := e.sender.Do(ctx, &netpool.Request{Method: http.MethodPost, URL: cfg.URL, Header: h, Body: me.Data, Timeout: metaTimeout, Key: ref.ProjectID})
		cancel()
		if errors.Is(m.ctx.Err(), context.Canceled) {
			return // shutting down: still scheduled in the store, sent again later
		}
		res.StatusCode = resp.StatusCode
		switch {
		case resp.Err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300:
			res.Status = "success"
		case me.Attempts+1 < len(metaBackoff):
			res.Status = "scheduled"
		default:
			res.Status = "failed"
		}
		if resp.Err != nil {
			res.Error = resp.Err.Error()
		} else if res.Status != "success" {
			res.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
	}
	res.At = e.clock.Now().UTC()
	cmd, err := raftstore.NewCommand(raftstore.CmdMetaResult, res, nil)
	if err == nil {
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		var r raftstore.Result
		r, err = e.st.Propose(ctx, cmd)
		cancel()
		if err == nil {
			err = r.Err
		}
	}
	if err != nil {
		e.log.Warn("record meta event attempt", "project", ref.ProjectID, "meta_event", ref.UID, "err", err)
		m.schedule(ref, e.clock.Now().Add(e.cfg.RetryOnStoreError))
		return
	}
	if res.Status == "scheduled" {
		m.schedule(ref, res.At.Add(metaBackoff[me.Attempts+1]))
	}
}
