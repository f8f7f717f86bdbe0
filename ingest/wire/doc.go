// Package wire is the byte format of Sluice's TCP ingest protocol (docs/tcp-protocol.md), shared by
// the server (package ingest) and the Go client (package ingest/client). It owns frame encoding and
// decoding, the payload layouts of every frame type, the error codes, and the optional S2 payload
// compression. It has no I/O, no goroutines and no dependency on the rest of Sluice, so a client
// binary that imports it does not pull in the store.
//
// A frame is a 16-byte header followed by a payload; all integers are big-endian:
//
//	offset size field
//	0      4    length    bytes after this field: 12 + len(payload)
//	4      1    version   1
//	5      1    type      TypeAuth .. TypeError
//	6      1    flags     bit 0: payload is S2/Snappy block compressed (PUBLISH, PUBLISH_BATCH only)
//	7      1    reserved  0
//	8      8    seq       chosen by the client per request; replies carry the request's seq
//	16     n    payload
//
// DecodeFrame reads one frame from a byte slice without copying and reports how many bytes it used;
// it refuses (with a *FrameError naming the Code to answer with) anything malformed before looking at
// the payload, so a peer cannot make the reader buffer more than the negotiated maximum frame size.
package wire
