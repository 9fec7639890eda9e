package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/phigate/phigate/internal/authority"
)

// Every 401 and 403 challenge says what happened: the RFC 6750 error only
// when one of its codes is true of the refusal, an error_description that
// describes it, and a scope only when that scope would do. A refusal
// outside the patient compartment is not answered as if a scope the token
// holds were missing.
func TestChallengesSayWhatHappened(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "pat-1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r"}})
	user, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "billing:read"}})
	lab, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs?category=laboratory"}})
	net10, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	rev, revRec := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	if _, err := fx.auth.Revoke(context.Background(), fx.root, revRec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	bg, _ := fx.breakGlassToken(t, "user/Observation.rs")
	const realm = `Bearer realm="phigate"`
	for name, c := range map[string]struct {
		call
		status int
		want   string
	}{
		"no token": {call{path: "/billing/invoices/1"}, 401, realm},
		"malformed token": {call{path: "/billing/invoices/1", secret: "phi_nonsense"}, 401,
			realm + `, error="invalid_token", error_description="the access token is malformed or unknown"`},
		"revoked token": {call{path: "/billing/invoices/1", secret: rev}, 401,
			realm + `, error="invalid_token", error_description="the access token has been revoked"`},
		"outside the compartment": {call{path: "/fhir/Observation?patient=pat-2", secret: pat}, 403,
			realm + `, error="insufficient_scope", error_description="the request is outside the token's patient compartment"`},
		"another patient's operation": {call{path: "/fhir/Patient/pat-2/$everything", secret: pat}, 403,
			realm + `, error="insufficient_scope", error_description="the request is outside the token's patient compartment"`},
		"a scope missing": {call{path: "/fhir/Patient/1", secret: user}, 403,
			realm + `, error="insufficient_scope", error_description="this request needs the scope 'user/Patient.r'", scope="user/Patient.r"`},
		"a route's scope missing": {call{path: "/billing/invoices/secret", secret: user}, 403,
			realm + `, error="insufficient_scope", error_description="this request needs the scope 'billing:admin'", scope="billing:admin"`},
		"a restricted scope": {call{path: "/fhir/Observation/1", secret: lab}, 403,
			realm + `, error="insufficient_scope", error_description="the scope 'user/Observation.rs?category=laboratory' allows only searches that carry its parameters"`},
		"no route": {call{method: "DELETE", path: "/billing/invoices/1", secret: user}, 403,
			realm + `, error_description="no route of this upstream allows DELETE on this path"`},
		"an operation not let through": {call{path: "/fhir/Patient/pat-1/$meta", secret: pat}, 403,
			realm + `, error_description="the operation $meta is not allowed through this gateway (no scope is configured for it)"`},
		"a network not allowed": {call{path: "/billing/invoices/1", secret: net10}, 403,
			realm + `, error="insufficient_scope", error_description="the request comes from a network the token may not be used from"`},
		"break-glass without its headers": {call{path: "/fhir/Observation?code=x", secret: bg}, 403,
			realm + `, error_description="this is a break-glass token: every request needs X-Break-Glass: <justification> and X-Purpose-Of-Use: ETREAT"`},
		"break-glass claimed": {call{path: "/fhir/Observation?code=x", secret: user, header: map[string]string{"X-Break-Glass": "emergency", "X-Purpose-Of-Use": "ETREAT"}}, 403,
			realm + `, error="insufficient_scope", error_description="this token is not break-glass capable; send X-Break-Glass only with a break-glass token"`},
	} {
		r := fx.do(t, c.call)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", name, r.status, r.body, c.status)
			continue
		}
		if got := r.header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: WWW-Authenticate\n  %q\nwant\n  %q", name, got, c.want)
		}
	}
	// refusals of the request itself, not of the token, carry no challenge
	for name, c := range map[string]call{
		"a form search by forward auth": {path: "/v1/authz", secret: user, header: map[string]string{"X-Original-Method": "POST", "X-Original-URI": "/fhir/Observation/_search"},
			contentType: "application/x-www-form-urlencoded"},
		"a bad request": {path: "/fhir/observation", secret: user},
	} {
		r := fx.do(t, c)
		if r.status == http.StatusUnauthorized || r.status < 400 || r.header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: %d, WWW-Authenticate %q", name, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
}
