package netpool

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseResponse runs the lean client's response parser over arbitrary bytes: it must not panic,
// must keep at most KeepBodyBytes, must not read past the head budget plus the body budgets, and a
// success must carry a status.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nclose delimited",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 999 x\nContent-Length: 1\n\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + strings.Repeat("z", 200),
	} {
		f.Add([]byte(s), false)
	}
	p, err := New(Config{KeepBodyBytes: 64, DrainBodyBytes: 128})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "POST"
		if head {
			method = "HEAD"
		}
		var rp respParser
		res := &Response{}
		reuse, err := p.parseResponse(&rp, bufio.NewReaderSize(bytes.NewReader(data), leanBufSize), method, res)
		if len(res.Body) > 64 {
			t.Fatalf("kept %d bytes", len(res.Body))
		}
		if err == nil && (res.StatusCode < 200 || res.StatusCode > 999 || res.Header == nil) {
			t.Fatalf("success with status %d header %v", res.StatusCode, res.Header)
		}
		if err != nil && res.StatusCode == 0 && res.Header != nil {
			t.Fatalf("headers without a status: %v", res.Header)
		}
		if errors.Is(err, io.EOF) && len(data) > 0 {
			t.Fatalf("bare io.EOF after %d bytes: only an empty read may look like a stale connection", len(data))
		}
		if reuse && err != nil {
			t.Fatalf("reusable after %v", err)
		}

		// The same bytes followed by an endless stream: the parse must stop within its budgets (head,
		// then keep+drain+1 body bytes, plus chunk framing and one read buffer of look-ahead) instead
		// of reading, or holding, whatever the endpoint keeps sending.
		for _, fill := range []byte{'a', '\n', '0'} {
			cr := &countReader{r: io.MultiReader(bytes.NewReader(data), endless(fill))}
			res := &Response{}
			p.parseResponse(&rp, bufio.NewReaderSize(cr, leanBufSize), method, res)
			if limit := int64(len(data) + 2*maxResponseHeaderBytes + 64 + 128 + 1 + 2*leanBufSize); cr.n > limit {
				t.Fatalf("fill %q: read %d bytes", fill, cr.n)
			}
			if len(res.Body) > 64 {
				t.Fatalf("fill %q: kept %d bytes", fill, len(res.Body))
			}
		}
	})
}

// endless reads as an infinite run of one byte.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
