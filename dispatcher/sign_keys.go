package dispatcher

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// Standard Webhooks key sizes: an HMAC secret is 24 to 64 random bytes.
const (
	minStandardKey = 24
	maxStandardKey = 64
)

// GenerateStandardSecret returns a new Standard Webhooks secret: "whsec_" and the base64 of 32 random
// bytes.
func GenerateStandardSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return PrefixStandardSecret + base64.StdEncoding.EncodeToString(b[:]), nil
}

// GenerateEd25519Key returns a new standard-ed25519 key pair: the endpoint's "whsk_" secret (the
// base64 of the 64-byte private key, seed then public key, as Go and Svix serialise it) and the
// "whpk_" public key (base64 of 32 bytes) that receivers verify with.
func GenerateEd25519Key() (secret, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return PrefixEd25519Secret + base64.StdEncoding.EncodeToString(priv),
		PrefixEd25519Public + base64.StdEncoding.EncodeToString(pub), nil
}

// Ed25519PublicKey derives the "whpk_" public key of a "whsk_" secret, to show to the receiver.
func Ed25519PublicKey(secret string) (string, error) {
	priv, err := parseEd25519Secret(secret)
	if err != nil {
		return "", err
	}
	pub := ed25519.NewKeyFromSeed(priv.Seed()).Public().(ed25519.PublicKey)
	return PrefixEd25519Public + base64.StdEncoding.EncodeToString(pub), nil
}

// ValidateSecret reports whether value can sign under scheme. simple and advanced take any non-empty
// string (its bytes are the key); standard a whsec_ secret of 24 to 64 bytes; standard-ed25519 a whsk_
// private key whose public half, when present, matches its seed.
func ValidateSecret(scheme, value string) error {
	if err := ValidateScheme(scheme); err != nil {
		return err
	}
	switch scheme {
	case SchemeStandard:
		key, err := parseStandardSecret(value)
		if err != nil {
			return err
		}
		if len(key) < minStandardKey || len(key) > maxStandardKey {
			return fmt.Errorf("%w: a whsec_ key is %d to %d bytes, this one %d", ErrBadSecret, minStandardKey, maxStandardKey, len(key))
		}
	case SchemeStandardEd25519:
		priv, err := parseEd25519Secret(value)
		if err != nil {
			return err
		}
		derived := ed25519.NewKeyFromSeed(priv.Seed())
		if subtle.ConstantTimeCompare(derived, priv) != 1 {
			return fmt.Errorf("%w: the whsk_ key's public half does not match its seed", ErrBadSecret)
		}
	default:
		if value == "" {
			return fmt.Errorf("%w: empty", ErrBadSecret)
		}
	}
	return nil
}

// parseStandardSecret decodes a whsec_ secret into its HMAC key. Errors never include the secret.
func parseStandardSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, PrefixStandardSecret)
	if !ok {
		return nil, fmt.Errorf("%w: the standard scheme needs a %s secret", ErrBadSecret, PrefixStandardSecret)
	}
	key, err := decodeBase64(rest)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("%w: %s secret is not base64", ErrBadSecret, PrefixStandardSecret)
	}
	return key, nil
}

// parseEd25519Secret decodes a whsk_ secret: 64 bytes (seed then public key) or a 32-byte seed.
func parseEd25519Secret(s string) (ed25519.PrivateKey, error) {
	rest, ok := strings.CutPrefix(s, PrefixEd25519Secret)
	if !ok {
		return nil, fmt.Errorf("%w: the standard-ed25519 scheme needs a %s private key", ErrBadSecret, PrefixEd25519Secret)
	}
	b, err := decodeBase64(rest)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s key is not base64", ErrBadSecret, PrefixEd25519Secret)
	case len(b) == ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	case len(b) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	}
	return nil, fmt.Errorf("%w: a %s key is %d or %d bytes, this one %d", ErrBadSecret, PrefixEd25519Secret, ed25519.PrivateKeySize, ed25519.SeedSize, len(b))
}

// decodeBase64 accepts standard base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
