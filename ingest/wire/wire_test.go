package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

func hexOf(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(hex.EncodeToString([]byte{x}))
	}
	return sb.String()
}

// TestDocExamples pins the hex dumps shown in docs/tcp-protocol.md.
func TestDocExamples(t *testing.T) {
	pub := []byte(`{"event_type":"a","data":1}`)
	cases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"PING", AppendFrame(nil, TypePing, 0, 1, nil),
			"00 00 00 0c 01 07 00 00 00 00 00 00 00 00 00 01"},
		{"AUTH", AppendFrame(nil, TypeAuth, 0, 0, []byte(`{"key":"sk_x"}`)),
			"00 00 00 1a 01 01 00 00 00 00 00 00 00 00 00 00 7b 22 6b 65 79 22 3a 22 73 6b 5f 78 22 7d"},
		{"PUBLISH", AppendFrame(nil, TypePublish, 0, 2, pub),
			"00 00 00 27 01 03 00 00 00 00 00 00 00 00 00 02 7b 22 65 76 65 6e 74 5f 74 79 70 65 22 3a 22 61 22 2c 22 64 61 74 61 22 3a 31 7d"},
		{"ACK", AppendAck(nil, 2, Ack{EventID: "01JDQ5ZP3V4XK6M8N9R0S1T2U3", Matched: 3}),
			"00 00 00 2c 01 05 00 00 00 00 00 00 00 00 00 02 00 00 00 00 03 1a 30 31 4a 44 51 35 5a 50 33 56 34 58 4b 36 4d 38 4e 39 52 30 53 31 54 32 55 33"},
		{"NACK", AppendProblem(nil, TypeNack, 3, Problem{Code: CodeNotFound, Message: "no such endpoint"}),
			"00 00 00 20 01 06 00 00 00 00 00 00 00 00 00 03 00 02 00 10 6e 6f 20 73 75 63 68 20 65 6e 64 70 6f 69 6e 74"},
		{"PONG", AppendFrame(nil, TypePong, 0, 1, nil),
			"00 00 00 0c 01 08 00 00 00 00 00 00 00 00 00 01"},
		{"ERROR", AppendProblem(nil, TypeError, 0, Problem{Code: CodeUnauthorized, Message: "invalid API key"}),
			"00 00 00 1f 01 09 00 00 00 00 00 00 00 00 00 00 00 03 00 0f 69 6e 76 61 6c 69 64 20 41 50 49 20 6b 65 79"},
		{"PUBLISH_BATCH", AppendFrame(nil, TypePublishBatch, 0, 10, AppendBatch(nil, []byte(`{}`), []byte(`[]`))),
			"00 00 00 1c 01 04 00 00 00 00 00 00 00 00 00 0a 00 00 00 02 00 00 00 02 7b 7d 00 00 00 02 5b 5d"},
	}
	for _, tc := range cases {
		if got := hexOf(tc.frame); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		f, n, err := DecodeFrame(tc.frame, DefaultMaxPayload)
		if err != nil || n != len(tc.frame) {
			t.Errorf("%s: decode = %d, %v", tc.name, n, err)
		}
		if !bytes.Equal(AppendFrame(nil, f.Type, f.Flags, f.Seq, f.Payload), tc.frame) {
			t.Errorf("%s: re-encoding differs", tc.name)
		}
	}
}

func TestMalformedHeaders(t *testing.T) {
	good := AppendFrame(nil, TypePublish, 0, 7, []byte("{}"))
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	cases := []struct {
		name string
		in   []byte
		code Code
	}{
		{"version 2", mut(func(b []byte) { b[4] = 2 }), CodeUnsupportedVersion},
		{"version 0", mut(func(b []byte) { b[4] = 0 }), CodeUnsupportedVersion},
		{"unknown type", mut(func(b []byte) { b[5] = 0x7f }), CodeUnknownType},
		{"type 0", mut(func(b []byte) { b[5] = 0 }), CodeUnknownType},
		{"unknown flag", mut(func(b []byte) { b[6] = 0x02 }), CodeBadFrame},
		{"reserved set", mut(func(b []byte) { b[7] = 1 }), CodeBadFrame},
		{"length below header", mut(func(b []byte) { b[3] = 11 }), CodeBadFrame},
		{"length huge", mut(func(b []byte) { b[0] = 0xff }), CodeFrameTooLarge},
		{"compressed ping", AppendFrame(nil, TypePing, FlagCompressed, 1, nil), CodeBadFrame},
		{"big ping", AppendFrame(nil, TypePing, 0, 1, make([]byte, MaxControlPayload+1)), CodeFrameTooLarge},
	}
	for _, tc := range cases {
		_, _, err := DecodeFrame(tc.in, 1024)
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != tc.code {
			t.Errorf("%s: err = %v, want code %s", tc.name, err, tc.code)
		}
	}
	for i := 0; i < len(good); i++ {
		if _, _, err := DecodeFrame(good[:i], 1024); err != ErrIncomplete {
			t.Fatalf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
}

func TestBatchSplitting(t *testing.T) {
	p := AppendBatch(nil, []byte("a"), []byte(""), []byte("ccc"))
	n, block, err := BatchCount(p)
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	items, err := SplitBatch(block, n, 10)
	if err != nil || len(items) != 3 || string(items[0]) != "a" || len(items[1]) != 0 || string(items[2]) != "ccc" {
		t.Fatalf("%q %v", items, err)
	}
	if _, err := SplitBatch(block, 2, 10); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	if _, err := SplitBatch(block, 4, 10); err == nil {
		t.Fatal("missing item accepted")
	}
	if _, err := SplitBatch(block, 3, 2); err == nil {
		t.Fatal("oversized item accepted")
	}
	if _, _, err := BatchCount([]byte{0, 0, 0, 0}); err == nil {
		t.Fatal("empty batch accepted")
	}
}

func TestDecompressBoundsAndSnappy(t *testing.T) {
	data := bytes.Repeat([]byte(`{"event_type":"x","data":{"a":1}}`), 100)
	for name, z := range map[string][]byte{"s2": s2.Encode(nil, data), "snappy": s2.EncodeSnappy(nil, data)} {
		got, err := Decompress(z, len(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %v", name, err)
		}
		var fe *FrameError
		if _, err := Decompress(z, len(data)-1); !errors.As(err, &fe) || fe.Code != CodeFrameTooLarge {
			t.Fatalf("%s: a block over the limit: %v", name, err)
		}
	}
	if _, err := Decompress([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}, 1<<20); err == nil {
		t.Fatal("garbage decompressed")
	}
}

func TestProblemTruncatesAtRuneBoundary(t *testing.T) {
	msg := strings.Repeat("é", MaxMessageLen) // 2 bytes each
	f := AppendProblem(nil, TypeError, 0, Problem{Code: CodeInternal, Message: msg})
	fr, _, err := DecodeFrame(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProblem(fr.Payload)
	if err != nil || len(p.Message) != MaxMessageLen || !strings.HasPrefix(msg, p.Message) {
		t.Fatalf("%d %v", len(p.Message), err)
	}
}

func TestResolveTarget(t *testing.T) {
	cases := []struct {
		p    Publish
		want string
	}{
		{Publish{EndpointID: "e"}, TargetEndpoint},
		{Publish{OwnerID: "o"}, TargetOwner},
		{Publish{}, TargetBroadcast},
		{Publish{EndpointID: "e", OwnerID: "o", Target: TargetEndpoint}, TargetEndpoint},
		{Publish{EndpointID: "e", OwnerID: "o"}, ""},
		{Publish{Target: "all"}, ""},
	}
	for _, tc := range cases {
		got, err := tc.p.ResolveTarget()
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%+v: %q %v, want %q", tc.p, got, err, tc.want)
		}
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoder and every payload parser: none may
// panic, over-read, or accept a frame that does not re-encode to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendFrame(nil, TypePing, 0, 1, nil))
	f.Add(AppendFrame(nil, TypePublish, 0, 2, []byte(`{"event_type":"a","data":1}`)))
	f.Add(AppendFrame(nil, TypePublish, FlagCompressed, 2, s2.Encode(nil, []byte(`{"event_type":"a","data":1}`))))
	f.Add(AppendFrame(nil, TypePublishBatch, 0, 3, AppendBatch(nil, []byte("{}"), []byte("[]"))))
	f.Add(AppendFrame(nil, TypePublishBatch, FlagCompressed, 3, append([]byte{0, 0, 0, 2}, s2.Encode(nil, AppendBatchItems(nil, []byte("{}"), []byte("[]")))...)))
	f.Add(AppendAck(nil, 4, Ack{EventID: "x", Matched: 1, Duplicate: true}))
	f.Add(AppendProblem(nil, TypeNack, 5, Problem{Code: CodeBadRequest, Message: "m"}))
	f.Add([]byte{0, 0, 0, 0xc, 1, 1, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	const maxPub = 8192
	f.Fuzz(func(t *testing.T, b []byte) {
		rest := b
		for i := 0; i < 64 && len(rest) > 0; i++ {
			fr, n, err := DecodeFrame(rest, maxPub)
			if err != nil {
				var fe *FrameError
				if err != ErrIncomplete && !errors.As(err, &fe) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				if fe != nil && (fe.Code < CodeBadFrame || fe.Code > CodeFrameTooLarge) {
					t.Fatalf("header error with code %s", fe.Code)
				}
				return
			}
			if n < HeaderLen || n > len(rest) || n != HeaderLen+len(fr.Payload) {
				t.Fatalf("used %d of %d bytes for a %d-byte payload", n, len(rest), len(fr.Payload))
			}
			if !bytes.Equal(AppendFrame(nil, fr.Type, fr.Flags, fr.Seq, fr.Payload), rest[:n]) {
				t.Fatal("decoded frame does not re-encode to its bytes")
			}
			switch fr.Type {
			case TypeAck:
				if a, err := ParseAck(fr.Payload); err == nil && !bytes.Equal(AppendAck(nil, fr.Seq, a), rest[:n]) {
					t.Fatal("ACK does not round-trip")
				}
			case TypeNack, TypeError:
				_, _ = ParseProblem(fr.Payload)
			case TypePublish:
				if fr.Compressed() {
					if out, err := Decompress(fr.Payload, maxPub); err == nil && len(out) > maxPub {
						t.Fatalf("decompressed %d bytes over the %d limit", len(out), maxPub)
					}
				}
			case TypePublishBatch:
				cnt, block, err := BatchCount(fr.Payload)
				if err != nil {
					break
				}
				if fr.Compressed() {
					if block, err = Decompress(block, maxPub); err != nil {
						break
					}
				}
				if items, err := SplitBatch(block, cnt, maxPub); err == nil && len(items) != cnt {
					t.Fatalf("%d items for a count of %d", len(items), cnt)
				}
			}
			rest = rest[n:]
		}
	})
}
