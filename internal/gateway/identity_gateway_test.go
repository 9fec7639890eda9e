package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

// TestHS256UpstreamGetsAVerifiableRequestBoundIdentity: an upstream
// configured with an HS256 key receives assertions it verifies with that
// key and its own name, bound to its request; the other upstreams keep
// the gateway's Ed25519 signature.
func TestHS256UpstreamGetsAVerifiableRequestBoundIdentity(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[1].Identity = config.Identity{Alg: config.IdentityHS256, Key: "env:TEST_IDENTITY_KEY"}
	}})
	s, rec := fx.token(t, authority.Spec{Subject: "billing-app", Scopes: []string{"billing:read", "user/Observation.rs"}})
	var got []error
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		id, err := VerifyRequestHS256(r, fx.hsKey, "billing", fx.clk.Now())
		if err == nil && (id.Subject != "billing-app" || id.TokenID != rec.ID || id.Path != "/invoices/42" || id.Audience != "billing") {
			t.Errorf("claims %+v", id)
		}
		_, edErr := VerifyRequest(r, fx.signer.PublicKey(), fx.clk.Now())
		_, audErr := VerifyRequestHS256(r, fx.hsKey, "ehr", fx.clk.Now())
		got = append(got, err, edErr, audErr)
		w.Write([]byte("{}"))
	})
	if r := fx.do(t, call{path: "/billing/invoices/42", secret: s}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if len(got) != 3 || got[0] != nil || got[1] == nil || got[2] == nil {
		t.Fatalf("HS256 %v, as EdDSA %v, for another audience %v", got[0], got[1], got[2])
	}
	// the FHIR upstream still gets Ed25519
	var edErr error
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		_, edErr = VerifyRequest(r, fx.signer.PublicKey(), fx.clk.Now())
		w.Write([]byte("{}"))
	})
	if r := fx.do(t, call{path: "/fhir/Observation?code=x", secret: s}); r.status != 200 || edErr != nil {
		t.Fatalf("%d %s %v", r.status, r.body, edErr)
	}
}

// TestGatewayWideHS256AndUpstreamOverride: gateway.identity sets the
// default, an upstream's own section wins, and forward auth signs as the
// matched upstream is configured.
func TestGatewayWideHS256AndUpstreamOverride(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Identity = config.Identity{Alg: config.IdentityHS256, Key: "env:TEST_IDENTITY_KEY"}
		c.Upstreams[0].Identity = config.Identity{Alg: config.IdentityEdDSA}
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}})
	r := fx.do(t, call{path: "/v1/authz/records/r/1", secret: s})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if id, err := VerifyIdentityHS256(r.header.Get(HeaderIdentity), fx.hsKey, fx.clk.Now()); err != nil || id.Audience != "records" || id.Path != "/records/r/1" {
		t.Fatalf("forward auth identity %+v %v", id, err)
	}
	tab := fx.gw.table.Load()
	for _, u := range tab.upstreams {
		want := "HS256"
		if u.name == "ehr" {
			want = "EdDSA"
		}
		if u.ident.alg() != want {
			t.Errorf("%s signs with %s, want %s", u.name, u.ident.alg(), want)
		}
	}
}

// TestHS256KeyProblemsStopTheStart: a key that does not resolve or is too
// short refuses the configuration (and a reload keeps the old one), and
// the error never holds the key.
func TestHS256KeyProblemsStopTheStart(t *testing.T) {
	fx := newFixture(t)
	for name, c := range map[string]struct {
		ref, want string
	}{
		"missing": {"env:NO_SUCH_KEY", "NO_SUCH_KEY is not set"},
		"short":   {"env:TEST_EHR_TOKEN", "at least 32 bytes"},
	} {
		cfg := *fx.cfg
		cfg.Upstreams = append([]config.Upstream(nil), fx.cfg.Upstreams...)
		cfg.Upstreams[0].Identity = config.Identity{Alg: config.IdentityHS256, Key: c.ref}
		err := fx.gw.Reload(context.Background(), &cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "identity") || strings.Contains(err.Error(), "ehr-secret-credential") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if u, _ := fx.gw.table.Load().match("/fhir/x"); u.ident.alg() != "EdDSA" {
		t.Error("a failed reload changed the signer")
	}
}

// The assertion binds the query (qh): one issued for ?patient=p1 does not
// verify on ?patient=p2, whether it came with a proxied request or from
// forward auth.
func TestIdentityBindsTheQuery(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	var seen *http.Request
	var upErr error
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Clone(r.Context())
		_, upErr = VerifyRequest(r, fx.signer.PublicKey(), fx.clk.Now())
		w.Write([]byte("{}"))
	})
	if r := fx.do(t, call{path: "/fhir/Observation?patient=p1&code=x", secret: pat}); r.status != 200 || upErr != nil {
		t.Fatalf("proxied: %d %s %v", r.status, r.body, upErr)
	}
	replay := func(jws, target string) error {
		req, _ := http.NewRequest(http.MethodGet, "https://ehr.internal"+target, nil)
		req.Header.Set(HeaderIdentity, jws)
		_, err := VerifyRequest(req, fx.signer.PublicKey(), fx.clk.Now())
		return err
	}
	jws := seen.Header.Get(HeaderIdentity)
	if err := replay(jws, "/fhir/R4/Observation?patient=p2&code=x"); !errors.Is(err, ErrIdentity) {
		t.Errorf("proxied assertion on another query: %v", err)
	}
	if err := replay(jws, "/fhir/R4/Observation"); !errors.Is(err, ErrIdentity) {
		t.Errorf("proxied assertion without its query: %v", err)
	}
	if err := replay(jws, seen.URL.RequestURI()); err != nil {
		t.Errorf("proxied assertion on its own request: %v", err)
	}
	r := fx.do(t, call{path: "/v1/authz/fhir/Observation?patient=p1", secret: pat})
	if r.status != 200 {
		t.Fatalf("forward auth: %d %s", r.status, r.body)
	}
	jws = r.header.Get(HeaderIdentity)
	if err := replay(jws, "/fhir/Observation?patient=p2"); !errors.Is(err, ErrIdentity) {
		t.Errorf("forward-auth assertion on another query: %v", err)
	}
	if err := replay(jws, "/fhir/Observation?patient=p1"); err != nil {
		t.Errorf("forward-auth assertion on its own request: %v", err)
	}
}

// VerifyRequestFor refuses an assertion issued for another upstream (or by
// forward auth for another): the demo FHIR server uses it.
func TestVerifyRequestForChecksTheAudience(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	var forEHR, forOther, noAud error
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		_, forEHR = VerifyRequestFor(r, fx.signer.PublicKey(), "ehr", fx.clk.Now())
		_, forOther = VerifyRequestFor(r, fx.signer.PublicKey(), "billing", fx.clk.Now())
		_, noAud = VerifyRequestFor(r, fx.signer.PublicKey(), "", fx.clk.Now())
		w.Write([]byte("{}"))
	})
	if r := fx.do(t, call{path: "/fhir/Observation?code=x", secret: s}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if forEHR != nil || !errors.Is(forOther, ErrIdentity) || !errors.Is(noAud, ErrIdentity) {
		t.Errorf("for ehr %v, for billing %v, without audience %v", forEHR, forOther, noAud)
	}
}
