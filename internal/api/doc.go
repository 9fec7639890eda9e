// Package api is phigate's admin HTTP API: token management, RFC 7662
// introspection, RFC 7009 revocation, health and readiness. It is an edge:
// it turns HTTP into calls on the authority and back, and owns nothing else.
//
// Guarantees:
//
//   - Deny by default: every route but /healthz and /readyz authenticates a
//     phigate bearer token and checks the scope the route needs before it
//     does anything else.
//   - Every error answer is JSON {"error":{"code","message","request_id",
//     "field"}} with the right status; 401 and 403 carry an RFC 6750
//     WWW-Authenticate header. Internal errors are logged with the request
//     id and reach the client only as "internal".
//   - No answer, log line or error contains a token secret, except the one
//     answer that creates or rotates it.
//   - Limits are explicit: bodies over Options.MaxBody are refused with 413,
//     a body that is not application/json (form for introspection and
//     revocation) with 415, unknown JSON fields with 400 naming the field.
//
// The routes are listed in Handler; their wire types are in pkg/client.
package api
