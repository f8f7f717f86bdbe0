package dispatcher

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluice-gw/sluice/verify"
)

func sign(t *testing.T, ep Endpoint, id, body string, now time.Time) (http.Header, error) {
	t.Helper()
	h := http.Header{}
	err := SchemeSigner{}.Sign(h, &Job{Ref: Ref{DeliveryID: id}, Body: []byte(body), Endpoint: ep}, now)
	return h, err
}

// TestStandardVectors: the Standard Webhooks specification's published vectors, signed by the dispatcher.
func TestStandardVectors(t *testing.T) {
	for _, tv := range []struct {
		key, id string
		ts      int64
		body    string
		sig     string
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
			`{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553,
			`{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="},
	} {
		ep := Endpoint{SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: tv.key}}}
		h, err := sign(t, ep, tv.id, tv.body, time.Unix(tv.ts, 0))
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Get("webhook-signature"); got != tv.sig {
			t.Errorf("%s: webhook-signature %q, want %q", tv.id, got, tv.sig)
		}
		if h.Get("webhook-id") != tv.id || h.Get("webhook-timestamp") != strconv.FormatInt(tv.ts, 10) {
			t.Errorf("%s: webhook-id %q webhook-timestamp %q", tv.id, h.Get("webhook-id"), h.Get("webhook-timestamp"))
		}
		if err := ValidateSecret(SchemeStandard, tv.key); err != nil {
			t.Errorf("%s: the vector's key does not validate: %v", tv.id, err)
		}
		// The official library agrees (VerifyIgnoringTimestamp: the vectors are from 2021).
		wh, err := standardwebhooks.NewWebhook(tv.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.VerifyIgnoringTimestamp([]byte(tv.body), h); err != nil {
			t.Errorf("%s: standardwebhooks: %v", tv.id, err)
		}
	}
}

// TestSimpleCompatible: the default scheme is byte-for-byte the X-Sluice-Signature of earlier releases,
// from Secret or from Secrets; the project's hash, encoding and header apply.
func TestSimpleCompatible(t *testing.T) {
	body := `{"a":1}`
	want := SignHex("s3cret", []byte(body))
	for name, ep := range map[string]Endpoint{
		"Secret":              {Secret: "s3cret"},
		"Secrets":             {Secrets: []SecretKey{{Value: "s3cret"}}},
		"explicit simple":     {SignatureScheme: SchemeSimple, Secrets: []SecretKey{{Value: "s3cret"}}},
		"Secrets over Secret": {Secret: "ignored", Secrets: []SecretKey{{Value: "s3cret"}}},
		"newest live signs": {Secrets: []SecretKey{
			{Value: "oldest", ExpiresAt: t0.Add(time.Hour)}, {Value: "s3cret"}, {Value: "expired", ExpiresAt: t0}}},
	} {
		h, err := sign(t, ep, "d", body, t0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(h) != 1 || h.Get(HeaderSignature) != want {
			t.Errorf("%s: headers %v, want only %s: %s", name, h, HeaderSignature, want)
		}
	}
	ep := Endpoint{Secrets: []SecretKey{{Value: "s3cret"}}, Signature: SignatureConfig{
		Header: "x-acme-signature", Versions: []SignatureVersion{{Hash: "sha512", Encoding: "Base64"}}}}
	h, err := sign(t, ep, "d", body, t0)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha512.New, []byte("s3cret"))
	m.Write([]byte(body))
	if got := h.Get("X-Acme-Signature"); got != base64.StdEncoding.EncodeToString(m.Sum(nil)) {
		t.Errorf("SHA512/base64 under X-Acme-Signature: %q (headers %v)", got, h)
	}
	v := &verify.Simple{Header: "X-Acme-Signature", Version: verify.Version{Hash: "SHA512", Encoding: "base64"}, Secrets: []string{"s3cret"}}
	if err := v.Verify(h, []byte(body)); err != nil {
		t.Errorf("verify.Simple: %v", err)
	}
	// No secret at all: unsigned, as before.
	if h, err := sign(t, Endpoint{}, "d", body, t0); err != nil || len(h) != 0 {
		t.Errorf("no secret: %v, %v", h, err)
	}
}

// TestAdvancedFormat: t first, then each version's signatures newest secret first; expired secrets are
// skipped; each signature verifies alone with the verify package.
func TestAdvancedFormat(t *testing.T) {
	body := `{"a":1}`
	versions := []SignatureVersion{{Hash: HashSHA256, Encoding: EncodingHex}, {Hash: HashSHA512, Encoding: EncodingBase64}}
	ep := Endpoint{SignatureScheme: SchemeAdvanced, Signature: SignatureConfig{Versions: versions}, Secrets: []SecretKey{
		{Value: "gone", ExpiresAt: t0},
		{Value: "old", ExpiresAt: t0.Add(time.Hour)},
		{Value: "new"},
	}}
	h, err := sign(t, ep, "d", body, t0)
	if err != nil {
		t.Fatal(err)
	}
	ah, err := verify.ParseAdvanced(h.Get(HeaderSignature))
	if err != nil {
		t.Fatal(err)
	}
	if ah.Timestamp != t0.Unix() || len(ah.Signatures) != 4 {
		t.Fatalf("header %q: t %d, %d signatures; want %d and 4", h.Get(HeaderSignature), ah.Timestamp, len(ah.Signatures), t0.Unix())
	}
	wantVersions := []int{1, 1, 2, 2}
	for i, s := range ah.Signatures {
		if s.Version != wantVersions[i] {
			t.Errorf("signature %d is v%d, want v%d", i, s.Version, wantVersions[i])
		}
	}
	vv := []verify.Version{{Hash: "SHA256", Encoding: "hex"}, {Hash: "SHA512", Encoding: "base64"}}
	for i, secret := range []string{"new", "old", "new", "old"} {
		// Only signature i, only version v: proves every element on its own.
		s := ah.Signatures[i]
		one := http.Header{HeaderSignature: {"t=" + strconv.FormatInt(ah.Timestamp, 10) + ",v" + strconv.Itoa(s.Version) + "=" + s.Value}}
		if err := (&verify.Advanced{Versions: vv, Secrets: []string{secret}}).VerifyAt(one, []byte(body), t0); err != nil {
			t.Errorf("signature %d (v%d, %s): %v", i, s.Version, secret, err)
		}
	}
	if err := (&verify.Advanced{Versions: vv, Secrets: []string{"gone"}}).VerifyAt(h, []byte(body), t0); !errors.Is(err, verify.ErrMismatch) {
		t.Errorf("the expired secret verifies: %v", err)
	}
	// Each attempt is stamped with its own time.
	later, _ := sign(t, ep, "d", body, t0.Add(5*time.Second))
	if lh, _ := verify.ParseAdvanced(later.Get(HeaderSignature)); lh.Timestamp != t0.Unix()+5 {
		t.Errorf("a later attempt carries t=%d, want %d", lh.Timestamp, t0.Unix()+5)
	}
}

// TestRollingSecrets: every live secret signs, expiry is exclusive, and an endpoint whose secrets have all
// expired is not sent rather than sent unsigned.
func TestRollingSecrets(t *testing.T) {
	old := "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-of-24-bytes!!"))
	cur := "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-secret-of-24-bytes!!"))
	ep := Endpoint{SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: old, ExpiresAt: t0.Add(time.Hour)}, {Value: cur}}}
	count := func(at time.Time) int {
		h, err := sign(t, ep, "dlv", "{}", at)
		if err != nil {
			t.Fatal(err)
		}
		return len(strings.Fields(h.Get(HeaderWebhookSignature)))
	}
	if n := count(t0); n != 2 {
		t.Errorf("during the rotation: %d signatures, want 2", n)
	}
	if n := count(t0.Add(time.Hour - time.Nanosecond)); n != 2 {
		t.Errorf("just before expiry: %d signatures, want 2", n)
	}
	if n := count(t0.Add(time.Hour)); n != 1 {
		t.Errorf("at expiry: %d signatures, want 1", n)
	}
	ep.Secrets[1].ExpiresAt = t0.Add(time.Minute)
	if _, err := sign(t, ep, "dlv", "{}", t0.Add(2*time.Hour)); !errors.Is(err, ErrNoLiveSecret) {
		t.Errorf("all expired: %v, want ErrNoLiveSecret", err)
	}
}

func TestEd25519(t *testing.T) {
	secret, public, err := GenerateEd25519Key()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, PrefixEd25519Secret) || !strings.HasPrefix(public, PrefixEd25519Public) {
		t.Fatalf("key pair %q / %q", secret[:8], public)
	}
	if derived, err := Ed25519PublicKey(secret); err != nil || derived != public {
		t.Fatalf("Ed25519PublicKey = %q, %v; want %q", derived, err, public)
	}
	if err := ValidateSecret(SchemeStandardEd25519, secret); err != nil {
		t.Fatal(err)
	}
	// The 32-byte seed form signs identically.
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, PrefixEd25519Secret))
	seedForm := PrefixEd25519Secret + base64.StdEncoding.EncodeToString(raw[:ed25519.SeedSize])
	if derived, err := Ed25519PublicKey(seedForm); err != nil || derived != public {
		t.Fatalf("seed form: %q, %v", derived, err)
	}
	other, otherPublic, _ := GenerateEd25519Key()
	ep := Endpoint{SignatureScheme: SchemeStandardEd25519, Secrets: []SecretKey{{Value: seedForm, ExpiresAt: t0.Add(time.Hour)}, {Value: other}}}
	h, err := sign(t, ep, "dlv_1", `{"x":1}`, t0)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := verify.ParseStandard(h.Get(HeaderWebhookSignature))
	if err != nil || len(sigs) != 2 || sigs[0].Version != "v1a" || sigs[1].Version != "v1a" {
		t.Fatalf("webhook-signature %q: %v", h.Get(HeaderWebhookSignature), err)
	}
	for _, pk := range []string{public, otherPublic} {
		if err := (&verify.Standard{Keys: []string{pk}}).VerifyAt(h, []byte(`{"x":1}`), t0); err != nil {
			t.Errorf("verify with %s: %v", pk, err)
		}
	}
	// A 64-byte key whose public half was tampered with is rejected at validation.
	bad := append([]byte(nil), raw...)
	bad[63] ^= 1
	if err := ValidateSecret(SchemeStandardEd25519, PrefixEd25519Secret+base64.StdEncoding.EncodeToString(bad)); !errors.Is(err, ErrBadSecret) {
		t.Errorf("inconsistent key: %v", err)
	}
}

func TestValidation(t *testing.T) {
	std, _ := GenerateStandardSecret()
	sk, _, _ := GenerateEd25519Key()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"scheme", ValidateScheme("hmac"), ErrBadScheme},
		{"empty scheme is simple", ValidateScheme(""), nil},
		{"generated whsec_", ValidateSecret(SchemeStandard, std), nil},
		{"standard needs whsec_", ValidateSecret(SchemeStandard, "plain-secret"), ErrBadSecret},
		{"whsec_ too short", ValidateSecret(SchemeStandard, "whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 16))), ErrBadSecret},
		{"whsec_ not base64", ValidateSecret(SchemeStandard, "whsec_!!!"), ErrBadSecret},
		{"ed25519 needs whsk_", ValidateSecret(SchemeStandardEd25519, std), ErrBadSecret},
		{"generated whsk_", ValidateSecret(SchemeStandardEd25519, sk), nil},
		{"simple takes any secret", ValidateSecret(SchemeSimple, "anything"), nil},
		{"simple secret empty", ValidateSecret(SchemeAdvanced, ""), ErrBadSecret},
		{"signature config", SignatureConfig{Header: "X-Acme-Sig", Versions: []SignatureVersion{{"sha256", "hex"}, {"SHA512", "base64"}}}.Validate(), nil},
		{"default header named", SignatureConfig{Header: "x-sluice-signature"}.Validate(), nil},
		{"bad hash", SignatureConfig{Versions: []SignatureVersion{{Hash: "md5"}}}.Validate(), ErrBadSignatureConfig},
		{"bad encoding", SignatureConfig{Versions: []SignatureVersion{{Encoding: "base32"}}}.Validate(), ErrBadSignatureConfig},
		{"reserved header", SignatureConfig{Header: "X-Sluice-Delivery-Id"}.Validate(), ErrBadSignatureConfig},
		{"webhook header", SignatureConfig{Header: "webhook-signature"}.Validate(), ErrBadSignatureConfig},
		{"transport header", SignatureConfig{Header: "Content-Length"}.Validate(), ErrBadSignatureConfig},
		{"not a token", SignatureConfig{Header: "X Sig"}.Validate(), ErrBadSignatureConfig},
		{"api key", (&Auth{Type: AuthAPIKey, HeaderName: "Authorization", HeaderValue: "Bearer k"}).Validate(), nil},
		{"api key reserved", (&Auth{Type: AuthAPIKey, HeaderName: "X-Sluice-Signature", HeaderValue: "k"}).Validate(), ErrBadAuth},
		{"api key webhook-*", (&Auth{Type: AuthAPIKey, HeaderName: "Webhook-Id", HeaderValue: "k"}).Validate(), ErrBadAuth},
		{"api key Host", (&Auth{Type: AuthAPIKey, HeaderName: "host", HeaderValue: "k"}).Validate(), ErrBadAuth},
		{"api key CRLF", (&Auth{Type: AuthAPIKey, HeaderName: "X-Key", HeaderValue: "k\r\nX-Evil: 1"}).Validate(), ErrBadAuth},
		{"api key empty", (&Auth{Type: AuthAPIKey, HeaderName: "X-Key"}).Validate(), ErrBadAuth},
		{"basic", (&Auth{Type: AuthBasic, Username: "u", Password: "p:w"}).Validate(), nil},
		{"basic colon", (&Auth{Type: AuthBasic, Username: "u:x", Password: "p"}).Validate(), ErrBadAuth},
		{"auth type", (&Auth{Type: "bearer"}).Validate(), ErrBadAuth},
		{"tls key without cert", (&ClientTLS{KeyPEM: "x"}).Validate(), ErrBadTLS},
		{"tls garbage", (&ClientTLS{CertPEM: "x", KeyPEM: "y"}).Validate(), ErrBadTLS},
		{"tls bad CA", (&ClientTLS{CAPEM: "not pem"}).Validate(), ErrBadTLS},
	} {
		if !errors.Is(tc.err, tc.want) || (tc.want == nil && tc.err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// A sign-time error for a bad secret or config fails the attempt; it never quotes the secret.
	_, err := sign(t, Endpoint{SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: "plain-secret-value"}}}, "d", "{}", t0)
	if !errors.Is(err, ErrBadSecret) || strings.Contains(err.Error(), "plain-secret-value") {
		t.Errorf("standard with a plain secret: %v", err)
	}
	if _, err := sign(t, Endpoint{SignatureScheme: "nope", Secret: "s"}, "d", "{}", t0); !errors.Is(err, ErrBadScheme) {
		t.Errorf("unknown scheme: %v", err)
	}
	if _, err := sign(t, Endpoint{SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: std}}}, "a.b", "{}", t0); err == nil {
		t.Errorf("a delivery id with a dot was accepted as webhook-id")
	}
}

func BenchmarkSign(b *testing.B) {
	body := []byte(strings.Repeat(`{"k":"v"}`, 100))
	std, _ := GenerateStandardSecret()
	sk, _, _ := GenerateEd25519Key()
	for _, bc := range []struct {
		name string
		ep   Endpoint
	}{
		{"simple", Endpoint{Secret: "s3cret"}},
		{"advanced-2v-2s", Endpoint{SignatureScheme: SchemeAdvanced, Secrets: []SecretKey{{Value: "a"}, {Value: "b"}},
			Signature: SignatureConfig{Versions: []SignatureVersion{{}, {Hash: HashSHA512, Encoding: EncodingBase64}}}}},
		{"standard", Endpoint{SignatureScheme: SchemeStandard, Secrets: []SecretKey{{Value: std}}}},
		{"standard-ed25519", Endpoint{SignatureScheme: SchemeStandardEd25519, Secrets: []SecretKey{{Value: sk}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			job := &Job{Ref: Ref{DeliveryID: "01KB2ZJ0000000000000000000"}, Body: body, Endpoint: bc.ep}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				h := make(http.Header, 4)
				if err := (SchemeSigner{}).Sign(h, job, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
