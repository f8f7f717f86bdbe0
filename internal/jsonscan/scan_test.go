package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSkipSpace(t *testing.T) {
	for _, tc := range []struct {
		in   string
		from int
		want int
	}{
		{"", 0, 0},
		{" \t\r\n{", 0, 4},
		{"{ ", 1, 2},
		{"\v{", 0, 0}, // vertical tab is not JSON whitespace
		{"\u00a0{", 0, 0},
	} {
		if got := SkipSpace([]byte(tc.in), tc.from); got != tc.want {
			t.Errorf("SkipSpace(%q, %d) = %d, want %d", tc.in, tc.from, got, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	long := strings.Repeat("abcdefgh", 9)
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`""`, "", true},
		{`"a"`, "a", true},
		{`"` + long + `"x`, long, true},
		{`"héllo wörld ✓ 😀"`, "héllo wörld ✓ 😀", true},
		{`"` + long + `é"`, long + "é", true},
		{"\"\x7f\"", "\x7f", true},
		{"\"\uFFFD\"", "\uFFFD", true}, // a valid U+FFFD is kept as is by encoding/json too
		{`"a\"b"`, "", false},
		{`"a\u0041"`, "", false},
		{`"` + long + `\n"`, "", false},
		{"\"a\tb\"", "", false},
		{"\"" + long + "\x01\"", "", false},
		{"\"\xff\"", "", false},
		{"\"" + long + "\xc3\"", "", false},
		{"\"\xed\xa0\x80\"", "", false}, // a UTF-8 encoded surrogate is invalid
		{`"unterminated`, "", false},
		{`"` + long, "", false},
		{`x"a"`, "", false},
		{``, "", false},
	} {
		s, next, ok := String([]byte(tc.in), 0)
		if ok != tc.ok || ok && (string(s) != tc.want || tc.in[next-1] != '"') {
			t.Errorf("String(%q) = %q, %d, %v; want %q, %v", tc.in, s, next, ok, tc.want, tc.ok)
		}
		if ok {
			var u string
			if err := json.Unmarshal([]byte(tc.in[:next]), &u); err != nil || u != string(s) {
				t.Errorf("String(%q) = %q but encoding/json reads %q (%v)", tc.in, s, u, err)
			}
		}
	}
}

func TestValue(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		in      string
		wantEnd int // -1: an error
		err     error
	}{
		{`0`, 1, nil},
		{`-0`, 2, nil},
		{`1e5`, 3, nil},
		{`-12.5E+3`, 8, nil},
		{`01`, 1, nil}, // the value is "0"; the '1' is the caller's trailing data
		{`-`, -1, ErrSyntax},
		{`1.`, -1, ErrSyntax},
		{`.5`, -1, ErrSyntax},
		{`1e`, -1, ErrSyntax},
		{`1e+`, -1, ErrSyntax},
		{`+1`, -1, ErrSyntax},
		{`true`, 4, nil},
		{`false `, 5, nil},
		{`null`, 4, nil},
		{`nul`, -1, ErrSyntax},
		{`tru`, -1, ErrSyntax},
		{`True`, -1, ErrSyntax},
		{`"a\"b\\c\/d\b\f\n\r\t\u00e9"`, 28, nil},
		{`"\u00G0"`, -1, ErrSyntax},
		{`"\x"`, -1, ErrSyntax},
		{`"\u12"`, -1, ErrSyntax},
		{"\"\xff\xfe\"", 4, nil}, // json.Valid does not check UTF-8
		{"\"a\nb\"", -1, ErrSyntax},
		{`{}`, 2, nil},
		{`[]`, 2, nil},
		{` { "a" : [ 1 , { "b" : null } ] , "c" : "d" } x`, 45, nil},
		{`{"a":1,}`, -1, ErrSyntax},
		{`[1,]`, -1, ErrSyntax},
		{`[1 2]`, -1, ErrSyntax},
		{`{"a" 1}`, -1, ErrSyntax},
		{`{1:1}`, -1, ErrSyntax},
		{`{"a":1]`, -1, ErrSyntax},
		{`[1}`, -1, ErrSyntax},
		{`[`, -1, ErrSyntax},
		{`{"a":`, -1, ErrSyntax},
		{``, -1, ErrSyntax},
		{`   `, -1, ErrSyntax},
		{deep(MaxDepth), 2 * MaxDepth, nil},
		{deep(MaxDepth + 1), -1, ErrTooDeep},
	} {
		end, err := Value([]byte(tc.in), 0)
		name := tc.in
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		if tc.wantEnd < 0 {
			if !errors.Is(err, tc.err) {
				t.Errorf("Value(%q) = %d, %v; want %v", name, end, err, tc.err)
			}
			continue
		}
		if err != nil || end != tc.wantEnd {
			t.Errorf("Value(%q) = %d, %v; want %d", name, end, err, tc.wantEnd)
		}
	}
}

// valid is json.Valid built from Value: one value, whitespace around it.
func valid(b []byte) bool {
	end, err := Value(b, 0)
	return err == nil && SkipSpace(b, end) == len(b)
}

func FuzzValue(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-0,1e5,2.5E-3,true,false,null,"x\u00e9\n"]}`, `01`, `-`, `1.`, `"\ud800"`, "\"\xff\"",
		`[[[[]]]]`, `{"a":1,}`, `{"a" 1}`, ` 1 `, `1 2`, "\"\x00\"", `"\u00zz"`,
		// The MaxDepth boundary is TestValue's: 20 KB seeds would make every fuzz run slow.
		strings.Repeat(`{"a":[`, 64) + strings.Repeat("]}", 64),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			end, err := Value(b, 0)
			t.Fatalf("Value(%q) = %d, %v: valid=%v, json.Valid=%v", b, end, err, got, want)
		}
	})
}

func FuzzString(f *testing.F) {
	for _, s := range []string{`"a"`, `"a\"b"`, "\"\xff\"", `"é😀"`, "\"\x1f\"", `"abcdefghijklmnop"`, `""`, `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, next, ok := String(b, 0)
		if !ok {
			return
		}
		var u string
		if err := json.Unmarshal(b[:next], &u); err != nil {
			t.Fatalf("String(%q) accepted %q, encoding/json refuses it: %v", b, b[:next], err)
		}
		if u != string(s) || !utf8.Valid(s) || bytes.ContainsAny(s, "\\\"") {
			t.Fatalf("String(%q) = %q, encoding/json reads %q", b, s, u)
		}
	})
}

func TestObject(t *testing.T) {
	keys := []string{"a", "b", "data"}
	for _, tc := range []struct {
		in   string
		want []string // the spanned text per key, "" when absent
		ok   bool
	}{
		{`{"a":"x","data":{"k":[1]}}`, []string{`"x"`, ``, `{"k":[1]}`}, true},
		{" \n{ \"b\" : 1 , \"a\":null } \t", []string{`null`, `1`, ``}, true},
		{`{}`, []string{``, ``, ``}, true},
		{`{"a":1,"a":2}`, nil, false},
		{`{"A":1}`, nil, false},
		{`{"c":1}`, nil, false},
		{`{"\u0061":1}`, nil, false},
		{`{"a":1} {}`, nil, false},
		{`{"a":1}x`, nil, false},
		{`{"a":01}`, nil, false},
		{`{"a":1,}`, nil, false},
		{`{"a":1`, nil, false},
		{`[]`, nil, false},
		{``, nil, false},
		// The object is one of encoding/json's MaxDepth levels.
		{`{"a":` + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + `}`, []string{strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1)}, true},
		{`{"a":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, nil, false},
	} {
		b := []byte(tc.in)
		if json.Valid(b) != tc.ok && tc.ok {
			t.Fatalf("Object accepts input json.Valid refuses: %.80q", tc.in)
		}
		spans := make([]Span, len(keys))
		ok := Object(b, keys, spans)
		if ok != tc.ok {
			t.Errorf("Object(%.80q) = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		for k := range tc.want {
			if got := string(b[spans[k].Start:spans[k].End]); got != tc.want[k] {
				t.Errorf("Object(%.80q): %s spans %.80q, want %.80q", tc.in, keys[k], got, tc.want[k])
			}
		}
	}
}

func TestStringObject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // members as k=v;
		ok   bool
	}{
		{`{}`, "", true},
		{`{ }`, "", true},
		{`{"a":"1", "b" : "2"}`, "a=1;b=2;", true},
		{`{"a":"1","a":"2"}`, "a=1;a=2;", true},
		{`{"a":1}`, "", false},
		{`{"a":null}`, "", false},
		{`{"a":"\n"}`, "", false},
		{`{"\u0061":"1"}`, "", false},
		{`[]`, "", false},
	} {
		b := []byte(tc.in)
		end, err := Value(b, 0)
		if err != nil {
			t.Fatalf("Value(%q): %v", tc.in, err)
		}
		var got strings.Builder
		n, ok := StringObject(b, Span{0, end}, func(k, v []byte) { got.WriteString(string(k) + "=" + string(v) + ";") })
		if ok != tc.ok || ok && (got.String() != tc.want || n != strings.Count(tc.want, ";")) {
			t.Errorf("StringObject(%q) = %d, %v, %q; want %v, %q", tc.in, n, ok, got.String(), tc.ok, tc.want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	body := []byte(`{"endpoint_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","event_type":"bench.event","data":{"sent_ns":1234567890123456789,"pad":"` + strings.Repeat("x", 1000) + `"}}`)
	keys := []string{"endpoint_id", "event_type", "data"}
	spans := make([]Span, len(keys))
	allocs := testing.AllocsPerRun(100, func() {
		clear(spans)
		if !Object(body, keys, spans) {
			t.Fatal("Object refused the standard body")
		}
	})
	if allocs != 0 {
		t.Fatalf("Object allocates %.1f times per call", allocs)
	}
}

func BenchmarkValue(b *testing.B) {
	data := []byte(`{"sent_ns":1234567890123456789,"pad":"` + strings.Repeat("x", 1024-48) + `"}`)
	for _, bc := range []struct {
		name string
		fn   func() bool
	}{
		{"jsonscan", func() bool { return valid(data) }},
		{"json.Valid", func() bool { return json.Valid(data) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if !bc.fn() {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func TestStringMap(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{`{}`, map[string]string{}, true},
		{`{"a":"1","b":"2","a":"3"}`, map[string]string{"a": "3", "b": "2"}, true}, // last wins, as in encoding/json
		{`{"a":1}`, nil, false},
		{`{"a":"\n"}`, nil, false}, // an escape: not simple
	} {
		b := []byte(tt.in)
		end, err := Value(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		got, ok := StringMap(b, Span{0, end})
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("StringMap(%s) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if m, ok := StringMap(nil, Span{}); m != nil || !ok {
		t.Errorf("an absent span gives %v, %v; want nil, true", m, ok)
	}
}
