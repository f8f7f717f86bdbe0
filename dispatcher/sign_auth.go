package dispatcher

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// Endpoint authentication types (Auth.Type).
const (
	AuthAPIKey = "api_key"    // a header the receiver checks: Auth.HeaderName: Auth.HeaderValue
	AuthBasic  = "basic_auth" // Authorization: Basic base64(Auth.Username:Auth.Password)
)

// ErrBadAuth: Endpoint.Auth is invalid; the message names the field, never the credential.
var ErrBadAuth = errors.New("dispatcher: invalid endpoint authentication")

// Redacted replaces credential header values (Endpoint.Auth) in Attempt.RequestHeaders: the attempt
// log is readable through the API, the credential must not be.
const Redacted = "[redacted]"

// Auth authenticates deliveries to the receiver, on top of the signature. It is applied after the
// endpoint's and event's custom headers (so it replaces a custom header of the same name) and before the
// reserved ones (which it may not name).
type Auth struct {
	Type string // AuthAPIKey or AuthBasic
	// HeaderName and HeaderValue are AuthAPIKey's header, e.g. "Authorization: Bearer abc" or
	// "X-Api-Key: abc".
	HeaderName, HeaderValue string
	// Username and Password are AuthBasic's credentials; Username may not contain ':'.
	Username, Password string
}

// Validate reports the first invalid field.
func (a *Auth) Validate() error {
	switch a.Type {
	case AuthAPIKey:
		if err := checkHeaderName(a.HeaderName); err != nil {
			return fmt.Errorf("%w: header_name: %w", ErrBadAuth, err)
		}
		if ck := textproto.CanonicalMIMEHeaderKey(a.HeaderName); isReserved(ck) || ck == "Content-Type" {
			return fmt.Errorf("%w: header_name %q is reserved", ErrBadAuth, a.HeaderName)
		}
		if a.HeaderValue == "" || !validHeaderValue(a.HeaderValue) {
			return fmt.Errorf("%w: header_value is empty or has control characters", ErrBadAuth)
		}
	case AuthBasic:
		if a.Username == "" || strings.Contains(a.Username, ":") || !validHeaderValue(a.Username) {
			return fmt.Errorf("%w: username is empty or has ':' or control characters", ErrBadAuth)
		}
		if !validHeaderValue(a.Password) {
			return fmt.Errorf("%w: password has control characters", ErrBadAuth)
		}
	default:
		return fmt.Errorf("%w: type %q: want %s or %s", ErrBadAuth, a.Type, AuthAPIKey, AuthBasic)
	}
	return nil
}

// apply validates a and sets its header in h, returning the header's canonical name.
func (a *Auth) apply(h http.Header) (string, error) {
	if err := a.Validate(); err != nil {
		return "", err
	}
	if a.Type == AuthBasic {
		h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password))}
		return "Authorization", nil
	}
	k := textproto.CanonicalMIMEHeaderKey(a.HeaderName)
	h[k] = []string{a.HeaderValue}
	return k, nil
}

// isReserved reports whether the canonical header name ck is set by the dispatcher or the transport.
func isReserved(ck string) bool {
	return strings.HasPrefix(ck, ReservedHeaderPrefix) || strings.HasPrefix(ck, ReservedWebhookPrefix) || transportHeaders[ck]
}

// checkHeaderName reports whether name is an HTTP token (RFC 9110 field-name).
func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 || !isTokenChar(c) {
			return fmt.Errorf("%q is not a valid header name", name)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHeaderValue reports whether v has no control characters (CR, LF, NUL...) other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
