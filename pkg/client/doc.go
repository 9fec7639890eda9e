// Package client is the Go SDK for phigate's admin API: issue, list,
// change, rotate, suspend and revoke tokens, and introspect (RFC 7662) or
// revoke (RFC 7009) a token by its secret. The phigate CLI is built on it.
//
// # Connecting
//
// A Client talks HTTPS only (TLS 1.2 at least) and authenticates with a
// phigate token ("phi_…") whose scopes allow the calls it makes:
//
//	c, err := client.New("https://phigate.example.org:8443",
//		client.WithToken(os.Getenv("PHIGATE_TOKEN")),
//		client.WithPins("sha256//Jc6bJqBS1UqL9f2ZnEb0Bf8Gh8n4pYjC2BPXqv3Qf1U="))
//
// or, from the same environment the CLI reads (PHIGATE_ADDR, PHIGATE_TOKEN,
// PHIGATE_PIN, PHIGATE_CACERT):
//
//	c, err := client.FromEnv()
//
// The server is verified in one of three ways. With pins only
// (PHIGATE_PIN, WithPins), the SHA-256 of the leaf certificate's public key
// must equal a pin; this suits the self-signed certificate of
// `phigate server --dev`, which prints its pin at start. With a CA file
// (PHIGATE_CACERT, WithCAFile), the chain must lead to that CA, and pins, if
// given as well, must match too. With neither, the system roots are used. A
// pin mismatch is a *PinMismatchError naming the pin the server presented
// and the pins expected; a chain that does not verify (no pin given and a
// self-signed certificate, or one the CA file did not sign) is an
// *UntrustedCertificateError that says to set PHIGATE_PIN or
// PHIGATE_CACERT and names the pin the server presented, without trusting
// it. In both cases no request is sent.
//
// Plain http:// addresses are refused, unless WithInsecureHTTP is given and
// the host is a loopback address.
//
// # Calls
//
//	tok, err := c.CreateToken(ctx, client.CreateTokenRequest{
//		Subject: "svc:lab-results",
//		Kind:    "service",
//		Scopes:  []string{"patient/Observation.rs"},
//		TTL:     "15m",
//		Rate:    &client.Rate{PerSecond: 10, Burst: 20},
//	})
//	if err != nil {
//		var apiErr *client.APIError
//		if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
//			// the caller's own scopes do not cover the request
//		}
//		return err
//	}
//	store(tok.Secret) // shown this once; phigate keeps only a keyed hash
//
// Every method takes a context first. A non-2xx answer is an *APIError with
// the server's reason code, message, request id and, for a validation
// error, the offending field. Requests time out after DefaultTimeout
// (WithTimeout) and answers are read up to 4 MiB.
//
// # Rotation
//
// A token's TTL is its rotation period. A RotatingSource keeps a token
// fresh without an agent: it is a TokenSource (give it to WithTokenSource,
// or call Token for the Authorization header of your own requests) whose
// Run rotates the token itself (POST /v1/tokens/self/rotate) at about two
// thirds of the period, with jitter:
//
//	src, err := client.NewRotatingSource(addr, secret, client.RotatingOptions{}, client.WithPins(pins...))
//	go src.Run(ctx)
//	tok, err := src.Token(ctx)
//
// Each rotation attempt draws one random Idempotency-Key (kept in memory
// only) and sends it, with the secret being rotated, on every retry of
// that attempt (RotateSelfIdempotent), so that an answer lost to the
// network yields the same new secret instead of burning the chain; 409
// already_rotated is retried with the same key, and no rotation ever starts
// from a superseded secret. Failures are retried with exponential backoff
// until the secret expires; refusals no retry can change (401, 403,
// lifetime_ended, issuer_revoked, a pin mismatch) end Run with an error
// wrapping ErrRotationEnded. OnUpdate is told every new secret, to persist
// it (phigate agent writes it to files); State reports the source's state
// without the secret. The clock, the sleep and the randomness are options.
//
// Pins may be several (WithPins, or PHIGATE_PIN "current,backup"): a
// server presenting any of them is accepted, so that a certificate
// rollover to the backup key needs no client change.
//
// # SMART Backend Services
//
// A registered client (RegisterClient, phigate client register) gets its
// tokens with a signed assertion instead of a secret: a
// BackendServicesSource signs one (ES384 for an ECDSA P-384 key, RS384 for
// RSA; a fresh jti, exp at most 5 minutes ahead) with a crypto.Signer,
// exchanges it at POST /v1/oauth/token, caches the token and exchanges a
// new assertion when a third of the token's life is left:
//
//	c, err := client.New(addr, client.WithPins(pin))
//	src, err := c.BackendServicesSource(client.BackendServicesConfig{
//		ClientID: "cli_…", Key: key, KeyID: "lab-2026",
//		Scopes: []string{"system/Observation.rs"},
//	})
//	tok, err := src.Token(ctx) // Authorization: Bearer tok, at the gateway
//
// It is safe for concurrent use, and never puts the token or the
// assertion in an error.
//
// # Secrets
//
// The SDK sends the bearer token only in the Authorization header of API
// calls (not to /healthz or /readyz) and does not follow redirects. It never
// logs it, writes it to disk or puts it in an error: error messages are
// scrubbed of the bearer token and of any secret passed to Introspect or
// Revoke, and a Client prints without its token. The secret of a created or
// rotated token is in IssuedToken.Secret only; what to do with it is the
// caller's business.
package client
