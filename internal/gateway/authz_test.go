package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

func TestForwardAuthReadsEachProxysHeaders(t *testing.T) {
	fx := newFixture(t)
	s, rec := fx.token(t, authority.Spec{Subject: "records-app", Scopes: []string{"records:read"}})
	for name, c := range map[string]call{
		"nginx":   {path: "/v1/authz", header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/42?v=1"}},
		"traefik": {path: "/v1/authz", header: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/records/r/42?v=1"}},
		"envoy":   {path: "/v1/authz/records/r/42?v=1"},
		"HEAD":    {method: "HEAD", path: "/v1/authz/records/r/42?v=1"},
	} {
		c.secret = s
		c.header = merge(c.header, map[string]string{"X-Purpose-Of-Use": "TREAT"})
		r := fx.do(t, c)
		if r.status != 200 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
			continue
		}
		if r.header.Get(HeaderSubject) != "records-app" || r.header.Get(HeaderTokenID) != rec.ID || r.header.Get(HeaderPurpose) != "TREAT" {
			t.Errorf("%s: identity headers %v", name, r.header)
		}
		id, err := VerifyIdentity(r.header.Get(HeaderIdentity), fx.signer.PublicKey(), fx.clk.Now())
		wantMethod := c.method
		if wantMethod == "" {
			wantMethod = "GET"
		}
		if err != nil || id.Path != "/records/r/42" || id.Method != wantMethod || id.Audience != "records" {
			t.Errorf("%s: identity %+v %v", name, id, err)
		}
		evs := fx.rec.byRequest(t, r.rid, 1)
		if len(evs) != 1 || evs[0].Kind != KindGrant || evs[0].Via != "authz" || evs[0].Path != "/records/r/42" || evs[0].Query != "v=1" || evs[0].Upstream != "records" {
			t.Errorf("%s: events %+v", name, evs)
		}
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func TestForwardAuthRefusals(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read", "user/*.rs"}})
	wrong, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	rev, revRec := fx.token(t, authority.Spec{Scopes: []string{"records:read"}})
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r"}})
	if _, err := fx.auth.Revoke(ctx, fx.root, revRec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	nginx := func(method, uri string) map[string]string {
		return map[string]string{"X-Original-Method": method, "X-Original-URI": uri}
	}
	for name, c := range map[string]struct {
		call
		status int
		code   string
	}{
		"wrong scope":         {call{secret: wrong, header: nginx("GET", "/records/r/1")}, 403, "insufficient_scope"},
		"revoked":             {call{secret: rev, header: nginx("GET", "/records/r/1")}, 401, "token_revoked"},
		"no token":            {call{header: nginx("GET", "/records/r/1")}, 401, "missing_token"},
		"no route":            {call{secret: s, header: nginx("DELETE", "/records/r/1")}, 403, "no_route"},
		"no upstream":         {call{secret: s, header: nginx("GET", "/elsewhere")}, 403, "not_found"},
		"no original":         {call{secret: s}, 400, "invalid_request"},
		"bad method":          {call{secret: s, header: nginx("get", "/records/r/1")}, 400, "invalid_request"},
		"absolute URI":        {call{secret: s, header: nginx("GET", "https://x/records/r/1")}, 400, "invalid_request"},
		"dot-dot":             {call{secret: s, header: nginx("GET", "/records/r/../../billing/x")}, 400, "invalid_request"},
		"search body unseen":  {call{secret: s, header: nginx("POST", "/fhir/Observation/_search"), contentType: "application/x-www-form-urlencoded"}, 403, "body_unavailable"},
		"batch body unseen":   {call{secret: s, header: nginx("POST", "/fhir/"), contentType: "application/fhir+json"}, 403, "body_unavailable"},
		"fhir search via URL": {call{secret: s, header: nginx("GET", "/fhir/Observation?code=x")}, 200, ""},
		// the gateway would have to check the answer, which it does not see
		"patient read by id":   {call{secret: pat, header: nginx("GET", "/fhir/Observation/o1")}, 403, "body_unavailable"},
		"patient _include":     {call{secret: pat, header: nginx("GET", "/fhir/Observation?patient=p1&_include=Observation:subject")}, 403, "body_unavailable"},
		"patient own Patient":  {call{secret: pat, header: nginx("GET", "/fhir/Patient/p1")}, 200, ""},
		"missing purpose code": {call{secret: s, header: merge(nginx("GET", "/records/r/1"), map[string]string{"X-Purpose-Of-Use": "X"})}, 400, "invalid_purpose"},
	} {
		c.call.path = "/v1/authz"
		r := fx.do(t, c.call)
		if r.status != c.status || r.code != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, c.status, c.code)
		}
	}
}

// A proxy passes the client's own headers on to the auth call: nginx the
// client's X-Forwarded-For next to the X-Real-IP it sets, Envoy the
// client's X-Real-IP next to the X-Forwarded-For it appends to. When the
// two disagree the client is unknown, and a token with source networks is
// refused.
func TestForwardAuthClientAddressHeadersMustAgree(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) { c.TrustedProxies = []string{"127.0.0.1"} }})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for name, c := range map[string]struct {
		h    map[string]string
		want int
	}{
		"envoy, client's X-Real-IP":       {map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "10.0.0.5"}, http.StatusForbidden},
		"nginx, client's X-Forwarded-For": {map[string]string{"X-Forwarded-For": "10.0.0.5", "X-Real-IP": "203.0.113.9"}, http.StatusForbidden},
		"both name the client":            {map[string]string{"X-Forwarded-For": "10.0.0.5", "X-Real-IP": "10.0.0.5"}, http.StatusOK},
		"blank X-Real-IP":                 {map[string]string{"X-Forwarded-For": "10.0.0.5", "X-Real-IP": "  "}, http.StatusOK},
		"bad X-Real-IP":                   {map[string]string{"X-Forwarded-For": "10.0.0.5", "X-Real-IP": "nope"}, http.StatusForbidden},
	} {
		r := fx.do(t, call{path: "/v1/authz/records/r/1", secret: s, header: c.h})
		if r.status != c.want {
			t.Errorf("%s: %d %s, want %d", name, r.status, r.body, c.want)
		}
		if c.want == http.StatusForbidden && r.code != "network_denied" {
			t.Errorf("%s: code %q", name, r.code)
		}
	}
}

// A client behind Traefik or Envoy may send nginx's headers (or the others)
// itself: a call that names the original request more than once is refused.
func TestForwardAuthRefusesTwoOriginals(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Patient.rs"}})
	for name, c := range map[string]call{
		"traefik + client's X-Original-*": {path: "/v1/authz", secret: pat, header: map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/fhir/Patient/p2", "X-Original-Method": "GET", "X-Original-URI": "/fhir/Patient/p1"}},
		"envoy + client's X-Original-URI":  {path: "/v1/authz/fhir/Patient/p2", secret: pat, header: map[string]string{"X-Original-URI": "/fhir/Patient/p1"}},
		"envoy + client's X-Forwarded-Uri": {path: "/v1/authz/fhir/Patient/p2", secret: pat, header: map[string]string{"X-Forwarded-Uri": "/fhir/Patient/p1"}},
	} {
		r := fx.do(t, c)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	// each alone still works
	if r := fx.do(t, call{path: "/v1/authz/fhir/Patient/p1", secret: pat}); r.status != http.StatusOK {
		t.Errorf("envoy alone: %d %s", r.status, r.body)
	}
	if r := fx.do(t, call{path: "/v1/authz", secret: pat, header: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/fhir/Patient/p1"}}); r.status != http.StatusOK {
		t.Errorf("traefik alone: %d %s", r.status, r.body)
	}
}

func TestForwardAuthClientAddressOnlyFromTrustedProxies(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
			if trusted {
				c.TrustedProxies = []string{"127.0.0.1"}
			}
		}})
		s, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
		want := http.StatusForbidden
		if trusted {
			want = http.StatusOK
		}
		for _, h := range []map[string]string{{"X-Real-IP": "10.0.0.5"}, {"X-Forwarded-For": "10.0.0.5"}} {
			r := fx.do(t, call{path: "/v1/authz/records/r/1", secret: s, header: h})
			if r.status != want {
				t.Errorf("trusted=%v %v: %d %s", trusted, h, r.status, r.body)
			}
			if trusted {
				if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].SourceIP != "10.0.0.5" {
					t.Errorf("source %q", evs[0].SourceIP)
				}
			}
		}
	}
}

// A proxy's method and URI headers come together: with the URI alone, the
// decision used the auth call's own method (nginx's subrequest is a GET
// whatever the client sent), and a DELETE could be allowed as a GET.
func TestForwardAuthNeedsBothMethodAndURI(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}})
	for name, h := range map[string]map[string]string{
		"nginx, URI alone":      {"X-Original-URI": "/records/r/1"},
		"nginx, method alone":   {"X-Original-Method": "GET"},
		"nginx, empty method":   {"X-Original-Method": "", "X-Original-URI": "/records/r/1"},
		"traefik, URI alone":    {"X-Forwarded-Uri": "/records/r/1"},
		"traefik, method alone": {"X-Forwarded-Method": "GET"},
	} {
		r := fx.do(t, call{path: "/v1/authz", secret: s, header: h})
		if r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("%s: %d %s", name, r.status, r.body)
			continue
		}
		if evs := fx.rec.byRequest(t, r.rid, 1); len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Via != "authz" {
			t.Errorf("%s: events %+v", name, evs)
		}
	}
	for name, h := range map[string]map[string]string{
		"nginx":   {"X-Original-Method": "GET", "X-Original-URI": "/records/r/1"},
		"traefik": {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/records/r/1"},
	} {
		if r := fx.do(t, call{path: "/v1/authz", secret: s, header: h}); r.status != http.StatusOK {
			t.Errorf("%s, both: %d %s", name, r.status, r.body)
		}
	}
}
