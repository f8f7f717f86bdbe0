// Package verify checks Sluice webhook signatures on the receiving side. It depends on the standard
// library only, so receivers can import it without the rest of Sluice.
//
// # Schemes
//
// Each endpoint is signed with one scheme; a receiver configures the matching verifier with the
// endpoint's secret(s). During a rotation Sluice signs with every live secret, so a receiver may list
// the old and the new secret, or just one of them.
//
//	simple     X-Sluice-Signature: hex(HMAC-SHA256(secret, body))      hash/encoding per project
//	advanced   X-Sluice-Signature: t=<unix>,v1=<sig>,v1=<sig>,v2=<sig>  sig = HMAC(secret, "<t>,<body>")
//	standard   webhook-id, webhook-timestamp,
//	           webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")> …  (whsec_ secrets)
//	           or v1a,<base64 ed25519 signature of the same string> …                      (whpk_ public keys)
//
// The header name of simple and advanced, and the versions' hash (SHA256, SHA512) and encoding (hex,
// base64), are the project's signature configuration; copy them into Simple or Advanced. Standard
// Webhooks signatures are also verified as is by the official standardwebhooks libraries, in every
// language.
//
// # Use
//
//	v := &verify.Standard{Keys: []string{os.Getenv("WEBHOOK_SECRET")}} // whsec_… or whpk_…
//	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))              // the raw bytes, never re-encoded JSON
//	if err := v.Verify(r.Header, body); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized) // err wraps ErrMismatch, ErrTimestamp...
//		return
//	}
//
// Verify is VerifyAt(header, body, Now()); pass an explicit time to VerifyAt, or set Now, in tests.
// Timestamped schemes (advanced, standard) reject a timestamp further than Tolerance (default 5
// minutes) from now, either way: Sluice re-signs every attempt with a fresh timestamp, so retries pass
// and a captured request cannot be replayed later. Within the window, dedupe on X-Sluice-Delivery-Id
// (or webhook-id), which is stable across retries.
//
// # Errors
//
// Every Verify error wraps one sentinel: ErrNoSignature (header missing, or no signature of a version
// this verifier checks), ErrMalformed (a header does not parse), ErrTimestamp (outside the tolerance),
// ErrMismatch (no signature matches any secret or key), or ErrBadKey (the verifier's own secrets or
// keys are unusable). Comparisons of HMACs are constant-time (hmac.Equal); a header may carry at most
// MaxSignatures signatures, which bounds the work a forged request can cause.
//
// The parsers (ParseSimple, ParseAdvanced, ParseStandard, ParseKey) are exported for tools and are
// fuzzed.
package verify
