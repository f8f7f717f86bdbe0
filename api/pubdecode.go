package api

import (
	"bytes"
	"io"
	"sync"

	"github.com/sluice-gw/sluice/internal/jsonscan"
)

// publishKeys are PublishRequest's JSON names, indexed by the pk* constants.
var publishKeys = []string{"endpoint_id", "owner_id", "event_type", "data", "custom_headers", "idempotency_key"}

const (
	pkEndpointID = iota
	pkOwnerID
	pkEventType
	pkData
	pkCustomHeaders
	pkIdempotencyKey
	pkCount
)

// bodyPool holds the buffers publish bodies are read into. Nothing decoded aliases them (strings are
// copied, Data is copied), so a buffer is reused as soon as its request is decoded.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody keeps the rare large body's buffer out of the pool so it does not pin memory.
const maxPooledBody = 64 << 10

// readPublishBody reads the whole body (bounded by the caller's http.MaxBytesReader: an oversized
// body is a 413 whatever its contents) into a pooled buffer, which the caller hands back to
// releaseBody once nothing reads it any more.
func readPublishBody(body io.Reader) (*bytes.Buffer, error) {
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(body); err != nil {
		releaseBody(buf)
		return nil, jsonError(err)
	}
	return buf, nil
}

func releaseBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		bodyPool.Put(buf)
	}
}

// stringKeys are the fields decoded as simple strings.
var stringKeys = [...]int{pkEndpointID, pkOwnerID, pkEventType, pkIdempotencyKey}

// decodePublishFast decodes b into in when b is a publish body in the canonical shape: one object,
// only PublishRequest's exact (lower-case) keys, each at most once, simple strings (no escapes,
// valid UTF-8), custom_headers an object of simple strings, data present and not null, nothing after
// the object but whitespace. For anything else it reports false and leaves in untouched, and the
// caller decodes with encoding/json, so odd inputs and every error message stay exactly as
// encoding/json has them; FuzzPublishFastMatchesJSON holds the two to the same result.
//
// It reads b once (the data value is validated, not decoded) and allocates only what it returns:
// one string per field, the headers map and a copy of data, so nothing in aliases b.
func decodePublishFast(b []byte, in *PublishRequest) bool {
	var spans [pkCount]jsonscan.Span
	if !jsonscan.Object(b, publishKeys, spans[:]) {
		return false
	}
	var strs [pkCount][]byte
	if !jsonscan.Strings(b, spans[:], stringKeys[:], strs[:]) {
		return false
	}
	data := spans[pkData]
	if data.Empty() || b[data.Start] == 'n' {
		return false
	}
	headers, ok := jsonscan.StringMap(b, spans[pkCustomHeaders])
	if !ok {
		return false
	}
	*in = PublishRequest{
		EndpointID:     string(strs[pkEndpointID]),
		OwnerID:        string(strs[pkOwnerID]),
		EventType:      string(strs[pkEventType]),
		Data:           bytes.Clone(b[data.Start:data.End]),
		CustomHeaders:  headers,
		IdempotencyKey: string(strs[pkIdempotencyKey]),
	}
	return true
}
