// Package api is phigate's admin HTTP API: token management, RFC 7662
// introspection, RFC 7009 revocation, health and readiness. It is an edge:
// it turns HTTP into calls on the authority and back, and owns nothing else.
//
// Guarantees:
//
//   - Deny by default: every route but /healthz, /readyz, /v1/audit/key
//     and /v1/openapi.json (public by design) authenticates a
//     phigate bearer token and checks the scope the route needs before it
//     does anything else.
//
//   - Every error answer is JSON {"error":{"code","message","request_id",
//     "field"}} with the right status; 401 and 403 carry an RFC 6750
//     WWW-Authenticate header. Internal errors are logged with the request
//     id and reach the client only as "internal".
//
//   - No answer, log line or error contains a token secret, except the one
//     answer that creates or rotates it.
//
//   - Limits are explicit: bodies over Options.MaxBody are refused with 413,
//     a body that is not application/json (form for introspection and
//     revocation) with 415, unknown JSON fields with 400 naming the field.
//
//   - A token's lifetime and subjects are bounded (see package authority):
//     every view carries its not_after; a rotation or PATCH never moves the
//     expiry past it (PATCH: 400 on expires_at); rotating a token whose
//     issuer is revoked answers 409 issuer_revoked, and one whose not_after
//     has passed 409 lifetime_ended. A subject_prefix that is not valid is
//     a 400 naming it; a subject or prefix outside the caller's is 403
//     attenuation; PATCH may only narrow a prefix (400 otherwise).
//
//   - Rotation (see package authority): both rotate endpoints give a new
//     secret for a fresh ttl, the old one valid for the token's grace (a
//     body may ask for a shorter grace or ttl; longer is 400). An
//     Idempotency-Key header (1 to 128 printable ASCII characters, given
//     once; 400 invalid_request otherwise) makes a rotation safe to retry:
//     the same key, by the same token, with the same body, within the
//     grace period, answers 200 with the same body (the same new secret);
//     the same key with another body is 422 idempotency_key_reused; a
//     secret that a rotation replaced asking for another rotation is 409
//     already_rotated. The request compared is the route, the token id and
//     the body, byte for byte.
//
//   - Every change is recorded in the audit log before it is made (by the
//     authority's Recorder); every refused request is recorded too
//     (Options.Record). A change that cannot be recorded is refused with
//     503 audit_unavailable, and so is a refusal that cannot be recorded
//     (fail closed: nothing is answered unrecorded).
//
//   - Floods are bounded: a source that keeps sending malformed or
//     unknown tokens is slowed, then refused with 429 too_many_failures
//     and Retry-After for a cooling-off period, whatever token it sends
//     (Options.Throttle); below the data directory's low-space watermark
//     every request but /healthz and /readyz is refused with 503
//     storage_low before anything is recorded or changed, /readyz says
//     why, and service resumes by itself when space returns
//     (Options.Storage).
//
// Routes (the scope each needs in brackets; their wire types are in
// pkg/client):
//
//	POST   /v1/tokens                      [admin:tokens] create (attenuated)
//	GET    /v1/tokens                      [admin:tokens] list (subject, status, parent, after, limit)
//	GET    /v1/tokens/{id}                 [admin:tokens] show
//	PATCH  /v1/tokens/{id}                 [admin:tokens] change scopes and constraints
//	DELETE /v1/tokens/{id}[?cascade=true]  [admin:tokens] revoke
//	POST   /v1/tokens/{id}/rotate          [admin:tokens] new secret, old one valid for grace
//	POST   /v1/tokens/{id}/suspend         [admin:tokens]
//	POST   /v1/tokens/{id}/reinstate       [admin:tokens]
//	GET    /v1/tokens/self                 [any token]
//	POST   /v1/tokens/self/rotate          [any token]
//	POST   /v1/introspect                  [introspect] RFC 7662
//	POST   /v1/revoke                      [any token] RFC 7009: the holder of a secret may revoke it
//	POST   /v1/tokens/leaked[?cascade=true] [admin:tokens] report found secrets: each known one revoked, audited, alerted
//	GET    /v1/audit                       [admin:audit] search (itself audited)
//	GET    /v1/audit/checkpoint            [admin:audit]
//	GET    /v1/audit/proof?seq=N           [admin:audit]
//	GET    /v1/audit/key                   [none] the log's public verifier key
//	PUT    /v1/secrets/{name}              [admin:keys] upstream credentials, stored in the vault
//	GET    /v1/secrets                     [admin:keys] names and versions only
//	POST   /v1/keys/rotate-kek             [admin:keys]
//	POST   /v1/keys/rotate-dek/{purpose}   [admin:keys]
//	GET    /v1/keys/peppers                [admin:keys] live token pepper versions, live secrets of each
//	POST   /v1/keys/rotate-pepper          [admin:keys] new secrets hashed with a new pepper; old tokens keep working
//	POST   /v1/keys/retire-pepper/{version} [admin:keys] 409 pepper_in_use while a live token is hashed with it
//	GET    /console/...                    [a session] the web console (internal/console, Options.Console)
//	GET    /healthz, /readyz               [none] liveness; readiness (store, audit log, disk space)
//	GET    /metrics                        [admin:metrics] Prometheus (Options.Metrics; 404 without)
//	GET    /v1/openapi.json                [none] the OpenAPI 3.1 description of these routes
//
// openapi.yaml (embedded, served as JSON) is the OpenAPI source. Its tests
// hold it to the handlers: every route registered in this package is
// documented there and every path there is registered (openapi_test.go,
// which reads the patterns from the HandleFunc calls of the source), and
// internal/server's contract test sends every documented operation to the
// real server and validates each answer against the documented schema.
//
// With Options.Observer, every answer is reported (package obs): the
// route class from the path's first segments, the outcome from the status
// (2xx/3xx granted, 4xx denied, 5xx error), the error code as reason.
package api
