package raftstore

import (
	"encoding/binary"
	"time"

	"github.com/sluice-gw/sluice/model"
)

// State DB key layout. Every key starts with a one-byte table tag; IDs are fixed-width (26 bytes) and
// time-ordered, so "newest first" listings are reverse prefix scans and id ranges are time ranges.
//
//	'm' name                       meta (applied index, live node set)
//	'n' node-id                    cluster node                    -> model.Node JSON
//	'K' sha256(key)                API key record                  -> model.APIKey JSON
//	'P' pid                        project                         -> model.Project JSON
//	'E' pid eid                    endpoint                        -> model.Endpoint JSON
//	'S' pid sid                    subscription                    -> model.Subscription JSON
//	'V' pid evid                   event (without data)            -> model.Event JSON
//	'W' pid evid                   event data, s2-compressed once at ingest
//	'U' pid evid                   the event's matched endpoint ids -> JSON list (kept apart: a
//	                               delivery never reads it, and at large fan-out it is large)
//	'I' pid idempotency-key        idempotency index               -> evid
//	'D' pid did                    delivery                        -> model.Delivery, binary (codec.go)
//	'X' pid eid did                deliveries by endpoint          -> ""
//	'Y' pid evid did               deliveries by event             -> ""
//	'Q' pid status did             deliveries by status            -> ""
//	'R' pid eid status did         deliveries by endpoint+status   -> ""
//	'T' due-ms(8, BE) did          due-time index (pending only)   -> pid eid
//	'A' pid did aid                attempt                         -> model.Attempt, binary (codec.go)
//	'H' pid eid                    endpoint health                 -> model.EndpointHealth JSON
//	'N' pid meta-uid               meta event                      -> model.MetaEvent JSON
//	'O' pid sid                    incoming or broker source       -> model.Source JSON (sources.go)
//	'F' pid sid dlid               broker dead letter              -> model.DeadLetter JSON (sources.go)
//	'L' ...                        portal links (portal.go)
const (
	tagMeta         = 'm'
	tagNode         = 'n'
	tagKey          = 'K'
	tagProject      = 'P'
	tagEndpoint     = 'E'
	tagSubscription = 'S'
	tagEvent        = 'V'
	tagEventData    = 'W'
	tagEventTargets = 'U'
	tagIdempotency  = 'I'
	tagDelivery     = 'D'
	tagByEndpoint   = 'X'
	tagByEvent      = 'Y'
	tagByStatus     = 'Q'
	tagByEPStatus   = 'R'
	tagDue          = 'T'
	tagAttempt      = 'A'
	tagHealth       = 'H'
	tagMetaEvent    = 'N'
)

// projectTags are the tables whose keys start with a project id, range-deleted with the project.
var projectTags = []byte{tagProject, tagEndpoint, tagSubscription, tagEvent, tagEventData, tagEventTargets, tagIdempotency,
	tagDelivery, tagByEndpoint, tagByEvent, tagByStatus, tagByEPStatus, tagAttempt, tagHealth, tagMetaEvent}

var (
	keyApplied = []byte{tagMeta, 'a', 'p', 'p', 'l', 'i', 'e', 'd'}
	keyLive    = []byte{tagMeta, 'l', 'i', 'v', 'e'}
)

func key(tag byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 1, n)
	k[0] = tag
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// appendKey is key appending to dst: the result-apply path reuses one buffer for the keys it writes
// (pebble copies keys into the batch).
func appendKey(dst []byte, tag byte, parts ...string) []byte {
	dst = append(dst, tag)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

func statusKey(pid string, st model.DeliveryStatus, did string) []byte {
	return appendStatusKey(make([]byte, 0, 1+len(pid)+1+len(did)), pid, st, did)
}

func appendStatusKey(k []byte, pid string, st model.DeliveryStatus, did string) []byte {
	k = append(k, tagByStatus)
	k = append(k, pid...)
	k = append(k, st.Code())
	return append(k, did...)
}

func epStatusKey(pid, eid string, st model.DeliveryStatus, did string) []byte {
	return appendEPStatusKey(make([]byte, 0, 1+len(pid)+len(eid)+1+len(did)), pid, eid, st, did)
}

func appendEPStatusKey(k []byte, pid, eid string, st model.DeliveryStatus, did string) []byte {
	k = append(k, tagByEPStatus)
	k = append(k, pid...)
	k = append(k, eid...)
	k = append(k, st.Code())
	return append(k, did...)
}

func dueKey(at time.Time, did string) []byte {
	return appendDueKey(make([]byte, 0, 9+len(did)), at, did)
}

func appendDueKey(k []byte, at time.Time, did string) []byte {
	ms := at.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	k = append(k, tagDue)
	k = binary.BigEndian.AppendUint64(k, uint64(ms))
	return append(k, did...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
