package raftstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// Binary records. Delivery and attempt records are written once per attempt result and read once per
// attempt, so they are stored in a compact binary form instead of JSON (which cost a quarter of the
// egress CPU). The same encodings carry attempt results in CmdResults commands.
//
// Every record starts with a format byte. JSON records start with '{', so a reader tells the two
// apart by that byte: state written by earlier versions (and CmdResults entries still in the Raft
// log) decode as before. Layout, all integers as (zig-zag) varints, strings and byte runs as uvarint
// length + bytes:
//
//	delivery (format 1): uid project event endpoint event_type owner status attempts
//	                     has_next [next] last_status last_error created updated
//	attempt  (format 1): uid delivery project endpoint number method url req_headers status
//	                     resp_headers resp_body truncated latency_ms(8, IEEE 754 bits) error egress_ip
//	                     created
//	results  (format 1): count, then per result: project delivery status next disable at
//	                     attempt (length-prefixed attempt record; length 0 = none)
//	event    (format 1): uid project event_type endpoint owner headers idempotency_key source created
//	                     (the event's matched endpoints and data are records of their own)
//	targets  (format 1): count+1 (0 = nil), then the endpoint ids
//	status:  one byte, model.DeliveryStatus.Code(); 0xff is followed by the status as a string
//	time:    zone (0 = UTC, 1 = fixed offset followed by offset seconds), unix seconds, nanoseconds
//	header:  count+1 (0 = nil), then per name: name, values count+1 (0 = nil), values
//	headers (an event's): count+1 (0 = nil), then name, value pairs in name order
//
// JSON targets records start with '[' (or are "null").
//
// Decoders check every length against what is left and refuse trailing bytes; they return errors,
// never panic, whatever the input (FuzzDecodeDelivery and friends).
const (
	formatDelivery = 1
	formatAttempt  = 1
	formatResults  = 1
	formatEvent    = 1
	formatTargets  = 1
	statusLiteral  = 0xff
)

var errCodec = errors.New("raftstore: malformed record")

// enc appends fields to a byte slice.
type enc struct{ b []byte }

func (e *enc) byte(c byte)     { e.b = append(e.b, c) }
func (e *enc) int(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) uint(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) str(s string)    { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte)  { e.uint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) bool(v bool)     { e.byte(boolByte(v)) }
func (e *enc) float(v float64) { e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(v)) }
func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func (e *enc) time(t time.Time) {
	// JSON keeps only the offset too, and writes offset 0 as "Z" whatever the location.
	_, off := t.Zone()
	if off == 0 {
		e.byte(0)
	} else {
		e.byte(1)
		e.int(int64(off))
	}
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

func (e *enc) status(s model.DeliveryStatus) {
	if c := s.Code(); c != 0 || s == "" {
		e.byte(c)
		return
	}
	e.byte(statusLiteral)
	e.str(string(s))
}

func (e *enc) header(h http.Header) {
	if h == nil {
		e.uint(0)
		return
	}
	e.uint(uint64(len(h)) + 1)
	// Names in order, so a record's bytes are a function of its content on every replica. The
	// backing array stays on the stack for the usual handful of headers.
	keys := make([]string, 0, 16)
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := h[k]
		e.str(k)
		if vs == nil {
			e.uint(0)
			continue
		}
		e.uint(uint64(len(vs)) + 1)
		for _, v := range vs {
			e.str(v)
		}
	}
}

// strMap writes a string map in key order, so a record's bytes are a function of its content.
func (e *enc) strMap(m map[string]string) {
	if m == nil {
		e.uint(0)
		return
	}
	e.uint(uint64(len(m)) + 1)
	keys := make([]string, 0, 16)
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
}

// dec reads fields; the first error sticks and every later read returns zero values. Strings are
// substrings of s, one allocation per record.
type dec struct {
	s   string
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at %d bytes from the end", errCodec, what, len(d.s))
	}
	d.s = ""
}

func (d *dec) byte() byte {
	if len(d.s) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

func (d *dec) uint() uint64 {
	var v uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if i >= len(d.s) {
			d.fail("truncated varint")
			return 0
		}
		c := d.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			d.s = d.s[i+1:]
			return v | uint64(c)<<shift
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.fail("varint overflow")
	return 0
}

func (d *dec) int() int64 {
	u := d.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// count reads a length that must fit in what is left (each counted item takes at least min bytes).
func (d *dec) count(min int) int {
	n := d.uint()
	if n > uint64(len(d.s)/min) {
		d.fail("length beyond the record")
		return 0
	}
	return int(n)
}

// nilCount reads a count stored plus one, 0 standing for nil.
func (d *dec) nilCount(min int) (n int, isNil bool) {
	u := d.uint()
	if u == 0 {
		return 0, true
	}
	if u-1 > uint64(len(d.s)/min) {
		d.fail("length beyond the record")
		return 0, true
	}
	return int(u - 1), false
}

func (d *dec) str() string {
	n := d.count(1)
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *dec) float() float64 {
	if len(d.s) < 8 {
		d.fail("truncated float")
		return 0
	}
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(d.s[i])
	}
	d.s = d.s[8:]
	return math.Float64frombits(v)
}

func (d *dec) time() time.Time {
	var loc *time.Location
	switch d.byte() {
	case 0:
		loc = time.UTC
	case 1:
		off := d.int()
		if off < -24*3600 || off > 24*3600 {
			d.fail("bad zone offset")
			return time.Time{}
		}
		loc = time.FixedZone("", int(off))
	default:
		d.fail("bad time zone tag")
		return time.Time{}
	}
	sec, nsec := d.int(), d.uint()
	if nsec >= 1e9 {
		d.fail("bad nanoseconds")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(loc)
}

func (d *dec) status() model.DeliveryStatus {
	c := d.byte()
	switch {
	case c == 0:
		return ""
	case c == statusLiteral:
		return model.DeliveryStatus(d.str())
	case int(c) <= len(model.AllStatuses):
		return model.AllStatuses[c-1]
	}
	d.fail("bad status")
	return ""
}

func (d *dec) header() http.Header {
	n, isNil := d.nilCount(2)
	if isNil {
		return nil
	}
	h := make(http.Header, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str()
		m, isNil := d.nilCount(1)
		if isNil {
			h[k] = nil
			continue
		}
		vs := make([]string, m)
		for j := range vs {
			vs[j] = d.str()
		}
		h[k] = vs
	}
	return h
}

// skipHeader reads past a header without building it.
func (d *dec) skipHeader() {
	n, _ := d.nilCount(2)
	for i := 0; i < n && d.err == nil; i++ {
		d.str()
		m, _ := d.nilCount(1)
		for j := 0; j < m && d.err == nil; j++ {
			d.str()
		}
	}
}

func (d *dec) done() error {
	if d.err == nil && len(d.s) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func appendDelivery(b []byte, x *model.Delivery) []byte {
	e := enc{b}
	e.byte(formatDelivery)
	e.str(x.UID)
	e.str(x.ProjectID)
	e.str(x.EventID)
	e.str(x.EndpointID)
	e.str(x.EventType)
	e.str(x.OwnerID)
	e.status(x.Status)
	e.int(int64(x.Attempts))
	e.bool(x.NextAttemptAt != nil)
	if x.NextAttemptAt != nil {
		e.time(*x.NextAttemptAt)
	}
	e.int(int64(x.LastStatus))
	e.str(x.LastError)
	e.time(x.CreatedAt)
	e.time(x.UpdatedAt)
	return e.b
}

// decodeDelivery reads a delivery record in either format into x.
func decodeDelivery(v []byte, x *model.Delivery) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, x)
	}
	return decodeDeliveryString(string(v), x)
}

// decodeDeliveryString decodes a binary delivery record; its strings are substrings of s.
func decodeDeliveryString(s string, x *model.Delivery) error {
	d := dec{s: s}
	if f := d.byte(); d.err == nil && f != formatDelivery {
		return fmt.Errorf("%w: delivery format %d", errCodec, f)
	}
	*x = model.Delivery{
		UID: d.str(), ProjectID: d.str(), EventID: d.str(), EndpointID: d.str(), EventType: d.str(),
		OwnerID: d.str(), Status: d.status(), Attempts: int(d.int()),
	}
	if d.bool() {
		t := d.time()
		x.NextAttemptAt = &t
	}
	x.LastStatus = int(d.int())
	x.LastError = d.str()
	x.CreatedAt = d.time()
	x.UpdatedAt = d.time()
	return d.done()
}

func appendAttempt(b []byte, x *model.Attempt) []byte {
	e := enc{b}
	e.byte(formatAttempt)
	e.str(x.UID)
	e.str(x.DeliveryID)
	e.str(x.ProjectID)
	e.str(x.EndpointID)
	e.int(int64(x.Number))
	e.str(x.Method)
	e.str(x.URL)
	e.header(x.RequestHeaders)
	e.int(int64(x.StatusCode))
	e.header(x.ResponseHeaders)
	e.str(x.ResponseBody)
	e.bool(x.BodyTruncated)
	e.float(x.LatencyMS)
	e.str(x.Error)
	e.str(x.EgressIP)
	e.time(x.CreatedAt)
	return e.b
}

// decodeAttempt reads an attempt record in either format into x.
func decodeAttempt(v []byte, x *model.Attempt) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, x)
	}
	return decodeAttemptString(string(v), x, true)
}

// decodeAttemptString decodes an attempt; without headers it leaves both header maps nil (what
// applying a result needs of its attempt does not include them, and they are most of its
// allocations).
func decodeAttemptString(s string, x *model.Attempt, headers bool) error {
	d := dec{s: s}
	if f := d.byte(); d.err == nil && f != formatAttempt {
		return fmt.Errorf("%w: attempt format %d", errCodec, f)
	}
	header := func() http.Header {
		if headers {
			return d.header()
		}
		d.skipHeader()
		return nil
	}
	*x = model.Attempt{
		UID: d.str(), DeliveryID: d.str(), ProjectID: d.str(), EndpointID: d.str(), Number: int(d.int()),
		Method: d.str(), URL: d.str(), RequestHeaders: header(), StatusCode: int(d.int()),
		ResponseHeaders: header(), ResponseBody: d.str(), BodyTruncated: d.bool(), LatencyMS: d.float(),
		Error: d.str(), EgressIP: d.str(), CreatedAt: d.time(),
	}
	return d.done()
}

// NewResultsCommand encodes attempt results as a CmdResults command in the binary format.
func NewResultsCommand(rs []AttemptResult) Command {
	return Command{Type: CmdResults, Meta: appendResults(nil, rs)}
}

func appendResults(b []byte, rs []AttemptResult) []byte {
	var scratch []byte
	if b == nil && len(rs) > 0 {
		// Sized after the first attempt (the attempts of a batch are alike), so the buffer rarely
		// grows.
		per := 64
		if rs[0].Attempt != nil {
			scratch = appendAttempt(scratch, rs[0].Attempt)
			per += len(scratch)
		}
		b = make([]byte, 0, 16+per*len(rs))
	}
	e := enc{b}
	e.byte(formatResults)
	e.uint(uint64(len(rs)))
	for i := range rs {
		r := &rs[i]
		e.str(r.ProjectID)
		e.str(r.DeliveryID)
		e.status(r.Status)
		e.time(r.NextAttemptAt)
		e.bool(r.DisableEndpoint)
		e.time(r.At)
		if r.Attempt == nil {
			e.uint(0)
			continue
		}
		scratch = appendAttempt(scratch[:0], r.Attempt)
		e.bytes(scratch)
	}
	return e.b
}

// decodeResults reads a CmdResults body in either format. With the binary format, raw[i] holds the
// i-th result's attempt record exactly as it is stored (aliasing meta), so applying it writes those
// bytes without encoding them again, and the decoded attempts have headers only when headers is
// set; with JSON raw is nil and attempts are whole.
func decodeResults(meta []byte, headers bool) (rs []AttemptResult, raw [][]byte, err error) {
	if len(meta) > 0 && meta[0] == '{' {
		var r Results
		if err := json.Unmarshal(meta, &r); err != nil {
			return nil, nil, err
		}
		return r.Results, nil, nil
	}
	d := dec{s: string(meta)}
	if f := d.byte(); d.err == nil && f != formatResults {
		return nil, nil, fmt.Errorf("%w: results format %d", errCodec, f)
	}
	// A result takes at least 11 bytes, which bounds the count before allocating.
	n := d.count(11)
	rs = make([]AttemptResult, n)
	raw = make([][]byte, n)
	attempts := make([]model.Attempt, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		r := &rs[i]
		r.ProjectID, r.DeliveryID, r.Status = d.str(), d.str(), d.status()
		r.NextAttemptAt, r.DisableEndpoint, r.At = d.time(), d.bool(), d.time()
		a := d.str()
		if a == "" || d.err != nil {
			continue
		}
		start := len(meta) - len(d.s) - len(a)
		raw[i] = meta[start : start+len(a) : start+len(a)]
		attempts = append(attempts, model.Attempt{})
		if err := decodeAttemptString(a, &attempts[len(attempts)-1], headers); err != nil {
			return nil, nil, fmt.Errorf("result %d: %w", i, err)
		}
		r.Attempt = &attempts[len(attempts)-1]
	}
	if err := d.done(); err != nil {
		return nil, nil, err
	}
	return rs, raw, nil
}

// appendEvent encodes an event's record: everything but its matched endpoints and data, which are
// stored apart (the endpoints can be many; the data is compressed).
func appendEvent(b []byte, x *model.Event) []byte {
	e := enc{b}
	e.byte(formatEvent)
	e.str(x.UID)
	e.str(x.ProjectID)
	e.str(x.EventType)
	e.str(x.EndpointID)
	e.str(x.OwnerID)
	e.strMap(x.Headers)
	e.str(x.IdempotencyKey)
	e.str(x.SourceID)
	e.time(x.CreatedAt)
	return e.b
}

// decodeEvent reads an event record in either format into x. Endpoints and Data are left as the
// record has them: nil in the binary form (JSON records of earlier versions say null).
func decodeEvent(v []byte, x *model.Event) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, x)
	}
	d := dec{s: string(v)}
	if f := d.byte(); d.err == nil && f != formatEvent {
		return fmt.Errorf("%w: event format %d", errCodec, f)
	}
	*x = model.Event{UID: d.str(), ProjectID: d.str(), EventType: d.str(), EndpointID: d.str(), OwnerID: d.str()}
	if n, isNil := d.nilCount(2); !isNil {
		x.Headers = make(map[string]string, n)
		for range n {
			k := d.str()
			x.Headers[k] = d.str()
		}
	}
	x.IdempotencyKey = d.str()
	x.SourceID = d.str()
	x.CreatedAt = d.time()
	return d.done()
}

// appendTargets encodes an event's matched endpoint ids.
func appendTargets(b []byte, ids []string) []byte {
	e := enc{b}
	e.byte(formatTargets)
	if ids == nil {
		e.uint(0)
		return e.b
	}
	e.uint(uint64(len(ids)) + 1)
	for _, id := range ids {
		e.str(id)
	}
	return e.b
}

// decodeTargets reads a matched-endpoints record in either format.
func decodeTargets(v []byte) ([]string, error) {
	if len(v) > 0 && (v[0] == '[' || v[0] == 'n') {
		var ids []string
		err := json.Unmarshal(v, &ids)
		return ids, err
	}
	d := dec{s: string(v)}
	if f := d.byte(); d.err == nil && f != formatTargets {
		return nil, fmt.Errorf("%w: targets format %d", errCodec, f)
	}
	n, isNil := d.nilCount(1)
	var ids []string
	if !isNil {
		ids = make([]string, n)
		for i := range ids {
			ids[i] = d.str()
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return ids, nil
}
