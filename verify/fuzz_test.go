package verify

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// Every parser must return a result or one sentinel error, never panic, and be stable under its own
// formatting; a verifier fed the fuzzed header must never accept it with a key that did not sign it.

func FuzzParseSimple(f *testing.F) {
	f.Add("5f1c", "hex", []byte("{}"))
	f.Add("XxK1Yw==", "base64", []byte("{}"))
	f.Add("", "hex", []byte(nil))
	f.Add("zz", "nope", []byte("x"))
	f.Fuzz(func(t *testing.T, value, enc string, body []byte) {
		ver := Version{Encoding: enc}
		b, err := ParseSimple(value, ver)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadKey) {
				t.Fatalf("ParseSimple(%q, %q): unclassified error %v", value, enc, err)
			}
			return
		}
		if len(b) == 0 {
			t.Fatalf("ParseSimple(%q) accepted an empty signature", value)
		}
		h := http.Header{}
		h.Set(DefaultHeader, value)
		v := &Simple{Version: ver, Secrets: []string{"fuzz-secret"}}
		want, _ := ver.mac("fuzz-secret", body)
		if err := v.Verify(h, body); err == nil && !bytes.Equal(b, want) {
			t.Fatalf("Verify accepted %q, which is not the signature", value)
		}
	})
}

func FuzzParseAdvanced(f *testing.F) {
	f.Add("t=1764158400,v1=5f1c,v1=ab,v2=XxK1Yw==")
	f.Add(" t=5 , v12=c=d= ")
	f.Add("t=5,t=6")
	f.Add("v1=a,t=")
	f.Add("t=5,,")
	f.Fuzz(func(t *testing.T, value string) {
		h, err := ParseAdvanced(value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseAdvanced(%q): unclassified error %v", value, err)
			}
			return
		}
		if len(h.Signatures) > MaxSignatures || h.Timestamp < 0 {
			t.Fatalf("ParseAdvanced(%q) = %+v", value, h)
		}
		again, err := ParseAdvanced(h.String())
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("round trip of %q: %q parses to %+v, %v; want %+v", value, h.String(), again, err, h)
		}
		hdr := http.Header{}
		hdr.Set(DefaultHeader, value)
		v := &Advanced{Versions: []Version{{}, {"SHA512", "base64"}}, Secrets: []string{"fuzz-secret"}}
		if err := v.VerifyAt(hdr, []byte("{}"), time.Unix(h.Timestamp, 0)); err == nil {
			t.Fatalf("Verify accepted a fuzzed header %q", value)
		}
	})
}

func FuzzParseStandard(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	f.Add("v1,a v1a,b,c", "id", "0", []byte(nil))
	f.Add("   ", "id", "-1", []byte("x"))
	f.Add("v1", "", "1e9", []byte("x"))
	f.Fuzz(func(t *testing.T, value, id, ts string, body []byte) {
		sigs, err := ParseStandard(value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoSignature) {
				t.Fatalf("ParseStandard(%q): unclassified error %v", value, err)
			}
		} else {
			if len(sigs) == 0 || len(sigs) > MaxSignatures {
				t.Fatalf("ParseStandard(%q) = %d signatures", value, len(sigs))
			}
			again, err := ParseStandard(FormatStandard(sigs))
			if err != nil || !reflect.DeepEqual(again, sigs) {
				t.Fatalf("round trip of %q: %+v, %v; want %+v", value, again, err, sigs)
			}
		}
		// The verifier classifies every fuzzed header, and the key below signed none of them: the seed
		// vector is signed with another key.
		h := http.Header{}
		h.Set(HeaderWebhookSignature, value)
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, ts)
		var at time.Time
		if n, err := strconv.ParseInt(ts, 10, 64); err == nil && n > 0 && n < 1<<40 {
			at = time.Unix(n, 0)
		}
		v := &Standard{Keys: []string{"whsec_c2x1aWNlLWZ1enotc2VjcmV0LTI0Ynl0ZXM=", "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}
		err = v.VerifyAt(h, body, at)
		if err == nil {
			t.Fatalf("Verify accepted a fuzzed header %q", value)
		}
		for _, s := range []error{ErrNoSignature, ErrMalformed, ErrTimestamp, ErrMismatch} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("Verify: unclassified error %v", err)
	})
}

func FuzzParseKey(f *testing.F) {
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	f.Add("whsk_AAAA")
	f.Add("whsec_")
	f.Fuzz(func(t *testing.T, key string) {
		secret, public, err := ParseKey(key)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadKey) || secret != nil || public != nil {
				t.Fatalf("ParseKey(%q) = %v, %v, %v", key, secret, public, err)
			}
			if bytes.Contains([]byte(err.Error()), []byte(key)) && len(key) > 8 {
				t.Fatalf("the error %q quotes the key", err)
			}
		case (secret == nil) == (public == nil):
			t.Fatalf("ParseKey(%q): want exactly one of secret and public", key)
		case public != nil && len(public) != 32:
			t.Fatalf("ParseKey(%q): public key of %d bytes", key, len(public))
		case secret != nil && len(secret) == 0:
			t.Fatalf("ParseKey(%q): empty secret", key)
		}
	})
}
