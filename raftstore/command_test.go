package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/klauspost/compress/s2"
)

// forceCompressEntry compresses an entry whatever its size, so small test entries take the
// compressed path too.
func forceCompressEntry(entry []byte) []byte {
	return append([]byte{entryCompressed}, s2.Encode(nil, entry)...)
}

func TestCompressEntry(t *testing.T) {
	noise := make([]byte, 8<<10)
	rand.New(rand.NewSource(1)).Read(noise)
	for _, tc := range []struct {
		name       string
		cmds       []*Command
		compressed bool
	}{
		{"small entry stays raw", []*Command{{Type: CmdPublish, Meta: []byte(`{"a":1}`), Blob: []byte("x")}}, false},
		{"repetitive batch is compressed", []*Command{
			{Type: CmdPublish, Meta: []byte(strings.Repeat(`{"event_type":"invoice.paid"}`, 100)), Blob: bytes.Repeat([]byte("data"), 500)},
			{Type: CmdResults, Meta: []byte(strings.Repeat(`{"status":"failed"}`, 100))},
		}, true},
		{"incompressible batch stays raw", []*Command{{Type: CmdPublish, Meta: []byte(`{}`), Blob: noise}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := encodeEntry(tc.cmds)
			entry := compressEntry(raw)
			if got := entry[0] == entryCompressed; got != tc.compressed {
				t.Fatalf("compressed = %v, want %v (%d -> %d bytes)", got, tc.compressed, len(raw), len(entry))
			}
			if tc.compressed && len(entry) >= len(raw) {
				t.Fatalf("compressed entry is %d bytes, raw %d", len(entry), len(raw))
			}
			got, err := decodeEntry(entry)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.cmds) {
				t.Fatalf("%d commands, want %d", len(got), len(tc.cmds))
			}
			for i, c := range tc.cmds {
				if got[i].Type != c.Type || !bytes.Equal(got[i].Meta, c.Meta) || !bytes.Equal(got[i].Blob, c.Blob) {
					t.Fatalf("command %d differs after the round trip", i)
				}
			}
		})
	}
}

func TestDecodeEntryRefusesBadCompression(t *testing.T) {
	good := forceCompressEntry(encodeEntry([]*Command{{Type: CmdPublish, Meta: []byte(`{"a":1}`)}}))
	// A header claiming 1 GiB: s2's block header is the decoded length as a uvarint.
	bomb := append([]byte{entryCompressed}, 0x80, 0x80, 0x80, 0x80, 0x04)
	for _, tc := range []struct {
		name  string
		entry []byte
	}{
		{"empty", []byte{entryCompressed}},
		{"truncated", good[:len(good)-2]},
		{"garbage", []byte{entryCompressed, 0xff, 0xff, 0xff}},
		{"claims more than maxEntryLen", bomb},
		{"nested", forceCompressEntry(good)},
		{"compressed non-entry", forceCompressEntry([]byte("hello, not an entry"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeEntry(tc.entry); !errors.Is(err, errBadEntry) {
				t.Fatalf("err = %v, want errBadEntry", err)
			}
		})
	}
}

// FuzzDecodeEntry: any bytes raft hands the FSM give commands or errBadEntry, never a panic or an
// allocation beyond maxEntryLen.
func FuzzDecodeEntry(f *testing.F) {
	raw := encodeEntry([]*Command{{Type: CmdPublish, Meta: []byte(`{"event_type":"a.b"}`), Blob: []byte("blob")}, {Type: CmdResults, Meta: []byte{1, 2, 3}}})
	f.Add(raw)
	f.Add(forceCompressEntry(raw))
	f.Add([]byte{entryCompressed})
	f.Add([]byte{entryVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := decodeEntry(data)
		if err != nil {
			if !errors.Is(err, errBadEntry) {
				t.Fatalf("error %v is not errBadEntry", err)
			}
			return
		}
		// What decodes re-encodes to an entry that decodes to the same commands.
		ptrs := make([]*Command, len(cmds))
		for i := range cmds {
			ptrs[i] = &cmds[i]
		}
		again, err := decodeEntry(compressEntry(encodeEntry(ptrs)))
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-encoded entry: %d commands, err %v; want %d", len(again), err, len(cmds))
		}
	})
}

// TestCompressedEntriesRebuildTheState: a batch of publishes is written to the Raft log compressed,
// and a node whose state DB is gone rebuilds the same events by applying the log again, i.e. every
// compressed entry decodes on replay, not only on the leader that wrote it.
func TestCompressedEntriesRebuildTheState(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, nil)
	f := setupProject(t, s)
	const n = 50
	cmds := make([]Command, n)
	for i := range cmds {
		p, blob := publishCmd(f, i, fmt.Sprintf("key-%d", i))
		c, err := NewPublishCommand(p, blob)
		if err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
	}
	ids := make([]string, n)
	for i, o := range s.ProposeAll(context.Background(), cmds) {
		if o.Err != nil || o.Result.Err != nil {
			t.Fatalf("publish %d: %v %v", i, o.Err, o.Result.Err)
		}
		ids[i] = o.Result.EventID
	}
	first, _ := s.log.FirstIndex()
	last, _ := s.log.LastIndex()
	compressed := 0
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.log.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand && len(l.Data) > 0 && l.Data[0] == entryCompressed {
			compressed++
		}
	}
	if compressed == 0 {
		t.Fatalf("none of log entries %d..%d is compressed", first, last)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir, nil)
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	for i, id := range ids {
		for {
			ev, err := s.Event(f.pid, id)
			if err == nil {
				if want := fmt.Sprintf(`{"n": %d}`, i); string(ev.Data) != want {
					t.Fatalf("event %d data %q, want %q", i, ev.Data, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("event %d not rebuilt from the log: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond) // polling interval while raft replays the log
		}
	}
}
