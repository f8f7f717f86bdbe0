package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/model"
)

// The publish response is the one body every HTTP publish waits for, and encoding/json spent most
// of writeJSON's time on it: reflection over envelope{eventOut{*model.Event}}, json.Valid over the
// data inside EventData.MarshalJSON, then a second pass compacting the Marshaler's output. The
// encoder here writes the same bytes in one pass over the data, into a pooled buffer, with one
// Write. Anything it is not sure of (an out-of-range time, data that is not JSON or nested very
// deep) goes back to encoding/json, so the output stays what writeJSON writes; eventjson_test.go
// compares the two byte for byte. Getting one event and listing events (up to 1000 with their data)
// share the same parts, so they use it too.

// eventBufPool holds response buffers; one publish response is ~0.4 KiB plus its data.
var eventBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledEventBuf keeps a rare large response (1 MiB of data, a page of events) from pinning its
// buffer in the pool.
const maxPooledEventBuf = 64 << 10

type replyKind uint8

const (
	replyPublished replyKind = iota // eventOut{ev, matched}: publish and replay
	replyEvent                      // ev itself: get
	replyPage                       // pageData{list, page}: list
)

// eventReply is a response body writeEventReply encodes without reflection; slow is the value
// writeJSON would have been given.
type eventReply struct {
	kind    replyKind
	ev      *model.Event
	matched int
	list    []*model.Event
	page    pagination
}

func (r *eventReply) slow() any {
	switch r.kind {
	case replyEvent:
		return r.ev
	case replyPage:
		return pageData{Content: r.list, Pagination: r.page}
	}
	return eventOut{Event: r.ev, MatchedEndpoints: r.matched}
}

// writeEventJSON writes what writeJSON(w, code, msg, eventOut{ev, matched}) writes.
func writeEventJSON(w http.ResponseWriter, code int, msg string, ev *model.Event, matched int) {
	writeEventReply(w, code, msg, &eventReply{kind: replyPublished, ev: ev, matched: matched})
}

// writeEventReply writes what writeJSON(w, code, msg, r.slow()) writes.
func writeEventReply(w http.ResponseWriter, code int, msg string, r *eventReply) {
	bp := eventBufPool.Get().(*[]byte)
	b, ok := appendEventReply((*bp)[:0], code, msg, r)
	if ok {
		w.Header()["Content-Type"] = []string{"application/json"} // Set, minus canonicalising a canonical key
		w.WriteHeader(code)
		w.Write(b)
	}
	if cap(b) <= maxPooledEventBuf {
		*bp = b[:0]
		eventBufPool.Put(bp)
	}
	if !ok {
		writeJSON(w, code, msg, r.slow())
	}
}

// appendEventReply appends encoding/json's encoding (HTML escaping off, trailing newline) of
// envelope{code < 400, msg, r.slow()}. It reports false, with b's content undefined past its
// original length, for a shape it leaves to encoding/json.
func appendEventReply(b []byte, code int, msg string, r *eventReply) ([]byte, bool) {
	b = append(b, `{"status":`...)
	b = strconv.AppendBool(b, code < 400)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"data":`...)
	var ok bool
	switch r.kind {
	case replyPublished:
		if r.ev == nil { // eventOut would leave the embedded fields out: never seen, not worth a path
			return b, false
		}
		if b, ok = appendEventFields(b, r.ev); !ok {
			return b, false
		}
		b = append(b, `,"matched_endpoints":`...)
		b = strconv.AppendInt(b, int64(r.matched), 10)
		b = append(b, '}')
	case replyEvent:
		if r.ev == nil {
			return b, false
		}
		if b, ok = appendEventFields(b, r.ev); !ok {
			return b, false
		}
		b = append(b, '}')
	case replyPage:
		b = append(b, `{"content":`...)
		if r.list == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, ev := range r.list {
				if i > 0 {
					b = append(b, ',')
				}
				if ev == nil {
					b = append(b, "null"...)
					continue
				}
				if b, ok = appendEventFields(b, ev); !ok {
					return b, false
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, `,"pagination":{"per_page":`...)
		b = strconv.AppendInt(b, int64(r.page.PerPage), 10)
		b = append(b, `,"has_next_page":`...)
		b = strconv.AppendBool(b, r.page.HasNextPage)
		b = append(b, `,"next_page_cursor":`...)
		b = appendJSONString(b, r.page.NextPageCursor)
		b = append(b, "}}"...)
	default:
		return b, false
	}
	return append(b, "}\n"...), true
}

// appendEventFields appends model.Event's JSON object without its closing brace, so eventOut can
// add its field. The order and omitempty rules are model.Event's struct tags.
func appendEventFields(b []byte, ev *model.Event) ([]byte, bool) {
	b = append(b, `{"uid":`...)
	b = appendJSONString(b, ev.UID)
	b = append(b, `,"project_id":`...)
	b = appendJSONString(b, ev.ProjectID)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, ev.EventType)
	if ev.EndpointID != "" {
		b = append(b, `,"endpoint_id":`...)
		b = appendJSONString(b, ev.EndpointID)
	}
	if ev.OwnerID != "" {
		b = append(b, `,"owner_id":`...)
		b = appendJSONString(b, ev.OwnerID)
	}
	b = append(b, `,"endpoints":`...)
	if ev.Endpoints == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, e := range ev.Endpoints {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e)
		}
		b = append(b, ']')
	}
	if len(ev.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendStringMap(b, ev.Headers)
	}
	if ev.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendJSONString(b, ev.IdempotencyKey)
	}
	if ev.SourceID != "" {
		b = append(b, `,"source_id":`...)
		b = appendJSONString(b, ev.SourceID)
	}
	b = append(b, `,"data":`...)
	b, ok := appendEventData(b, ev.Data)
	if !ok {
		return b, false
	}
	b = append(b, `,"created_at":"`...)
	// AppendText is MarshalJSON without the quotes: strict RFC 3339 with nanoseconds, and an error
	// (encoding/json's too) for a year outside 0-9999 or an offset of 24 h or more.
	t, err := ev.CreatedAt.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(t, '"'), true
}

// appendStringMap appends m as encoding/json does: keys sorted bytewise before escaping.
func appendStringMap(b []byte, m map[string]string) []byte {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// appendEventData appends what encoding/json writes for model.EventData: null for nil, JSON as
// published but compacted (the encoder compacts every Marshaler's output), anything else as a
// string. The fast path validates and compacts in one pass; what it refuses takes encoding/json's
// own two steps, which also gives non-JSON data json.Marshal's HTML escaping exactly.
func appendEventData(b []byte, d model.EventData) ([]byte, bool) {
	if d == nil {
		return append(b, "null"...), true
	}
	if out, ok := appendCompactJSON(b, d); ok {
		return out, true
	}
	m, err := d.MarshalJSON()
	if err != nil {
		return b, false
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, m); err != nil {
		return b, false
	}
	return buf.Bytes(), true
}

// appendJSONString appends s quoted as encoding/json does with HTML escaping off: the seven short
// escapes, \u00XX for other control bytes, \ufffd for each byte of invalid UTF-8, and U+2028 and
// U+2029 escaped (JSONP safety); DEL and everything else as is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Ids and types are plain ASCII: skip eight bytes at a time while none needs a look.
		for i+8 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if m := strSpecial8(x) | x&0x8080808080808080; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if strPlain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// strPlain marks the ASCII bytes that stand for themselves inside a JSON string, both when
// encoding (appendJSONString) and when validating (scanJSONString): not '"', not '\\', not a control
// byte. Bytes from 0x80 are false here; each user decides what they mean.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// compactMaxDepth is the nesting appendCompactJSON tracks in a fixed-size stack. encoding/json
// accepts 10000 levels; deeper data than this takes the slow path rather than a bigger stack.
const compactMaxDepth = 512

// appendCompactJSON appends src without insignificant whitespace if src is one valid JSON value
// (by encoding/json's rules: strings may hold any byte from 0x20, invalid UTF-8 included). It
// reports false, with dst's content undefined past its original length, if src is not valid JSON
// or nests more than compactMaxDepth levels. It never reports true for what json.Valid refuses.
func appendCompactJSON(dst, src []byte) ([]byte, bool) {
	var stack [compactMaxDepth / 64]uint64 // bit set: the open container at that depth is an object
	c := compactor{dst: dst, src: src}
	depth, i, n := 0, 0, len(src)
	inValue := true // expecting a value; else a value has just ended
	for {
		i = c.skipSpace(i)
		if inValue {
			if i >= n {
				return dst, false
			}
			var ok bool
			switch ch := src[i]; {
			case ch == '"':
				i, ok = scanJSONString(src, i)
			case ch == '{' || ch == '[':
				if depth == compactMaxDepth {
					return dst, false
				}
				if ch == '{' {
					stack[depth>>6] |= 1 << (depth & 63)
				} else {
					stack[depth>>6] &^= 1 << (depth & 63)
				}
				depth++
				i = c.skipSpace(i + 1)
				if i < n && src[i] == ch+2 { // '}' is '{'+2, ']' is '['+2
					depth--
					i++
					ok = true
					break
				}
				if ch == '{' {
					if i, ok = c.key(i); !ok {
						return dst, false
					}
				}
				continue // inValue: the first member's value or element
			case ch == 't':
				i, ok = scanLiteral(src, i, "true")
			case ch == 'f':
				i, ok = scanLiteral(src, i, "false")
			case ch == 'n':
				i, ok = scanLiteral(src, i, "null")
			default:
				i, ok = scanJSONNumber(src, i)
			}
			if !ok {
				return dst, false
			}
			inValue = false
			continue
		}
		if depth == 0 {
			if i != n {
				return dst, false
			}
			break
		}
		if i >= n {
			return dst, false
		}
		d := depth - 1
		isObj := stack[d>>6]&(1<<(d&63)) != 0
		switch ch := src[i]; {
		case ch == ',':
			i++
			if isObj {
				var ok bool
				if i, ok = c.key(i); !ok {
					return dst, false
				}
			}
			inValue = true
		case ch == '}' && isObj, ch == ']' && !isObj:
			depth--
			i++
		default:
			return dst, false
		}
	}
	return append(c.dst, src[c.start:]...), true
}

// compactor accumulates appendCompactJSON's output: src[start:] is not copied to dst yet.
type compactor struct {
	dst, src []byte
	start    int
}

// skipSpace returns the index of the first non-space byte from i, dropping the spaces.
func (c *compactor) skipSpace(i int) int {
	if i >= len(c.src) || !isJSONSpace(c.src[i]) {
		return i
	}
	c.dst = append(c.dst, c.src[c.start:i]...)
	for i++; i < len(c.src) && isJSONSpace(c.src[i]); i++ {
	}
	c.start = i
	return i
}

// key scans an object member's `"name" :` from i and returns the index after the colon.
func (c *compactor) key(i int) (int, bool) {
	src := c.src
	if i = c.skipSpace(i); i >= len(src) || src[i] != '"' {
		return i, false
	}
	i, ok := scanJSONString(src, i)
	if !ok {
		return i, false
	}
	if i = c.skipSpace(i); i >= len(src) || src[i] != ':' {
		return i, false
	}
	return i + 1, true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanJSONString returns the index after the string starting at src[i] == '"'.
func scanJSONString(src []byte, i int) (int, bool) {
	n := len(src)
	for i++; i < n; {
		// Strings are most of a payload's bytes: skip eight plain ones at a time.
		for i+8 <= n {
			if m := strSpecial8(binary.LittleEndian.Uint64(src[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= n {
			break
		}
		c := src[i]
		if strPlain[c] || c >= utf8.RuneSelf {
			i++
			continue
		}
		switch c {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= n {
				return i, false
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > n || !isHex(src[i+2]) || !isHex(src[i+3]) || !isHex(src[i+4]) || !isHex(src[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		default: // a control byte
			return i, false
		}
	}
	return i, false
}

// strSpecial8 has the high bit set in the lowest byte of x (little-endian) that is '"', '\\' or a
// control byte, and possibly in higher ones; it is zero when all eight bytes are plain or >= 0x80.
// It is the classic "has a byte less than n" bit trick, once against 0x20 and once each against zero
// after XOR with '"' and '\\'; borrows can only mark bytes above a true match. One "&^ x" serves
// all three because the XORs leave each byte's high bit as it was.
func strSpecial8(x uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lo * '"')
	bs := x ^ (lo * '\\')
	return ((x - lo*0x20) | (q - lo) | (bs - lo)) &^ x & hi
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// scanJSONNumber returns the index after the number starting at src[i]: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanJSONNumber(src []byte, i int) (int, bool) {
	n := len(src)
	if src[i] == '-' {
		if i++; i >= n {
			return i, false
		}
	}
	switch c := src[i]; {
	case c == '0':
		i++
	case '1' <= c && c <= '9':
		for i++; i < n && isDigit(src[i]); i++ {
		}
	default:
		return i, false
	}
	if i < n && src[i] == '.' {
		if i++; i >= n || !isDigit(src[i]) {
			return i, false
		}
		for i++; i < n && isDigit(src[i]); i++ {
		}
	}
	if i < n && (src[i] == 'e' || src[i] == 'E') {
		if i++; i < n && (src[i] == '+' || src[i] == '-') {
			i++
		}
		if i >= n || !isDigit(src[i]) {
			return i, false
		}
		for i++; i < n && isDigit(src[i]); i++ {
		}
	}
	return i, true
}

func scanLiteral(src []byte, i int, lit string) (int, bool) {
	if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}
