package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// HeaderSignature carries the simple signature scheme: lowercase hex HMAC-SHA256 of the raw body.
const HeaderSignature = "X-Sluice-Signature"

// Signer adds the signature header(s) of one attempt to its request headers.
//
// Sign is called once per attempt, just before the request is sent, from that attempt's goroutine:
// concurrently for different jobs, so implementations must be safe for concurrent use. h already holds every
// other header; job is read-only; now is the attempt's start time on the dispatcher's Clock (timestamped
// schemes sign it, so each attempt is re-signed). An error fails the attempt without sending it.
type Signer interface {
	Sign(h http.Header, job *Job, now time.Time) error
}

// HMACSigner is the default Signer: X-Sluice-Signature is the lowercase hex HMAC-SHA256 of the body keyed
// with Endpoint.Secret. An endpoint without a secret is sent unsigned.
type HMACSigner struct{}

var _ Signer = HMACSigner{}

// Sign implements Signer.
func (HMACSigner) Sign(h http.Header, job *Job, _ time.Time) error {
	if job.Endpoint.Secret == "" {
		return nil
	}
	h[HeaderSignature] = []string{SignHex(job.Endpoint.Secret, job.Body)}
	return nil
}

// SignHex returns the lowercase hex HMAC-SHA256 of body keyed with secret: the value of X-Sluice-Signature.
// Receivers (and tests) verify with hmac.Equal against their own computation.
func SignHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0]))
}
