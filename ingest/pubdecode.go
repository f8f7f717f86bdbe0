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

// stringKeys are the fields decoded as simple strings.
var stringKeys = [...]int{pkProjectID, pkTarget, pkEndpointID, pkOwnerID, pkEventType, pkIdempotencyKey}

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
