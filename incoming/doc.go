/*
Package incoming turns a request a provider sent to a source's ingest URL into the parts of an event:
it verifies the request (Verifier), reads the event type, the idempotency values and the headers to
forward (Source.Extract). It knows nothing of HTTP serving or storage; the api package calls it and
then publishes through the one publish path.

# Verifiers

	noop        accepts everything
	hmac        HMAC of the raw body in a header: SHA256 or SHA512, hex or base64, optional prefix
	basic_auth  Authorization: Basic, username and password compared in constant time
	api_key     a header carrying a fixed value, compared in constant time

and provider presets, each with the provider's exact scheme (only the secret is configured):

	github            X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>
	stripe            Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=...]
	                  (several v1 during a secret roll; t within Tolerance of now)
	shopify           X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>
	standardwebhooks  webhook-id, webhook-timestamp, webhook-signature: "v1,<base64>" (space-separated,
	                  several allowed) over "<id>.<timestamp>.<body>" with the base64 key after
	                  "whsec_"; the svix-* header names are accepted too; timestamp within Tolerance
	twilio            X-Twilio-Signature: <base64 HMAC-SHA1(auth token, URL + sorted form params)>;
	                  for JSON bodies the URL carries bodySHA256=<hex SHA-256 of the body> and only
	                  the URL is signed

Every comparison is constant-time (hmac.Equal / subtle). A verifier's error wraps one of ErrMissing,
ErrMalformed, ErrMismatch or ErrExpired; none of them echoes a secret.

# Extraction

Idempotency keys and the event type location name request values as "request.headers.<Name>",
"request.query.<name>" or "request.body.<dot.path>" (a JSON path, or a form field for a form body).
The body is parsed at most once per request.
*/
package incoming
