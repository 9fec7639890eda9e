// Package console is phigate's web console for compliance staff (a privacy
// officer, a security engineer on call), served by the admin listener at
// /console/ on the same TLS port as the admin API. Its pages are rendered
// on the server with html/template; the stylesheet and one small script
// (a copy button) are embedded; every page works without the script.
//
// Pages: an overview (requests per minute granted and denied by reason,
// tokens by status, tokens expiring in 24 hours, the audit log's size and
// last checkpoint's age, as server-rendered SVG); tokens (list with
// filters and paging, detail with constraints, lineage and last use;
// revoke with cascade, suspend, reinstate, rotate, narrow scopes, issue);
// the audit explorer (search, each entry expandable, a verification
// badge, export as JSON lines or a FHIR AuditEvent Bundle); the
// accounting of disclosures of one patient (45 CFR 164.528), printable,
// with the checkpoint and a downloadable file of proofs an auditor checks
// offline; and alerts (list, acknowledge).
//
// Guarantees:
//
//   - Login: a phigate token is pasted once into a form (POST, never a
//     URL) and verified by the authority exactly as the admin API
//     verifies a bearer token, behind the same brute-force guard
//     (Options.Throttle); refusals are recorded in the audit log
//     (Options.Record). The answer is a session cookie
//     (HttpOnly; Secure; SameSite=Strict; Path=/console/) whose value is
//     32 random bytes, not the token.
//   - The session acts as the token, never as more. The server keeps,
//     per session, the token id and the token's secret sealed with
//     AES-256-GCM under a key made at start and held only in memory
//     (bound to the session), never in plaintext and never on disk: the
//     console must present the secret to act as the token, and keeping
//     it sealed is what lets every request go through the one
//     verification path (authority.Verify) with no second, by-id way of
//     authenticating. Every request re-verifies it: a revoked, suspended,
//     expired or idle token, or a secret replaced by a rotation after its
//     grace, ends the session at the next click (a rotation of its own
//     token made in the console reseals the new secret into the session). Sessions also end after
//     Options.IdleTimeout without use, Options.MaxAge after login, at
//     logout, and at a restart (the sealing key dies with the process).
//     Each console request is one use of the token, as an API call is:
//     its rate limit, remaining uses, networks and hours apply.
//   - Every action goes through the authority under that token (the
//     calls the admin API makes: Create, Revoke, SetStatus, RotateWith,
//     Update, the alert store's ack after its audit record), so
//     attenuation, manageability and audit are the API's, and every
//     change is audited as that token. Pages that show audit entries
//     record an audit.read entry first, as the API's search does.
//   - A page or action the token's scopes do not allow answers 403 with
//     the scope it needs ("Your token cannot read the audit log: it needs
//     scope admin:audit"), and no page shows a form the token cannot use.
//   - Every POST carries the session's CSRF token (compared in constant
//     time; the login form has a double-submit one) and is refused
//     (403) without it, as is a POST a browser says came from another
//     site. Every answer carries Content-Security-Policy: default-src
//     'none'; style-src 'self'; script-src 'self'; img-src 'self' data:;
//     form-action 'self'; frame-ancestors 'none'; base-uri 'none',
//     X-Frame-Options: DENY, Referrer-Policy: no-referrer, and pages with
//     data Cache-Control: no-store. No page has inline script or style.
//   - A secret is shown once: in the answer to the POST that created or
//     rotated it, never in a URL, a cookie or a log.
//   - The audit badge: for the entries a page shows, the console fetches
//     their inclusion proofs in one batch (audit.Log.Proofs) and checks
//     each it with only the log's public
//     key against the latest signed checkpoint (signing a fresh one when
//     the latest does not cover them yet), and says so, or says which
//     entry failed and why.
//   - Bounded cost: explorer pages of 100 entries by cursor (never by
//     offset), token pages of 100 reading at most 2000 records, exports of
//     at most 10000 entries built whole before a byte is sent, the
//     overview reading at most 20000 entries of the last hour and 20000
//     tokens, cached for 10 seconds per token; forms at most
//     Options.MaxForm bytes, fields at most 256 bytes.
package console
