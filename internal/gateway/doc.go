// Package gateway is phigate's enforcing gateway: a TLS reverse proxy that
// stands in front of the APIs holding PHI and forwards a request only when
// the token it carries, the token's scopes and every one of its constraints
// allow it, after a durable record of the grant; and a forward-auth endpoint
// that lets nginx, Envoy or Traefik ask the same question without the proxy.
//
// # Guarantees
//
//   - Deny by default. A request is forwarded only when every check below
//     passed; a path no upstream prefix covers, a method and path no route
//     covers, a FHIR request that is not a recognised interaction, an
//     $operation without a configured scope: all are refused.
//   - Fail closed. A technical failure of the token authority is a 503; a
//     grant that cannot be recorded durably is a 503 and nothing is
//     forwarded (Recorder); so is a refusal that cannot be recorded (503
//     audit_unavailable instead of its 4xx). Below the disk's low-space
//     watermark (Options.Storage) every request is refused with 503
//     storage_low before anything is recorded, and served again as soon
//     as space returns.
//   - Nothing goes upstream before its grant is durable: Record of the grant
//     returns before the first byte is sent.
//   - The client's credential never reaches an upstream, and no client can
//     impersonate the gateway's identity headers.
//   - No token secret appears in an event, a log line or an error message.
//   - No request smuggling: requests with both Content-Length and
//     Transfer-Encoding, several differing Content-Lengths or a
//     Transfer-Encoding other than chunked are refused, and the framing of
//     every request is followed (see Framing).
//
// # The request path
//
// For each request to the gateway's listener (TLS 1.2+, HTTP/1.1):
//
//  1. Whatever the path (reserved ones and forward auth included), before
//     anything is authenticated: the framing guard (see Framing); TRACE
//     and CONNECT are refused (405 method_not_allowed): an upstream
//     answers TRACE by echoing the request, the injected credential
//     included; then the headers (400 invalid_request). A header that the
//     decision or an upstream reads as a single value must come at most
//     once: Authorization, Content-Type, Content-Length (also two equal
//     lines, which net/http would merge), Content-Encoding, Host,
//     X-Purpose-Of-Use, X-Break-Glass, Prefer, If-Match, If-None-Match,
//     If-None-Exist, every X-Original-* header, X-Forwarded-Method and
//     X-Forwarded-Uri (servers disagree on which of two lines counts: a
//     POST _search with a form Content-Type then a JSON one would be
//     decided on its form body and served by a server keeping the last
//     without it). Content-Type and Host must not name two values on one
//     line (a "," outside a quoted string). A GET or HEAD must not carry
//     a body (Content-Length above 0, or Transfer-Encoding): it is decided
//     on its URL, and an upstream reading the body would act on bytes
//     nobody checked. While Options.Storage reports low space, every
//     request but /healthz and the identity key is answered 503
//     storage_low (Retry-After) right after the framing guard, before
//     anything is recorded.
//  2. Reserved paths are answered by the gateway itself: /healthz,
//     /.well-known/phigate-identity-key (the identity key, a JWK Set) and
//     /v1/authz[/…] (forward auth, below). They win over any prefix.
//     The path must be canonical: no empty segment except a
//     final one, no "." or ".." segment (also percent-encoded), no encoded
//     "/" or "\", no control character (400 invalid_request otherwise). The upstream
//     whose prefix is the longest one the path starts with is chosen (404
//     not_found when none); its prefix is replaced by the path of its URL.
//  3. The client address is the connection's peer; only when the peer is in
//     gateway.trusted_proxies is X-Forwarded-For walked from the right to
//     the first address that is not a trusted proxy. A malformed entry makes
//     the client unknown: network-restricted tokens then refuse.
//     Then the checks of forwarding (below), and the public requests of a
//     fhir upstream, which need no token (see Public metadata): the
//     capability statement, served from here without steps 4 to 7, and
//     <prefix>.well-known/smart-configuration, 404 not_found.
//  4. Authentication: "Authorization: Bearer phi_…" (401 missing_token
//     without; the authority's reasons otherwise). A source that sent too
//     many malformed or unknown tokens (Options.Throttle, counted per
//     IPv4 address or IPv6 /64) waits before its token is looked at, then
//     is refused outright for a cooling-off period (429 too_many_failures
//     with Retry-After), whatever token it sends. Then the token's
//     request-independent constraints: status, expiry, idle timeout, source
//     network, hours, purpose of use (X-Purpose-Of-Use: an HL7 v3
//     PurposeOfUse code; 400 invalid_purpose for another value).
//  5. Break-glass: a token with BreakGlass set is usable only with
//     "X-Break-Glass: <justification>" (1 to 512 bytes of printable text,
//     not only blanks) and X-Purpose-Of-Use: ETREAT (403
//     break_glass_required); its scopes are its emergency scopes. Any other
//     token sending X-Break-Glass is refused (403 break_glass_denied).
//     Every break-glass request is recorded with BreakGlass and the
//     justification.
//  6. Authorization for the resource: the scope the request needs (FHIR or
//     http, below).
//  7. The monitor (Options.Monitor, internal/monitor), when set: its
//     inline detectors may refuse this very request (403 with the
//     detector's reason, anomaly_new_network or off_hours, when the
//     token's monitor.* policy says block; 429 too_many_failures with
//     Retry-After for a source cooling off). Nothing has been consumed
//     or forwarded then.
//  8. Admission: the rate limit (429 rate_limited with Retry-After), then
//     one use (403 uses_exhausted; never exceeded under concurrency).
//  9. The grant is recorded durably (503 audit_unavailable otherwise).
//  10. Forwarding (below): the answer of a fhir upstream is checked
//     against the token's patient compartment where the request needs it,
//     and its URLs are rewritten (see Answers of fhir upstreams); then the
//     completion (status, bytes, duration, notes) is recorded.
//
// Every refusal is recorded with its reason before it is answered; one
// that cannot be recorded is answered 503 audit_unavailable instead.
// With a monitor, every recorded grant, completion and denial of an
// identified token is then observed (Monitor.Observe, with the audit
// sequence number a SeqRecorder reports): the windowed detectors (rate
// spikes, probing, sharing, break-glass) raise alerts and suspend tokens
// from there, within a second, off the request path. Forward auth (below)
// decides with the same steps 3 to 9.
//
// # http upstreams
//
// Routes map "METHOD /path-pattern" to the scope required (see package
// route for the grammar): "GET /invoices/*" → billing:read. The most
// specific route that matches decides; none matching is 403 no_route. A
// path holding ";" (also %3B) is refused (400 invalid_request): servers
// such as Tomcat and Spring drop path parameters, and would serve another
// route than the one checked. Literal segments match as written; a path
// whose most specific route, read as a lenient server reads it
// (route.MatchLenient: letter case ignored, blanks around a segment
// trimmed, the last segment's ".ext" suffix dropped, a trailing "/"
// ignored), is another one needing another scope is refused (400
// invalid_request): with GET /invoices/secret → billing:admin and GET
// /invoices/* → billing:read, /invoices/SECRET, /invoices/secret.json,
// /invoices/secret%2Ejson and /invoices/secret%20 would otherwise go
// upstream with billing:read, and an upstream routing case-insensitively
// (ASP.NET Core, Express by default), with suffix pattern matching
// (Spring MVC, Rails' optional format) or trimmed paths would serve the
// secret route. A path that no route matches as written but one does
// leniently (/invoices/secret/) is 403 no_route. A route cannot need a
// patient/ scope (configuration refuses it, and a token holding one only at patient level
// never satisfies a route): an http path has no compartment the gateway
// could check. A plain scope is checked with scope.Set.Has ("billing:*" covers
// "billing:read"), a SMART scope by coverage.
//
// # fhir upstreams
//
// The path below the prefix is read as a FHIR R4 RESTful request, and the
// SMART v2 permission it needs follows from the interaction:
//
//	GET  [type]/[id]                          read              r
//	GET  [type]/[id]/_history/[vid]           vread             r
//	GET  [type]/[id]/_history                 history-instance  r
//	GET  [type]/_history, GET _history        history           s
//	GET  [type]?…, POST [type]/_search        search-type       s
//	GET  ?…, POST _search                     search-system     s   (resource *)
//	GET  [ctype]/[cid]/[type|*]?…             search-compartment s
//	POST [type]                               create            c
//	PUT  [type]/[id], PUT [type]?…            update            u
//	PATCH [type]/[id], PATCH [type]?…         patch             u
//	DELETE [type]/[id], DELETE [type]?…       delete            d
//	GET  metadata                             capabilities      (public; see below)
//	POST (base) with a Bundle                 batch/transaction (each entry)
//	[[type]/[[id]/]]$name                     operation         (configured)
//
// HEAD is GET. Anything else (a POST to an instance, a lower-case type, an
// id with characters outside [A-Za-z0-9-.]) is 400 invalid_request. A
// request is allowed when one scope of the token grants the permission on
// the type (scope.Set.Grants) and also satisfies:
//
//   - Restrictions. A granular scope ("user/Observation.rs?category=laboratory")
//     grants only searches (not reads, history or writes, whose result the
//     gateway cannot see) whose parameters include each restriction, with
//     every occurrence of that parameter equal to the restricted value (no
//     comma alternatives).
//   - The patient compartment. A patient/ scope needs a token bound to a
//     patient (PatientID) and reaches only that patient's data: read,
//     vread, history, update, patch and delete of Patient/{id}; read,
//     vread and instance history of a type of the R4 Patient compartment
//     (fhir.InPatientCompartmentType) other than Group, which would show
//     its other members (fhir.WithheldFromPatients), checked on the answer
//     (below); searches of Patient with
//     _id={id}; searches of other types with patient={id},
//     patient=Patient/{id}, subject=Patient/{id} or subject:Patient={id}
//     (a bare subject={id} could name a Group; every occurrence of these
//     parameters must name the patient, and each must be one the type
//     defines in FHIR R4: patient= on Group is refused, since a lenient
//     server would ignore it); compartment searches Patient/{id}/…;
//     conditional delete constrained like a search; conditional update
//     constrained like a search whose resource is for the patient (as a
//     create's); creates (JSON) whose subject or patient reference is
//     Patient/{id} and which reference no other Patient anywhere
//     (performer, contained resources: any "reference" naming a Patient).
//     Reads of other Patients and of types outside the compartment
//     (Practitioner, Organization, …), updates, patches and deletes of
//     other types by id (whose the resource is shows only once it has
//     changed), type and system history, system searches and conditional
//     patch (the patch could move the resource to another patient) are
//     refused with 403 compartment. A batch entry that would need its
//     answer checked is refused the same way.
//   - If-None-Exist (a conditional create, also request.ifNoneExist in a
//     Bundle) is a search the server runs, and its answer shows whether
//     anything matched: it needs the permission of that search of the
//     created type, compartment and restrictions included.
//   - FHIR upstreams are sent "Prefer: handling=strict" (the client's other
//     preferences kept), so that a server refuses a search parameter it
//     does not know rather than dropping one the gateway relied on;
//     $operations and the capability statement keep the client's Prefer
//     (bulk $export wants respond-async alone).
//   - _include and _revinclude (search results of other types) need an
//     unrestricted user or system scope for what they add: read on the
//     named target type (or on * when none is named) for _include, search
//     on the source type for _revinclude. For a token bound to a patient,
//     an _include that only a patient/ scope covers, or that names no
//     target type, is allowed with its answer checked: included entries
//     outside the compartment, or of a type the token may not read
//     unrestricted, are removed.
//
// POST _search reads its form body (application/x-www-form-urlencoded) and
// combines it with the URL's query, as FHIR does; its Content-Type must be
// exactly application/x-www-form-urlencoded in lower case (parameters
// allowed), as Tomcat and HAPI compare it, with no charset or
// charset=utf-8 (415 unsupported_media_type otherwise: a server decoding
// another charset would read other values than the ones checked). A body the gateway reads
// to decide (POST _search, batch/transaction, patient-bound creates and
// conditional updates) must not carry a Content-Encoding (415
// unsupported_media_type): the upstream would act on other bytes than the
// ones checked. Queries holding ";" or
// invalid percent-encoding are refused (some servers split on ";").
//
// $operations are refused unless the upstream's configuration names them
// (name, optional resource type, scope). The rule for the request's type
// wins over the one for "*". A token holding the configured scope only at
// patient level (patient/… required, no user/ or system/ equivalent) is
// bound to its compartment: Patient/{id}/$op, or a type-level GET with the
// compartment parameters in the URL (a POSTed Parameters body could name
// another patient).
//
// A batch or transaction (a JSON Bundle POSTed to the base) is read, up to
// gateway.limits.max_inspect_bytes (413) and max_bundle_entries, and each
// entry's request is checked as if it were sent on its own; one refused
// entry refuses the whole Bundle, naming the entry. The Bundle must be
// valid UTF-8 JSON without duplicate keys anywhere (two parsers could
// disagree on which one counts); entries use URLs relative to the base;
// nested batches are refused.
//
// # Public metadata
//
// FHIR and SMART clients read the capability statement before they have a
// token. GET or HEAD of exactly <prefix>metadata of a fhir upstream, its
// query at most one _format naming JSON (json, application/json,
// application/fhir+json, application/json+fhir; encoded, since a "+"
// reads as a space) and at most one mode (full, normative, terminology),
// is answered without a token; a token sent with it is ignored (neither
// checked nor forwarded). Any other form (XML, _summary, another path)
// is an ordinary capabilities interaction: any valid token.
//
// Public requests are limited per source (IPv4 address or IPv6 /64) to
// gateway.metadata.per_minute with a burst of gateway.metadata.burst (429
// rate_limited with Retry-After beyond), in bounded memory
// (gateway.metadata.max_sources sources; when the table is full, sources
// whose allowance is whole again are forgotten first, then the one of a
// few closest to it). Each is recorded like a token's request, with
// Event.Public set, subject PublicSubject and no token id (the server's
// audit entries: actor kind "public"), its grant durably before it is
// forwarded; the upstream is asserted subject PublicSubject and token id
// PublicTokenID, asked for application/fhir+json, uncompressed.
//
// The upstream's 200 answer is read whole, up to gateway.metadata.max_bytes
// (502 response_too_large beyond), and must be one JSON object with unique
// keys (502 upstream_unavailable otherwise, as for a compressed or non-JSON
// answer: it is never passed on without the gateway's declaration). In a
// CapabilityStatement each rest entry whose mode is not client gets as its
// security the gateway's: the SMART-on-FHIR service coding
// (http://terminology.hl7.org/CodeSystem/restful-security-service,
// SMART-on-FHIR) and a description (the upstream's security says how the
// gateway reaches it, not how clients reach the gateway); a statement
// without such an entry gets one. Every other member stays as the
// upstream wrote it, byte for byte and in order. Another resource type
// (TerminologyCapabilities) and other statuses pass unchanged. The SMART
// oauth-uris extension, and a SMART configuration at
// <prefix>.well-known/smart-configuration, come once the gateway has an
// OAuth token endpoint; until then that path is 404 not_found.
//
// # Forwarding
//
// Requests that would reach the upstream as another request than the one
// decided are refused (400 invalid_request): a protocol upgrade (Upgrade:
// websocket, h2c; after a 101 the connection would be a tunnel to the
// upstream, nothing on it decided, recorded or counted); a Connection
// header naming anything but close, keep-alive or TE (the proxy drops the
// headers it names, Content-Type included); a method override
// (X-HTTP-Method-Override, X-Method-Override, X-HTTP-Method, or such a
// query parameter, or _method).
//
// The upstream receives the client's method, path (prefix replaced), query
// and body, streamed both ways (bodies the gateway had to read are
// re-sent as read). The gateway removes Authorization, Proxy-Authorization,
// every X-Phigate-* header, X-Purpose-Of-Use, X-Break-Glass, Forwarded,
// X-Real-IP, every X-Forwarded-* header, X-Original-URL and X-Rewrite-URL
// (some servers route by them), hop-by-hop headers and every header whose
// name holds "_" (CGI, WSGI, Rack and PHP read X_Phigate_Subject as
// X-Phigate-Subject), and sets:
//
//	<credential>        the upstream's credential (bearer, basic or a named header)
//	X-Request-Id        the client's when valid ([A-Za-z0-9._-]{1,64}, not starting
//	                    with the gateway's own "gw-"), else a new one
//	X-Forwarded-For     the client chain when the peer is a trusted proxy, then the peer
//	X-Forwarded-Proto   https
//	X-Forwarded-Host    the Host the client asked for
//	X-Phigate-Subject   the token's subject
//	X-Phigate-Token-Id  the token's public id
//	X-Phigate-Purpose   the purpose of use, when given
//	X-Phigate-Break-Glass  "true" under break-glass
//	X-Phigate-Identity  a signed assertion of all this (below)
//
// An exchange cut short (the client went away or stalled, the upstream
// broke off its answer) is recorded as a completion too, with reason
// aborted, the bytes that got through and 499 (client) or 502; the
// connection is then dropped rather than answered. Informational answers
// of the upstream (1xx) are not passed on; net/http answers a client's
// Expect: 100-continue itself, and Expect is not forwarded.
//
// Of the upstream's answer, Set-Cookie, WWW-Authenticate and
// Proxy-Authenticate are dropped, Location and Content-Location naming
// the upstream's own URL are rewritten to the gateway's, and a 401 or 407
// (the upstream refusing the gateway's credential, not the client's) is
// answered 502 upstream_unavailable without its body.
//
// # Answers of fhir upstreams
//
// Compartment checks. An answer that a patient/ token may see only once
// checked (a 2xx to read, vread or instance history of a compartment type,
// a search with such an _include) is read whole, up to the upstream's
// max_checked_body (default 8 MiB; a larger one, declared or read, is 502
// response_too_large), and must be FHIR JSON without Content-Encoding (502
// upstream_unavailable otherwise). A resource read must be of the id asked
// for and in the compartment (fhir.InPatientCompartment: one of the
// references its type's compartment parameters search names
// Patient/{id}); a history keeps only the versions that are (and is
// refused when none is); a searchset loses the included entries that are
// not. A refused answer is 403 compartment, or 404 not_found when the
// upstream's config says hide_existence; no byte of it reaches the
// client. Bundle keys differing from entry, resource, search or mode only
// in letter case are refused (Go clients read them as those). The
// completion's notes record "include_removed=N".
//
// Links. In a FHIR JSON answer (application/fhir+json or
// application/json), Bundle.link[].url, Bundle.entry[].fullUrl,
// Bundle.entry[].link[].url, Bundle.entry[].response.location and
// CapabilityStatement.implementation.url naming the upstream's base
// become the gateway's, https://<Host asked for><prefix>…, in one
// streaming pass (rewrite.go: memory bounded by a 32 KiB buffer, one URL
// of up to 8 KiB, or the root link array of up to 64 KiB; a body it
// cannot follow there ends the answer with a dropped connection, never a
// half-rewritten one); an answer of up to 64 KiB that declares its length
// is rewritten whole instead and sent with its new length, in one write.
// Links elsewhere are left alone and counted
// ("foreign_links=N"). A non-JSON answer (_format=xml) passes as it is,
// recorded "not_rewritten": the gateway serves FHIR JSON only for what it
// must check or rewrite. FHIR upstreams are not sent the client's
// Accept-Encoding, so that answers come uncompressed; one compressed all
// the same is refused (502).
//
// Continuations. The next, previous (prev), first and last links of the
// answer to a search or history become <prefix>_page/<handle>: base64url
// of a ciphertext (Options.Continuations; the server's is the vault's
// data key of purpose continuation) of the search (path and query, a
// POST _search's form included), the upstream page (below its base) and
// an expiry (continuation_ttl, default 10 min), bound to the token's id
// and the upstream. A GET of it is decided as that search for the token
// presenting it (every check above again, so a token that lost the scope
// since is refused), recorded with the search as Path and Query and the
// page as Page, and forwarded to the page; its answer's links become
// continuations of the same search. A handle of another token, altered,
// expired, with a query or under another method is refused (403
// invalid_continuation, 405) before anything goes upstream. Upstream
// continuations such as HAPI's ?_getpages= are system-level requests
// otherwise refused to patient/ tokens: reached only through a handle.
//
// Upstream TLS is verified (the system roots, a CA file, SPKI pins, or a CA
// file and pins); plain http only where the configuration says
// allow_plain_http. With pins (one or more: a current key and a backup,
// for rollover), the leaf's key must be pinned, after the chain when a CA
// file is given; a key that is not is refused before anything is sent
// (502 upstream_unavailable), and the log line "upstream TLS key is not
// pinned: refused" names the upstream and the pin seen (pin_seen). Upstream failures are answered 502
// upstream_unavailable, an answer slower than timeouts.response 504
// upstream_timeout. Once a request is granted, limits.read_timeout and
// limits.write_timeout bound each read of its body and each write of the
// answer (after timeouts.response for the first), not the whole exchange:
// a large upload or download that keeps moving is not cut, a stalled
// client is.
//
// # Identity assertion
//
// X-Phigate-Identity is a compact JWS (RFC 7515) over the claims
//
//	{"iss":"phigate-gateway","sub":"<subject>","tid":"<token id>",
//	 "purpose":"<code>","method":"GET","path":"<upstream path, escaped>",
//	 "qh":"<base64url(SHA-256(raw query))>","rid":"<request id>",
//	 "aud":"<upstream name>","bg":true,"iat":<unix seconds>,"exp":<iat+60>}
//
// (purpose, qh and bg omitted when empty; qh is QueryHash of the query as
// sent upstream, without "?"), under one of two protected headers,
// as the configuration chooses for each upstream (its identity section,
// else gateway.identity):
//
//	{"alg":"EdDSA","kid":"<RFC 7638 thumbprint>","typ":"phigate-identity+jwt"}
//	{"alg":"HS256","kid":"<HMACKeyID>","typ":"phigate-identity+jwt"}
//
// The two algorithms:
//
//   - EdDSA, the default: an Ed25519 signature (RFC 8037) with the
//     gateway's key, generated at first start
//     (<data>/keys/gateway-identity.key, PKCS #8 PEM, mode 0600) and
//     published at /.well-known/phigate-identity-key as a JWK Set. No
//     upstream holds a secret, and none can mint an assertion. Signing
//     costs about 25 µs of CPU per request (BenchmarkSign, 2-core AMD
//     EPYC), a quarter more than the 100 µs of a whole exchange through
//     the gateway with HS256 (BenchmarkProxy: client, gateway and
//     upstream in one process).
//   - HS256: HMAC-SHA256 (RFC 7518 §3.2) under a key shared with the
//     upstream: identity.key names it (env:, file: or secret:), at least
//     32 bytes, used as they are (no decoding; for example the 64
//     characters of `openssl rand -hex 32`). About 1 µs per request. The
//     key is never published; its kid is the first 16 characters of
//     base64url(SHA-256("phigate-identity-kid" || 0x00 || key)), which
//     names it during a rotation without revealing it. Whoever holds the
//     key can mint assertions, so each upstream should have a key of its
//     own: a key set in gateway.identity is shared by every upstream
//     without one, and each of them could then mint assertions that the
//     others accept unless they check aud (VerifyRequestHS256 does).
//
// An upstream verifies with VerifyRequestFor (EdDSA; VerifyRequest does
// not check aud) or VerifyRequestHS256
// (Go), or any JOSE library: the algorithm is the one the verifier expects
// for this upstream, never the one the header names (an EdDSA verifier
// refuses HS256 and the reverse), typ, the signature, iss, iat/exp (5 s
// skew, a lifetime of at most 5 minutes), aud (the upstream's name:
// assertions of other upstreams, and forward-auth ones for them, are
// refused), method, path and qh equal to the request's; and it uses
// the claims rather than the plain headers.
//
// Every assertion is signed for its request; none is cached. One
// assertion per token and upstream, cached for its minute, would make
// Ed25519 nearly free, but it would be good for any method and path of
// that upstream: whoever read one (in an upstream's log, a debugging
// proxy, a heap dump) could replay it directly to the upstream for other
// patients' records until it expires. Bound to method, path, query and
// request id, a replay can only repeat the same request line within 60 s
// (an upstream that must refuse even that remembers rid until exp). The
// body is not bound (it streams after the headers): a replayed POST or
// PUT could carry another body, so an upstream that cares remembers rid.
// Where Ed25519's cost matters, HS256 keeps that binding for a twentieth
// of it.
//
// # Forward auth
//
// /v1/authz decides the request a proxy describes, records the decision,
// and answers 200 with the identity headers above (X-Phigate-Subject,
// X-Phigate-Token-Id, X-Phigate-Purpose, X-Phigate-Identity — the path in
// the assertion is the original one, its signature the one configured for
// the upstream whose prefix that path matches) or the refusal (401, 403,
// 429, 400; 503 when the grant cannot be recorded). It forwards nothing.
// The original request is read from one of:
//
//	nginx auth_request   X-Original-Method, X-Original-URI   (set them, below)
//	Traefik ForwardAuth  X-Forwarded-Method, X-Forwarded-Uri
//	Envoy ext_authz      the call's own method, and its path after /v1/authz
//	                     (http_service.path_prefix: /v1/authz)
//
// A proxy's two headers come together, each once (400 invalid_request when
// one is missing or repeated): the call's own method stands for the
// original one only for Envoy (nginx's subrequest is a GET whatever the
// client sent). A call that carries more than one of them is refused with
// 400: proxies pass the client's own headers on to the auth call, so the
// others may be the client's. The client address is the caller's peer address, unless
// the caller is a trusted proxy: then X-Forwarded-For as for the proxy, or
// X-Real-IP when there is no X-Forwarded-For. When both are there they
// must name the same client, else the client is unknown and a token with
// source networks is refused (nginx sets X-Real-IP but passes on the
// client's X-Forwarded-For; Envoy appends to X-Forwarded-For but passes on
// the client's X-Real-IP). The upstream whose prefix the original path starts with
// supplies the rules; upstreams without a URL exist for forward auth only.
// The caller must pass the client's Authorization, X-Purpose-Of-Use and
// X-Break-Glass headers (nginx does; configure Envoy's allowed_headers).
// Requests whose decision needs the body (POST _search, batch/transaction,
// patient-scoped creates) are refused with 403 body_unavailable, and so
// are those a patient/ token is allowed only once the answer is checked
// (reads by id of compartment types, _include): forward auth never sees it. nginx maps
// any answer but 2xx, 401 and 403 to 500; a 429 reaches its client as 500.
//
// A minimal nginx configuration (nginx passes the client's headers on: set
// every identity header, and clear Traefik's in the auth call):
//
//	location / {
//	    auth_request /_phigate;
//	    auth_request_set $phigate_subject  $upstream_http_x_phigate_subject;
//	    auth_request_set $phigate_token_id $upstream_http_x_phigate_token_id;
//	    auth_request_set $phigate_purpose  $upstream_http_x_phigate_purpose;
//	    auth_request_set $phigate_bg       $upstream_http_x_phigate_break_glass;
//	    auth_request_set $phigate_identity $upstream_http_x_phigate_identity;
//	    proxy_set_header Authorization         "";
//	    proxy_set_header X-Phigate-Subject     $phigate_subject;
//	    proxy_set_header X-Phigate-Token-Id    $phigate_token_id;
//	    proxy_set_header X-Phigate-Purpose     $phigate_purpose;
//	    proxy_set_header X-Phigate-Break-Glass $phigate_bg;
//	    proxy_set_header X-Phigate-Identity    $phigate_identity;
//	    proxy_pass http://app;
//	}
//	location = /_phigate {
//	    internal;
//	    proxy_pass https://127.0.0.1:9443/v1/authz;
//	    proxy_ssl_server_name on;
//	    proxy_ssl_verify on;
//	    proxy_ssl_trusted_certificate /etc/phigate/tls.crt;
//	    proxy_pass_request_body off;
//	    proxy_set_header Content-Length "";
//	    proxy_set_header X-Original-Method $request_method;
//	    proxy_set_header X-Original-URI $request_uri;
//	    proxy_set_header X-Real-IP $remote_addr;
//	    proxy_set_header X-Forwarded-Method "";
//	    proxy_set_header X-Forwarded-Uri "";
//	}
//
// # Errors
//
// Every refusal is JSON, {"error":{"code","message","scope","request_id"}},
// with X-Request-Id, except for requests routed to a fhir upstream (a path
// under its prefix; forward auth and the gateway's own paths excepted):
// those, every one (the framing, method and header checks before
// authentication, 401, 403, 429, 503, the upstream's 502 and 504), are a
// FHIR OperationOutcome, Content-Type application/fhir+json, with the
// same status and headers:
//
//	{"resourceType":"OperationOutcome","id":"<request id>","issue":[{
//	  "severity":"error","code":"<FHIR issue type>",
//	  "details":{"coding":[{"system":"urn:phigate:reason","code":"<reason code>"}],
//	             "text":"<message>"},
//	  "diagnostics":"request id <request id>"}]}
//
// (id only when the request id is a FHIR id: a client's may hold "_").
// The issue type follows the reason code: login for the credential's 401s;
// forbidden for a privilege the token lacks or a request no token may make
// (insufficient_scope, compartment, no_route, network_denied,
// outside_hours, purpose_denied, uses_exhausted, break-glass); security
// for ambiguous_framing and invalid_continuation; throttled for
// rate_limited and too_many_failures; not-found; invalid for the request
// itself (invalid_request, invalid_purpose, unsupported_media_type,
// method_not_allowed); too-long for payload_too_large and
// response_too_large; exception for internal and upstream_unavailable;
// transient for unavailable, audit_unavailable, storage_low and
// upstream_timeout. A code without its own type takes its status's.
//
// 401 and the 403s of a token's privileges carry an RFC
// 6750 challenge, WWW-Authenticate: Bearer realm="phigate" and:
//
//   - 401 without a token: nothing more (RFC 6750 §3.1);
//   - 401 with one: error="invalid_token" and the authority's reason as
//     error_description;
//   - 403 when the token lacks a privilege (a scope, a constraint such as
//     its networks or hours, break-glass): error="insufficient_scope",
//     an error_description saying which, and scope="…" only when that
//     scope would do (not for a granular scope's missing parameters,
//     where the scope named is the token's own);
//   - 403 compartment: error="insufficient_scope", error_description="the
//     request is outside the token's patient compartment", and no scope
//     (the token holds it; the patient is what it may not reach);
//   - 403 that no token would pass (no_route, an $operation not
//     configured, a break-glass token's request without its headers): no
//     error (none of RFC 6750's says what happened), only the
//     error_description.
//
// Refusals of the request itself (400, 404, 413, 415, body_unavailable)
// and of the upstream's answer (502 response_too_large, a 404 of
// hide_existence) carry no challenge; 403 invalid_continuation carries
// only its error_description.
// Codes: the authority's (invalid_token, token_expired, token_revoked,
// token_suspended, token_idle, token_rotated, network_denied,
// outside_hours, purpose_denied, rate_limited, uses_exhausted,
// insufficient_scope, unavailable) and the gateway's (the Code* constants,
// CodeInvalidContinuation and CodeResponseTooLarge among them).
//
// # Recording
//
// Decisions go to a Recorder whose Record MUST NOT return nil before the
// event is durable. The server records them in the audit log (an adapter
// in internal/server); FileRecorder serves without one: one JSON object per
// line (Event's fields), appended with group commit. The server's adapter
// records the refusals of requests that never authenticated aggregated
// (internal/preauth: per source and reason, the first few of a window in
// full, then one summary entry with the count), which satisfies the
// contract: a refusal is recorded once it is counted. Completions use
// AsyncRecorder when the recorder offers it, and are otherwise recorded
// from a goroutine that Shutdown waits for. Every event of a request that
// was classified names its interaction (Event.Interaction: the FHIR
// interaction, "transaction" apart from "batch", or "route" for an http
// upstream), which the audit log keeps for its FHIR AuditEvent export.
//
// # Framing
//
// The gateway terminates TLS itself and speaks HTTP/1.1 only: beneath
// net/http it follows the framing of every request on a connection (heads,
// Content-Length bodies, chunked bodies and trailers) and notes each head's
// request line and whether it carried both Content-Length and
// Transfer-Encoding. The handler refuses a request whose head was
// ambiguous, or whose request line differs from the one noted, with 400
// ambiguous_framing and closes the connection. (net/http alone would drop
// the Content-Length and accept.) A head with more than one Content-Length
// line is refused too, even when they agree (400 invalid_request, the
// connection closed): net/http merges equal ones. A malformed chunked body is detected by
// net/http as it streams: the upstream sees an aborted request, never a
// second one. A head with a folded line (obs-fold) is refused the same way
// (RFC 9112 §5.2). Up to 4 CR or LF bytes after a POST are skipped, as
// net/http does; up to 128 pipelined heads may wait on a connection.
//
// Some malformed requests are refused by net/http itself before the
// handler runs, in plain text without a request id and without an audit
// record: a missing, repeated or invalid Host (400), an Expect other than
// 100-continue (417), a head over limits.max_header_bytes (431), a
// Transfer-Encoding other than chunked (501), a version other than
// HTTP/1.x (505). None of them reaches an upstream.
package gateway
