package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/testclock"
)

// smartService reports whether rest entry e declares the SMART-on-FHIR
// service, as the gateway does.
func smartService(e map[string]any) bool {
	sec, _ := e["security"].(map[string]any)
	svcs, _ := sec["service"].([]any)
	for _, s := range svcs {
		cc, _ := s.(map[string]any)
		codings, _ := cc["coding"].([]any)
		for _, c := range codings {
			cm, _ := c.(map[string]any)
			if cm["system"] == "http://terminology.hl7.org/CodeSystem/restful-security-service" && cm["code"] == "SMART-on-FHIR" {
				return true
			}
		}
	}
	return false
}

// TestMetadataIsPublicAndDeclaresSMART: GET <prefix>metadata is answered
// without a token (one sent, valid or not, is ignored and not forwarded),
// recorded as public (no token id), asserted to the upstream as the
// public identity, and its CapabilityStatement declares the SMART-on-FHIR
// security service in place of the upstream's, everything else as the
// upstream wrote it.
func TestMetadataIsPublicAndDeclaresSMART(t *testing.T) {
	fx := newFixture(t)
	valid, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	for name, secret := range map[string]string{"no token": "", "a valid token": valid, "a malformed token": "phi_nonsense"} {
		r := fx.do(t, call{path: "/fhir/metadata", secret: secret, header: map[string]string{"Accept-Encoding": "gzip", "Accept": "application/fhir+xml"}})
		if r.status != 200 {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		var cs map[string]any
		if err := json.Unmarshal([]byte(r.body), &cs); err != nil {
			t.Fatalf("%s: %v: %s", name, err, r.body)
		}
		rest, _ := cs["rest"].([]any)
		if len(rest) != 1 || !smartService(rest[0].(map[string]any)) {
			t.Errorf("%s: rest[0].security does not declare SMART-on-FHIR: %s", name, r.body)
		}
		if strings.Contains(r.body, "the upstream's own") {
			t.Errorf("%s: the upstream's security declaration reached the client", name)
		}
		// everything else as the upstream wrote it
		want := strings.Replace(testCapabilityStatement, `{"service":[{"text":"the upstream's own"}]}`, smartSecurity, 1)
		if strings.TrimSpace(r.body) != want {
			t.Errorf("%s: body\n%s\nwant\n%s", name, r.body, want)
		}
		if r.header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
			t.Errorf("%s: Content-Length %s for %d bytes", name, r.header.Get("Content-Length"), len(r.body))
		}
		up := fx.fhir.lastSeen()
		switch {
		case up.Header.Get("Authorization") != "Bearer ehr-secret-credential":
			t.Errorf("%s: the upstream got Authorization %q", name, up.Header.Get("Authorization"))
		case up.Header.Get(HeaderSubject) != PublicSubject || up.Header.Get(HeaderTokenID) != PublicTokenID:
			t.Errorf("%s: asserted %q %q", name, up.Header.Get(HeaderSubject), up.Header.Get(HeaderTokenID))
		case up.Header.Get("Accept") != "application/fhir+json" || up.Header.Get("Accept-Encoding") != "":
			t.Errorf("%s: Accept %q, Accept-Encoding %q", name, up.Header.Get("Accept"), up.Header.Get("Accept-Encoding"))
		case up.Path != "/fhir/R4/metadata":
			t.Errorf("%s: upstream path %s", name, up.Path)
		}
		req, _ := http.NewRequest("GET", "https://ehr"+up.Path, nil)
		req.Header = up.Header
		if id, err := VerifyRequestFor(req, fx.signer.PublicKey(), "ehr", fx.clk.Now()); err != nil || id.Subject != PublicSubject {
			t.Errorf("%s: identity %+v %v", name, id, err)
		}
		evs := fx.rec.byRequest(t, r.rid, 2)
		if len(evs) != 2 || evs[0].Kind != KindGrant || evs[1].Kind != KindComplete {
			t.Fatalf("%s: events %+v", name, evs)
		}
		for _, ev := range evs {
			if !ev.Public || ev.TokenID != "" || ev.Subject != PublicSubject || ev.Interaction != "capabilities" || ev.Upstream != "ehr" {
				t.Errorf("%s: event %+v", name, ev)
			}
			if b := ev.AppendJSON(nil); secret != "" && bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s: an event holds the token sent: %s", name, b)
			}
		}
	}
	// HEAD: the headers, no body, no Content-Length of the upstream's
	r := fx.do(t, call{method: "HEAD", path: "/fhir/metadata"})
	if r.status != 200 || r.body != "" {
		t.Errorf("HEAD: %d %q", r.status, r.body)
	}
}

// TestOnlyTheExactMetadataRequestIsPublic: nothing but GET or HEAD of
// exactly <prefix>metadata, with at most one JSON _format and one mode, is
// answered without a token.
func TestOnlyTheExactMetadataRequestIsPublic(t *testing.T) {
	fx := newFixture(t)
	for _, p := range []string{
		"/fhir/metadata", "/fhir/metadata?_format=json", "/fhir/metadata?mode=full",
		"/fhir/metadata?_format=application%2Ffhir%2Bjson&mode=normative", "/fhir/metadata?mode=terminology&_format=application/json",
		"/fhir/metadata?", // an empty query
	} {
		if r := fx.do(t, call{path: p}); r.status != 200 {
			t.Errorf("%s: %d %s, want 200 without a token", p, r.status, r.body)
		}
	}
	for _, c := range []call{
		{method: "POST", path: "/fhir/metadata", body: "{}", contentType: "application/fhir+json"},
		{method: "DELETE", path: "/fhir/metadata"},
		{path: "/fhir/metadata/"},
		{path: "/fhir/Metadata"},
		{path: "/fhir/metadata%20"},
		{path: "/fhir/Patient/metadata"},
		{path: "/fhir/metadata?_format=xml"},
		{path: "/fhir/metadata?_format=application/fhir+json"}, // "+" is a space
		{path: "/fhir/metadata?_summary=true"},
		{path: "/fhir/metadata?mode=full&mode=full"},
		{path: "/fhir/metadata?mode=everything"},
		{path: "/fhir/metadata?_format=json;x=1"},
		{path: "/fhir/metadata?%5Fformat=json"},
		{path: "/fhir/metadata?_format=%zz"},
		{path: "/fhir/metadata?&"},
		{path: "/billing/metadata"},
	} {
		if r := fx.do(t, c); r.status != 401 || r.code != CodeMissingToken {
			t.Errorf("%s %s: %d %s, want 401 missing_token", c.method, c.path, r.status, r.body)
		}
	}
	if n := fx.fhir.count.Load(); n != 6 {
		t.Errorf("the upstream got %d requests, want the 6 public ones", n)
	}
}

// TestPublicMetadataIsRateLimitedPerSource: past its burst a source is
// refused (429 rate_limited, Retry-After, recorded as public) until its
// allowance returns; another source is not affected.
func TestPublicMetadataIsRateLimitedPerSource(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.Metadata = config.PublicMetadata{PerMinute: 2, Burst: 3}
	}})
	from := func(ip string) reply {
		return fx.do(t, call{path: "/fhir/metadata", header: map[string]string{"X-Forwarded-For": ip}})
	}
	for i := range 3 {
		if r := from("10.0.0.1"); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	r := from("10.0.0.1")
	oo := wantOutcome(t, "over the burst", r, 429, "rate_limited", issueThrottled)
	if ra := r.header.Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After %q, want 30 (one request every 30 s)", ra)
	}
	_ = oo
	if evs := fx.rec.byRequest(t, r.rid, 1); len(evs) != 1 || evs[0].Kind != KindDeny || !evs[0].Public || evs[0].Reason != "rate_limited" || evs[0].SourceIP != "10.0.0.1" {
		t.Errorf("refusal events %+v", evs)
	}
	if r := from("10.0.0.2"); r.status != 200 {
		t.Errorf("another source: %d", r.status)
	}
	// the same IPv6 /64 is one source
	for i := range 3 {
		from(fmt.Sprintf("2001:db8::%d", i+1))
	}
	if r := from("2001:db8::ff"); r.status != 429 {
		t.Errorf("the same /64: %d, want 429", r.status)
	}
	fx.clk.Add(30 * time.Second)
	if r := from("10.0.0.1"); r.status != 200 {
		t.Errorf("after 30 s: %d, want 200", r.status)
	}
	if r := from("10.0.0.1"); r.status != 429 {
		t.Errorf("again at once: %d, want 429", r.status)
	}
}

// TestMetadataLimiterMemoryIsBounded: however many sources send, at most
// max_sources are tracked, and a full table does not lift the limit of a
// source that keeps sending.
func TestMetadataLimiterMemoryIsBounded(t *testing.T) {
	l := newSourceLimiter(config.PublicMetadata{PerMinute: 1, Burst: 1, MaxSources: 50})
	now := testclock.Start()
	hot := netip.MustParseAddr("192.0.2.1")
	if _, ok := l.admit(hot, now); !ok {
		t.Fatal("first request refused")
	}
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.admit(a, now.Add(time.Duration(i)*time.Millisecond))
		if n := len(l.until); n > 50 {
			t.Fatalf("%d sources tracked, max 50", n)
		}
	}
	// the hot source kept out? (it may have been forgotten as the oldest:
	// then it gets one request, and is limited again at once)
	at := now.Add(11 * time.Second)
	l.admit(hot, at)
	if _, ok := l.admit(hot, at); ok {
		t.Error("a source past its allowance was admitted twice at once")
	}
	var nilL *sourceLimiter
	if _, ok := nilL.admit(hot, now); ok {
		t.Error("a nil limiter admits")
	}
}

// TestPublicMetadataRefusesWhatItCannotSecure: an answer the gateway
// cannot read whole and rewrite (too large, compressed, not JSON, not one
// JSON object with unique keys) is refused with 502, never passed on
// without the security declaration; other statuses and other resource
// types pass as the upstream sent them.
func TestPublicMetadataRefusesWhatItCannotSecure(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) { c.Metadata.MaxBytes = 2048 }})
	answer := func(status int, ctype, encoding, body string) {
		fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			if encoding != "" {
				w.Header().Set("Content-Encoding", encoding)
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	big := `{"resourceType":"CapabilityStatement","description":"` + strings.Repeat("x", 2048) + `"}`
	for _, c := range []struct {
		name, ctype, encoding, body, code string
	}{
		{"too large", "application/fhir+json", "", big, CodeResponseTooLarge},
		{"compressed", "application/fhir+json", "gzip", testCapabilityStatement, CodeUpstreamFailed},
		{"XML", "application/fhir+xml", "", `<CapabilityStatement xmlns="http://hl7.org/fhir"/>`, CodeUpstreamFailed},
		{"not an object", "application/fhir+json", "", `[1]`, CodeUpstreamFailed},
		{"duplicate keys", "application/fhir+json", "", `{"resourceType":"CapabilityStatement","rest":[],"rest":[{"mode":"server"}]}`, CodeUpstreamFailed},
		{"trailing data", "application/fhir+json", "", `{"resourceType":"CapabilityStatement"}{}`, CodeUpstreamFailed},
		{"rest not an array", "application/fhir+json", "", `{"resourceType":"CapabilityStatement","rest":{"mode":"server"}}`, CodeUpstreamFailed},
		{"no resourceType", "application/json", "", `{"rest":[]}`, CodeUpstreamFailed},
	} {
		answer(200, c.ctype, c.encoding, c.body)
		r := fx.do(t, call{path: "/fhir/metadata"})
		wantOutcome(t, c.name, r, 502, c.code, issueTypeOf(c.code, 502))
		if evs := fx.rec.byRequest(t, r.rid, 2); len(evs) != 2 || evs[1].Status != 502 || evs[1].Reason != c.code {
			t.Errorf("%s: events %+v", c.name, evs)
		}
	}
	for _, c := range []struct {
		name   string
		status int
		body   string
	}{
		{"an upstream error", 500, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`},
		{"terminology capabilities", 200, `{"resourceType":"TerminologyCapabilities","status":"active"}`},
	} {
		answer(c.status, "application/fhir+json", "", c.body)
		if r := fx.do(t, call{path: "/fhir/metadata?mode=terminology"}); r.status != c.status || r.body != c.body {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
	}
}

// TestSMARTConfigurationIsNotFoundWithoutATokenEndpoint: without a
// configuration (no token endpoint) the SMART discovery document below a
// fhir prefix is 404 (an OperationOutcome), with or without a token, and
// nothing is forwarded.
func TestSMARTConfigurationIsNotFoundWithoutATokenEndpoint(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"system/*.rs"}})
	for _, secret := range []string{"", s} {
		r := fx.do(t, call{path: "/fhir/.well-known/smart-configuration", secret: secret})
		wantOutcome(t, "smart-configuration", r, 404, CodeNotFound, issueNotFound)
	}
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("%d requests forwarded", n)
	}
}

const testSMARTDoc = `{"issuer":"https://phigate.test","token_endpoint":"https://phigate.test/v1/oauth/token","capabilities":["permission-v2"]}`

// TestSMARTConfigurationIsPublic: with a configuration, GET below each
// fhir prefix answers it byte for byte without a token (a token sent,
// valid or not, is ignored), recorded as public (grant and completion, no
// token id); HEAD answers the headers; other methods 405; nothing is
// forwarded; http upstreams have no such document (their paths need a
// token).
func TestSMARTConfigurationIsPublic(t *testing.T) {
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.SMARTConfiguration = []byte(testSMARTDoc) }})
	valid, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	for name, secret := range map[string]string{"no token": "", "a valid token": valid, "a malformed token": "phi_nonsense"} {
		r := fx.do(t, call{path: "/fhir/.well-known/smart-configuration", secret: secret})
		if r.status != 200 || r.body != testSMARTDoc || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q %s", name, r.status, r.header.Get("Content-Type"), r.body)
		}
		evs := fx.rec.byRequest(t, r.header.Get("X-Request-Id"), 2)
		if len(evs) != 2 || evs[0].Kind != KindGrant || evs[1].Kind != KindComplete {
			t.Fatalf("%s: events %+v", name, evs)
		}
		for _, ev := range evs {
			if !ev.Public || ev.TokenID != "" || ev.Subject != PublicSubject || ev.Interaction != "smart-configuration" || ev.Upstream != "ehr" {
				t.Fatalf("%s: event %+v", name, ev)
			}
		}
		if evs[1].Status != 200 || evs[1].BytesOut != int64(len(testSMARTDoc)) {
			t.Fatalf("%s: completion %+v", name, evs[1])
		}
	}
	if r := fx.do(t, call{method: "HEAD", path: "/fhir/.well-known/smart-configuration"}); r.status != 200 || r.body != "" ||
		r.header.Get("Content-Length") != fmt.Sprint(len(testSMARTDoc)) {
		t.Fatalf("HEAD: %d %q %s", r.status, r.header.Get("Content-Length"), r.body)
	}
	r := fx.do(t, call{method: "POST", path: "/fhir/.well-known/smart-configuration", body: "{}", contentType: "application/json"})
	if r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d %q", r.status, r.header.Get("Allow"))
	}
	if r := fx.do(t, call{path: "/billing/.well-known/smart-configuration"}); r.status != 401 {
		t.Fatalf("an http upstream's path served without a token: %d %s", r.status, r.body)
	}
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("%d requests forwarded", n)
	}
}

// TestDeclareSecurityKeepsEverythingElse: the security of each rest entry
// but a client one is the gateway's; every other member is kept byte for
// byte, in order; a statement without rest gets one.
func TestDeclareSecurityKeepsEverythingElse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"resourceType":"CapabilityStatement","rest":[{"mode":"server"}]}`,
			`{"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":` + smartSecurity + `}]}`},
		{`{"resourceType":"CapabilityStatement","rest":[{"mode":"client","security":{"cors":true}},{"security":{"cors":true},"mode":"server","x":1.50}]}`,
			`{"resourceType":"CapabilityStatement","rest":[{"mode":"client","security":{"cors":true}},{"security":` + smartSecurity + `,"mode":"server","x":1.50}]}`},
		{`{"resourceType":"CapabilityStatement","n":12345678901234567890,"s":"\u00e9\n"}`,
			`{"resourceType":"CapabilityStatement","n":12345678901234567890,"s":"\u00e9\n","rest":[{"mode":"server","security":` + smartSecurity + `}]}`},
		{` {"resourceType":"TerminologyCapabilities"} `, ` {"resourceType":"TerminologyCapabilities"} `},
		{`{"resourceType":"CapabilityStatement","rest":[]}`,
			`{"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":` + smartSecurity + `}]}`},
		{`{"resourceType":"CapabilityStatement","rest":[{"mode":"client"}]}`,
			`{"resourceType":"CapabilityStatement","rest":[{"mode":"client"},{"mode":"server","security":` + smartSecurity + `}]}`},
	} {
		got, err := declareSecurity([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("%s:\n got %s %v\nwant %s", c.in, got, err, c.want)
		}
	}
}

// FuzzDeclareSecurity: whatever the upstream answers, declareSecurity
// either refuses it or returns valid JSON; a CapabilityStatement it
// accepts declares SMART on every rest entry that is not a client one.
func FuzzDeclareSecurity(f *testing.F) {
	for _, s := range []string{
		testCapabilityStatement,
		`{"resourceType":"CapabilityStatement"}`,
		`{"resourceType":"CapabilityStatement","rest":[{"mode":"client"},{"mode":"server","security":null}]}`,
		`{"resourceType":"Patient","id":"1"}`,
		`{"resourceType":"CapabilityStatement","rest":[1]}`,
		`{"a":1,"a":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := declareSecurity(b)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%q → invalid JSON %q", b, out)
		}
		var cs struct {
			ResourceType string           `json:"resourceType"`
			Rest         []map[string]any `json:"rest"`
		}
		if json.Unmarshal(out, &cs) != nil || cs.ResourceType != "CapabilityStatement" {
			if !bytes.Equal(out, b) {
				t.Fatalf("another resource was changed: %q → %q", b, out)
			}
			return
		}
		servers := 0
		for _, e := range cs.Rest {
			if e["mode"] != "client" {
				servers++
				if !smartService(e) {
					t.Fatalf("rest entry %v does not declare SMART: %q", e, out)
				}
			}
		}
		if servers == 0 {
			t.Fatalf("no server rest entry in %q", out)
		}
	})
}

// FuzzPublicMetadata: a query publicMetadata accepts holds, read as a
// server reads it, nothing but one JSON _format and one mode at most.
func FuzzPublicMetadata(f *testing.F) {
	for _, q := range []string{"", "_format=json", "mode=full&_format=application%2Ffhir%2Bjson", "_format=xml", "a=1", "_format=json;mode=full", "&"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if !publicMetadata("GET", "/metadata", q) {
			return
		}
		if strings.ContainsAny(q, ";#") {
			t.Fatalf("%q accepted", q)
		}
		vs, err := url.ParseQuery(q)
		if err != nil {
			t.Fatalf("%q accepted: %v", q, err)
		}
		for k, v := range vs {
			if k != "_format" && k != "mode" || len(v) != 1 {
				t.Fatalf("%q accepted: %s=%q", q, k, v)
			}
		}
		if f := vs.Get("_format"); f != "" && !strings.Contains(f, "json") {
			t.Fatalf("%q accepted: _format %q", q, f)
		}
	})
}
