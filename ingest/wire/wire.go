package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"
)

// Version is the protocol version every frame carries in byte 4.
const Version byte = 1

const (
	// HeaderLen is the size of a frame header; the payload follows it.
	HeaderLen = 16
	// lenCovered is how many header bytes the length field counts (everything after itself).
	lenCovered = HeaderLen - 4
	// DefaultMaxPayload is the largest PUBLISH / PUBLISH_BATCH payload a server accepts by default:
	// the HTTP API's default body limit (1 MiB) plus room for the TCP fields and batch framing.
	DefaultMaxPayload = 1<<20 + 64<<10
	// MaxControlPayload caps the payload of every other frame type (AUTH, PING, acks, errors), so an
	// unauthenticated peer can make the server buffer at most this much.
	MaxControlPayload = 4096
	// MaxMessageLen caps the text of a NACK or ERROR; longer messages are cut at a rune boundary.
	MaxMessageLen = 1024
	// MaxEventIDLen caps the event id in an ACK.
	MaxEventIDLen = 255
)

// FlagCompressed marks a payload (for PUBLISH_BATCH: the item block after the count) compressed as
// one S2 block. S2 block decoding also reads Snappy blocks, so any Snappy encoder may produce it.
const FlagCompressed uint8 = 0x01

// Type is a frame type (byte 5 of the header).
type Type uint8

// Frame types. Client to server: Auth, Publish, PublishBatch, Ping. Server to client: AuthOK, Ack,
// Nack, Pong, Error.
const (
	TypeAuth         Type = 0x01
	TypeAuthOK       Type = 0x02
	TypePublish      Type = 0x03
	TypePublishBatch Type = 0x04
	TypeAck          Type = 0x05
	TypeNack         Type = 0x06
	TypePing         Type = 0x07
	TypePong         Type = 0x08
	TypeError        Type = 0x09
)

var typeNames = [...]string{
	TypeAuth: "AUTH", TypeAuthOK: "AUTH_OK", TypePublish: "PUBLISH", TypePublishBatch: "PUBLISH_BATCH",
	TypeAck: "ACK", TypeNack: "NACK", TypePing: "PING", TypePong: "PONG", TypeError: "ERROR",
}

// Valid reports whether t is a frame type of this version.
func (t Type) Valid() bool { return t >= TypeAuth && t <= TypeError }

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE_0x%02x", uint8(t))
}

// FromClient reports whether a client may send t.
func (t Type) FromClient() bool {
	return t == TypeAuth || t == TypePublish || t == TypePublishBatch || t == TypePing
}

// maxPayloadFor is the largest payload a frame of type t may carry.
func maxPayloadFor(t Type, maxPublish int) int {
	if t == TypePublish || t == TypePublishBatch {
		return maxPublish
	}
	return MaxControlPayload
}

// Header is a decoded frame header.
type Header struct {
	Type       Type
	Flags      uint8
	Seq        uint64
	PayloadLen int
}

// Compressed reports whether the payload carries FlagCompressed.
func (h Header) Compressed() bool { return h.Flags&FlagCompressed != 0 }

// Frame is one decoded frame; Payload aliases the decoder's input.
type Frame struct {
	Header
	Payload []byte
}

// ErrIncomplete means the input holds only part of a frame: read more and try again.
var ErrIncomplete = errors.New("wire: incomplete frame")

// FrameError is a malformed frame. The connection cannot be resynchronised after one: answer with an
// ERROR frame carrying Code and close.
type FrameError struct {
	Code Code
	Msg  string
}

func (e *FrameError) Error() string { return "wire: " + e.Msg }

func frameErr(c Code, format string, args ...any) error {
	return &FrameError{Code: c, Msg: fmt.Sprintf(format, args...)}
}

// ParseHeader validates the header at the start of b. maxPublish is the largest PUBLISH or
// PUBLISH_BATCH payload allowed; other types are capped at MaxControlPayload. It returns ErrIncomplete
// when b is shorter than a header and a *FrameError when the header is malformed.
func ParseHeader(b []byte, maxPublish int) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrIncomplete
	}
	length := binary.BigEndian.Uint32(b[0:4])
	if b[4] != Version {
		return Header{}, frameErr(CodeUnsupportedVersion, "protocol version %d is not supported (this end speaks %d)", b[4], Version)
	}
	if length < lenCovered {
		return Header{}, frameErr(CodeBadFrame, "length %d is shorter than the %d header bytes it must cover", length, lenCovered)
	}
	t := Type(b[5])
	if !t.Valid() {
		return Header{}, frameErr(CodeUnknownType, "unknown frame type 0x%02x", b[5])
	}
	flags := b[6]
	if flags&^FlagCompressed != 0 {
		return Header{}, frameErr(CodeBadFrame, "unknown flag bits 0x%02x in a %s frame", flags&^FlagCompressed, t)
	}
	if flags&FlagCompressed != 0 && t != TypePublish && t != TypePublishBatch {
		return Header{}, frameErr(CodeBadFrame, "a %s frame cannot be compressed", t)
	}
	if b[7] != 0 {
		return Header{}, frameErr(CodeBadFrame, "reserved header byte is 0x%02x, want 0", b[7])
	}
	n := uint64(length) - lenCovered
	if limit := maxPayloadFor(t, maxPublish); n > uint64(limit) {
		return Header{}, frameErr(CodeFrameTooLarge, "%s payload of %d bytes exceeds the %d-byte limit", t, n, limit)
	}
	return Header{Type: t, Flags: flags, Seq: binary.BigEndian.Uint64(b[8:16]), PayloadLen: int(n)}, nil
}

// DecodeFrame decodes the frame at the start of b and returns it with the number of bytes it used.
// The payload aliases b. It returns ErrIncomplete (and n == 0) when b holds only part of a valid
// frame, and a *FrameError for a malformed one. It never allocates.
func DecodeFrame(b []byte, maxPublish int) (f Frame, n int, err error) {
	h, err := ParseHeader(b, maxPublish)
	if err != nil {
		return Frame{}, 0, err
	}
	total := HeaderLen + h.PayloadLen
	if len(b) < total {
		return Frame{}, 0, ErrIncomplete
	}
	return Frame{Header: h, Payload: b[HeaderLen:total:total]}, total, nil
}

// AppendHeader appends a header for a payload of payloadLen bytes.
func AppendHeader(dst []byte, t Type, flags uint8, seq uint64, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(lenCovered+payloadLen))
	dst = append(dst, Version, byte(t), flags, 0)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// AppendFrame appends a whole frame.
func AppendFrame(dst []byte, t Type, flags uint8, seq uint64, payload []byte) []byte {
	dst = AppendHeader(dst, t, flags, seq, len(payload))
	return append(dst, payload...)
}

// Ack is the payload of an ACK: the publish with this seq is committed and applied.
type Ack struct {
	EventID string
	// Matched is how many endpoints the event will be delivered to.
	Matched uint32
	// Duplicate: the idempotency key was already used; EventID is the original event and nothing new
	// was stored.
	Duplicate bool
}

const ackDuplicate = 0x01

// AppendAck appends an ACK frame:  flags u8 (bit 0 duplicate) | matched u32 | id_len u8 | id.
func AppendAck(dst []byte, seq uint64, a Ack) []byte {
	id := a.EventID
	if len(id) > MaxEventIDLen {
		id = id[:MaxEventIDLen]
	}
	dst = AppendHeader(dst, TypeAck, 0, seq, 6+len(id))
	var fl byte
	if a.Duplicate {
		fl = ackDuplicate
	}
	dst = append(dst, fl)
	dst = binary.BigEndian.AppendUint32(dst, a.Matched)
	dst = append(dst, byte(len(id)))
	return append(dst, id...)
}

// ParseAck decodes an ACK payload.
func ParseAck(p []byte) (Ack, error) {
	if len(p) < 6 {
		return Ack{}, frameErr(CodeBadFrame, "ACK payload of %d bytes is shorter than 6", len(p))
	}
	if p[0]&^ackDuplicate != 0 {
		return Ack{}, frameErr(CodeBadFrame, "unknown ACK flag bits 0x%02x", p[0])
	}
	idLen := int(p[5])
	if len(p) != 6+idLen {
		return Ack{}, frameErr(CodeBadFrame, "ACK payload is %d bytes, its id length says %d", len(p), 6+idLen)
	}
	return Ack{Duplicate: p[0]&ackDuplicate != 0, Matched: binary.BigEndian.Uint32(p[1:5]), EventID: string(p[6:])}, nil
}

// Problem is the payload of a NACK (one request refused) or an ERROR (the connection is closing).
type Problem struct {
	Code    Code
	Message string
}

func (p Problem) Error() string { return p.Code.String() + ": " + p.Message }

// AppendProblem appends a NACK or ERROR frame: code u16 | msg_len u16 | msg (UTF-8).
func AppendProblem(dst []byte, t Type, seq uint64, p Problem) []byte {
	msg := truncate(p.Message, MaxMessageLen)
	dst = AppendHeader(dst, t, 0, seq, 4+len(msg))
	dst = binary.BigEndian.AppendUint16(dst, uint16(p.Code))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...)
}

// ParseProblem decodes a NACK or ERROR payload.
func ParseProblem(p []byte) (Problem, error) {
	if len(p) < 4 {
		return Problem{}, frameErr(CodeBadFrame, "NACK/ERROR payload of %d bytes is shorter than 4", len(p))
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if len(p) != 4+n {
		return Problem{}, frameErr(CodeBadFrame, "NACK/ERROR payload is %d bytes, its message length says %d", len(p), 4+n)
	}
	return Problem{Code: Code(binary.BigEndian.Uint16(p[0:2])), Message: string(p[4:])}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// A PUBLISH_BATCH payload is count u32 (never compressed) followed by the item block, which
// FlagCompressed compresses as a whole. The block is count items, each item_len u32 | item (one
// PUBLISH payload). Item i is answered with seq+i.

// BatchCount reads the item count of a PUBLISH_BATCH payload and returns the item block after it.
func BatchCount(p []byte) (count int, block []byte, err error) {
	if len(p) < 4 {
		return 0, nil, frameErr(CodeBadFrame, "PUBLISH_BATCH payload of %d bytes has no item count", len(p))
	}
	c := binary.BigEndian.Uint32(p[0:4])
	if c == 0 {
		return 0, nil, frameErr(CodeBadFrame, "PUBLISH_BATCH with zero items")
	}
	return int(c), p[4:], nil
}

// AppendBatch appends a PUBLISH_BATCH payload (count and uncompressed item block) for items.
func AppendBatch(dst []byte, items ...[]byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(items)))
	return AppendBatchItems(dst, items...)
}

// AppendBatchItems appends an item block (without the count) for items.
func AppendBatchItems(dst []byte, items ...[]byte) []byte {
	for _, it := range items {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(it)))
		dst = append(dst, it...)
	}
	return dst
}

// SplitBatch splits an uncompressed item block into its count items, which alias block. Each item
// must be at most maxItem bytes and the items must fill the block exactly.
func SplitBatch(block []byte, count, maxItem int) ([][]byte, error) {
	if count <= 0 || count > len(block)/4 {
		return nil, frameErr(CodeBadFrame, "batch of %d items cannot fit in a %d-byte block", count, len(block))
	}
	items := make([][]byte, 0, count)
	for i := 0; i < count; i++ {
		if len(block) < 4 {
			return nil, frameErr(CodeBadFrame, "batch item %d: block ends before its length", i)
		}
		n := uint64(binary.BigEndian.Uint32(block[0:4]))
		block = block[4:]
		if n > uint64(maxItem) {
			return nil, frameErr(CodeFrameTooLarge, "batch item %d of %d bytes exceeds the %d-byte limit", i, n, maxItem)
		}
		if n > uint64(len(block)) {
			return nil, frameErr(CodeBadFrame, "batch item %d: %d bytes announced, %d left", i, n, len(block))
		}
		items = append(items, block[:n:n])
		block = block[n:]
	}
	if len(block) != 0 {
		return nil, frameErr(CodeBadFrame, "%d bytes after the last of %d batch items", len(block), count)
	}
	return items, nil
}

// Compress returns src as one S2 block appended to dst.
func Compress(dst, src []byte) []byte {
	return append(dst, s2.Encode(nil, src)...)
}

// Decompress decodes one S2 (or Snappy) block whose decoded size must not exceed max; the size is
// checked from the block's preamble before anything is allocated.
func Decompress(src []byte, max int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, frameErr(CodeBadFrame, "compressed payload: %v", err)
	}
	if n > max {
		return nil, frameErr(CodeFrameTooLarge, "compressed payload expands to %d bytes, over the %d-byte limit", n, max)
	}
	out, err := s2.Decode(make([]byte, n), src)
	if err != nil {
		return nil, frameErr(CodeBadFrame, "compressed payload: %v", err)
	}
	return out, nil
}
