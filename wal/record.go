package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Record layout (version 1); see doc.go for the full description.
const (
	recordVersion = 1

	// headerLen covers version, codec, type and flags.
	headerLen = 4
	crcLen    = 4

	// flagAppendedAt marks a record that carries AppendedAt. A zero
	// time.Time has no unix-nano representation, so it is a flag rather than
	// a sentinel value.
	flagAppendedAt = 1 << 0

	// minCompressLen: below this, headers dominate and compression never
	// pays (raft's Noop, Barrier and small Configuration entries).
	minCompressLen = 64
)

// Codec tags stored in byte 1 of a record. Never renumber: they are on disk.
const (
	tagRaw  = 0
	tagS2   = 1
	tagZstd = 2
)

// Compression selects the codec used for new entries. Every codec can be
// read whatever is configured, so changing it needs no migration.
type Compression uint8

const (
	// CompressionDefault is S2 (see doc.go for the measurements).
	CompressionDefault Compression = iota
	// CompressionNone stores Data as is.
	CompressionNone
	// CompressionS2 uses klauspost/compress/s2 block encoding.
	CompressionS2
	// CompressionZstd uses zstd at SpeedFastest without a dictionary.
	CompressionZstd
)

func (c Compression) String() string {
	switch c {
	case CompressionDefault:
		return "default"
	case CompressionNone:
		return "none"
	case CompressionS2:
		return "s2"
	case CompressionZstd:
		return "zstd"
	default:
		return fmt.Sprintf("Compression(%d)", uint8(c))
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The zstd coders are safe for concurrent EncodeAll/DecodeAll and keep
// internal pools, so one pair serves every Store. The frame checksum is off
// because the record has its own CRC32C.
var (
	zstdEnc, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true))
	// WithDecodeAllCapLimit makes DecodeAll stop at cap(dst), which we size
	// from the record's declared length, so a corrupt frame cannot make us
	// allocate without bound.
	zstdDec, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecodeAllCapLimit(true))
)

// compress returns data encoded with c and its tag, or data itself and
// tagRaw when compression does not save at least 1/16 of the bytes (already
// compressed payloads): decoding those would cost CPU for nothing. scratch
// is used for the output when large enough; the buffer actually used is
// returned for the next call.
func compress(c Compression, data, scratch []byte) (out []byte, tag byte, buf []byte) {
	if len(data) < minCompressLen {
		return data, tagRaw, scratch
	}
	switch c {
	case CompressionS2, CompressionDefault:
		out, tag = s2.Encode(scratch[:cap(scratch)], data), tagS2
	case CompressionZstd:
		out, tag = zstdEnc.EncodeAll(data, scratch[:0]), tagZstd
	default:
		return data, tagRaw, scratch
	}
	if len(out) > len(data)-len(data)/16 {
		return data, tagRaw, out
	}
	return out, tag, out
}

// appendRecord appends the encoding of l to dst. payload is l.Data after
// compress, tag its codec.
func appendRecord(dst []byte, l *raft.Log, payload []byte, tag byte) []byte {
	start := len(dst)
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	dst = append(dst, recordVersion, tag, byte(l.Type), flags)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	if flags&flagAppendedAt != 0 {
		dst = binary.AppendVarint(dst, l.AppendedAt.UnixNano())
	}
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, payload...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeRecord fills l from rec, the value stored under index. Every
// slice in l is freshly allocated: rec belongs to Pebble and is only valid
// until its closer runs. The caller adds the index, and ErrCorrupt unless
// the error is ErrUnsupportedVersion.
func decodeRecord(rec []byte, index uint64, l *raft.Log) error {
	if len(rec) < headerLen+crcLen {
		return fmt.Errorf("record of %d bytes is shorter than its header", len(rec))
	}
	body := rec[:len(rec)-crcLen]
	want := binary.LittleEndian.Uint32(rec[len(rec)-crcLen:])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return fmt.Errorf("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	// From here the bytes are what was written, so a failure below is a
	// bug or a record from a newer version, not bit rot. A new version must
	// keep the CRC trailer so this check stays meaningful.
	if body[0] != recordVersion {
		return fmt.Errorf("%w %d", ErrUnsupportedVersion, body[0])
	}
	tag, typ, flags := body[1], raft.LogType(body[2]), body[3]
	d := decoder{buf: body[headerLen:]}
	idx := d.uvarint()
	term := d.uvarint()
	var appendedAt time.Time
	if flags&flagAppendedAt != 0 {
		appendedAt = time.Unix(0, d.varint())
	}
	ext := d.bytes(d.uvarint())
	rawLen := d.uvarint()
	if d.err != nil {
		return d.err
	}
	if idx != index {
		return fmt.Errorf("record holds index %d", idx)
	}
	data, err := decompress(tag, d.buf, rawLen)
	if err != nil {
		return err
	}
	*l = raft.Log{
		Index:      idx,
		Term:       term,
		Type:       typ,
		Data:       data,
		Extensions: clone(ext),
		AppendedAt: appendedAt,
	}
	return nil
}

func decompress(tag byte, payload []byte, rawLen uint64) ([]byte, error) {
	switch tag {
	case tagRaw:
		if uint64(len(payload)) != rawLen {
			return nil, fmt.Errorf("raw data is %d bytes, header says %d", len(payload), rawLen)
		}
		return clone(payload), nil
	case tagS2:
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, fmt.Errorf("s2: %w", err)
		}
		if uint64(n) != rawLen {
			return nil, fmt.Errorf("s2 data decodes to %d bytes, header says %d", n, rawLen)
		}
		out, err := s2.Decode(make([]byte, n), payload)
		if err != nil {
			return nil, fmt.Errorf("s2: %w", err)
		}
		return out, nil
	case tagZstd:
		if rawLen > maxDataLen {
			return nil, fmt.Errorf("zstd data claims %d bytes", rawLen)
		}
		out, err := zstdDec.DecodeAll(payload, make([]byte, 0, rawLen))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		if uint64(len(out)) != rawLen {
			return nil, fmt.Errorf("zstd data decodes to %d bytes, header says %d", len(out), rawLen)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown codec tag %d", tag)
	}
}

// maxDataLen bounds the allocation a zstd record may ask for. Pebble
// values are limited to 4 GiB, and a Raft entry anywhere near that is a bug.
const maxDataLen = 1 << 32

// clone returns nil for empty input so a decoded Log does not hold
// zero-length non-nil slices; raft treats both alike.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// decoder reads varints and byte strings from buf, remembering the first
// error so the caller checks once.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad uvarint at %d bytes before the data", len(d.buf))
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint at %d bytes before the data", len(d.buf))
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("field of %d bytes overruns the record", n)
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}
