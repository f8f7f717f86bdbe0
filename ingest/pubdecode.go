package ingest

import (
	"bytes"

	"github.com/sluice-gw/sluice/ingest/wire"
	"github.com/sluice-gw/sluice/internal/jsonscan"
)

// publishKeys are wire.Publish's JSON names, indexed by the pk* constants.
var publishKeys = []string{"project_id", "target", "endpoint_id", "owner_id", "event_type", "data", "custom_headers", "idempotency_key"}

const (
	pkProjectID = iota
	pkTarget
	pkEndpointID
	pkOwnerID
	pkEventType
	pkData
	pkCustomHeaders
	pkIdempotencyKey
	pkCount
)

// decodePublishFast decodes a PUBLISH payload into p when it is in the canonical shape: one object,
// only wire.Publish's exact (lower-case) keys, each at most once, simple strings (no escapes, valid
// UTF-8), custom_headers an object of simple strings, data present and not null, nothing after the
// object but whitespace. For anything else it reports false and leaves p untouched, and the caller
// uses decodeStrict, so odd inputs and every NACK message stay exactly as encoding/json has them;
// FuzzPublishFastMatchesStrict holds the two to the same result.
//
// It reads b once (data is validated, not decoded) and allocates only what it returns: one string
// per field, the headers map and a copy of data, so nothing in p aliases the frame buffer.
func decodePublishFast(b []byte, p *wire.Publish) bool {
	var spans [pkCount]jsonscan.Span
	if !jsonscan.Object(b, publishKeys, spans[:]) {
		return false
	}
	var strs [pkCount][]byte
	for _, k := range [...]int{pkProjectID, pkTarget, pkEndpointID, pkOwnerID, pkEventType, pkIdempotencyKey} {
		if spans[k].Empty() {
			continue
		}
		s, ok := jsonscan.IsString(b, spans[k])
		if !ok {
			return false
		}
		strs[k] = s
	}
	data := spans[pkData]
	if data.Empty() || b[data.Start] == 'n' {
		return false
	}
	var headers map[string]string
	if h := spans[pkCustomHeaders]; !h.Empty() {
		n, ok := jsonscan.StringObject(b, h, nil)
		if !ok {
			return false
		}
		headers = make(map[string]string, n)
		jsonscan.StringObject(b, h, func(k, v []byte) { headers[string(k)] = string(v) })
	}
	*p = wire.Publish{
		ProjectID:      string(strs[pkProjectID]),
		Target:         string(strs[pkTarget]),
		EndpointID:     string(strs[pkEndpointID]),
		OwnerID:        string(strs[pkOwnerID]),
		EventType:      string(strs[pkEventType]),
		Data:           bytes.Clone(b[data.Start:data.End]),
		CustomHeaders:  headers,
		IdempotencyKey: string(strs[pkIdempotencyKey]),
	}
	return true
}
