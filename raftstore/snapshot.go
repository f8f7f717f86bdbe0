package raftstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
)

// Snapshot stream format: the magic, then an s2 stream of records (uvarint key length, key, uvarint
// value length, value), a zero key length as terminator, the record count (uvarint) and the CRC-32C
// (4 bytes BE) of every record byte before the terminator. The count and CRC let restore refuse a
// truncated or corrupted stream instead of swapping in a partial state.
var snapshotMagic = []byte("SLUICESNAP\x01")

var (
	errSnapshotCorrupt = errors.New("raftstore: corrupt snapshot")
	crcTable           = crc32.MakeTable(crc32.Castagnoli)
)

type fsmSnapshot struct {
	snap    *pebble.Snapshot
	applied uint64
	// flushed closes once the state up to applied is on disk (see FSM.Snapshot); nil when the
	// caller made it durable itself.
	flushed <-chan struct{}
	log     *slog.Logger
}

// snapshotFlushTimeout bounds Persist's wait for the state flush. Pebble retries a failed flush (a
// full disk) until it succeeds; a snapshot that gives up leaves the log untruncated, which is safe.
const snapshotFlushTimeout = 5 * time.Minute

var _ raft.FSMSnapshot = (*fsmSnapshot)(nil)

// Persist streams the whole state to sink. Raft calls it off the FSM goroutine.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.snap, sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftstore: persist snapshot at index %d: %w", s.applied, err)
	}
	if s.flushed != nil {
		// Until the state up to applied is flushed, a crash would leave it behind the snapshot,
		// and the log that could replay the gap is what raft truncates once this returns.
		t := time.NewTimer(snapshotFlushTimeout)
		defer t.Stop()
		select {
		case <-s.flushed:
		case <-t.C:
			sink.Cancel()
			return fmt.Errorf("raftstore: persist snapshot at index %d: state not flushed after %v", s.applied, snapshotFlushTimeout)
		}
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftstore: close snapshot at index %d: %w", s.applied, err)
	}
	if s.log != nil {
		s.log.Info("snapshot taken", "id", sink.ID(), "applied_index", s.applied)
	}
	return nil
}

func (s *fsmSnapshot) Release() { s.snap.Close() }

func writeSnapshot(r pebble.Reader, w io.Writer) error {
	if _, err := w.Write(snapshotMagic); err != nil {
		return err
	}
	zw := s2.NewWriter(w)
	bw := bufio.NewWriterSize(zw, 256<<10)
	it, err := r.NewIter(nil)
	if err != nil {
		return err
	}
	crc := crc32.New(crcTable)
	out := io.MultiWriter(bw, crc)
	var hdr [binary.MaxVarintLen64]byte
	var count uint64
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		for _, b := range [][]byte{k, v} {
			n := binary.PutUvarint(hdr[:], uint64(len(b)))
			out.Write(hdr[:n])
			if _, err := out.Write(b); err != nil {
				it.Close()
				return err
			}
		}
		count++
	}
	if err := it.Close(); err != nil {
		return err
	}
	bw.WriteByte(0)
	n := binary.PutUvarint(hdr[:], count)
	bw.Write(hdr[:n])
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc.Sum32())
	bw.Write(sum[:])
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// readSnapshot loads a snapshot stream into db (which must be empty).
func readSnapshot(r io.Reader, db *pebble.DB) error {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != string(snapshotMagic) {
		return fmt.Errorf("%w: bad magic", errSnapshotCorrupt)
	}
	br := bufio.NewReaderSize(s2.NewReader(r), 256<<10)
	crc := crc32.New(crcTable)
	var count uint64
	b := db.NewBatch()
	readField := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		var hdr [binary.MaxVarintLen64]byte
		crc.Write(hdr[:binary.PutUvarint(hdr[:], n)])
		if n > 1<<30 {
			return nil, fmt.Errorf("%w: field of %d bytes", errSnapshotCorrupt, n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		crc.Write(buf)
		return buf, nil
	}
	for {
		kl, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: record %d: %v", errSnapshotCorrupt, count, err)
		}
		if kl == 0 {
			break
		}
		br.UnreadByte()
		k, err := readField()
		if err != nil {
			return fmt.Errorf("%w: key of record %d: %v", errSnapshotCorrupt, count, err)
		}
		v, err := readField()
		if err != nil {
			return fmt.Errorf("%w: value of record %d: %v", errSnapshotCorrupt, count, err)
		}
		b.Set(k, v, nil)
		count++
		if b.Len() >= restoreBatchSz {
			if err := b.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("raftstore: write restored records: %w", err)
			}
			b = db.NewBatch()
		}
	}
	want, err := binary.ReadUvarint(br)
	if err != nil || want != count {
		return fmt.Errorf("%w: %d records read, trailer says %d (%v)", errSnapshotCorrupt, count, want, err)
	}
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != crc.Sum32() {
		return fmt.Errorf("%w: checksum mismatch", errSnapshotCorrupt)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: write restored records: %w", err)
	}
	return nil
}
