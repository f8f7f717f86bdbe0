package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ErrNotLeader is returned when this node cannot commit: another node leads (or none does yet).
var ErrNotLeader = errors.New("raftstore: not the leader")

// ErrTooLarge is returned for a command bigger than one Raft entry may be.
var ErrTooLarge = errors.New("raftstore: command too large")

// ProposerConfig bounds the proposer's batches. Zero values take the defaults.
type ProposerConfig struct {
	// MaxBatchBytes caps the encoded size of one Raft entry, and so of one command (a publish to
	// N endpoints carries ~90 bytes per endpoint: 4 MiB is ~45,000 endpoints). Default 4 MiB.
	MaxBatchBytes int
	// MaxBatchCommands caps the commands in one entry. Default 4096.
	MaxBatchCommands int
	// MaxInFlight is how many entries may be between raft.Apply and FSM apply at once. While all
	// slots are busy, new proposals accumulate into the next batch: this is where batching comes
	// from under load, with no added latency when idle. Default 64.
	MaxInFlight int
	// Linger is how long a batch waits for more proposals once it holds a slot, but only while
	// other entries are in flight (load is present): with one publisher nothing ever waits. It
	// raises commands per entry below MaxInFlight publishers (measured: ~1.1 -> ~4 at 16 HTTP
	// clients, ~1.2 -> ~6 at 64) but not fsyncs per event: raft's leader loop already writes every
	// entry queued during an fsync with the next one, and closed-loop clients settle into two
	// alternating groups (~2/clients fsyncs per event) that only a wait as long as an fsync could
	// merge. CPU per event did not move beyond the noise and ack p50 rose, so the default is 0
	// (off); a deployment whose per-entry costs are higher (e.g. a cluster, where every entry is
	// replicated) can set ~100-500µs.
	Linger time.Duration
	// QueueLen is the proposal queue; a full queue blocks Propose (backpressure). Default 16384.
	QueueLen int
	// ApplyTimeout bounds how long raft may take to accept an entry. Default 10 s.
	ApplyTimeout time.Duration
}

func (c *ProposerConfig) setDefaults() {
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.MaxBatchCommands <= 0 {
		c.MaxBatchCommands = 4096
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 16384
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 10 * time.Second
	}
}

type proposal struct {
	cmd  *Command
	size int
	done chan proposalResult // buffered 1: the completer never blocks on a caller that left
}

type proposalResult struct {
	res Result
	err error
}

type inflight struct {
	f     raft.ApplyFuture
	batch []*proposal
	start time.Time
}

// proposer turns concurrent proposals into few Raft entries. Its run goroutine owns batch assembly;
// its complete goroutine waits on futures in log order and answers callers. Stats are atomic.
type proposer struct {
	cfg     ProposerConfig
	r       *raft.Raft
	in      chan *proposal
	slots   chan struct{} // a token per in-flight entry
	pending chan inflight
	stopCh  chan struct{}
	wg      sync.WaitGroup
	stats   *Stats
	// compress reports whether entries may be written compressed (Store.CompressedEntries); nil
	// never compresses.
	compress func() bool
}

func newProposer(cfg ProposerConfig, r *raft.Raft, stats *Stats, compress func() bool) *proposer {
	cfg.setDefaults()
	p := &proposer{
		cfg:      cfg,
		r:        r,
		in:       make(chan *proposal, cfg.QueueLen),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		pending:  make(chan inflight, cfg.MaxInFlight),
		stopCh:   make(chan struct{}),
		stats:    stats,
		compress: compress,
	}
	p.wg.Add(2)
	go p.run()
	go p.complete()
	return p
}

func (p *proposer) stop() {
	close(p.stopCh)
	p.wg.Wait()
}

// propose submits cmd and waits until it is committed and applied (or ctx ends: the command may still
// apply later, which is why publishes carry idempotency keys).
func (p *proposer) propose(ctx context.Context, cmd *Command) (Result, error) {
	pr := &proposal{cmd: cmd, size: encodedSize(cmd), done: make(chan proposalResult, 1)}
	if pr.size > p.cfg.MaxBatchBytes {
		return Result{}, fmt.Errorf("%w: %s command of %d bytes exceeds the %d-byte entry limit", ErrTooLarge, cmd.Type, pr.size, p.cfg.MaxBatchBytes)
	}
	select {
	case p.in <- pr:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-p.stopCh:
		return Result{}, ErrClosed
	}
	select {
	case r := <-pr.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-p.stopCh:
		return Result{}, ErrClosed
	}
}

// Outcome is one command's result from ProposeAll.
type Outcome struct {
	Result Result
	Err    error
}

// ProposeAll commits cmds as that many concurrent Propose calls would, but from one goroutine: on the
// leader they enter the proposer's queue back to back (so they usually share an entry) and are waited
// for in order; on a follower each is forwarded concurrently. Outcomes are in the order of cmds. The
// TCP ingest path uses it for a PUBLISH_BATCH, which otherwise took a goroutine (and its stack
// growth) per item just to wait.
func (s *Store) ProposeAll(ctx context.Context, cmds []Command) []Outcome {
	if s.diskLow.Load() {
		return s.proposeAllButEvents(ctx, cmds)
	}
	out := make([]Outcome, len(cmds))
	if s.raft.State() != raft.Leader {
		var wg sync.WaitGroup
		for i := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i].Result, out[i].Err = s.forward(ctx, &cmds[i])
			}()
		}
		wg.Wait()
		return out
	}
	s.prop.proposeAll(ctx, cmds, out)
	return out
}

// proposeAll is propose for many commands; cmds must stay unchanged until it returns.
func (p *proposer) proposeAll(ctx context.Context, cmds []Command, out []Outcome) {
	prs := make([]*proposal, len(cmds))
	for i := range cmds {
		pr := &proposal{cmd: &cmds[i], size: encodedSize(&cmds[i]), done: make(chan proposalResult, 1)}
		if pr.size > p.cfg.MaxBatchBytes {
			out[i].Err = fmt.Errorf("%w: %s command of %d bytes exceeds the %d-byte entry limit", ErrTooLarge, cmds[i].Type, pr.size, p.cfg.MaxBatchBytes)
			continue
		}
		select {
		case p.in <- pr:
			prs[i] = pr
		case <-ctx.Done():
			out[i].Err = ctx.Err()
		case <-p.stopCh:
			out[i].Err = ErrClosed
		}
	}
	for i, pr := range prs {
		if pr == nil {
			continue
		}
		select {
		case r := <-pr.done:
			out[i] = Outcome{Result: r.res, Err: r.err}
		case <-ctx.Done():
			out[i].Err = ctx.Err()
		case <-p.stopCh:
			out[i].Err = ErrClosed
		}
	}
}

func (p *proposer) run() {
	defer p.wg.Done()
	defer close(p.pending)
	var carry *proposal // a proposal that did not fit the previous batch
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-p.in:
			case <-p.stopCh:
				return
			}
		}
		batch, size := []*proposal{first}, first.size
		add := func(pr *proposal) bool {
			if size+pr.size > p.cfg.MaxBatchBytes {
				carry = pr
				return false
			}
			batch, size = append(batch, pr), size+pr.size
			return true
		}
		full := func() bool {
			return carry != nil || size >= p.cfg.MaxBatchBytes || len(batch) >= p.cfg.MaxBatchCommands
		}
		// Wait for a pipeline slot, gathering what arrives meanwhile: under load the batch grows
		// while earlier entries are being committed; when idle the slot is free at once.
		slot := false
		for !slot && !full() {
			select {
			case p.slots <- struct{}{}:
				slot = true
			case pr := <-p.in:
				add(pr)
			case <-p.stopCh:
				p.fail(batch, carry)
				return
			}
		}
		if !slot {
			select {
			case p.slots <- struct{}{}:
			case <-p.stopCh:
				p.fail(batch, carry)
				return
			}
		}
		// Take whatever else is already queued without waiting.
	drain:
		for !full() {
			select {
			case pr := <-p.in:
				add(pr)
			default:
				break drain
			}
		}
		// Under moderate load, gather for a moment more: slots holds ours plus those in flight.
		if p.cfg.Linger > 0 && len(p.slots) > 1 && !full() {
			linger.Reset(p.cfg.Linger)
		gather:
			for !full() {
				select {
				case pr := <-p.in:
					add(pr)
				case <-linger.C:
					break gather
				case <-p.stopCh:
					p.fail(batch, carry)
					return
				}
			}
			linger.Stop()
		}
		p.send(batch)
	}
}

func (p *proposer) fail(batch []*proposal, carry *proposal) {
	failAll(batch, ErrClosed)
	if carry != nil {
		failAll([]*proposal{carry}, ErrClosed)
	}
}

// send proposes one batch; the caller holds a slot for it.
func (p *proposer) send(batch []*proposal) {
	cmds := make([]*Command, len(batch))
	for i, pr := range batch {
		cmds[i] = pr.cmd
	}
	p.stats.observeBatch(len(batch))
	entry := encodeEntry(cmds)
	if p.compress != nil && p.compress() {
		entry = compressEntry(entry)
	}
	f := p.r.Apply(entry, p.cfg.ApplyTimeout)
	p.pending <- inflight{f: f, batch: batch, start: time.Now()}
}

func (p *proposer) complete() {
	defer p.wg.Done()
	for in := range p.pending {
		err := in.f.Error()
		<-p.slots
		if err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				err = fmt.Errorf("%w: %v", ErrNotLeader, err)
			} else if errors.Is(err, raft.ErrRaftShutdown) {
				err = ErrClosed
			} else {
				err = fmt.Errorf("raftstore: apply: %w", err)
			}
			failAll(in.batch, err)
			continue
		}
		p.stats.observeCommit(time.Since(in.start))
		rs, ok := in.f.Response().([]Result)
		if !ok || len(rs) != len(in.batch) {
			failAll(in.batch, fmt.Errorf("raftstore: entry %d applied without results", in.f.Index()))
			continue
		}
		idx := in.f.Index()
		for i, pr := range in.batch {
			rs[i].Index = idx
			pr.done <- proposalResult{res: rs[i], err: rs[i].Err}
		}
	}
}

func failAll(batch []*proposal, err error) {
	for _, pr := range batch {
		pr.done <- proposalResult{err: err}
	}
}
