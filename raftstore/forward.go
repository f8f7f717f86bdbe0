package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Forwarder carries a command from a follower to the leader (the binary implements it over HTTP). It
// returns the leader's result and the log index the command was applied at, so the follower can wait
// until its own state has caught up before answering (read-your-writes on any node).
type Forwarder interface {
	Forward(ctx context.Context, leaderID string, cmd []byte) (result []byte, err error)
}

// wireResult is a Result as it crosses the network: errors travel as a code and a message and are
// rebuilt around the same sentinels, so callers classify forwarded errors with errors.Is as usual.
type wireResult struct {
	Index     uint64 `json:"index"`
	ErrCode   string `json:"err_code,omitempty"`
	ErrMsg    string `json:"err_msg,omitempty"`
	EventID   string `json:"event_id,omitempty"`
	Matched   int    `json:"matched,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Count     int    `json:"count,omitempty"`
}

var errCodes = []struct {
	code string
	err  error
}{{"not_found", ErrNotFound}, {"exists", ErrExists}, {"bad_command", ErrBadCmd}, {"not_leader", ErrNotLeader}, {"closed", ErrClosed}, {"disk_full", ErrDiskFull}}

func encodeErr(err error) (code, msg string) {
	if err == nil {
		return "", ""
	}
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return c.code, err.Error()
		}
	}
	return "internal", err.Error()
}

// remoteError is an error returned by the leader, wrapping the local sentinel of the same kind.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func decodeErr(code, msg string) error {
	if code == "" {
		return nil
	}
	for _, c := range errCodes {
		if c.code == code {
			return &remoteError{msg: msg, sentinel: c.err}
		}
	}
	return errors.New(msg)
}

// ServeForwarded proposes a command received from a follower (the bytes it sent) and returns the
// reply to send back. Call it on the node the follower believes leads.
func (s *Store) ServeForwarded(ctx context.Context, req []byte) []byte {
	var wr wireResult
	cmds, err := decodeEntry(req)
	if err == nil && len(cmds) != 1 {
		err = fmt.Errorf("%w: forwarded %d commands, want 1", ErrBadCmd, len(cmds))
	}
	if err == nil {
		var res Result
		switch {
		case s.raft.State() != raftLeader:
			err = ErrNotLeader
		case s.refuseForDisk(&cmds[0]):
			err = ErrDiskFull // the leader's disk counts too: it stores the event first
		default:
			res, err = s.prop.propose(ctx, &cmds[0])
		}
		wr = wireResult{Index: res.Index, EventID: res.EventID, Matched: res.Matched, Duplicate: res.Duplicate, Count: res.Count}
		if err == nil {
			err = res.Err
		}
	}
	wr.ErrCode, wr.ErrMsg = encodeErr(err)
	out, _ := json.Marshal(&wr)
	return out
}

// forward sends cmd to the leader and waits until this node has applied it.
func (s *Store) forward(ctx context.Context, cmd *Command) (Result, error) {
	_, leaderID := s.raft.LeaderWithID()
	if leaderID == "" || s.cfg.Forwarder == nil {
		return Result{}, ErrNotLeader
	}
	reply, err := s.cfg.Forwarder.Forward(ctx, string(leaderID), encodeEntry([]*Command{cmd}))
	if err != nil {
		return Result{}, fmt.Errorf("%w: forward to leader %s: %v", ErrNotLeader, leaderID, err)
	}
	var wr wireResult
	if err := json.Unmarshal(reply, &wr); err != nil {
		return Result{}, fmt.Errorf("raftstore: malformed reply from leader %s: %w", leaderID, err)
	}
	res := Result{Index: wr.Index, EventID: wr.EventID, Matched: wr.Matched, Duplicate: wr.Duplicate, Count: wr.Count,
		Err: decodeErr(wr.ErrCode, wr.ErrMsg)}
	if errors.Is(res.Err, ErrNotLeader) || errors.Is(res.Err, ErrClosed) {
		return res, res.Err
	}
	if err := s.fsm.waitApplied(ctx, wr.Index); err != nil {
		return res, err
	}
	return res, nil
}
