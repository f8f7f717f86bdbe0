package jsonscan

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"unicode/utf8"
)

var (
	// ErrSyntax is returned by Value for input json.Valid refuses (other than by depth).
	ErrSyntax = errors.New("jsonscan: invalid JSON")
	// ErrTooDeep is returned by Value for more than MaxDepth nested arrays and objects, which
	// encoding/json refuses too.
	ErrTooDeep = errors.New("jsonscan: nesting deeper than MaxDepth")
)

// MaxDepth is encoding/json's nesting limit (scanner.go maxNestingDepth), so that Value and
// json.Valid agree on every input.
const MaxDepth = 10000

// Span is the byte range [Start, End) of a value in the input.
type Span struct{ Start, End int }

// Empty reports whether the span was never set (no value starts at offset 0 inside an object).
func (s Span) Empty() bool { return s.End == 0 }

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// SkipSpace returns the index of the first byte at or after i that is not JSON whitespace, or len(b).
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// specialLanes flags (high bit of each byte lane) the lanes of x holding '"', '\\' or a control
// character, and, when nonASCII, every byte >= 0x80. A borrow can only flag lanes above a truly
// flagged one, so the lowest flagged lane is always exact.
func specialLanes(x uint64, nonASCII bool) uint64 {
	m := (x - 0x20*ones) | ((x ^ '"'*ones) - ones) | ((x ^ '\\'*ones) - ones)
	if nonASCII {
		return (m | x) & highs
	}
	// Lanes >= 0x80 set their own high bit in the subtractions; none of them is special here.
	return m &^ x & highs
}

// String reads the simple string whose opening quote is b[i]: it returns the bytes between the quotes
// and the index after the closing one. ok is false when b[i] is not a quote or the string is not
// simple (an escape, a control character, invalid UTF-8, no closing quote): encoding/json would
// rewrite or refuse it, so only encoding/json can say what it means.
func String(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	j := i + 1
	for {
		for j+8 <= len(b) {
			m := specialLanes(binary.LittleEndian.Uint64(b[j:]), true)
			if m != 0 {
				j += trailingZeroBytes(m)
				break
			}
			j += 8
		}
		if j >= len(b) {
			return nil, j, false
		}
		c := b[j]
		switch {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, j, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				return nil, j, false
			}
			j += size
		default:
			j++
		}
	}
}

// trailingZeroBytes is the index of the lowest flagged lane (little-endian: the first byte).
func trailingZeroBytes(m uint64) int { return bits.TrailingZeros64(m) / 8 }

// skipString returns the index after the string whose opening quote is b[i], validating escapes and
// refusing control characters as json.Valid does (which does not check UTF-8).
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j+8 <= len(b) {
			m := specialLanes(binary.LittleEndian.Uint64(b[j:]), false)
			if m != 0 {
				j += trailingZeroBytes(m)
				break
			}
			j += 8
		}
		if j >= len(b) {
			return j, ErrSyntax
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c < 0x20:
			return j, ErrSyntax
		case c == '\\':
			if j+1 >= len(b) {
				return j, ErrSyntax
			}
			switch b[j+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				j += 2
			case 'u':
				if j+6 > len(b) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return j, ErrSyntax
				}
				j += 6
			default:
				return j, ErrSyntax
			}
		default:
			j++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipNumber returns the index after the RFC 8259 number starting at b[i] ('-' or a digit). What
// follows is the caller's to check: "01" ends after "0" and the '1' is then out of place.
func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b) || !isDigit(b[i]):
		return i, ErrSyntax
	case b[i] == '0':
		i++
	default:
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, ErrSyntax
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, ErrSyntax
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

func skipLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, ErrSyntax
	}
	return i + len(lit), nil
}

// Value validates the JSON value starting at b[i] (leading whitespace allowed) and returns the index
// just after it; trailing bytes are the caller's to check. On error the index is where the input
// stopped being valid. It accepts exactly what json.Valid accepts as a value, without recursion and
// without allocating.
func Value(b []byte, i int) (int, error) { return value(b, i, 0) }

// value is Value for a value nested in outer containers, which count toward MaxDepth as they do in
// encoding/json (a member of a top-level object may nest MaxDepth-1 deep).
func value(b []byte, i, outer int) (int, error) {
	// inObject holds one bit per open container: set for an object, clear for an array.
	var inObject [MaxDepth/64 + 1]uint64
	depth := 0
	var err error
	for {
		// A value is expected at i.
		i = SkipSpace(b, i)
		if i >= len(b) {
			return i, ErrSyntax
		}
		closed := false
		switch c := b[i]; {
		case c == '{' || c == '[':
			if outer+depth == MaxDepth {
				return i, ErrTooDeep
			}
			w, bit := depth/64, uint64(1)<<(depth%64)
			if c == '{' {
				inObject[w] |= bit
			} else {
				inObject[w] &^= bit
			}
			depth++
			i = SkipSpace(b, i+1)
			switch {
			case i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']'):
				i++
				depth--
				closed = true
			case c == '{':
				if i, err = skipKey(b, i); err != nil {
					return i, err
				}
			}
			if !closed {
				continue
			}
		case c == '"':
			i, err = skipString(b, i)
		case c == '-' || isDigit(c):
			i, err = skipNumber(b, i)
		case c == 't':
			i, err = skipLiteral(b, i, "true")
		case c == 'f':
			i, err = skipLiteral(b, i, "false")
		case c == 'n':
			i, err = skipLiteral(b, i, "null")
		default:
			return i, ErrSyntax
		}
		if err != nil {
			return i, err
		}
		// A value ended at i: close containers until one continues with a comma.
		for {
			if depth == 0 {
				return i, nil
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, ErrSyntax
			}
			top := depth - 1
			obj := inObject[top/64]&(uint64(1)<<(top%64)) != 0
			c := b[i]
			if c == ',' {
				i++
				if obj {
					if i, err = skipKey(b, i); err != nil {
						return i, err
					}
				}
				break
			}
			if obj && c == '}' || !obj && c == ']' {
				i++
				depth--
				continue
			}
			return i, ErrSyntax
		}
	}
}

// skipKey skips an object key and its colon (with the whitespace around them).
func skipKey(b []byte, i int) (int, error) {
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != '"' {
		return i, ErrSyntax
	}
	i, err := skipString(b, i)
	if err != nil {
		return i, err
	}
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, ErrSyntax
	}
	return i + 1, nil
}

// Object reads b as exactly one object (surrounding whitespace allowed) whose keys are simple strings
// each byte-equal to one of keys and present at most once, and sets spans[k] to the span of the value
// of keys[k] (spans must be as long as keys and zero). It reports false for anything else: another
// shape, a key encoding/json could match case-insensitively, a duplicate, invalid JSON, trailing
// data. The values are validated, not interpreted (a value nests at most MaxDepth-1 deep, as the
// object itself is one level).
func Object(b []byte, keys []string, spans []Span) bool {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return SkipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := String(b, i)
		if !ok {
			return false
		}
		k := 0
		for k < len(keys) && string(key) != keys[k] {
			k++
		}
		if k == len(keys) || !spans[k].Empty() {
			return false
		}
		i = SkipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		start := SkipSpace(b, i+1)
		end, err := value(b, start, 1)
		if err != nil {
			return false
		}
		spans[k] = Span{start, end}
		i = SkipSpace(b, end)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case '}':
			return SkipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// IsString reports whether s spans exactly one simple string, returning its contents.
func IsString(b []byte, s Span) ([]byte, bool) {
	v, next, ok := String(b, s.Start)
	return v, ok && next == s.End
}

// StringObject walks the object spanned by s (already validated by Value) and reports whether all
// its keys and values are simple strings; if so it calls fn (when not nil) for each member in order
// and returns their count. fn's arguments alias b.
func StringObject(b []byte, s Span, fn func(key, val []byte)) (n int, ok bool) {
	if s.Start >= len(b) || b[s.Start] != '{' {
		return 0, false
	}
	i := SkipSpace(b, s.Start+1)
	if i < len(b) && b[i] == '}' {
		return 0, i+1 == s.End
	}
	for {
		key, next, ok := String(b, i)
		if !ok {
			return 0, false
		}
		i = SkipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		val, next, ok := String(b, SkipSpace(b, i+1))
		if !ok {
			return 0, false
		}
		if fn != nil {
			fn(key, val)
		}
		n++
		i = SkipSpace(b, next)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case '}':
			return n, i+1 == s.End
		default:
			return 0, false
		}
	}
}

// Strings checks that each present span spans[k], for k in idx, is exactly one simple string and
// stores its contents in out[k]; absent ones stay nil. It reports false if any is not simple.
func Strings(b []byte, spans []Span, idx []int, out [][]byte) bool {
	for _, k := range idx {
		if spans[k].Empty() {
			continue
		}
		s, ok := IsString(b, spans[k])
		if !ok {
			return false
		}
		out[k] = s
	}
	return true
}

// StringMap decodes the object of simple strings spanned by s into a new map (one allocation per
// key and value); an absent span is a nil map. It reports false if any member is not simple.
func StringMap(b []byte, s Span) (map[string]string, bool) {
	if s.Empty() {
		return nil, true
	}
	n, ok := StringObject(b, s, nil)
	if !ok {
		return nil, false
	}
	m := make(map[string]string, n)
	StringObject(b, s, func(k, v []byte) { m[string(k)] = string(v) })
	return m, true
}
