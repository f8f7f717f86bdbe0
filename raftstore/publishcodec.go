package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A publish command's Meta is either the JSON of Publish (every command written before this codec,
// and any publish it cannot represent exactly) or this binary form, which the API writes for new
// events: JSON encoding and decoding of the command cost ~12% of the CPU of a TCP publish.
//
//	0x01                              format version (JSON Meta starts with '{')
//	flags                             bit 0 Replay, bit 1 Event.Endpoints is non-nil
//	uid project_id event_type endpoint_id owner_id idempotency_key source_id     (strings)
//	created_at                        seconds since 1970 UTC (varint), nanoseconds (uvarint)
//	headers                           count (uvarint), then key, value strings in key order
//	endpoints                         count (uvarint), then strings
//	targets                           count (uvarint), then endpoint_id, delivery_id, owner_id strings
//
// A string is a uvarint length and its bytes. Data never travels here (it is the command's Blob), and
// created_at is always UTC; a Publish outside that (data set, another zone) is encoded as JSON.
const publishBinaryV1 = 0x01

const (
	pubFlagReplay    = 1 << 0
	pubFlagEndpoints = 1 << 1
)

var errBadPublish = errors.New("raftstore: malformed binary publish command")

// NewPublishCommand encodes p as a publish command, in the binary form when it represents p exactly.
func NewPublishCommand(p Publish, blob []byte) (Command, error) {
	if p.Event.Data != nil || p.Event.CreatedAt.Location() != time.UTC {
		return NewCommand(CmdPublish, p, blob)
	}
	return Command{Type: CmdPublish, Meta: appendPublish(nil, &p), Blob: blob}, nil
}

func appendPublish(b []byte, p *Publish) []byte {
	ev := &p.Event
	var flags byte
	if p.Replay {
		flags |= pubFlagReplay
	}
	if ev.Endpoints != nil {
		flags |= pubFlagEndpoints
	}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, publishBinaryV1, flags)
	for _, s := range [...]string{ev.UID, ev.ProjectID, ev.EventType, ev.EndpointID, ev.OwnerID, ev.IdempotencyKey, ev.SourceID} {
		str(s)
	}
	b = binary.AppendVarint(b, ev.CreatedAt.Unix())
	b = binary.AppendUvarint(b, uint64(ev.CreatedAt.Nanosecond()))
	keys := make([]string, 0, len(ev.Headers))
	for k := range ev.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(ev.Headers[k])
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Endpoints)))
	for _, e := range ev.Endpoints {
		str(e)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Targets)))
	for _, t := range p.Targets {
		str(t.EndpointID)
		str(t.DeliveryID)
		str(t.OwnerID)
	}
	return b
}

// decodePublish reads a publish command's Meta in either form.
func decodePublish(c *Command, p *Publish) error {
	if len(c.Meta) == 0 || c.Meta[0] != publishBinaryV1 {
		return decode(c, p)
	}
	if err := parsePublish(c.Meta, p); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCmd, err)
	}
	return nil
}

// parsePublish decodes the binary form; it is the parser FuzzParsePublish guards.
func parsePublish(meta []byte, p *Publish) error {
	d := pubDecoder{b: meta}
	if len(meta) < 2 || meta[0] != publishBinaryV1 || meta[1]&^(pubFlagReplay|pubFlagEndpoints) != 0 {
		return fmt.Errorf("%w: bad header", errBadPublish)
	}
	flags := meta[1]
	d.b = meta[2:]
	ev := &p.Event
	*p = Publish{Replay: flags&pubFlagReplay != 0}
	for _, s := range [...]*string{&ev.UID, &ev.ProjectID, &ev.EventType, &ev.EndpointID, &ev.OwnerID, &ev.IdempotencyKey, &ev.SourceID} {
		*s = d.str()
	}
	sec := d.varint()
	nsec := d.uvarint()
	if d.err == nil && nsec >= uint64(time.Second) {
		d.fail("nanoseconds out of range")
	}
	ev.CreatedAt = time.Unix(sec, int64(nsec)).UTC()
	if n := d.count(2); n > 0 {
		ev.Headers = make(map[string]string, n)
		for i := 0; i < n; i++ {
			k := d.str()
			ev.Headers[k] = d.str()
		}
	}
	n := d.count(1)
	if flags&pubFlagEndpoints != 0 {
		ev.Endpoints = make([]string, 0, n)
	}
	for i := 0; i < n; i++ {
		ev.Endpoints = append(ev.Endpoints, d.str())
	}
	if n := d.count(3); n > 0 {
		p.Targets = make([]Target, n)
		for i := range p.Targets {
			p.Targets[i] = Target{EndpointID: d.str(), DeliveryID: d.str(), OwnerID: d.str()}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

// pubDecoder reads the binary form; after the first error every read returns a zero value.
type pubDecoder struct {
	b   []byte
	err error
}

func (d *pubDecoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadPublish, msg)
	}
	d.b = nil
}

func (d *pubDecoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *pubDecoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *pubDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string past the end")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a count of items of at least minBytes each, refusing counts the rest cannot hold
// (so a corrupt count never allocates much).
func (d *pubDecoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/minBytes) {
		d.fail("count past the end")
		return 0
	}
	return int(n)
}
