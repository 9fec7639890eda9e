// Package oauth speaks OAuth 2 to stock clients: the registry of SMART
// Backend Services clients and the token endpoint that issues them
// short-lived phigate tokens for a signed assertion (RFC 7523, SMART App
// Launch 2 "Backend Services"), and (metadata.go) the RFC 8414 and SMART
// configuration documents.
//
// # Clients
//
// A client is registered (Service.Register, POST /v1/clients) by a token
// holding admin:clients, with a name, a key set (inline JWKS, or a
// jwks_url that MUST be https), scopes (system/… SMART v2 scopes and plain
// API scopes, never admin scopes) and the constraints of a token (CIDRs,
// hours, rate, purposes) and a max TTL of at most the endpoint's. The
// registration is attenuated like token creation: it is refused unless a
// token of those scopes and constraints, living max TTL from now, could be
// issued by the registering token. A key set holds at most 16 keys, each an
// RSA (≥ 2048 bits) or EC P-384 public key for signatures with distinct
// kids; a set holding a private key is refused whole. A revoked client
// (DELETE /v1/clients/{id}) stays revoked, and every live token issued to
// it is revoked with it.
//
// # The token endpoint
//
// POST /v1/oauth/token takes grant_type=client_credentials,
// client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
// client_assertion (a compact JWS) and optionally scope. The assertion is
// verified with go-jose, and is refused unless:
//
//   - its alg is RS384 or ES384 (none, HS*, RS256, PS*, ES256 are refused
//     by the parser, before any key is looked at);
//   - its kid names a key of the client's set (a set of exactly one key
//     may be used without kid); for a jwks_url client an unknown kid makes
//     the set be fetched again, at most once per 30 s per URL; a fetched
//     set is used for its Cache-Control max-age clamped to [1m, 1h] (5m
//     without one), so a key removed from the set stops working at the
//     next fetch;
//   - iss = sub = the client id, of an active client whose registering
//     token is not revoked;
//   - aud is (or, as an array, contains) the token endpoint URL exactly;
//   - exp is present, in the future and at most 5 minutes from now, after
//     iat and nbf when present (which may not be more than 30 s ahead);
//   - jti is present (≤ 256 bytes) and was not seen before for the client
//     within its exp (the store's replay cache, an atomic insert across a
//     restart and a cluster).
//
// The issued token is an ordinary phigate token of kind service, issued
// through the authority (audited as token.created with the client as the
// actor), whose ClientID is the client, CreatedBy and ParentID the token
// that registered it, subject the client's, scopes the requested ones (each
// within the registration, else invalid_scope; none requested: the
// registration's), the registration's constraints, and a life of the
// client's max TTL, at most the endpoint's TTL (default and hard cap 5
// minutes), never renewed. The answer is
// {"access_token","token_type":"Bearer","expires_in","scope"} with
// Cache-Control: no-store. Errors are RFC 6749 §5.2 objects (invalid_client
// 401; invalid_request, invalid_grant, invalid_scope, unsupported_grant_type
// 400) with phigate's request id; every refusal is audited as
// client.auth_failed with a reason code and never the assertion.
package oauth
