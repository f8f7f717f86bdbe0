package netpool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
)

// The lean HTTP/1.1 client's response parser. It reads from the connection's bufio.Reader, so a line
// longer than the reader's buffer is assembled in a scratch slice; every line counts against one budget
// of maxResponseHeaderBytes per attempt (1xx heads and trailers included), which bounds the memory a
// hostile endpoint can make us hold.

// max1xx bounds interim responses before the final one, as net/http does (5): an endpoint streaming
// 103s forever would otherwise hold the attempt until its timeout while costing us parse work.
const max1xx = 5

// maxChunkLine bounds a chunk-size line (size and extensions): net/http allows 4 KiB.
const maxChunkLine = 4 << 10

var (
	errHeaderTooLarge = fmt.Errorf("response headers exceed %d bytes", maxResponseHeaderBytes)
	errTooMany1xx     = fmt.Errorf("more than %d interim (1xx) responses", max1xx)
	errChunkLine      = fmt.Errorf("chunk size line longer than %d bytes", maxChunkLine)
)

// framing is how the response body is delimited, from its head.
type framing struct {
	length  int64 // Content-Length; -1 when unknown (chunked or read until close)
	chunked bool
	// reuse: the connection may carry another request once the body is read to its end.
	reuse bool
	// proto11: the response was HTTP/1.1 (else 1.0).
	proto11 bool
}

// headReader reads response heads under one byte budget.
type headReader struct {
	br      *bufio.Reader
	budget  int    // bytes of head lines left
	scratch []byte // assembles lines longer than br's buffer
}

// line returns the next line without its CRLF (or bare LF). The slice is valid until the next call.
func (h *headReader) line() ([]byte, error) {
	h.scratch = h.scratch[:0]
	for {
		l, err := h.br.ReadSlice('\n')
		if len(l) > h.budget {
			return nil, errHeaderTooLarge
		}
		h.budget -= len(l)
		if err == bufio.ErrBufferFull {
			h.scratch = append(h.scratch, l...)
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // a head never ends at EOF
				if len(l) == 0 && len(h.scratch) == 0 && h.budget == maxResponseHeaderBytes {
					err = io.EOF // nothing at all: the caller may tell a stale connection from this
				}
			}
			return nil, err
		}
		if len(h.scratch) > 0 {
			h.scratch = append(h.scratch, l...)
			l = h.scratch
		}
		l = l[:len(l)-1]
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
		return l, nil
	}
}

// readResponseHead reads the status line and headers of the final response, skipping interim 1xx
// responses, into res.StatusCode and res.Header. method is the request's, for HEAD's bodiless reply.
// Errors other than I/O errors name the malformed part.
func readResponseHead(h *headReader, method string, res *Response) (framing, error) {
	var fr framing
	var code int
	var hdr http.Header
	for n1xx := 0; ; n1xx++ {
		line, err := h.line()
		if err != nil {
			return fr, err
		}
		var proto11 bool
		code, proto11, err = parseStatusLine(line)
		if err != nil {
			return fr, err
		}
		fr.proto11 = proto11
		if code >= 200 || code == 101 {
			if code == 101 {
				// We never ask to switch protocols; a 101 leaves the connection in an unknown one.
				return fr, fmt.Errorf("unsolicited 101 Switching Protocols")
			}
			if hdr, err = readHeader(h); err != nil {
				return fr, err
			}
			break
		}
		if n1xx == max1xx {
			return fr, errTooMany1xx
		}
		if err := skipHeader(h); err != nil {
			return fr, err
		}
	}
	fr, err := responseFraming(code, method, hdr, fr.proto11)
	if err != nil {
		// Like net/http: a response whose body cannot be framed is no response.
		return fr, err
	}
	res.StatusCode, res.Header = code, hdr
	return fr, nil
}

// parseStatusLine parses "HTTP/1.x SSS reason" (reason optional).
func parseStatusLine(line []byte) (code int, proto11 bool, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return 0, false, fmt.Errorf("malformed status line %q", clip(line))
	}
	switch line[7] {
	case '0':
	case '1':
		proto11 = true
	default:
		return 0, false, fmt.Errorf("unsupported protocol version in status line %q", clip(line))
	}
	d := line[9:12]
	if d[0] < '1' || d[0] > '9' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, false, fmt.Errorf("malformed status code in status line %q", clip(line))
	}
	return int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0'), proto11, nil
}

// readHeader reads header lines up to the empty line. Values of one response share a few backing
// arrays (like net/textproto): one []string per response rather than one per header.
func readHeader(h *headReader) (http.Header, error) {
	hdr := make(http.Header, 8)
	var vals []string
	for {
		line, err := h.line()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			return hdr, nil
		}
		key, value, err := splitHeaderLine(line)
		if err != nil {
			return nil, err
		}
		k := canonicalKey(key)
		v := string(value)
		if old, ok := hdr[k]; ok {
			hdr[k] = append(old, v)
			continue
		}
		if len(vals) == cap(vals) {
			vals = make([]string, 0, 8)
		}
		vals = append(vals, v)
		hdr[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
}

// skipHeader reads and discards a header block (of a 1xx response, or chunked trailers).
func skipHeader(h *headReader) error {
	for {
		line, err := h.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if _, _, err := splitHeaderLine(line); err != nil {
			return err
		}
	}
}

// splitHeaderLine splits "Name: value" and trims the value's optional whitespace. Like net/http it
// refuses obs-fold continuation lines and names that are not tokens (RFC 9112 5.1: no space before
// the colon).
func splitHeaderLine(line []byte) (key, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, fmt.Errorf("obsolete line folding in response header %q", clip(line))
	}
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, fmt.Errorf("malformed response header line %q", clip(line))
	}
	key = line[:i]
	for _, c := range key {
		if !isToken[c] {
			return nil, nil, fmt.Errorf("invalid response header name %q", clip(key))
		}
	}
	value = line[i+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, fmt.Errorf("invalid byte %#x in response header %q", c, clip(key))
		}
	}
	return key, value, nil
}

// responseFraming derives the body's framing and the connection's reuse from the final head.
func responseFraming(code int, method string, hdr http.Header, proto11 bool) (framing, error) {
	fr := framing{length: -1, proto11: proto11}
	conn := hdr["Connection"]
	if proto11 {
		fr.reuse = !hasToken(conn, "close")
	} else {
		fr.reuse = hasToken(conn, "keep-alive") && !hasToken(conn, "close")
	}
	if code == 204 || code == 304 || method == http.MethodHead {
		fr.length = 0
		return fr, nil
	}
	te, hasTE := hdr["Transfer-Encoding"]
	cls, hasCL := hdr["Content-Length"]
	if hasTE {
		// Only a lone "chunked" is framing we can read; net/http refuses the rest too.
		if len(te) != 1 || !equalFoldASCII(te[0], "chunked") {
			return fr, fmt.Errorf("unsupported Transfer-Encoding %q", te)
		}
		fr.chunked = true
		if hasCL {
			// RFC 9112 6.3: chunked wins, and the message may be a smuggling attempt: do not reuse.
			fr.reuse = false
		}
		return fr, nil
	}
	if hasCL {
		n, err := parseContentLength(cls)
		if err != nil {
			return fr, err
		}
		fr.length = n
		return fr, nil
	}
	fr.reuse = false // read until close
	return fr, nil
}

// parseContentLength accepts one or several identical non-negative decimal values (net/http does too).
func parseContentLength(vs []string) (int64, error) {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return 0, fmt.Errorf("conflicting Content-Length headers %q", vs)
		}
	}
	v := vs[0]
	if v == "" || len(v) > 18 { // 18 digits cannot overflow int64
		return 0, fmt.Errorf("bad Content-Length %q", clipString(v))
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad Content-Length %q", clipString(v))
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// hasToken reports whether a comma-separated header (such as Connection) lists tok, ignoring case.
func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for len(v) > 0 {
			var part string
			if i := indexByteString(v, ','); i >= 0 {
				part, v = v[:i], v[i+1:]
			} else {
				part, v = v, ""
			}
			for len(part) > 0 && (part[0] == ' ' || part[0] == '\t') {
				part = part[1:]
			}
			for len(part) > 0 && (part[len(part)-1] == ' ' || part[len(part)-1] == '\t') {
				part = part[:len(part)-1]
			}
			if equalFoldASCII(part, tok) {
				return true
			}
		}
	}
	return false
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// commonKeys maps the usual spellings of frequent response headers to their canonical form, so a
// receiver's usual headers cost no key allocation (indexing a map with string(b) does not allocate).
var commonKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type", "Date",
		"Etag", "Expires", "Keep-Alive", "Last-Modified", "Location", "Retry-After", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Transfer-Encoding", "Vary", "Via",
		"X-Content-Type-Options", "X-Frame-Options", "X-Request-Id", "Access-Control-Allow-Origin",
	} {
		m[k] = k
		m[string(bytes.ToLower([]byte(k)))] = k
	}
	return m
}()

func canonicalKey(key []byte) string {
	if k, ok := commonKeys[string(key)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(key))
}

// isToken marks RFC 9110 token characters (tchar).
var isToken = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// clip bounds how much of a malformed line an error quotes.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// bodyReader reads one response body off the connection's reader under its framing. Read returns
// io.EOF at the body's end; done then tells the connection is positioned at the next response. A
// connection that ends early gives io.ErrUnexpectedEOF (except for a body delimited by close, which
// ends exactly there but leaves the connection unusable).
type bodyReader struct {
	br       *bufio.Reader
	head     *headReader // for trailers, under the same budget
	chunked  bool
	untilEOF bool
	left     int64 // bytes left in the body (fixed) or the current chunk (chunked)
	// chunked: the current chunk's data was read and its CRLF is next; or no chunk yet.
	needSize bool
	done     bool
	err      error // sticky
}

func (b *bodyReader) reset(br *bufio.Reader, head *headReader, fr framing) {
	*b = bodyReader{br: br, head: head, chunked: fr.chunked}
	switch {
	case fr.chunked:
		b.needSize = true
	case fr.length >= 0:
		b.left = fr.length
		b.done = fr.length == 0
	default:
		b.untilEOF = true
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.untilEOF {
		n, err := b.br.Read(p)
		if err == io.EOF {
			b.done = true
		} else if err != nil {
			b.err = err
		}
		return n, err
	}
	if b.chunked && b.needSize {
		if err := b.nextChunk(); err != nil {
			b.err = err
			return 0, err
		}
		if b.done {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
		return n, err
	}
	if b.left == 0 {
		if !b.chunked {
			b.done = true
			return n, io.EOF
		}
		b.needSize = true
		if err := b.chunkEnd(); err != nil {
			b.err = err
			return n, err
		}
	}
	return n, nil
}

// chunkEnd consumes the CRLF after a chunk's data.
func (b *bodyReader) chunkEnd() error {
	c, err := b.br.ReadByte()
	if err == nil && c == '\r' {
		c, err = b.br.ReadByte()
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	if c != '\n' {
		return errors.New("malformed chunked encoding: no CRLF after chunk data")
	}
	return nil
}

// nextChunk reads a chunk-size line; at the last chunk it skips the trailers and marks the body done.
func (b *bodyReader) nextChunk() error {
	line, err := b.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return errChunkLine
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i] // chunk extensions are ignored
	}
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if len(line) == 0 || len(line) > 15 { // 15 hex digits cannot overflow int64
		return fmt.Errorf("malformed chunk size %q", clip(line))
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return fmt.Errorf("malformed chunk size %q", clip(line))
		}
		n = n<<4 | int64(d)
	}
	b.needSize = false
	if n == 0 {
		if err := skipHeader(b.head); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("chunked trailers: %w", err)
		}
		b.done = true
		return nil
	}
	b.left = n
	return nil
}

// respParser is the parse state of one response; each lean connection has one, so parsing allocates
// nothing for it.
type respParser struct {
	head headReader
	body bodyReader
}

// parseResponse is the whole parse of one response, head and capped body, the way the lean client
// does it; FuzzParseResponse drives it over arbitrary bytes. It reports whether the connection is
// positioned at the next response and may be reused.
func (p *Pool) parseResponse(rp *respParser, br *bufio.Reader, method string, res *Response) (reuse bool, err error) {
	rp.head.br, rp.head.budget = br, maxResponseHeaderBytes
	defer func() {
		if cap(rp.head.scratch) > leanBufSize {
			rp.head.scratch = nil // do not keep a hostile endpoint's long line per idle connection
		}
	}()
	fr, err := readResponseHead(&rp.head, method, res)
	if err != nil {
		return false, err
	}
	rp.body.reset(br, &rp.head, fr)
	if err := p.readCapped(&rp.body, fr.length, false, res); err != nil {
		return false, err
	}
	return fr.reuse && rp.body.done, nil
}
