package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/token"
)

func allLettersBut(op string) string {
	out := ""
	for _, c := range "cruds" {
		if string(c) != op {
			out += string(c)
		}
	}
	return out
}

// TestEachFHIRInteractionNeedsItsScope runs every FHIR interaction through
// the gateway twice: with a token holding exactly the permission it needs
// (forwarded) and with one holding every other permission (403 naming the
// scope, nothing forwarded).
func TestEachFHIRInteractionNeedsItsScope(t *testing.T) {
	fx := newFixture(t)
	const form = "application/x-www-form-urlencoded"
	const fjson = "application/fhir+json"
	tests := []struct {
		name, method, path, body, ctype string
		typ, op                         string
		upstreamPath                    string
	}{
		{"read", "GET", "/fhir/Observation/obs-1", "", "", "Observation", "r", "/fhir/R4/Observation/obs-1"},
		{"read HEAD", "HEAD", "/fhir/Observation/obs-1", "", "", "Observation", "r", "/fhir/R4/Observation/obs-1"},
		{"vread", "GET", "/fhir/Observation/obs-1/_history/2", "", "", "Observation", "r", "/fhir/R4/Observation/obs-1/_history/2"},
		{"history-instance", "GET", "/fhir/Observation/obs-1/_history", "", "", "Observation", "r", "/fhir/R4/Observation/obs-1/_history"},
		{"history-type", "GET", "/fhir/Observation/_history", "", "", "Observation", "s", "/fhir/R4/Observation/_history"},
		{"history-system", "GET", "/fhir/_history", "", "", "*", "s", "/fhir/R4/_history"},
		{"search GET", "GET", "/fhir/Observation?code=8867-4", "", "", "Observation", "s", "/fhir/R4/Observation"},
		{"search POST", "POST", "/fhir/Observation/_search", "code=8867-4", form, "Observation", "s", "/fhir/R4/Observation/_search"},
		{"search system GET", "GET", "/fhir/?_type=Observation", "", "", "*", "s", "/fhir/R4/"},
		{"search system POST", "POST", "/fhir/_search", "_type=Observation", form, "*", "s", "/fhir/R4/_search"},
		{"search compartment", "GET", "/fhir/Patient/p1/Observation", "", "", "Observation", "s", "/fhir/R4/Patient/p1/Observation"},
		{"search compartment all", "GET", "/fhir/Patient/p1/*", "", "", "*", "s", "/fhir/R4/Patient/p1/*"},
		{"create", "POST", "/fhir/Observation", `{"resourceType":"Observation"}`, fjson, "Observation", "c", "/fhir/R4/Observation"},
		{"update", "PUT", "/fhir/Observation/obs-1", `{"resourceType":"Observation","id":"obs-1"}`, fjson, "Observation", "u", "/fhir/R4/Observation/obs-1"},
		{"conditional update", "PUT", "/fhir/Observation?identifier=x", `{"resourceType":"Observation"}`, fjson, "Observation", "u", "/fhir/R4/Observation"},
		{"patch", "PATCH", "/fhir/Observation/obs-1", `[]`, "application/json-patch+json", "Observation", "u", "/fhir/R4/Observation/obs-1"},
		{"conditional patch", "PATCH", "/fhir/Observation?identifier=x", `[]`, "application/json-patch+json", "Observation", "u", "/fhir/R4/Observation"},
		{"delete", "DELETE", "/fhir/Observation/obs-1", "", "", "Observation", "d", "/fhir/R4/Observation/obs-1"},
		{"conditional delete", "DELETE", "/fhir/Observation?code=x", "", "", "Observation", "d", "/fhir/R4/Observation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			need := "user/" + tt.typ + "." + tt.op
			ok, _ := fx.token(t, authority.Spec{Scopes: []string{need}})
			other, _ := fx.token(t, authority.Spec{Scopes: []string{"user/" + tt.typ + "." + allLettersBut(tt.op)}})
			c := call{method: tt.method, path: tt.path, body: tt.body, contentType: tt.ctype}

			before := fx.fhir.count.Load()
			c.secret = ok
			if r := fx.do(t, c); r.status != http.StatusOK {
				t.Fatalf("with %s: %d %s", need, r.status, r.body)
			}
			got := fx.fhir.lastSeen()
			if fx.fhir.count.Load() != before+1 || got.Method != tt.method || got.Path != tt.upstreamPath {
				t.Errorf("upstream saw %s %s, want %s %s", got.Method, got.Path, tt.method, tt.upstreamPath)
			}
			if tt.body != "" && got.Body != tt.body {
				t.Errorf("upstream body %q, want %q", got.Body, tt.body)
			}

			c.secret = other
			r := fx.do(t, c)
			if r.status != http.StatusForbidden || (tt.method != "HEAD" && r.code != "insufficient_scope") {
				t.Fatalf("without %s: %d %s", tt.op, r.status, r.body)
			}
			if wa := r.header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="`+need+`"`) {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			if fx.fhir.count.Load() != before+1 {
				t.Error("a denied request reached the upstream")
			}
			evs := fx.rec.byRequest(t, r.rid, 1)
			if len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Reason != "insufficient_scope" || evs[0].Scope != need {
				t.Errorf("deny event %+v", evs)
			}
		})
	}
}

// TestMetadataBeyondThePublicFormNeedsOnlyAValidToken: a capability
// statement request that is not the public form (another parameter) needs
// a token, any valid one.
func TestMetadataBeyondThePublicFormNeedsOnlyAValidToken(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	if r := fx.do(t, call{path: "/fhir/metadata?_summary=true", secret: s}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := fx.do(t, call{path: "/fhir/metadata?_summary=true"}); r.status != 401 || r.code != "missing_token" {
		t.Fatalf("without a token: %d %s", r.status, r.body)
	}
}

func TestNotAFHIRInteractionIsRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"system/*.cruds"}})
	for _, c := range []call{
		{method: "POST", path: "/fhir/Observation/obs-1"},
		{method: "PUT", path: "/fhir/Observation"},
		{method: "DELETE", path: "/fhir/Observation"},
		{path: "/fhir/observation/1"},
		{path: "/fhir/Observation/bad_id!"},
		{path: "/fhir/Observation/1/_history/2/x"},
		{method: "OPTIONS", path: "/fhir/Observation"},
		{path: "/fhir/Observation/%31"},
	} {
		c.secret = s
		if r := fx.do(t, c); r.status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != 0 {
		t.Error("forwarded")
	}
}

func TestPatientScopesStayInTheCompartment(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.crs", "patient/Patient.rs"}})
	const fjson = "application/fhir+json"
	const form = "application/x-www-form-urlencoded"
	allowed := []call{
		{path: "/fhir/Observation?patient=p1"},
		{path: "/fhir/Observation?patient=Patient/p1&code=x"},
		{path: "/fhir/Observation?subject=Patient/p1"},
		{path: "/fhir/Observation?subject:Patient=p1"},
		{path: "/fhir/Observation?patient=p1&subject=Patient/p1"},
		{path: "/fhir/Patient/p1"},
		{path: "/fhir/Patient/p1/_history"},
		{path: "/fhir/Patient/p1/Observation?code=x"},
		{path: "/fhir/Patient?_id=p1"},
		{path: "/fhir/Patient/p1/$everything"},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/Observation/_search", contentType: form, body: "patient=p1&code=x"},
		{method: "POST", path: "/fhir/Observation/_search?patient=p1", contentType: form, body: "code=x"},
	}
	denied := []call{
		{path: "/fhir/Observation?patient=p2"},
		{path: "/fhir/Observation"},
		{path: "/fhir/Observation?code=x"},
		{path: "/fhir/Observation?subject=p1"}, // bare subject may name a Group p1
		{path: "/fhir/Observation?patient=p1&patient=p2"},
		{path: "/fhir/Observation?patient=p1,p2"},
		{path: "/fhir/Observation?patient=p1&subject=Patient/p2"},
		{path: "/fhir/Patient/p2"},
		{path: "/fhir/Patient/p2/Observation"},
		{path: "/fhir/Patient?_id=p2"},
		{path: "/fhir/Patient?name=x"},
		{path: "/fhir/Observation/_history"},
		{path: "/fhir/Patient/p2/$everything"},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation"}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"subject":{"reference":"Patient/p2"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p2"},"Subject":{"reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p2","Reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p2"},"ſubject":{"reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"patient":{"reference":"Patient/p2"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: fjson, body: `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/Observation", contentType: "application/fhir+xml", body: `<Observation/>`},
		{method: "POST", path: "/fhir/Observation/_search", contentType: form, body: "patient=p2"},
		{method: "POST", path: "/fhir/Observation/_search?patient=p1", contentType: form, body: "patient=p2"},
	}
	for _, c := range allowed {
		c.secret = pat
		if r := fx.do(t, c); r.status != 200 {
			t.Errorf("allowed %s %s %s: %d %s", c.method, c.path, c.body, r.status, r.body)
		}
	}
	n := fx.fhir.count.Load()
	for _, c := range denied {
		c.secret = pat
		r := fx.do(t, c)
		if r.status != 403 || r.code != "compartment" {
			t.Errorf("denied %s %s %s: %d %s", c.method, c.path, c.body, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a request outside the compartment reached the upstream")
	}

	// a patient/ scope without a patient bound to the token reaches nothing
	loose, _ := fx.token(t, authority.Spec{Scopes: []string{"patient/Observation.rs"}})
	if r := fx.do(t, call{path: "/fhir/Observation?patient=p1", secret: loose}); r.status != 403 || r.code != "compartment" {
		t.Errorf("patient scope without patient: %d %s", r.status, r.body)
	}
	// user/ scopes are not bound to the compartment, even with a patient
	user, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"user/Observation.rs"}})
	if r := fx.do(t, call{path: "/fhir/Observation/obs-9", secret: user}); r.status != 200 {
		t.Errorf("user scope: %d %s", r.status, r.body)
	}
}

func TestGranularScopesRestrictSearches(t *testing.T) {
	fx := newFixture(t)
	lab, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs?category=laboratory"}})
	labPat, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs?category=laboratory", "user/Patient.r"}})
	for _, c := range []struct {
		path   string
		secret string
		want   int
	}{
		{"/fhir/Observation?category=laboratory", lab, 200},
		{"/fhir/Observation?category=laboratory&code=2339-0", lab, 200},
		{"/fhir/Observation?code=2339-0&category=laboratory", lab, 200},
		{"/fhir/Observation?category=vital-signs", lab, 403},
		{"/fhir/Observation?category=laboratory,vital-signs", lab, 403},
		{"/fhir/Observation?category=laboratory&category=vital-signs", lab, 403},
		{"/fhir/Observation?category:not=laboratory", lab, 403},
		{"/fhir/Observation", lab, 403},
		{"/fhir/Observation/obs-1", lab, 403}, // a read cannot be checked against the restriction
		{"/fhir/Observation/_history", lab, 403},
		{"/fhir/Observation?category=laboratory&_include=Observation:subject", lab, 403},
		{"/fhir/Observation?category=laboratory&_include=Observation:subject:Patient", lab, 403},
		{"/fhir/Observation?category=laboratory&_include=Observation:subject:Patient", labPat, 200},
		{"/fhir/Observation?category=laboratory&_revinclude=Provenance:target", labPat, 403},
		{"/fhir/Observation?category=lab%6Fratory", lab, 200}, // percent-decoded before comparing
		{"/fhir/Observation?category=laboratory;_include=*", lab, 400},
		{"/fhir/Observation?category=%zz", lab, 400},
	} {
		r := fx.do(t, call{path: c.path, secret: c.secret})
		if r.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.path, r.status, r.body, c.want)
		}
	}
}

func TestOperationsNeedAConfiguredScope(t *testing.T) {
	fx := newFixture(t)
	sys, _ := fx.token(t, authority.Spec{Scopes: []string{"system/*.rs"}})
	user, _ := fx.token(t, authority.Spec{Scopes: []string{"user/*.rs"}})
	for _, c := range []struct {
		method, path, secret string
		want                 int
	}{
		{"GET", "/fhir/$export", sys, 200},
		{"POST", "/fhir/$export", sys, 200},
		{"GET", "/fhir/$export", user, 403},
		{"GET", "/fhir/Patient/$export", sys, 200}, // the "*" rule applies at every level
		{"GET", "/fhir/Patient/p1/$everything", user, 200},
		{"GET", "/fhir/Patient/p1/$validate", sys, 403}, // not configured
		{"POST", "/fhir/Observation/$lastn", sys, 403},
	} {
		r := fx.do(t, call{method: c.method, path: c.path, secret: c.secret})
		if r.status != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.status, r.body, c.want)
		}
	}
}

func TestBatchIsCheckedEntryByEntry(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Limits.MaxBundleEntries = 3
		c.Limits.MaxInspectBytes = 4096
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "user/Patient.r"}})
	const fjson = "application/fhir+json"
	entry := func(method, url string) string {
		return fmt.Sprintf(`{"request":{"method":%q,"url":%q}}`, method, url)
	}
	bundle := func(typ string, entries ...string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
	}
	ok := bundle("batch", entry("GET", "Observation?code=x"), entry("GET", "Patient/p1"))
	r := fx.do(t, call{method: "POST", path: "/fhir/", secret: s, contentType: fjson, body: ok})
	if r.status != 200 || fx.fhir.lastSeen().Body != ok || fx.fhir.lastSeen().Path != "/fhir/R4/" {
		t.Fatalf("allowed batch: %d %s; upstream got %+v", r.status, r.body, fx.fhir.lastSeen())
	}
	if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].Interaction != "batch" {
		t.Errorf("event %+v", evs[0])
	}
	n := fx.fhir.count.Load()
	for name, c := range map[string]struct {
		body, ctype string
		status      int
		code        string
	}{
		"an entry without scope": {bundle("transaction", entry("GET", "Patient/p1"), entry("DELETE", "Observation/1")), fjson, 403, "insufficient_scope"},
		"duplicate key":          {`{"resourceType":"Bundle","type":"batch","type":"batch","entry":[]}`, fjson, 400, "invalid_request"},
		"duplicate key in entry": {bundle("batch", `{"request":{"method":"GET","method":"DELETE","url":"Observation/1"}}`), fjson, 400, "invalid_request"},
		// encoding/json takes the last of keys that differ in case, a
		// FHIR server the lower-case one
		"entry and Entry":          {`{"resourceType":"Bundle","type":"batch","entry":[` + entry("DELETE", "Observation/1") + `],"Entry":[` + entry("GET", "Patient/p1") + `]}`, fjson, 400, "invalid_request"},
		"url and URL":              {bundle("batch", `{"request":{"method":"DELETE","url":"Observation/1","URL":"Patient/p1"}}`), fjson, 400, "invalid_request"},
		"ſ folds to s":             {`{"resourceType":"Bundle","type":"batch","reſourceType":"Bundle","entry":[]}`, fjson, 400, "invalid_request"},
		"too many entries":         {bundle("batch", entry("GET", "Patient/1"), entry("GET", "Patient/2"), entry("GET", "Patient/3"), entry("GET", "Patient/4")), fjson, 400, "invalid_request"},
		"too large":                {bundle("batch", entry("GET", "Patient/"+strings.Repeat("a", 5000))), fjson, 413, "payload_too_large"},
		"XML":                      {"<Bundle/>", "application/fhir+xml", 415, "unsupported_media_type"},
		"nested batch":             {bundle("batch", entry("POST", "?x")), fjson, 400, "invalid_request"},
		"absolute url":             {bundle("batch", entry("GET", "https://elsewhere/Patient/1")), fjson, 400, "invalid_request"},
		"not a bundle":             {`{"resourceType":"Patient"}`, fjson, 400, "invalid_request"},
		"searchset":                {`{"resourceType":"Bundle","type":"searchset"}`, fjson, 400, "invalid_request"},
		"truncated":                {`{"resourceType":"Bundle","type":"batch","entry":[`, fjson, 400, "invalid_request"},
		"entry with bad query":     {bundle("batch", entry("GET", "Observation?code=%zz")), fjson, 400, "invalid_request"},
		"entry not an interaction": {bundle("batch", entry("GET", "Observation/1/2/3/4/5")), fjson, 400, "invalid_request"},
	} {
		r := fx.do(t, call{method: "POST", path: "/fhir/", secret: s, contentType: c.ctype, body: c.body})
		if r.status != c.status || r.code != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, c.status, c.code)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a refused Bundle reached the upstream")
	}
}

func TestHTTPRoutesDenyByDefault(t *testing.T) {
	fx := newFixture(t)
	read, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	all, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	for _, c := range []struct {
		method, path, secret string
		status               int
		code, scope          string
	}{
		{"GET", "/billing/invoices/42", read, 200, "", ""},
		{"HEAD", "/billing/invoices/42", read, 200, "", ""},
		{"GET", "/billing/invoices/secret", read, 403, "insufficient_scope", "billing:admin"}, // the most specific route wins
		{"GET", "/billing/invoices/secret", all, 200, "", ""},
		{"GET", "/billing/invoices/42/pdf", all, 403, "no_route", ""},
		{"GET", "/billing/invoices", all, 403, "no_route", ""},
		{"DELETE", "/billing/invoices/42", all, 403, "no_route", ""},
		{"POST", "/billing/invoices/", read, 403, "insufficient_scope", "billing:write"},
		{"POST", "/billing/invoices/", all, 200, "", ""},
		{"GET", "/billing/invoices/%34%32", read, 200, "", ""},
		{"GET", "/billing/invoices/../secret", read, 400, "invalid_request", ""},
		{"GET", "/billing/invoices/%2e%2e", read, 400, "invalid_request", ""},
		{"GET", "/billing/invoices/a%2Fb", read, 400, "invalid_request", ""},
		{"GET", "/billing//invoices/42", read, 400, "invalid_request", ""},
		{"GET", "/nowhere/x", read, 404, "not_found", ""},
		{"GET", "/records/r/1", read, 404, "not_found", ""}, // forward auth only
	} {
		r := fx.do(t, call{method: c.method, path: c.path, secret: c.secret})
		if r.status != c.status || c.method != "HEAD" && r.code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.status, r.body, c.status, c.code)
			continue
		}
		if c.scope != "" && !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="`+c.scope+`"`) {
			t.Errorf("%s %s: WWW-Authenticate %q lacks scope %s", c.method, c.path, r.header.Get("WWW-Authenticate"), c.scope)
		}
	}
	if got := fx.api.lastSeen(); got.Path != "/invoices/%34%32" || got.Header.Get("X-Api-Key") != "billing-api-key" || got.Header.Get("Authorization") != "" {
		t.Errorf("upstream saw %s with X-Api-Key %q, Authorization %q", got.Path, got.Header.Get("X-Api-Key"), got.Header.Get("Authorization"))
	}
}

// TestEachConstraintDeniesWithItsReason exercises every constraint of the
// token record through the gateway.
func TestEachConstraintDeniesWithItsReason(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	scopes := []string{"billing:read"}
	get := func(secret string, hdr map[string]string) reply {
		return fx.do(t, call{path: "/billing/invoices/1", secret: secret, header: hdr})
	}
	expect := func(name string, r reply, status int, code string) {
		t.Helper()
		if r.status != status || r.code != code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, status, code)
		}
		if status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) && code != "missing_token" {
			t.Errorf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
	}

	expect("no token", get("", nil), 401, "missing_token")
	expect("malformed", get("phi_notatoken", nil), 401, "invalid_token")
	unknown, _ := token.Generate(nil) // well formed, never issued
	expect("unknown", get(unknown, nil), 401, "invalid_token")

	exp, _ := fx.token(t, authority.Spec{Scopes: scopes, TTL: time.Minute})
	rev, revRec := fx.token(t, authority.Spec{Scopes: scopes})
	sus, susRec := fx.token(t, authority.Spec{Scopes: scopes})
	idle, _ := fx.token(t, authority.Spec{Scopes: scopes, IdleTimeout: time.Minute})
	if _, err := fx.auth.Revoke(ctx, fx.root, revRec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	if err := fx.auth.Suspend(ctx, susRec.ID, "test"); err != nil {
		t.Fatal(err)
	}
	expect("revoked", get(rev, nil), 401, "token_revoked")
	expect("suspended", get(sus, nil), 401, "token_suspended")
	expect("idle, first use", get(idle, nil), 200, "")
	fx.clk.Add(2 * time.Minute)
	expect("expired", get(exp, nil), 401, "token_expired")
	expect("idle", get(idle, nil), 401, "token_idle")

	net10, _ := fx.token(t, authority.Spec{Scopes: scopes, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	expect("network", get(net10, nil), 403, "network_denied")
	expect("network, untrusted X-Forwarded-For", get(net10, map[string]string{"X-Forwarded-For": "10.1.2.3"}), 403, "network_denied")
	loop, _ := fx.token(t, authority.Spec{Scopes: scopes, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	expect("network, loopback", get(loop, nil), 200, "")

	hours, _ := fx.token(t, authority.Spec{Scopes: scopes, Hours: &token.Hours{Start: "07:00", End: "08:00", TZ: "UTC"}})
	expect("hours", get(hours, nil), 403, "outside_hours")

	rate, _ := fx.token(t, authority.Spec{Scopes: scopes, Rate: &token.Rate{PerSecond: 0.5, Burst: 1}})
	expect("rate, first", get(rate, nil), 200, "")
	r := get(rate, nil)
	expect("rate", r, 429, "rate_limited")
	if ra := r.header.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After %q, want 2", ra)
	}

	two := int64(2)
	uses, _ := fx.token(t, authority.Spec{Scopes: scopes, MaxUses: &two})
	expect("uses 1", get(uses, nil), 200, "")
	expect("uses 2", get(uses, nil), 200, "")
	expect("uses exhausted", get(uses, nil), 403, "uses_exhausted")

	purp, _ := fx.token(t, authority.Spec{Scopes: scopes, Purposes: []string{"TREAT"}, PurposeRequired: true})
	expect("purpose missing", get(purp, nil), 403, "purpose_denied")
	expect("purpose other", get(purp, map[string]string{"X-Purpose-Of-Use": "HPAYMT"}), 403, "purpose_denied")
	expect("purpose unknown", get(purp, map[string]string{"X-Purpose-Of-Use": "SNOOP"}), 400, "invalid_purpose")
	expect("purpose", get(purp, map[string]string{"X-Purpose-Of-Use": "TREAT"}), 200, "")

	scoped, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}})
	expect("scope", get(scoped, nil), 403, "insufficient_scope")
}

func TestTrustedProxyForwardedFor(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) { c.TrustedProxies = []string{"127.0.0.0/8"} }})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	r := fx.do(t, call{path: "/billing/invoices/1", secret: s, header: map[string]string{"X-Forwarded-For": "10.1.2.3, 127.0.0.9"}})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := fx.api.lastSeen().Header.Get("X-Forwarded-For"); got != "10.1.2.3, 127.0.0.9, 127.0.0.1" {
		t.Errorf("upstream X-Forwarded-For %q", got)
	}
	if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].SourceIP != "10.1.2.3" {
		t.Errorf("source %q", evs[0].SourceIP)
	}
	for _, xff := range []string{"192.168.1.1", "unknown", "10.1.2.3, nonsense"} {
		if r := fx.do(t, call{path: "/billing/invoices/1", secret: s, header: map[string]string{"X-Forwarded-For": xff}}); r.status != 403 || r.code != "network_denied" {
			t.Errorf("X-Forwarded-For %q: %d %s", xff, r.status, r.body)
		}
	}
}

func TestUsesAreNeverExceededUnderConcurrency(t *testing.T) {
	fx := newFixture(t)
	max := int64(20)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}, MaxUses: &max})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 50 {
		wg.Go(func() {
			r := fx.do(t, call{path: "/billing/invoices/1", secret: s})
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != 20 || codes[403] != 30 || fx.api.count.Load() != 20 {
		t.Errorf("statuses %v, upstream saw %d", codes, fx.api.count.Load())
	}
}

func TestBreakGlassOnlyWithJustificationAndRecorded(t *testing.T) {
	fx := newFixture(t)
	bg, bgRec := fx.breakGlassToken(t, "user/*.rs")
	normal, _ := fx.token(t, authority.Spec{Scopes: []string{"user/*.rs"}})
	const path = "/fhir/Observation?patient=p7"
	for name, c := range map[string]struct {
		secret string
		hdr    map[string]string
		status int
		code   string
	}{
		"no justification":          {bg, map[string]string{"X-Purpose-Of-Use": "ETREAT"}, 403, "break_glass_required"},
		"wrong purpose":             {bg, map[string]string{"X-Break-Glass": "patient unconscious in ED", "X-Purpose-Of-Use": "TREAT"}, 403, "break_glass_required"},
		"no purpose":                {bg, map[string]string{"X-Break-Glass": "patient unconscious in ED"}, 403, "break_glass_required"},
		"blank justification":       {bg, map[string]string{"X-Break-Glass": "   ", "X-Purpose-Of-Use": "ETREAT"}, 400, "invalid_request"},
		"long justification":        {bg, map[string]string{"X-Break-Glass": strings.Repeat("x", 513), "X-Purpose-Of-Use": "ETREAT"}, 400, "invalid_request"},
		"unprintable justification": {bg, map[string]string{"X-Break-Glass": "ok\u200bok", "X-Purpose-Of-Use": "ETREAT"}, 400, "invalid_request"},
		"not a break-glass token":   {normal, map[string]string{"X-Break-Glass": "emergency", "X-Purpose-Of-Use": "ETREAT"}, 403, "break_glass_denied"},
	} {
		r := fx.do(t, call{path: path, secret: c.secret, header: c.hdr})
		if r.status != c.status || r.code != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, c.status, c.code)
		}
		// every refused attempt is recorded as a break-glass one, with
		// what it gave as a justification
		if j, sent := c.hdr["X-Break-Glass"]; sent {
			evs := fx.rec.byRequest(t, r.rid, 1)
			if len(evs) != 1 || !evs[0].BreakGlass || evs[0].Justification != truncateString(strings.TrimSpace(j), MaxJustification) {
				t.Errorf("%s: events %+v", name, evs)
			}
		}
	}
	// refused before the token or the headers were accepted
	for name, c := range map[string]call{
		"no token":      {path: path, header: map[string]string{"X-Break-Glass": "patient unconscious in ED", "X-Purpose-Of-Use": "ETREAT"}},
		"bad purpose":   {path: path, secret: bg, header: map[string]string{"X-Break-Glass": "patient unconscious in ED", "X-Purpose-Of-Use": "NOPE"}},
		"unknown token": {path: path, secret: "phi_" + strings.Repeat("A", 40), header: map[string]string{"X-Break-Glass": "patient unconscious in ED"}},
	} {
		r := fx.do(t, c)
		evs := fx.rec.byRequest(t, r.rid, 1)
		if r.status < 400 || len(evs) != 1 || !evs[0].BreakGlass || evs[0].Justification != "patient unconscious in ED" {
			t.Errorf("%s: %d, events %+v", name, r.status, evs)
		}
	}
	if fx.fhir.count.Load() != 0 {
		t.Fatal("a refused break-glass request reached the upstream")
	}
	r := fx.do(t, call{path: path, secret: bg, header: map[string]string{"X-Break-Glass": "patient unconscious in ED", "X-Purpose-Of-Use": "ETREAT"}})
	if r.status != 200 {
		t.Fatalf("break-glass: %d %s", r.status, r.body)
	}
	got := fx.fhir.lastSeen().Header
	if got.Get(HeaderBreakGlass) != "true" || got.Get(HeaderPurpose) != "ETREAT" || got.Get("X-Break-Glass") != "" {
		t.Errorf("upstream headers %v", got)
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 || evs[0].Kind != KindGrant || !evs[0].BreakGlass || evs[0].Justification != "patient unconscious in ED" ||
		evs[0].Purpose != "ETREAT" || evs[0].TokenID != bgRec.ID || evs[1].Kind != KindComplete || !evs[1].BreakGlass {
		t.Errorf("events %+v", evs)
	}
}

func TestRecorderFailureRefusesAndForwardsNothing(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*", "user/*.cruds", "records:read"}})
	fx.rec.fail.Store(true)
	for _, c := range []call{
		{path: "/billing/invoices/1"},
		{path: "/fhir/Observation?code=x"},
		{method: "POST", path: "/billing/upload", body: "data"},
		{path: "/v1/authz", header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/1"}},
	} {
		c.secret = s
		r := fx.do(t, c)
		if r.status != 503 || r.code != "audit_unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %s", c.path, r.status, r.body)
		}
	}
	if n := fx.api.count.Load() + fx.fhir.count.Load(); n != 0 {
		t.Errorf("upstreams received %d requests while the audit could not be written", n)
	}
}

// A request refused because its grant could not be recorded spends
// nothing: with the audit back, the token still has its uses and its rate.
func TestRecorderFailureSpendsNoUse(t *testing.T) {
	fx := newFixture(t)
	uses := int64(2)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read", "records:read"}, MaxUses: &uses, Rate: &token.Rate{PerSecond: 0.001, Burst: 2}})
	fx.rec.fail.Store(true)
	for range 4 {
		if r := fx.do(t, call{path: "/billing/invoices/1", secret: s}); r.status != 503 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if r := fx.do(t, call{path: "/v1/authz/records/r/1", secret: s}); r.status != 503 {
			t.Fatalf("forward auth: %d %s", r.status, r.body)
		}
	}
	fx.rec.fail.Store(false)
	for i := range 2 {
		if r := fx.do(t, call{path: "/billing/invoices/1", secret: s}); r.status != 200 {
			t.Errorf("request %d after the outage: %d %s", i, r.status, r.body)
		}
	}
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: s}); r.status != http.StatusTooManyRequests && r.status != http.StatusForbidden {
		t.Errorf("a third request: %d %s", r.status, r.body)
	}
}

func TestForwardedRequestCarriesVerifiableIdentityAndNoClientCredential(t *testing.T) {
	fx := newFixture(t)
	s, rec := fx.token(t, authority.Spec{Subject: "lab-app", Scopes: []string{"user/Observation.rs"}})
	var verr error
	var id *Identity
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		id, verr = VerifyRequest(r, fx.signer.PublicKey(), fx.clk.Now())
		w.Write([]byte("{}"))
	})
	r := fx.do(t, call{path: "/fhir/Observation?code=x", secret: s, header: map[string]string{
		"X-Phigate-Subject": "admin", "X-Phigate-Token-Id": "tok_forged", "X-Phigate-Identity": "forged",
		"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9",
		"X-Request-Id": "client-req-1", "X-Purpose-Of-Use": "TREAT", "Proxy-Authorization": "Basic eDp5",
	}})
	if r.status != 200 || r.rid != "client-req-1" {
		t.Fatalf("%d %s rid %q", r.status, r.body, r.rid)
	}
	if verr != nil || id.Subject != "lab-app" || id.TokenID != rec.ID || id.Purpose != "TREAT" || id.RequestID != "client-req-1" || id.Audience != "ehr" {
		t.Fatalf("identity %+v, %v", id, verr)
	}
	h := fx.fhir.lastSeen().Header
	for k, want := range map[string]string{
		"Authorization": "Bearer ehr-secret-credential", HeaderSubject: "lab-app", HeaderTokenID: rec.ID, HeaderPurpose: "TREAT",
		"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "", "Forwarded": "", "X-Request-Id": "client-req-1", "Proxy-Authorization": "",
		"X-Purpose-Of-Use": "", "X-Forwarded-Proto": "https",
	} {
		if got := strings.Join(h.Values(k), ","); got != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, s) {
				t.Errorf("the client's token reached the upstream in %s", k)
			}
		}
	}
	// an invalid X-Request-Id is replaced
	r = fx.do(t, call{path: "/fhir/Observation?code=x", secret: s, header: map[string]string{"X-Request-Id": "bad id!"}})
	if r.rid == "bad id!" || !strings.HasPrefix(r.rid, "gw-") || fx.fhir.lastSeen().Header.Get("X-Request-Id") != r.rid {
		t.Errorf("request id %q", r.rid)
	}
}

func TestIdentityKeyIsPublished(t *testing.T) {
	fx := newFixture(t)
	r := fx.do(t, call{path: IdentityKeyPath})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	keys, err := ParseJWKS([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if k := keys[Thumbprint(fx.signer.PublicKey())]; !k.Equal(fx.signer.PublicKey()) {
		t.Errorf("published %v", keys)
	}
	if r := fx.do(t, call{method: "POST", path: IdentityKeyPath}); r.status != 405 {
		t.Errorf("POST: %d", r.status)
	}
	if r := fx.do(t, call{path: "/healthz"}); r.status != 200 {
		t.Errorf("healthz: %d", r.status)
	}
}

func TestGrantIsRecordedBeforeForwardingAndCompletionAfter(t *testing.T) {
	fx := newFixture(t)
	s, rec := fx.token(t, authority.Spec{Subject: "svc", Scopes: []string{"billing:read"}})
	var grantsAtUpstream int
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		rid := r.Header.Get("X-Request-Id")
		fx.rec.mu.Lock()
		for _, e := range fx.rec.events {
			if e.RequestID == rid && e.Kind == KindGrant {
				grantsAtUpstream++
			}
		}
		fx.rec.mu.Unlock()
		w.Write([]byte("0123456789"))
	})
	r := fx.do(t, call{path: "/billing/invoices/7?x=1", secret: s, header: map[string]string{"X-Purpose-Of-Use": "HPAYMT"}})
	if r.status != 200 || grantsAtUpstream != 1 {
		t.Fatalf("%d, grants recorded when the upstream was called: %d", r.status, grantsAtUpstream)
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	g, c := evs[0], evs[1]
	if g.Kind != KindGrant || g.TokenID != rec.ID || g.Subject != "svc" || g.SourceIP != "127.0.0.1" || g.Method != "GET" ||
		g.Upstream != "billing" || g.Path != "/billing/invoices/7" || g.Query != "x=1" || g.Purpose != "HPAYMT" || g.Scope != "billing:read" || g.Via != "proxy" {
		t.Errorf("grant %+v", g)
	}
	if c.Kind != KindComplete || c.Status != 200 || c.BytesOut != 10 || c.Duration < 0 {
		t.Errorf("completion %+v", c)
	}
}

func TestEventsNeverHoldATokenSecret(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.breakGlassToken(t, "billing:read")
	other, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	fx.do(t, call{path: "/billing/invoices/1?access_token=" + other, secret: s, header: map[string]string{"X-Break-Glass": "found " + other, "X-Purpose-Of-Use": "ETREAT"}})
	fx.do(t, call{path: "/billing/invoices/" + other, secret: other})
	fx.do(t, call{path: "/billing/invoices/1", secret: s + "x"})
	time.Sleep(50 * time.Millisecond)
	fx.rec.mu.Lock()
	defer fx.rec.mu.Unlock()
	if len(fx.rec.events) < 4 {
		t.Fatalf("%d events", len(fx.rec.events))
	}
	for _, e := range fx.rec.events {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), s) || strings.Contains(string(b), other) {
			t.Errorf("an event holds a token secret: %s", b)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[1].Timeouts.Response = config.Duration(200 * time.Millisecond)
		c.Upstreams = append(c.Upstreams, config.Upstream{
			Name: "down", URL: "https://127.0.0.1:1", Prefix: "/down/", Kind: config.KindHTTP,
			Routes: []config.Route{{Match: "GET /**", Scope: "billing:read"}},
		})
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Second) })
	r := fx.do(t, call{path: "/billing/invoices/1", secret: s})
	if r.status != 504 || r.code != "upstream_timeout" {
		t.Errorf("slow upstream: %d %s", r.status, r.body)
	}
	r = fx.do(t, call{path: "/down/x", secret: s})
	if r.status != 502 || r.code != "upstream_unavailable" || r.rid == "" {
		t.Errorf("unreachable upstream: %d %s", r.status, r.body)
	}
	if evs := fx.rec.byRequest(t, r.rid, 2); len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Status != 502 {
		t.Errorf("events %+v", evs)
	}
}

func TestUpstreamTLSIsVerified(t *testing.T) {
	// a pin that does not match the upstream's key: nothing is sent
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[1].TLS = config.UpstreamTLS{Pins: []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}
		c.Upstreams[0].TLS = config.UpstreamTLS{} // system roots: the test CA is not among them
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read", "user/*.rs"}})
	for _, p := range []string{"/billing/invoices/1", "/fhir/Observation?code=x"} {
		if r := fx.do(t, call{path: p, secret: s}); r.status != 502 {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if fx.api.count.Load()+fx.fhir.count.Load() != 0 {
		t.Error("a request reached an unverified upstream")
	}
}

func TestReloadSwapsRoutesWithoutDroppingRequests(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	release := make(chan struct{})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/invoices/slow" {
			<-release
		}
		w.Write([]byte("{}"))
	})
	slow := make(chan reply, 1)
	go func() { slow <- fx.do(t, call{path: "/billing/invoices/slow", secret: s}) }()
	time.Sleep(100 * time.Millisecond)

	next := *fx.cfg
	next.Upstreams = append([]config.Upstream(nil), fx.cfg.Upstreams...)
	next.Upstreams[1].Routes = append(append([]config.Route(nil), next.Upstreams[1].Routes...), config.Route{Match: "GET /reports/*", Scope: "billing:read"})
	if err := fx.gw.Reload(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	close(release)
	if r := <-slow; r.status != 200 {
		t.Errorf("the request in flight during the reload: %d %s", r.status, r.body)
	}
	if r := fx.do(t, call{path: "/billing/reports/q1", secret: s}); r.status != 200 {
		t.Errorf("new route: %d %s", r.status, r.body)
	}

	bad := next
	bad.Upstreams = append([]config.Upstream(nil), next.Upstreams...)
	bad.Upstreams[0].Credential.Value = "env:NOT_SET_ANYWHERE"
	bad.Upstreams[1].Routes = nil
	if err := fx.gw.Reload(context.Background(), &bad); err == nil || strings.Contains(err.Error(), "billing-api-key") {
		t.Fatalf("reload with an unresolvable credential: %v", err)
	}
	if r := fx.do(t, call{path: "/billing/reports/q1", secret: s}); r.status != 200 {
		t.Errorf("after a failed reload the previous table must stay: %d %s", r.status, r.body)
	}
}

func TestBodiesStreamBothWays(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	big := strings.Repeat("0123456789abcdef", 256<<10) // 4 MiB
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 64; i++ {
			w.Write([]byte(strings.Repeat("z", 64<<10)))
			w.(http.Flusher).Flush()
		}
	})
	r := fx.do(t, call{method: "POST", path: "/billing/upload", secret: s, body: big})
	if r.status != 200 || len(r.body) != 64*64<<10 {
		t.Fatalf("%d, %d bytes", r.status, len(r.body))
	}
	if got := fx.api.lastSeen().Body; got != big {
		t.Errorf("upstream got %d bytes, want %d", len(got), len(big))
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 || evs[1].BytesIn != int64(len(big)) || evs[1].BytesOut != 64*64<<10 {
		t.Errorf("completion %+v", evs)
	}
}

func TestBodyLimit(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) { c.Limits.MaxBodyBytes = 1000 }})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	if r := fx.do(t, call{method: "POST", path: "/billing/upload", secret: s, body: strings.Repeat("x", 1001)}); r.status != 413 {
		t.Errorf("%d %s", r.status, r.body)
	}
	if fx.api.count.Load() != 0 {
		t.Error("forwarded")
	}
}

// BenchmarkDecision measures the in-process decision: authentication
// (keyed hash, cache) and policy (constraints, FHIR classification, scope
// and compartment), without audit or proxying.
func BenchmarkDecision(b *testing.B) {
	fx := newFixture(b)
	s, _ := fx.token(b, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	up, rest := fx.gw.table.Load().match("/fhir/Observation")
	q := &request{secret: s, addr: netip.MustParseAddr("127.0.0.1"), purpose: "TREAT", method: "GET", path: rest,
		query: "patient=p1&code=http://loinc.org|8867-4", up: up, maxEntries: 100}
	ctx := context.Background()
	if v := fx.gw.decide(ctx, q); v.deny != nil {
		b.Fatalf("denied: %+v", v.deny)
	}
	b.ReportAllocs()
	for b.Loop() {
		q.now = fx.clk.Now()
		if v := fx.gw.decide(ctx, q); v.deny != nil {
			b.Fatal(v.deny.msg)
		}
	}
}

// BenchmarkDecisionRoute is BenchmarkDecision for an http route.
func BenchmarkDecisionRoute(b *testing.B) {
	fx := newFixture(b)
	s, _ := fx.token(b, authority.Spec{Scopes: []string{"billing:read"}})
	up, rest := fx.gw.table.Load().match("/billing/invoices/42")
	q := &request{secret: s, addr: netip.MustParseAddr("127.0.0.1"), method: "GET", path: rest, up: up}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		q.now = fx.clk.Now()
		if v := fx.gw.decide(ctx, q); v.deny != nil {
			b.Fatal(v.deny.msg)
		}
	}
}
