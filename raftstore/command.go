package raftstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/klauspost/compress/s2"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// CmdType names a state change. Values are persisted in the Raft log: never renumber.
type CmdType uint8

const (
	CmdPutAPIKey CmdType = iota + 1
	CmdPutProject
	CmdDeleteProject
	CmdPutEndpoint
	CmdDeleteEndpoint
	CmdPutSubscription
	CmdDeleteSubscription
	CmdPublish
	CmdResults
	CmdResend
	CmdMetaResult
	CmdPutNode
	CmdSetLive
	CmdDeleteNode
)

// Command types of separately registered features (see registerApplier) take values from these
// ranges, so features never collide.
const (
	cmdRangeSources CmdType = 32 // incoming sources: 32..47
	cmdRangePortal  CmdType = 48 // portal links: 48..63
)

func (t CmdType) String() string {
	names := [...]string{"?", "put-api-key", "put-project", "delete-project", "put-endpoint", "delete-endpoint",
		"put-subscription", "delete-subscription", "publish", "results", "resend", "meta-result",
		"put-node", "set-live", "delete-node"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("cmd(%d)", t)
}

// Command is one state change. Meta is the JSON of the type's body; Blob carries bytes that must not be
// re-encoded (an event's compressed data). Everything nondeterministic (ids, timestamps) is chosen by
// the proposer's caller and travels in Meta, so applying a command is a pure function of the state.
type Command struct {
	Type CmdType
	Meta []byte
	Blob []byte
}

// PutProject creates or replaces a project; Key, when set, is stored with it (creation).
type PutProject struct {
	Project model.Project `json:"project"`
	Key     *model.APIKey `json:"key,omitempty"`
	Create  bool          `json:"create,omitempty"`
}

// DeleteRef names a resource to delete; At is the time of the deletion.
type DeleteRef struct {
	ProjectID string    `json:"project_id"`
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
}

// PutEndpoint creates or replaces an endpoint. Create fails if it exists; otherwise it must exist.
type PutEndpoint struct {
	Endpoint model.Endpoint `json:"endpoint"`
	Create   bool           `json:"create,omitempty"`
}

// PutSubscription creates or replaces a subscription.
type PutSubscription struct {
	Subscription model.Subscription `json:"subscription"`
	Create       bool               `json:"create,omitempty"`
}

// Publish stores an event and one delivery per target. Replay adds deliveries to an existing event.
type Publish struct {
	Event model.Event `json:"event"` // Data travels compressed in Command.Blob
	// Targets are the matched endpoints, each with the delivery id chosen for it.
	Targets []Target `json:"targets"`
	Replay  bool     `json:"replay,omitempty"`
}

// Target is one endpoint a published event goes to.
type Target struct {
	EndpointID string `json:"e"`
	DeliveryID string `json:"d"`
	OwnerID    string `json:"o,omitempty"`
}

// Results records delivery attempts and what follows them.
type Results struct {
	Results []AttemptResult `json:"results"`
}

// AttemptResult is one attempt's outcome.
type AttemptResult struct {
	ProjectID       string               `json:"project_id"`
	DeliveryID      string               `json:"delivery_id"`
	Status          model.DeliveryStatus `json:"status"`
	NextAttemptAt   time.Time            `json:"next_attempt_at,omitzero"`
	DisableEndpoint bool                 `json:"disable_endpoint,omitempty"`
	Attempt         *model.Attempt       `json:"attempt,omitempty"`
	At              time.Time            `json:"at"`
}

// Resend makes deliveries pending again, due at At.
type Resend struct {
	ProjectID   string    `json:"project_id"`
	DeliveryIDs []string  `json:"delivery_ids"`
	At          time.Time `json:"at"`
}

// MetaResult records an attempt to send a meta event.
type MetaResult struct {
	ProjectID  string    `json:"project_id"`
	UID        string    `json:"uid"`
	Status     string    `json:"status"` // scheduled (will retry), success, failed
	StatusCode int       `json:"status_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

// SetLive records which nodes take part in dispatch: the leader proposes it when a node's heartbeats
// start or stop. Every node derives endpoint ownership from it, so all agree on who delivers what.
type SetLive struct {
	Nodes []string  `json:"nodes"`
	At    time.Time `json:"at"`
}

// NewCommand encodes body as the command's Meta.
func NewCommand(t CmdType, body any, blob []byte) (Command, error) {
	meta, err := json.Marshal(body)
	if err != nil {
		return Command{}, fmt.Errorf("raftstore: encode %s command: %w", t, err)
	}
	return Command{Type: t, Meta: meta, Blob: blob}, nil
}

// Entry framing: version byte, command count, then per command: type, meta length, meta, blob length,
// blob (lengths as uvarints). One Raft entry carries a whole proposer batch.
const entryVersion = 1

// A compressed entry is entryCompressed followed by one S2 block holding a whole version-1 entry.
// The proposer compresses (codec 2, see CompressedEntries) so that the bytes the Raft log stores,
// replicates and reads back are small and an entry is expanded only when the FSM applies it: after a
// restart raft hands the FSM every entry since its last snapshot (hundreds of MB of batches that
// compress ~10x), and the FSM skips those at or below its applied index without decoding them.
const entryCompressed = 2

// minCompressEntry: below this an entry (one small publish, a heartbeat) is not worth an S2 pass.
const minCompressEntry = 1 << 10

// maxEntryLen bounds what a compressed entry may expand to: the proposer's batches are capped at
// MaxBatchBytes (default 4 MiB), so anything claiming more is corrupt, not a reason to allocate.
const maxEntryLen = 256 << 20

// compressEntry returns entry as a compressed entry when that saves at least an eighth, else entry.
func compressEntry(entry []byte) []byte {
	if len(entry) < minCompressEntry {
		return entry
	}
	out := make([]byte, 1+s2.MaxEncodedLen(len(entry)))
	out[0] = entryCompressed
	n := len(s2.Encode(out[1:], entry))
	if 1+n > len(entry)-len(entry)/8 {
		return entry
	}
	return out[:1+n]
}

var errBadEntry = errors.New("raftstore: malformed log entry")

func encodedSize(c *Command) int {
	return 1 + binary.MaxVarintLen64*2 + len(c.Meta) + len(c.Blob)
}

func appendCommand(dst []byte, c *Command) []byte {
	dst = append(dst, byte(c.Type))
	dst = binary.AppendUvarint(dst, uint64(len(c.Meta)))
	dst = append(dst, c.Meta...)
	dst = binary.AppendUvarint(dst, uint64(len(c.Blob)))
	return append(dst, c.Blob...)
}

func encodeEntry(cmds []*Command) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += encodedSize(c)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendCommand(b, c)
	}
	return b
}

// decodeEntry splits an entry into commands; Meta and Blob alias data.
func decodeEntry(data []byte) ([]Command, error) {
	if len(data) >= 1 && data[0] == entryCompressed {
		n, err := s2.DecodedLen(data[1:])
		if err != nil || n > maxEntryLen {
			return nil, fmt.Errorf("%w: compressed entry of %d bytes claims %d bytes: %v", errBadEntry, len(data), n, err)
		}
		raw, err := s2.Decode(make([]byte, n), data[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: decompress %d bytes: %v", errBadEntry, len(data), err)
		}
		if len(raw) >= 1 && raw[0] == entryCompressed {
			return nil, fmt.Errorf("%w: compressed entry inside a compressed entry", errBadEntry)
		}
		data = raw
	}
	if len(data) < 2 || data[0] != entryVersion {
		return nil, fmt.Errorf("%w: bad version or length %d", errBadEntry, len(data))
	}
	p := data[1:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)) {
		return nil, fmt.Errorf("%w: bad command count", errBadEntry)
	}
	p = p[k:]
	cmds := make([]Command, 0, n)
	for i := uint64(0); i < n; i++ {
		if len(p) < 1 {
			return nil, fmt.Errorf("%w: truncated at command %d", errBadEntry, i)
		}
		c := Command{Type: CmdType(p[0])}
		p = p[1:]
		var err error
		if c.Meta, p, err = takeBytes(p); err != nil {
			return nil, fmt.Errorf("%w: command %d meta: %v", errBadEntry, i, err)
		}
		if c.Blob, p, err = takeBytes(p); err != nil {
			return nil, fmt.Errorf("%w: command %d blob: %v", errBadEntry, i, err)
		}
		cmds = append(cmds, c)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadEntry, len(p))
	}
	return cmds, nil
}

func takeBytes(p []byte) (val, rest []byte, err error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, errors.New("bad length")
	}
	return p[k : k+int(n)], p[k+int(n):], nil
}
