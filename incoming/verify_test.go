package incoming

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	stripewebhook "github.com/stripe/stripe-go/v82/webhook"

	"github.com/sluice-gw/sluice/model"
)

func compile(t testing.TB, src model.Source) *Source {
	t.Helper()
	src.UID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	c, err := Compile(&src)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func provider(name, secret string) model.Source {
	return model.Source{Provider: name, Verifier: model.SourceVerifier{HMac: &model.HMacVerifier{Secret: secret}}}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// check runs a verifier over a valid request and its tampered copies.
type verifyCase struct {
	name string
	req  Request
	now  time.Time
	want error // nil: accepted
}

func runVerify(t *testing.T, c *Source, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Method == "" {
				tc.req.Method = http.MethodPost
			}
			err := c.Verify(&tc.req, tc.now)
			if tc.want == nil && err != nil {
				t.Fatalf("refused a valid request: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStripeSignedWithTheOfficialLibrary(t *testing.T) {
	const secret = "whsec_test_secret"
	now := time.Now()
	body := []byte(`{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"amount_paid":1500}}}`)
	signed := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: now})
	old := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: now.Add(-Tolerance - time.Minute)})
	wrong := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{Payload: body, Secret: "whsec_other", Timestamp: now})
	// During a secret roll Stripe sends a v1 per secret.
	rolled := wrong.Header + ",v1=" + hex.EncodeToString(signed.Signature)
	otherTS := strings.Replace(signed.Header, "t="+strconv.FormatInt(now.Unix(), 10), "t="+strconv.FormatInt(now.Unix()-1, 10), 1)
	c := compile(t, provider(ProviderStripe, secret))
	runVerify(t, c, []verifyCase{
		{"valid", Request{Header: hdr("Stripe-Signature", signed.Header), Body: body}, now, nil},
		{"two signatures, one from the new secret", Request{Header: hdr("Stripe-Signature", rolled), Body: body}, now, nil},
		{"tampered body", Request{Header: hdr("Stripe-Signature", signed.Header), Body: []byte(strings.Replace(string(body), "1500", "15000", 1))}, now, ErrMismatch},
		{"tampered timestamp", Request{Header: hdr("Stripe-Signature", otherTS), Body: body}, now, ErrMismatch},
		{"other secret", Request{Header: hdr("Stripe-Signature", wrong.Header), Body: body}, now, ErrMismatch},
		{"replayed after the tolerance", Request{Header: hdr("Stripe-Signature", old.Header), Body: body}, now, ErrExpired},
		{"valid signature seen later than the tolerance", Request{Header: hdr("Stripe-Signature", signed.Header), Body: body}, now.Add(Tolerance + time.Second), ErrExpired},
		{"missing header", Request{Header: hdr(), Body: body}, now, ErrMissing},
		{"no v1", Request{Header: hdr("Stripe-Signature", "t=1"), Body: body}, now, ErrMalformed},
		{"no timestamp", Request{Header: hdr("Stripe-Signature", "v1="+hex.EncodeToString(signed.Signature)), Body: body}, now, ErrMalformed},
		{"garbage", Request{Header: hdr("Stripe-Signature", "hello"), Body: body}, now, ErrMalformed},
	})
	// And Stripe's own verifier accepts what this one accepts.
	if err := stripewebhook.ValidatePayload(body, signed.Header, secret); err != nil {
		t.Fatalf("stripe-go refuses its own test payload: %v", err)
	}
}

func TestGitHubDocumentedExample(t *testing.T) {
	// GitHub's documented test vector ("Validating webhook deliveries").
	const secret = "It's a Secret to Everybody"
	body := []byte("Hello, World!")
	const sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	c := compile(t, provider(ProviderGitHub, secret))
	runVerify(t, c, []verifyCase{
		{"valid", Request{Header: hdr("X-Hub-Signature-256", sig), Body: body}, time.Now(), nil},
		{"tampered body", Request{Header: hdr("X-Hub-Signature-256", sig), Body: []byte("Hello, World?")}, time.Now(), ErrMismatch},
		{"other secret", Request{Header: hdr("X-Hub-Signature-256", "sha256="+hexHMAC(sha256.New, "nope", body)), Body: body}, time.Now(), ErrMismatch},
		{"sha1 header only", Request{Header: hdr("X-Hub-Signature", "sha1=0123"), Body: body}, time.Now(), ErrMissing},
		{"no prefix", Request{Header: hdr("X-Hub-Signature-256", strings.TrimPrefix(sig, "sha256=")), Body: body}, time.Now(), ErrMalformed},
		{"not hex", Request{Header: hdr("X-Hub-Signature-256", "sha256=zz"), Body: body}, time.Now(), ErrMalformed},
	})
}

func TestShopify(t *testing.T) {
	const secret = "shpss_app_secret"
	body := []byte(`{"id":820982911946154508,"email":"jon@example.com"}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	c := compile(t, provider(ProviderShopify, secret))
	runVerify(t, c, []verifyCase{
		{"valid", Request{Header: hdr("X-Shopify-Hmac-Sha256", sig), Body: body}, time.Now(), nil},
		{"tampered body", Request{Header: hdr("X-Shopify-Hmac-Sha256", sig), Body: body[1:]}, time.Now(), ErrMismatch},
		{"other secret", Request{Header: hdr("X-Shopify-Hmac-Sha256", b64HMAC("x", body)), Body: body}, time.Now(), ErrMismatch},
		{"hex instead of base64", Request{Header: hdr("X-Shopify-Hmac-Sha256", "zz!!"), Body: body}, time.Now(), ErrMalformed},
		{"missing", Request{Header: hdr(), Body: body}, time.Now(), ErrMissing},
	})
}

func TestStandardWebhooksSignedWithTheOfficialLibrary(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("another key entirely")))
	now := time.Now()
	body := []byte(`{"type":"user.created","timestamp":"2026-11-26T00:00:00Z","data":{"id":"u_1"}}`)
	sig, err := wh.Sign("msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	wrongSig, _ := other.Sign("msg_1", now, body)
	oldSig, _ := wh.Sign("msg_1", now.Add(-Tolerance-time.Minute), body)
	ts := strconv.FormatInt(now.Unix(), 10)
	std := func(id, ts, sig string) http.Header {
		return hdr("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sig)
	}
	c := compile(t, provider(ProviderStandardWebhooks, secret))
	runVerify(t, c, []verifyCase{
		{"valid", Request{Header: std("msg_1", ts, sig), Body: body}, now, nil},
		{"svix headers", Request{Header: hdr("svix-id", "msg_1", "svix-timestamp", ts, "svix-signature", sig), Body: body}, now, nil},
		{"several signatures", Request{Header: std("msg_1", ts, wrongSig+" v1a,ZWQyNTUxOQ== "+sig), Body: body}, now, nil},
		{"tampered body", Request{Header: std("msg_1", ts, sig), Body: body[:len(body)-1]}, now, ErrMismatch},
		{"tampered id", Request{Header: std("msg_2", ts, sig), Body: body}, now, ErrMismatch},
		{"tampered timestamp", Request{Header: std("msg_1", strconv.FormatInt(now.Unix()+1, 10), sig), Body: body}, now, ErrMismatch},
		{"other secret", Request{Header: std("msg_1", ts, wrongSig), Body: body}, now, ErrMismatch},
		{"expired", Request{Header: std("msg_1", strconv.FormatInt(now.Add(-Tolerance-time.Minute).Unix(), 10), oldSig), Body: body}, now, ErrExpired},
		{"missing signature", Request{Header: hdr("webhook-id", "msg_1", "webhook-timestamp", ts), Body: body}, now, ErrMissing},
		{"bad timestamp", Request{Header: std("msg_1", "yesterday", sig), Body: body}, now, ErrMalformed},
		{"bad signature list", Request{Header: std("msg_1", ts, "nonsense"), Body: body}, now, ErrMalformed},
	})
	// What this verifier accepts, the official one accepts.
	if err := wh.Verify(body, std("msg_1", ts, sig)); err != nil {
		t.Fatal(err)
	}
}

func TestTwilioDocumentedExample(t *testing.T) {
	// Twilio's worked example ("Webhooks security"): auth token 12345.
	const token = "12345"
	form := "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212"
	const u = "https://mycompany.com/myapp.php?foo=1&bar=2"
	const sig = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
	jsonBody := `{"property": "value", "boolean": true}`
	const jsonURL = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
	c := compile(t, provider(ProviderTwilio, token))
	tw := func(s string) http.Header {
		return hdr("X-Twilio-Signature", s, "Content-Type", "application/x-www-form-urlencoded")
	}
	runVerify(t, c, []verifyCase{
		{"valid form", Request{URL: u, Header: tw(sig), Body: []byte(form)}, time.Now(), nil},
		{"IPv6 host with the default port", Request{URL: "https://[::1]:443/p", Header: tw(base64.StdEncoding.EncodeToString(TwilioSignature([]byte(token), "https://[::1]/p", nil))), Method: "GET"}, time.Now(), nil},
		{"valid with the default port added", Request{URL: "https://mycompany.com:443/myapp.php?foo=1&bar=2", Header: tw(sig), Body: []byte(form)}, time.Now(), nil},
		{"params in another order", Request{URL: u, Header: tw(sig), Body: []byte("To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030")}, time.Now(), nil},
		{"tampered param", Request{URL: u, Header: tw(sig), Body: []byte(strings.Replace(form, "1234&", "9999&", 1))}, time.Now(), ErrMismatch},
		{"tampered URL", Request{URL: "https://mycompany.com/myapp.php?foo=1&bar=3", Header: tw(sig), Body: []byte(form)}, time.Now(), ErrMismatch},
		{"valid JSON body", Request{URL: jsonURL, Header: tw("a9nBmqA0ju/hNViExpshrM61xv4="), Body: []byte(jsonBody)}, time.Now(), nil},
		{"tampered JSON body", Request{URL: jsonURL, Header: tw("a9nBmqA0ju/hNViExpshrM61xv4="), Body: []byte(`{"property": "value", "boolean": false}`)}, time.Now(), ErrMismatch},
		{"missing", Request{URL: u, Header: hdr(), Body: []byte(form)}, time.Now(), ErrMissing},
		{"not base64", Request{URL: u, Header: tw("***"), Body: []byte(form)}, time.Now(), ErrMalformed},
	})
	other := compile(t, provider(ProviderTwilio, "54321"))
	if err := other.Verify(&Request{Method: "POST", URL: u, Header: tw(sig), Body: []byte(form)}, time.Now()); !errors.Is(err, ErrMismatch) {
		t.Fatalf("another auth token verified: %v", err)
	}
}

func TestCustomVerifiers(t *testing.T) {
	body := []byte(`{"a":1}`)
	sha512b64 := func(secret string) string {
		m := hmac.New(sha512.New, []byte(secret))
		m.Write(body)
		return "v0=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	hm := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{
		Header: "X-Sig", Hash: "SHA512", Encoding: "base64", Prefix: "v0=", Secret: "k"}}})
	runVerify(t, hm, []verifyCase{
		{"hmac valid", Request{Header: hdr("X-Sig", sha512b64("k")), Body: body}, time.Now(), nil},
		{"hmac other secret", Request{Header: hdr("X-Sig", sha512b64("j")), Body: body}, time.Now(), ErrMismatch},
		{"hmac no prefix", Request{Header: hdr("X-Sig", strings.TrimPrefix(sha512b64("k"), "v0=")), Body: body}, time.Now(), ErrMalformed},
		{"hmac tampered", Request{Header: hdr("X-Sig", sha512b64("k")), Body: []byte(`{"a":2}`)}, time.Now(), ErrMismatch},
	})
	hexv := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Header: "X-Sig", Secret: "k"}}})
	runVerify(t, hexv, []verifyCase{
		{"hmac hex sha256 default", Request{Header: hdr("X-Sig", hexHMAC(sha256.New, "k", body)), Body: body}, time.Now(), nil},
	})
	basic := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "basic_auth", BasicAuth: &model.BasicAuthVerifier{Username: "u", Password: "p:w"}}})
	auth := func(u, p string) http.Header {
		return hdr("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
	}
	runVerify(t, basic, []verifyCase{
		{"basic valid", Request{Header: auth("u", "p:w"), Body: body}, time.Now(), nil},
		{"basic wrong password", Request{Header: auth("u", "p"), Body: body}, time.Now(), ErrMismatch},
		{"basic wrong user", Request{Header: auth("v", "p:w"), Body: body}, time.Now(), ErrMismatch},
		{"bearer", Request{Header: hdr("Authorization", "Bearer x"), Body: body}, time.Now(), ErrMalformed},
		{"none", Request{Header: hdr(), Body: body}, time.Now(), ErrMissing},
	})
	key := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "api_key", APIKey: &model.APIKeyVerifierCreds{HeaderName: "X-Api-Key", HeaderValue: "secret"}}})
	runVerify(t, key, []verifyCase{
		{"api key valid", Request{Header: hdr("x-api-key", "secret"), Body: body}, time.Now(), nil},
		{"api key wrong", Request{Header: hdr("X-Api-Key", "secreT"), Body: body}, time.Now(), ErrMismatch},
		{"api key missing", Request{Header: hdr(), Body: body}, time.Now(), ErrMissing},
	})
	noop := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "noop"}})
	runVerify(t, noop, []verifyCase{{"noop", Request{Header: hdr(), Body: body}, time.Now(), nil}})
}

func TestCompileRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name string
		src  model.Source
		msg  string
	}{
		{"no verifier", model.Source{}, "verifier.type: required"},
		{"unknown verifier", model.Source{Verifier: model.SourceVerifier{Type: "jwt"}}, `"jwt" is not`},
		{"unknown provider", provider("paypal", "s"), "provider"},
		{"provider without secret", provider(ProviderGitHub, ""), "secret: required"},
		{"provider with another type", model.Source{Provider: ProviderGitHub, Verifier: model.SourceVerifier{Type: "noop", HMac: &model.HMacVerifier{Secret: "s"}}}, "verifies with hmac"},
		{"standard secret not base64", provider(ProviderStandardWebhooks, "whsec_***"), "whsec_"},
		{"hmac without header", model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Secret: "s"}}}, "header and secret"},
		{"hmac bad hash", model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Header: "X", Secret: "s", Hash: "MD5"}}}, "SHA256 or SHA512"},
		{"hmac bad encoding", model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Header: "X", Secret: "s", Encoding: "b32"}}}, "hex or base64"},
		{"hmac bad header", model.Source{Verifier: model.SourceVerifier{Type: "hmac", HMac: &model.HMacVerifier{Header: "X Y", Secret: "s"}}}, "not a header name"},
		{"basic incomplete", model.Source{Verifier: model.SourceVerifier{Type: "basic_auth", BasicAuth: &model.BasicAuthVerifier{Username: "u"}}}, "username and password"},
		{"api key incomplete", model.Source{Verifier: model.SourceVerifier{Type: "api_key"}}, "header_name and header_value"},
		{"bad idempotency key", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, IdempotencyKeys: []string{"headers.X-Id"}}, "idempotency_keys"},
		{"bad idempotency place", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, IdempotencyKeys: []string{"request.cookie.x"}}, "idempotency_keys"},
		{"bad forward header", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, ForwardHeaders: []string{"a b"}}, "forward_headers"},
		{"bad event type location", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, EventTypeLocation: &model.EventTypeLocation{From: "cookie"}}, "event_type_location.from"},
		{"event type header without name", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, EventTypeLocation: &model.EventTypeLocation{From: "header"}}, "event_type_location.name"},
		{"non-2xx custom response", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, CustomResponse: &model.CustomResponse{Status: 302}}, "custom_response.status"},
		{"bad content type", model.Source{Verifier: model.SourceVerifier{Type: "noop"}, CustomResponse: &model.CustomResponse{ContentType: "/"}}, "content_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(&tc.src)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, tc.msg)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	gh := compile(t, provider(ProviderGitHub, "s"))
	req := &Request{URL: "https://x.example/ingest/m", Header: hdr("X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "d-1", "X-Other", "no"), Body: []byte(`{"action":"opened"}`)}
	x, err := gh.Extract(req)
	if err != nil || x.EventType != "pull_request" || x.IdempotencyKey == "" || x.Raw ||
		x.Headers["X-Github-Event"] != "pull_request" || x.Headers["X-Github-Delivery"] != "d-1" || x.Headers["X-Other"] != "" {
		t.Fatalf("github extract = %+v, %v", x, err)
	}
	retry := *req
	retry.Header = req.Header.Clone()
	retry.Header.Set("X-GitHub-Event", "push")
	if y, _ := gh.Extract(&retry); y.IdempotencyKey != x.IdempotencyKey {
		t.Fatal("same delivery id gave another idempotency key")
	}
	retry.Header.Set("X-GitHub-Delivery", "d-2")
	if y, _ := gh.Extract(&retry); y.IdempotencyKey == x.IdempotencyKey {
		t.Fatal("another delivery id gave the same idempotency key")
	}
	if _, err := gh.Extract(&Request{Header: hdr(), Body: []byte("a=b")}); !errors.Is(err, ErrNotJSON) {
		t.Fatalf("non-JSON body for github: %v", err)
	}

	st := compile(t, provider(ProviderStripe, "s"))
	if x, _ := st.Extract(&Request{Header: hdr(), Body: []byte(`{"id":"evt_1","type":"invoice.paid"}`)}); x.EventType != "invoice.paid" || x.IdempotencyKey == "" {
		t.Fatalf("stripe extract = %+v", x)
	}
	if x, _ := st.Extract(&Request{Header: hdr(), Body: []byte(`{"object":"event"}`)}); x.EventType != DefaultEventType || x.IdempotencyKey != "" {
		t.Fatalf("stripe extract without type and id = %+v", x)
	}

	tw := compile(t, provider(ProviderTwilio, "s"))
	x, err = tw.Extract(&Request{Header: hdr("Content-Type", "application/x-www-form-urlencoded", "I-Twilio-Idempotency-Token", "tok"), Body: []byte("SmsStatus=delivered")})
	if err != nil || !x.Raw || x.EventType != "twilio.webhook" || x.Headers["Content-Type"] != "application/x-www-form-urlencoded" || x.IdempotencyKey == "" {
		t.Fatalf("twilio extract = %+v, %v", x, err)
	}

	custom := model.Source{Verifier: model.SourceVerifier{Type: "noop"}, AllowNonJSON: true,
		EventTypeLocation: &model.EventTypeLocation{From: "query", Name: "topic", Default: "misc"},
		IdempotencyKeys:   []string{"request.query.id", "request.body.meta.seq"}, ForwardHeaders: []string{"x-trace"}}
	cs := compile(t, custom)
	x, _ = cs.Extract(&Request{URL: "http://h/ingest/m?topic=order.created&id=7", Header: hdr("X-Trace", "t1"), Body: []byte(`{"meta":{"seq":3}}`)})
	if x.EventType != "order.created" || x.IdempotencyKey == "" || x.Headers["X-Trace"] != "t1" {
		t.Fatalf("custom extract = %+v", x)
	}
	x, _ = cs.Extract(&Request{URL: "http://h/ingest/m", Header: hdr(), Body: []byte(`{}`)})
	if x.EventType != "misc" || x.IdempotencyKey != "" {
		t.Fatalf("custom extract with nothing = %+v", x)
	}
	byBody := compile(t, model.Source{Verifier: model.SourceVerifier{Type: "noop"}, EventTypeLocation: &model.EventTypeLocation{From: "body", Name: "event.kind"}})
	if x, _ := byBody.Extract(&Request{Header: hdr(), Body: []byte(`{"event":{"kind":"a.b"}}`)}); x.EventType != "a.b" {
		t.Fatalf("body path event type = %+v", x)
	}
}

func hexHMAC(fn func() hash.Hash, secret string, body []byte) string {
	m := hmac.New(fn, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func b64HMAC(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// ---- fuzz: each verifier's header parser ----

func FuzzParseStripeHeader(f *testing.F) {
	for _, s := range []string{"t=1,v1=" + strings.Repeat("ab", 32), "t=1,v0=x,v1=zz", "t=,v1=", ",,,", "t=1=2", "v1=" + strings.Repeat("0", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		ts, sigs, err := parseStripeHeader(h)
		if err == nil && (ts <= 0 || len(sigs) == 0 || len(sigs) > maxSignatures) {
			t.Fatalf("accepted %q: t=%d, %d signatures", h, ts, len(sigs))
		}
		c := compile(t, provider(ProviderStripe, "s"))
		err = c.Verify(&Request{Header: hdr("Stripe-Signature", h)}, time.Unix(ts, 0))
		if err == nil {
			t.Fatalf("a fuzzed header verified: %q", h)
		}
	})
}

func FuzzParseStandardSignatures(f *testing.F) {
	for _, s := range []string{"v1,AAAA", "v1,AAAA v1a,BBBB", "v2,x", "v1,", "v1", "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sigs, err := parseStandardSignatures(h)
		if err == nil && (len(sigs) == 0 || len(sigs) > maxSignatures) {
			t.Fatalf("accepted %q with %d signatures", h, len(sigs))
		}
		c := compile(t, provider(ProviderStandardWebhooks, "whsec_"+base64.StdEncoding.EncodeToString([]byte("k"))))
		now := time.Unix(1_800_000_000, 0)
		if c.Verify(&Request{Header: hdr("webhook-id", "m", "webhook-timestamp", "1800000000", "webhook-signature", h)}, now) == nil {
			t.Fatalf("a fuzzed signature verified: %q", h)
		}
	})
}

func FuzzParseHMACHeader(f *testing.F) {
	for _, s := range []string{"sha256=00ff", "sha256=", "abc", "sha256=zz", "v0=AAAA=="} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, h string, b64 bool) {
		sig, err := parseHMACHeader(h, "sha256=", b64)
		if err == nil && len(sig) == 0 {
			t.Fatalf("accepted an empty signature from %q", h)
		}
		gh := compile(t, provider(ProviderGitHub, "s"))
		if gh.Verify(&Request{Header: hdr("X-Hub-Signature-256", h), Body: []byte("x")}, time.Now()) == nil {
			t.Fatalf("a fuzzed header verified: %q", h)
		}
	})
}

func FuzzParseBasicAuth(f *testing.F) {
	for _, s := range []string{"Basic dTpw", "basic dTpw", "Basic", "Bearer x", "Basic !!!", "Basic dQ=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		u, p, err := parseBasicAuth(h)
		if err == nil && strings.Contains(u, ":") {
			t.Fatalf("username %q holds a colon (password %q)", u, p)
		}
	})
}

func FuzzTwilio(f *testing.F) {
	f.Add("0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "https://mycompany.com/myapp.php?foo=1&bar=2", "CallSid=CA1&To=%2B1")
	f.Add("x", "::", "%zz")
	f.Add("a9nBmqA0ju/hNViExpshrM61xv4=", "https://h/p?bodySHA256=zz", "{}")
	f.Fuzz(func(t *testing.T, sig, rawURL, body string) {
		c := compile(t, provider(ProviderTwilio, "not-the-token"))
		err := c.Verify(&Request{Method: "POST", URL: rawURL, Header: hdr("X-Twilio-Signature", sig), Body: []byte(body)}, time.Now())
		if err == nil {
			t.Fatalf("fuzzed request verified: %q %q %q", sig, rawURL, body)
		}
		if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMismatch) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
