package netpool

import (
	"io"
	"net/http"
)

// readBody reads the response body under the cap and drain policy (see the package doc) and always
// closes it. Body and BodyTruncated are set even when it returns an error.
func (p *Pool) readBody(hres *http.Response, res *Response) error {
	// Closing a body that was not read to EOF drops an HTTP/1 connection and resets an HTTP/2 stream;
	// both are what we want when the drain budget is exceeded or the read failed.
	defer hres.Body.Close()
	return p.readCapped(hres.Body, hres.ContentLength, hres.ProtoMajor >= 2, res)
}

// readCapped applies the keep/drain policy to body, whose length is cl (-1 if unknown). It returns nil
// both when the body was read to its end and when it stopped early on purpose (longer than the drain
// budget, or HTTP/2); the caller tells them apart (net/http by Close, the lean client by
// bodyReader.done). Both clients share it so their keep/drain/close behaviour cannot drift apart.
func (p *Pool) readCapped(body io.Reader, cl int64, h2 bool, res *Response) error {
	if cl == 0 {
		return nil
	}
	keep := p.cfg.KeepBodyBytes
	var buf []byte
	if cl > 0 && cl <= int64(keep) {
		// Known and small, the common case: read straight into the Body, no copy.
		buf = make([]byte, cl)
	} else {
		bp := p.bufs.Get().(*[]byte)
		defer p.bufs.Put(bp)
		buf = *bp
	}
	n, eof, err := readFull(body, buf)
	if n > 0 {
		if cl > 0 && cl <= int64(keep) {
			res.Body = buf[:n]
		} else {
			res.Body = append([]byte(nil), buf[:n]...) // buf goes back to the pool
		}
	}
	if err != nil || eof {
		return err
	}

	// Body is full; more may follow.
	if cl > int64(n) {
		res.BodyTruncated = true
		if h2 || cl-int64(n) > p.cfg.DrainBodyBytes {
			// Resetting an HTTP/2 stream costs the connection nothing, and an HTTP/1 body beyond the
			// drain budget costs the connection anyway: don't read it.
			return nil
		}
	}
	budget := p.cfg.DrainBodyBytes
	if h2 {
		budget = 0 // read one byte to learn whether the body was truncated, then reset the stream
	}
	m, err := io.CopyN(io.Discard, body, budget+1)
	if m > 0 {
		res.BodyTruncated = true
	}
	if err == io.EOF {
		return nil // fully drained: net/http returns the connection to the pool
	}
	// err == nil means the body is longer than the budget: the deferred Close drops the connection.
	return err
}

// readFull reads into buf until it is full, the body ends (eof) or a read fails. Unlike io.ReadFull it
// tells a clean end of body from an io.ErrUnexpectedEOF reported by net/http for a short body.
func readFull(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		var m int
		m, err = r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}
