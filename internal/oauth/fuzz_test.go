package oauth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/oauth"
)

// FuzzTokenRequest feeds arbitrary forms and assertions to the token
// endpoint's parsing and verification: never a panic, never a token, and
// every refusal an RFC 6749 error.
func FuzzTokenRequest(f *testing.F) {
	testKeys(f)
	f.Add("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJhbGciOiJub25lIn0.e30.", "")
	f.Add("grant_type=client_credentials&grant_type=x", "")
	f.Add("scope=system%2FObservation.rs&scope=", "")
	f.Add("%zz", "")
	f.Add("", "eyJhbGciOiJFUzM4NCIsImtpZCI6ImVjMSJ9.eyJpc3MiOiJjbGlfYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhIn0.AAAA")
	f.Add("", "a.b.c.d.e")
	f.Add("", "..")
	fx := newFixture(f, nil)
	c, err := fx.svc.Register(f.Context(), fx.root, oauth.Registration{Name: "fuzz", JWKS: jwks(f, pub(ecKey, "ec1")), Scopes: []string{"system/Observation.rs"}})
	if err != nil {
		f.Fatal(err)
	}
	// a valid assertion's header and payload under a signature of zeros
	// (a valid one would be a token the first time: not a fuzz seed)
	v := strings.Split(sign(f, jose.ES384, ecKey, "ec1", fx.claims(c.ID)), ".")
	f.Add("", v[0]+"."+v[1]+"."+strings.Repeat("A", len(v[2])))
	f.Fuzz(func(t *testing.T, form, assertion string) {
		req, desc := api.ParseTokenForm(form)
		if desc != "" {
			return
		}
		if assertion != "" {
			req.GrantType, req.AssertionType, req.Assertion = oauth.GrantClientCredentials, oauth.AssertionTypeJWTBearer, assertion
		}
		iss, err := fx.svc.Exchange(t.Context(), req)
		if err == nil {
			t.Fatalf("a fuzzed request got a token (scope %q)", iss.Scope)
		}
		var oe *oauth.Error
		if !errors.As(err, &oe) {
			t.Fatalf("Exchange = %v, want an OAuth error", err)
		}
	})
}
