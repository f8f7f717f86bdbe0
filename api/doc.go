// Package api serves Sluice's REST API (Convoy-shaped: a {status, message, data} envelope, uid fields,
// cursor pagination) over the replicated store. It owns request decoding and validation,
// authentication by API key (a SHA-256 map lookup, never a slow KDF per request), the choice of ids
// and timestamps before a write is proposed, and fan-out resolution of published events to
// endpoints. A write is answered only after its command is committed and applied.
package api
