package dispatcher

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/model"
	"github.com/sluice-gw/sluice/netpool"
)

// Reserved request headers: set by the dispatcher after the custom headers, which cannot override them.
// Every custom header starting with ReservedHeaderPrefix or ReservedWebhookPrefix (the Standard Webhooks
// headers) is dropped, so future X-Sluice-* headers cannot be spoofed either.
const (
	HeaderDeliveryID     = "X-Sluice-Delivery-Id" // stable across retries: receivers dedupe on it
	HeaderEventID        = "X-Sluice-Event-Id"
	HeaderEventType      = "X-Sluice-Event-Type"
	HeaderAttempt        = "X-Sluice-Attempt" // 1-based attempt number
	ReservedHeaderPrefix = "X-Sluice-"
)

// verdict is what an attempt tells the breaker.
type verdict uint8

const (
	verdictSuccess verdict = iota // 2xx
	verdictFailure                // any other answer, timeout or connection error
	verdictNotSent                // the request could not be built (signing, auth or TLS config failed): recorded, not the endpoint's fault
	verdictAborted                // cut short by shutdown: not recorded
)

// send makes one attempt and decides what comes next. The caller holds a global worker slot; send releases
// it as soon as the Sender returns.
func (d *Dispatcher) send(ctx context.Context, job *Job) (Result, verdict) {
	ep := &job.Endpoint
	started := d.cfg.Clock.Now()
	h := d.requestHeader(job)
	res := Result{
		Ref: job.Ref,
		Attempt: Attempt{
			ID:             model.NewID(started),
			Number:         job.Attempt,
			StartedAt:      started,
			Method:         http.MethodPost,
			URL:            ep.URL,
			RequestHeaders: h,
		},
	}
	tc, err := d.prepare(h, job, started)
	if ep.Auth != nil {
		res.Attempt.RequestHeaders = redactAuth(h, ep.Auth)
	}
	if err != nil {
		<-d.sem
		err = fmt.Errorf("dispatcher: prepare delivery %s for endpoint %s: %w", job.DeliveryID, job.EndpointID, err)
		res.Err, res.Attempt.Error = err, err.Error()
		d.decide(&res, job, nil, started)
		return res, verdictNotSent
	}
	timeout := ep.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	resp := d.sender.Do(ctx, &netpool.Request{
		Method:     http.MethodPost,
		URL:        ep.URL,
		Header:     h,
		Body:       job.Body,
		Timeout:    timeout,
		EgressPool: ep.EgressPool,
		Key:        job.EndpointID,
		TLS:        tc,
	})
	<-d.sem
	if resp.Err != nil && resp.StatusCode == 0 && ctx.Err() != nil {
		d.counters.aborted.Add(1)
		return res, verdictAborted
	}
	a := &res.Attempt
	a.StatusCode = resp.StatusCode
	a.ResponseHeaders = resp.Header
	a.ResponseBody = resp.Body
	a.BodyTruncated = resp.BodyTruncated
	a.Latency = resp.Latency
	a.EgressIP = resp.EgressIP
	if resp.Err != nil {
		res.Err, a.Error = resp.Err, resp.Err.Error()
	}
	d.decide(&res, job, resp.Header, d.cfg.Clock.Now())
	if res.Status == StatusSuccess {
		return res, verdictSuccess
	}
	return res, verdictFailure
}

// prepare completes an attempt's request: the endpoint's authentication header, then the signature (which
// may cover every other header), then the endpoint's cached TLS configuration.
func (d *Dispatcher) prepare(h http.Header, job *Job, now time.Time) (*tls.Config, error) {
	ep := &job.Endpoint
	if ep.Auth != nil {
		name, err := ep.Auth.apply(h)
		if err != nil {
			return nil, err
		}
		if s := ep.SignatureScheme; (s == "" || s == SchemeSimple || s == SchemeAdvanced) && name == ep.Signature.header() {
			return nil, fmt.Errorf("%w: header_name %s is the signature header", ErrBadAuth, name)
		}
	}
	if err := d.cfg.Signer.Sign(h, job, now); err != nil {
		return nil, err
	}
	if ep.TLS == nil {
		return nil, nil
	}
	return clientTLSCache.get(ep.TLS, now)
}

// redactAuth returns a copy of h for the attempt record with the credential header replaced by Redacted.
func redactAuth(h http.Header, a *Auth) http.Header {
	rec := h.Clone()
	k := "Authorization"
	if a.Type == AuthAPIKey {
		k = textproto.CanonicalMIMEHeaderKey(a.HeaderName)
	}
	if _, ok := rec[k]; ok {
		rec[k] = []string{Redacted}
	}
	return rec
}

// decide fills res.Status, NextAttemptAt and DisableEndpoint from res.Attempt.StatusCode, under the
// endpoint's retry policy (or the default), and counts the outcome.
func (d *Dispatcher) decide(res *Result, job *Job, respHeader http.Header, now time.Time) {
	policy := job.Endpoint.Retry
	if policy.IsZero() || policy.Validate() != nil {
		policy = d.cfg.DefaultRetry
	}
	o := decide(policy, job.Attempt, res.Attempt.StatusCode, respHeader, now, d.cfg.MaxRetryAfter, d.cfg.Rand)
	res.Status, res.NextAttemptAt, res.DisableEndpoint = o.Status, o.NextAttemptAt, o.DisableEndpoint
	c := &d.counters
	c.attempts.Add(1)
	switch o.Status {
	case StatusSuccess:
		c.succeeded.Add(1)
	case StatusRetry:
		c.retried.Add(1)
	default:
		c.failed.Add(1)
	}
	if o.DisableEndpoint {
		c.disabled.Add(1)
	}
}

// requestHeader builds an attempt's headers (signature excepted): defaults, then the endpoint's custom
// headers, then the event's (each replaces same-named earlier values), then the reserved ones.
func (d *Dispatcher) requestHeader(job *Job) http.Header {
	h := make(http.Header, 8+len(job.Endpoint.Headers)+len(job.Headers))
	// One backing array for the six fixed values instead of six slices; each value gets capacity 1,
	// so an append by a later owner of the map copies instead of overwriting its neighbour.
	v := [...]string{"application/json", d.cfg.UserAgent, job.DeliveryID, job.EventID, job.EventType, strconv.Itoa(job.Attempt)}
	vs := v[:]
	h["Content-Type"] = vs[0:1:1]
	h["User-Agent"] = vs[1:2:2]
	copyCustom(h, job.Endpoint.Headers)
	copyCustom(h, job.Headers)
	h[HeaderDeliveryID] = vs[2:3:3]
	h[HeaderEventID] = vs[3:4:4]
	h[HeaderEventType] = vs[4:5:5]
	h[HeaderAttempt] = vs[5:6:6]
	return h
}

// transportHeaders are owned by the HTTP client; custom values are dropped.
var transportHeaders = map[string]bool{
	"Host":              true,
	"Content-Length":    true,
	"Transfer-Encoding": true,
	"Connection":        true,
	"Te":                true,
	"Trailer":           true,
	"Upgrade":           true,
	"Keep-Alive":        true,
	"Proxy-Connection":  true,
}

// copyCustom copies custom headers into h under canonical keys, skipping reserved and transport headers.
// Values are copied so the attempt record never aliases the job's maps.
func copyCustom(h, custom http.Header) {
	for k, vs := range custom {
		if len(vs) == 0 {
			continue
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if strings.HasPrefix(ck, ReservedHeaderPrefix) || strings.HasPrefix(ck, ReservedWebhookPrefix) || transportHeaders[ck] {
			continue
		}
		h[ck] = append([]string(nil), vs...)
	}
}
