package verify

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// standardVectors are the Standard Webhooks specification's published test vectors.
var standardVectors = []struct {
	key, id string
	ts      int64
	body    string
	sig     string
}{
	{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
		`{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
	{"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553,
		`{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="},
}

func stdHeader(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestStandardVectors(t *testing.T) {
	for _, tv := range standardVectors {
		at := time.Unix(tv.ts, 0)
		v := &Standard{Keys: []string{tv.key}}
		h := stdHeader(tv.id, tv.ts, tv.sig)
		if err := v.VerifyAt(h, []byte(tv.body), at); err != nil {
			t.Fatalf("vector %s: %v", tv.id, err)
		}
		// Rotation: the matching signature may come anywhere in the list.
		other := "v1,Dmbs6B9d1EvtVjUO+Yi5kc+AvtfnB2+iZVHTVCzAbsM="
		if err := v.VerifyAt(stdHeader(tv.id, tv.ts, other+" "+tv.sig), []byte(tv.body), at); err != nil {
			t.Fatalf("vector %s among two: %v", tv.id, err)
		}
		for _, tc := range []struct {
			name string
			h    http.Header
			body string
			now  time.Time
			want error
		}{
			{"tampered body", h, tv.body + " ", at, ErrMismatch},
			{"other id", stdHeader(tv.id+"x", tv.ts, tv.sig), tv.body, at, ErrMismatch},
			{"other timestamp", stdHeader(tv.id, tv.ts+1, tv.sig), tv.body, at, ErrMismatch},
			{"too old", h, tv.body, at.Add(DefaultTolerance + time.Second), ErrTimestamp},
			{"too new", h, tv.body, at.Add(-DefaultTolerance - time.Second), ErrTimestamp},
			{"only another signature", stdHeader(tv.id, tv.ts, other), tv.body, at, ErrMismatch},
			{"v1a only, no whpk_ key", stdHeader(tv.id, tv.ts, "v1a,"+tv.sig[3:]), tv.body, at, ErrNoSignature},
			{"no signature header", stdHeader(tv.id, tv.ts, ""), tv.body, at, ErrNoSignature},
			{"no id", stdHeader("", tv.ts, tv.sig), tv.body, at, ErrMalformed},
			{"bad timestamp", func() http.Header { h := h.Clone(); h.Set("webhook-timestamp", "1e9"); return h }(), tv.body, at, ErrMalformed},
			{"malformed signature", stdHeader(tv.id, tv.ts, "v1"), tv.body, at, ErrMalformed},
		} {
			if err := v.VerifyAt(tc.h, []byte(tc.body), tc.now); !errors.Is(err, tc.want) {
				t.Errorf("vector %s, %s: %v, want %v", tv.id, tc.name, err, tc.want)
			}
		}
		// At the tolerance edge it still passes; a custom tolerance and clock are honoured.
		if err := v.VerifyAt(h, []byte(tv.body), at.Add(DefaultTolerance)); err != nil {
			t.Errorf("at the tolerance edge: %v", err)
		}
		short := &Standard{Keys: []string{tv.key}, Tolerance: time.Second, Now: func() time.Time { return at.Add(2 * time.Second) }}
		if err := short.Verify(h, []byte(tv.body)); !errors.Is(err, ErrTimestamp) {
			t.Errorf("1s tolerance, 2s late: %v", err)
		}
	}
}

// TestStandardOfficialLibrary: what the official Go library signs, Standard verifies, and the other
// way round (through its Verify on our hand-made header).
func TestStandardOfficialLibrary(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"type":"invoice.paid","data":{"id":1}}`)
	sig, err := wh.Sign("msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := stdHeader("msg_1", now.Unix(), sig)
	if err := (&Standard{Keys: []string{secret}}).Verify(h, body); err != nil {
		t.Fatalf("official signature: %v", err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("official Verify of its own header: %v", err)
	}
}

func TestStandardEd25519(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	whpk := "whpk_" + base64.StdEncoding.EncodeToString(pub)
	whpk2 := "whpk_" + base64.StdEncoding.EncodeToString(pub2)
	at := time.Unix(1764158400, 0)
	body := []byte(`{"a":1}`)
	sig := ed25519.Sign(priv, []byte("msg_9.1764158400."+string(body)))
	h := stdHeader("msg_9", at.Unix(), "v1,bm9wZQ== v1a,"+base64.StdEncoding.EncodeToString(sig))
	if err := (&Standard{Keys: []string{whpk2, whpk}}).VerifyAt(h, body, at); err != nil {
		t.Fatalf("v1a with the right public key: %v", err)
	}
	if err := (&Standard{Keys: []string{whpk2}}).VerifyAt(h, body, at); !errors.Is(err, ErrMismatch) {
		t.Fatalf("v1a with another public key: %v", err)
	}
	if err := (&Standard{Keys: []string{whpk}}).VerifyAt(h, append(body, ' '), at); !errors.Is(err, ErrMismatch) {
		t.Fatalf("v1a, tampered body: %v", err)
	}
	if err := (&Standard{Keys: []string{"whsk_" + base64.StdEncoding.EncodeToString(priv)}}).VerifyAt(h, body, at); !errors.Is(err, ErrBadKey) {
		t.Fatalf("a private key is not a verification key: %v", err)
	}
}

func TestSimple(t *testing.T) {
	body := []byte(`{"x":1}`)
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write(body)
	hexSig := hex.EncodeToString(m.Sum(nil))
	m5 := hmac.New(sha512.New, []byte("s3cret"))
	m5.Write(body)
	b64Sig := base64.StdEncoding.EncodeToString(m5.Sum(nil))
	hdr := func(name, v string) http.Header { h := http.Header{}; h.Set(name, v); return h }

	for _, tc := range []struct {
		name string
		v    Simple
		h    http.Header
		body []byte
		want error
	}{
		{"default", Simple{Secrets: []string{"s3cret"}}, hdr(DefaultHeader, hexSig), body, nil},
		{"rotation: second secret", Simple{Secrets: []string{"old", "s3cret"}}, hdr(DefaultHeader, hexSig), body, nil},
		{"custom header, SHA512/base64", Simple{Header: "X-Acme-Sig", Version: Version{"sha512", "BASE64"}, Secrets: []string{"s3cret"}}, hdr("x-acme-sig", b64Sig), body, nil},
		{"wrong secret", Simple{Secrets: []string{"nope"}}, hdr(DefaultHeader, hexSig), body, ErrMismatch},
		{"tampered", Simple{Secrets: []string{"s3cret"}}, hdr(DefaultHeader, hexSig), []byte(`{"x":2}`), ErrMismatch},
		{"missing", Simple{Secrets: []string{"s3cret"}}, http.Header{}, body, ErrNoSignature},
		{"not hex", Simple{Secrets: []string{"s3cret"}}, hdr(DefaultHeader, "zz"), body, ErrMalformed},
		{"no secret", Simple{}, hdr(DefaultHeader, hexSig), body, ErrBadKey},
		{"bad hash", Simple{Version: Version{Hash: "md5"}, Secrets: []string{"s"}}, hdr(DefaultHeader, hexSig), body, ErrBadKey},
	} {
		if err := tc.v.Verify(tc.h, tc.body); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAdvanced(t *testing.T) {
	body := []byte(`{"x":1}`)
	at := time.Unix(1764158400, 0)
	sig := func(v Version, secret string, ts int64) string {
		mac, err := v.mac(secret, []byte(strconv.FormatInt(ts, 10)+","), body)
		if err != nil {
			t.Fatal(err)
		}
		if v.Encoding == "base64" {
			return base64.StdEncoding.EncodeToString(mac)
		}
		return hex.EncodeToString(mac)
	}
	v1, v2 := Version{"SHA256", "hex"}, Version{"SHA512", "base64"}
	ts := at.Unix()
	full := "t=" + strconv.FormatInt(ts, 10) +
		",v1=" + sig(v1, "new", ts) + ",v1=" + sig(v1, "old", ts) +
		",v2=" + sig(v2, "new", ts) + ",v2=" + sig(v2, "old", ts)
	hdr := func(v string) http.Header { h := http.Header{}; h.Set(DefaultHeader, v); return h }
	both := []Version{v1, v2}
	for _, tc := range []struct {
		name string
		v    Advanced
		h    string
		now  time.Time
		want error
	}{
		{"old secret", Advanced{Versions: both, Secrets: []string{"old"}}, full, at, nil},
		{"new secret", Advanced{Versions: both, Secrets: []string{"new"}}, full, at, nil},
		{"v2 only", Advanced{Versions: both, Secrets: []string{"new"}}, "t=" + strconv.FormatInt(ts, 10) + ",v2=" + sig(v2, "new", ts), at, nil},
		{"a v3 it does not know is ignored", Advanced{Versions: both, Secrets: []string{"new"}}, full + ",v3=abc,x=y", at, nil},
		{"only v3", Advanced{Versions: both, Secrets: []string{"new"}}, "t=1764158400,v3=abc", at, ErrNoSignature},
		{"default version is v1 SHA256/hex", Advanced{Secrets: []string{"old"}}, full, at, nil},
		{"wrong secret", Advanced{Versions: both, Secrets: []string{"other"}}, full, at, ErrMismatch},
		{"late", Advanced{Versions: both, Secrets: []string{"new"}}, full, at.Add(6 * time.Minute), ErrTimestamp},
		{"early", Advanced{Versions: both, Secrets: []string{"new"}}, full, at.Add(-6 * time.Minute), ErrTimestamp},
		{"custom tolerance", Advanced{Versions: both, Secrets: []string{"new"}, Tolerance: time.Hour}, full, at.Add(59 * time.Minute), nil},
		{"signature of another t", Advanced{Versions: both, Secrets: []string{"new"}}, "t=" + strconv.FormatInt(ts+1, 10) + ",v1=" + sig(v1, "new", ts), at, ErrMismatch},
		{"no t", Advanced{Secrets: []string{"new"}}, "v1=" + sig(v1, "new", ts), at, ErrMalformed},
		{"missing", Advanced{Secrets: []string{"new"}}, "", at, ErrNoSignature},
		{"no secret", Advanced{}, full, at, ErrBadKey},
	} {
		if err := tc.v.VerifyAt(hdr(tc.h), body, tc.now); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	tampered := Advanced{Versions: both, Secrets: []string{"new"}, Now: func() time.Time { return at }}
	if err := tampered.Verify(hdr(full), []byte(`{"x":2}`)); !errors.Is(err, ErrMismatch) {
		t.Errorf("tampered body: %v", err)
	}
}

func TestParseAdvanced(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AdvancedHeader
		err  error
	}{
		{"t=5,v1=ab", AdvancedHeader{5, []AdvancedSignature{{1, "ab"}}}, nil},
		{" t=5 , v1=ab,v12=c=d= ", AdvancedHeader{5, []AdvancedSignature{{1, "ab"}, {12, "c=d="}}}, nil},
		{"t=5,scheme=x,V1=y,v=z,v1x=w", AdvancedHeader{Timestamp: 5}, nil},
		{"t=5", AdvancedHeader{Timestamp: 5}, nil},
		{"", AdvancedHeader{}, ErrMalformed},
		{"v1=ab", AdvancedHeader{}, ErrMalformed},
		{"t=5,t=6,v1=a", AdvancedHeader{}, ErrMalformed},
		{"t=-5,v1=a", AdvancedHeader{}, ErrMalformed},
		{"t=+5,v1=a", AdvancedHeader{}, ErrMalformed},
		{"t=5,v0=a", AdvancedHeader{}, ErrMalformed},
		{"t=5,v01=a", AdvancedHeader{}, ErrMalformed},
		{"t=5,v1=", AdvancedHeader{}, ErrMalformed},
		{"t=5,v1=a b", AdvancedHeader{}, ErrMalformed},
		{"t=5,,v1=a", AdvancedHeader{}, ErrMalformed},
		{"t=5,v1=a,", AdvancedHeader{}, ErrMalformed},
		{"t=9999999999999,v1=a", AdvancedHeader{}, ErrMalformed},
	} {
		got, err := ParseAdvanced(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAdvanced(%q) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseStandard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []StandardSignature
		err  error
	}{
		{"v1,abc=", []StandardSignature{{"v1", "abc="}}, nil},
		{"  v1,a  v1a,b,c ", []StandardSignature{{"v1", "a"}, {"v1a", "b,c"}}, nil},
		{"", nil, ErrNoSignature},
		{"   ", nil, ErrNoSignature},
		{"v1", nil, ErrMalformed},
		{"v1,", nil, ErrMalformed},
		{",abc", nil, ErrMalformed},
	} {
		got, err := ParseStandard(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseStandard(%q) = %+v, %v; want %+v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	many := ""
	for i := 0; i <= MaxSignatures; i++ {
		many += "v1,a "
	}
	if _, err := ParseStandard(many); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d signatures: %v, want ErrMalformed", MaxSignatures+1, err)
	}
}

func TestParseKey(t *testing.T) {
	if s, p, err := ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil || len(s) != 24 || p != nil {
		t.Errorf("whsec_: %d bytes, %v, %v", len(s), p, err)
	}
	if s, p, err := ParseKey("whpk_" + base64.RawStdEncoding.EncodeToString(make([]byte, 32))); err != nil || s != nil || len(p) != 32 {
		t.Errorf("unpadded whpk_: %v %v %v", s, p, err)
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!", "whpk_AAAA", "whsk_AAAA"} {
		if _, _, err := ParseKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) = %v, want ErrBadKey", bad, err)
		}
	}
}
