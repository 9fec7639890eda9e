package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/token"
)

// wantOutcome checks that r is the FHIR-shaped refusal the contract
// describes, with status, reason code and FHIR issue type, and returns it.
func wantOutcome(t *testing.T, name string, r reply, status int, code, issue string) outcomeBody {
	t.Helper()
	var oo outcomeBody
	if r.status != status {
		t.Errorf("%s: status %d, want %d: %s", name, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+json" {
		t.Errorf("%s: Content-Type %q, want application/fhir+json", name, ct)
	}
	if err := json.Unmarshal([]byte(r.body), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 {
		t.Errorf("%s: not an OperationOutcome with one issue (%v): %s", name, err, r.body)
		return oo
	}
	is := oo.Issue[0]
	switch {
	case oo.ID != r.rid || r.rid == "":
		t.Errorf("%s: id %q, X-Request-Id %q", name, oo.ID, r.rid)
	case is.Severity != "error" || is.Code != issue:
		t.Errorf("%s: severity %q code %q, want error %q", name, is.Severity, is.Code, issue)
	case len(is.Details.Coding) != 1 || is.Details.Coding[0].System != ReasonSystem || is.Details.Coding[0].Code != code:
		t.Errorf("%s: details.coding %+v, want %s %s", name, is.Details.Coding, ReasonSystem, code)
	case is.Details.Text == "":
		t.Errorf("%s: no details.text", name)
	case is.Diagnostics != "request id "+r.rid:
		t.Errorf("%s: diagnostics %q", name, is.Diagnostics)
	}
	// the body carries no phigate JSON error besides
	if strings.Contains(r.body, `"error":{`) {
		t.Errorf("%s: the OperationOutcome holds a JSON error: %s", name, r.body)
	}
	return oo
}

// TestFHIRUpstreamRefusalsAreOperationOutcomes: every refusal of a request
// routed to a fhir upstream — before authentication, of the token, of the
// request, 429, 503 and the upstream's failures — is an OperationOutcome
// with the reason code in issue.details, the request id, the FHIR issue
// type of the reason, and the same status and RFC 6750 challenge as the
// JSON error.
func TestFHIRUpstreamRefusalsAreOperationOutcomes(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "pat-1", Scopes: []string{"patient/Observation.rs"}})
	user, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	rate, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}, Rate: &token.Rate{PerSecond: 0.001, Burst: 1}})
	_, revRec := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	fx.do(t, call{path: "/fhir/Observation?patient=1", secret: rate}) // spends the burst
	const realm = `Bearer realm="phigate"`
	for _, c := range []struct {
		name      string
		call      call
		status    int
		code      string
		issue     string
		challenge string // the WWW-Authenticate prefix; "" for none
	}{
		{"no token", call{path: "/fhir/Observation?patient=1"}, 401, CodeMissingToken, issueLogin, realm},
		{"malformed token", call{path: "/fhir/Observation", secret: "phi_nonsense"}, 401, "invalid_token", issueLogin, realm + `, error="invalid_token"`},
		{"insufficient scope", call{path: "/fhir/Patient/pat-1", secret: pat}, 403, CodeInsufficientScope, issueForbidden, realm + `, error="insufficient_scope"`},
		{"compartment", call{path: "/fhir/Observation?patient=pat-2", secret: pat}, 403, CodeCompartment, issueForbidden, realm + `, error="insufficient_scope"`},
		{"not an interaction", call{path: "/fhir/observation", secret: user}, 400, CodeInvalidRequest, issueInvalid, ""},
		{"operation not configured", call{path: "/fhir/Patient/$nope", secret: user}, 403, CodeInsufficientScope, issueForbidden, realm},
		{"invalid purpose", call{path: "/fhir/Observation", secret: user, header: map[string]string{"X-Purpose-Of-Use": "NOPE"}}, 400, CodeInvalidPurpose, issueInvalid, ""},
		{"rate limited", call{path: "/fhir/Observation?patient=1", secret: rate}, 429, "rate_limited", issueThrottled, ""},
		{"method override", call{path: "/fhir/Observation", secret: user, header: map[string]string{"X-HTTP-Method-Override": "DELETE"}}, 400, CodeInvalidRequest, issueInvalid, ""},
		{"non-canonical path", call{path: "/fhir/a/%2e%2e/Observation", secret: user}, 400, CodeInvalidRequest, issueInvalid, ""},
	} {
		r := fx.do(t, c.call)
		wantOutcome(t, c.name, r, c.status, c.code, c.issue)
		if got := r.header.Get("WWW-Authenticate"); c.challenge == "" && got != "" || !strings.HasPrefix(got, c.challenge) {
			t.Errorf("%s: WWW-Authenticate %q, want %q…", c.name, got, c.challenge)
		}
		if c.status == 429 && r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", c.name)
		}
	}
	if _, err := fx.auth.Revoke(t.Context(), fx.root, revRec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}

	// before authentication: framing, method and header checks
	r := fx.rawReply(t, rawRequest("TRACE", "/fhir/Patient", ""))
	wantOutcome(t, "TRACE", r, 405, CodeMethodNotAllowed, issueInvalid)
	r = fx.rawReply(t, rawRequest("GET", "/fhir/Observation", "", "Authorization: Bearer a", "Authorization: Bearer b"))
	wantOutcome(t, "repeated Authorization", r, 400, CodeInvalidRequest, issueInvalid)
	r = fx.rawReply(t, rawRequest("POST", "/fhir/", "0\r\n\r\n", "Content-Length: 5", "Transfer-Encoding: chunked"))
	wantOutcome(t, "ambiguous framing", r, 400, CodeAmbiguousFraming, issueSecurity)

	// the upstream's failure: 502
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	r = fx.do(t, call{path: "/fhir/Observation?patient=1", secret: user})
	wantOutcome(t, "upstream refused the credential", r, 502, CodeUpstreamFailed, issueException)

	// the audit log is down: 503, the refusal's and the grant's
	fx.rec.fail.Store(true)
	r = fx.do(t, call{path: "/fhir/Observation?patient=1", secret: user})
	wantOutcome(t, "grant unrecorded", r, 503, CodeAuditUnavailable, issueTransient)
	r = fx.do(t, call{path: "/fhir/Observation"})
	wantOutcome(t, "refusal unrecorded", r, 503, CodeAuditUnavailable, issueTransient)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("audit unavailable: no Retry-After")
	}
}

// TestFHIRRefusalsWhileStorageIsLowAreOperationOutcomes: the 503 given
// before anything is recorded is FHIR-shaped too.
func TestFHIRRefusalsWhileStorageIsLowAreOperationOutcomes(t *testing.T) {
	disk := &lowDisk{}
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Storage = disk }})
	disk.low.Store(true)
	r := fx.do(t, call{path: "/fhir/Observation"})
	wantOutcome(t, "storage low", r, 503, CodeStorageLow, issueTransient)
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

// TestHTTPUpstreamsAndForwardAuthKeepJSONErrors: refusals for http
// upstreams, forward auth (whatever upstream the original path names),
// paths no upstream covers and the gateway's own paths stay the phigate
// JSON error.
func TestHTTPUpstreamsAndForwardAuthKeepJSONErrors(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		// a fhir upstream at the root: forward auth and the gateway's own
		// paths still win
		c.Upstreams = append(c.Upstreams, config.Upstream{Name: "root", URL: fx0URL(c), Prefix: "/", Kind: config.KindFHIR, TLS: c.Upstreams[0].TLS})
	}})
	for name, c := range map[string]call{
		"http upstream":             {path: "/billing/invoices/1"},
		"forward auth for fhir":     {path: "/v1/authz", header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/fhir/Observation"}},
		"forward auth, Envoy style": {path: "/v1/authz/fhir/Observation"},
		"the gateway's well-known":  {path: "/.well-known/nothing"},
	} {
		r := fx.do(t, c)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if r.status < 400 || r.header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(r.body), &e) != nil || e.Error.Code == "" {
			t.Errorf("%s: %d %s %s, want a JSON error", name, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
}

// fx0URL is the URL of the fixture's fhir upstream in c.
func fx0URL(c *config.Gateway) string { return c.Upstreams[0].URL }

// TestEveryReasonCodeHasItsIssueType: each reason code the gateway or the
// authority answers maps to a FHIR issue type explicitly (not by the
// status fallback), and only to one of the types the contract names.
func TestEveryReasonCodeHasItsIssueType(t *testing.T) {
	allowed := map[string]bool{issueLogin: true, issueForbidden: true, issueSecurity: true, issueThrottled: true,
		issueNotFound: true, issueInvalid: true, issueTooLong: true, issueException: true, issueTransient: true}
	codes := []string{CodeMissingToken, CodeCompartment, CodeNoRoute, CodeBreakGlass, CodeBreakGlassDenied,
		CodeInvalidRequest, CodeInvalidPurpose, CodeAmbiguousFraming, CodeUnsupportedMedia, CodeTooLarge,
		CodeNotFound, CodeAuditUnavailable, CodeUpstreamFailed, CodeUpstreamTimeout, CodeBodyUnavailable,
		CodeMethodNotAllowed, CodeInsufficientScope, CodeTooManyFailures, CodeStorageLow, "internal",
		"invalid_continuation", CodeResponseTooLarge}
	for r := policy.ReasonNone; r <= policy.Unavailable; r++ {
		if r != policy.OK {
			codes = append(codes, r.Code())
		}
	}
	for _, c := range codes {
		it, ok := issueTypeFor(c)
		if !ok || !allowed[it] {
			t.Errorf("reason %q: issue type %q (listed: %v)", c, it, ok)
		}
	}
	// the fallback by status, for a code added later without its type
	for status, want := range map[int]string{401: issueLogin, 403: issueForbidden, 404: issueNotFound, 413: issueTooLong,
		429: issueThrottled, 400: issueInvalid, 415: issueInvalid, 500: issueException, 502: issueException, 503: issueTransient, 504: issueTransient} {
		if got := issueTypeOf("some_new_code", status); got != want {
			t.Errorf("fallback for %d: %s, want %s", status, got, want)
		}
	}
}

// FuzzOutcomeIsValidJSON: whatever a refusal's message, code and request
// id hold (quotes, backslashes, control characters, invalid UTF-8), the
// OperationOutcome is one valid JSON object of valid UTF-8 that decodes to
// the same code and, for valid UTF-8, the same message; the challenge
// header stays a single line.
func FuzzOutcomeIsValidJSON(f *testing.F) {
	f.Add("a \"quoted\" message", "insufficient_scope", "gw-1", 403, "patient/Observation.rs")
	f.Add("line\nbreak\x00nul\x7f", "invalid_request", "rid_with_underscore", 400, "")
	f.Add("bad utf-8 \xff\xfe", "rate_limited", "", 429, "")
	f.Add("</script>\u2028\\", "compartment", strings.Repeat("x", 64), 401, "a\"b")
	f.Fuzz(func(t *testing.T, msg, code, rid string, status int, scope string) {
		if status < 400 || status > 599 {
			status = 400 + (status%200+200)%200
		}
		d := &denial{status: status, code: code, msg: msg, scope: scope, challenge: true, bearer: "insufficient_scope", scopeAttr: true, retry: time.Second}
		w := httptest.NewRecorder()
		writeOutcome(w, rid, d)
		b := w.Body.Bytes()
		if !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("not valid JSON / UTF-8: %q", b)
		}
		var oo outcomeBody
		if err := json.Unmarshal(b, &oo); err != nil || len(oo.Issue) != 1 || oo.ResourceType != "OperationOutcome" {
			t.Fatalf("%v %q", err, b)
		}
		is := oo.Issue[0]
		if utf8.ValidString(code) && is.Details.Coding[0].Code != code {
			t.Fatalf("code %q became %q", code, is.Details.Coding[0].Code)
		}
		if utf8.ValidString(msg) && is.Details.Text != msg {
			t.Fatalf("message %q became %q", msg, is.Details.Text)
		}
		if w.Code != status || w.Header().Get("Content-Type") != "application/fhir+json" {
			t.Fatalf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
		}
		if h := w.Header().Get("WWW-Authenticate"); strings.ContainsAny(h, "\r\n") {
			t.Fatalf("WWW-Authenticate %q", h)
		}
	})
}

// TestFHIRUpstreamWithAnUnpinnedKeyIsAnOperationOutcome: the 502 of an
// upstream whose TLS key is not pinned is FHIR-shaped too.
func TestFHIRUpstreamWithAnUnpinnedKeyIsAnOperationOutcome(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[0].TLS = config.UpstreamTLS{Pins: []string{"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation?code=x", secret: s})
	wantOutcome(t, "unpinned key", r, 502, CodeUpstreamFailed, issueException)
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}
