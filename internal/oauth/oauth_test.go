package oauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/oauth"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/tlsutil/tlstest"
	"github.com/phigate/phigate/internal/token"
)

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

const endpoint = "https://phigate.test:8443/v1/oauth/token"

// keys generated once per test binary run (RSA generation is slow).
var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	ec256Key *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if ecKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if ec256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
}

func jwks(t testing.TB, keys ...jose.JSONWebKey) []byte {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pub(k crypto.Signer, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"}
}

type recorder struct {
	mu      sync.Mutex
	entries []*audit.Entry
}

func (r *recorder) record(_ context.Context, e *audit.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
	return nil
}

func (r *recorder) last() *audit.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.entries) == 0 {
		return nil
	}
	return r.entries[len(r.entries)-1]
}

type fixture struct {
	t    testing.TB
	clk  *testclock.Clock
	st   *sqlite.Store
	auth *authority.Authority
	svc  *oauth.Service
	root authority.Actor
	rec  *recorder
}

func newFixture(t testing.TB, fetch *oauth.Fetcher) *fixture {
	t.Helper()
	testKeys(t)
	clk := testclock.New()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	h, err := token.NewHasherKey(1, pepper)
	if err != nil {
		t.Fatal(err)
	}
	auth := authority.New(st, h, authority.Config{Now: clk.Now})
	secret, _, err := auth.Bootstrap(t.Context(), "root", 12*time.Hour, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d, err := auth.Verify(t.Context(), secret, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal("bootstrap", d.Reason, err)
	}
	rec := &recorder{}
	if fetch == nil {
		fetch = oauth.NewFetcher(oauth.FetcherOptions{Now: clk.Now})
	}
	svc, err := oauth.New(oauth.Options{Clients: st, Tokens: st, Authority: auth, TokenEndpoint: endpoint,
		Record: rec.record, Now: clk.Now, Fetcher: fetch})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, clk: clk, st: st, auth: auth, svc: svc, root: authority.ActorOf(d), rec: rec}
}

func (f *fixture) register(reg oauth.Registration) *store.Client {
	f.t.Helper()
	if reg.Name == "" {
		reg.Name = "lab"
	}
	if reg.Scopes == nil {
		reg.Scopes = []string{"system/Observation.rs", "system/Patient.r"}
	}
	if reg.JWKS == nil && reg.JWKSURL == "" {
		reg.JWKS = jwks(f.t, pub(ecKey, "ec1"), pub(rsaKey, "rsa1"))
	}
	c, err := f.svc.Register(f.t.Context(), f.root, reg)
	if err != nil {
		f.t.Fatalf("Register: %v", err)
	}
	return c
}

// claims are a valid assertion's claims for client id at now.
func (f *fixture) claims(id string) jwt.Claims {
	now := f.clk.Now()
	return jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{endpoint}, ID: randJTI(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}
}

func randJTI() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, cl any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(s).Claims(cl).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func req(assertion string) oauth.TokenRequest {
	return oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, AssertionType: oauth.AssertionTypeJWTBearer, Assertion: assertion}
}

func TestValidAssertionIssuesATokenWithinTheRegistration(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{Purposes: []string{"TREAT"}})
	for _, tc := range []struct {
		name string
		alg  jose.SignatureAlgorithm
		key  any
		kid  string
	}{{"ES384", jose.ES384, ecKey, "ec1"}, {"RS384", jose.RS384, rsaKey, "rsa1"}} {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := f.svc.Exchange(t.Context(), req(sign(t, tc.alg, tc.key, tc.kid, f.claims(c.ID))))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if iss.ExpiresIn != 300 || iss.Scope != "system/Observation.rs system/Patient.r" {
				t.Errorf("expires_in %d, scope %q; want 300 and the registration's scopes", iss.ExpiresIn, iss.Scope)
			}
			d, err := f.auth.Verify(t.Context(), iss.AccessToken, authority.Request{Purpose: "TREAT"})
			if err != nil || !d.Allowed() {
				t.Fatalf("issued token does not verify: %v %v", d.Reason, err)
			}
			r := d.Token
			if r.ClientID != c.ID || r.ParentID != f.root.Token.ID || r.CreatedBy != f.root.Token.ID || r.Subject != "client:"+c.ID || r.Kind != token.KindService {
				t.Errorf("lineage: client %q parent %q created_by %q subject %q kind %q", r.ClientID, r.ParentID, r.CreatedBy, r.Subject, r.Kind)
			}
			if got := r.End().Sub(r.CreatedAt); got != oauth.MaxTokenTTL {
				t.Errorf("token lives %s, want %s (no renewal)", got, oauth.MaxTokenTTL)
			}
			if len(r.Purposes) != 1 || r.Purposes[0] != "TREAT" {
				t.Errorf("purposes %v, want the registration's", r.Purposes)
			}
		})
	}
}

func TestEveryAssertionMutationIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{})
	other := f.register(oauth.Registration{Name: "other", JWKS: jwks(t, pub(mustEC(t), "o1"))})
	revoked := f.register(oauth.Registration{Name: "gone"})
	if _, _, err := f.svc.Revoke(t.Context(), f.root, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := json.Marshal(pub(ecKey, "ec1"))
	now := f.clk.Now()
	replayed := sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID))
	if _, err := f.svc.Exchange(t.Context(), req(replayed)); err != nil {
		t.Fatalf("first use of the assertion: %v", err)
	}
	valid := func() string { return sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID)) }
	mod := func(m func(*jwt.Claims)) string {
		cl := f.claims(c.ID)
		m(&cl)
		return sign(t, jose.ES384, ecKey, "ec1", cl)
	}
	parts := func(s string) []string { return strings.Split(s, ".") }
	enc := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	cases := []struct {
		name, assertion, reason string
	}{
		{"AlgNone", enc(`{"alg":"none","kid":"ec1"}`) + "." + parts(valid())[1] + ".", "malformed_assertion"},
		{"HS256WithThePublicKeyAsSecret", sign(t, jose.HS256, pubDER, "ec1", f.claims(c.ID)), "malformed_assertion"},
		{"HS384WithThePublicKeyAsSecret", sign(t, jose.HS384, pubDER, "ec1", f.claims(c.ID)), "malformed_assertion"},
		{"RS256", sign(t, jose.RS256, rsaKey, "rsa1", f.claims(c.ID)), "malformed_assertion"},
		{"PS384", sign(t, jose.PS384, rsaKey, "rsa1", f.claims(c.ID)), "malformed_assertion"},
		{"ES256", sign(t, jose.ES256, ec256Key, "ec1", f.claims(c.ID)), "malformed_assertion"},
		{"ES384HeaderOnRSAKid", sign(t, jose.ES384, ecKey, "rsa1", f.claims(c.ID)), "bad_signature"},
		{"SignedByAnotherKey", sign(t, jose.ES384, mustEC(t), "ec1", f.claims(c.ID)), "bad_signature"},
		{"UnknownKid", sign(t, jose.ES384, ecKey, "nope", f.claims(c.ID)), "unknown_kid"},
		{"NoKidWithSeveralKeys", sign(t, jose.ES384, ecKey, "", f.claims(c.ID)), "kid_required"},
		{"WrongAudience", mod(func(cl *jwt.Claims) { cl.Audience = jwt.Audience{"https://phigate.test:8443/v1/oauth/token/"} }), "bad_audience"},
		{"NoAudience", mod(func(cl *jwt.Claims) { cl.Audience = nil }), "bad_audience"},
		{"MissingExp", mod(func(cl *jwt.Claims) { cl.Expiry = nil }), "missing_exp"},
		{"Expired", mod(func(cl *jwt.Claims) { cl.Expiry = jwt.NewNumericDate(now.Add(-time.Second)) }), "expired"},
		{"ExpTooFar", mod(func(cl *jwt.Claims) { cl.Expiry = jwt.NewNumericDate(now.Add(5*time.Minute + time.Second)) }), "exp_too_far"},
		{"IatAfterExp", mod(func(cl *jwt.Claims) { cl.IssuedAt = jwt.NewNumericDate(now.Add(5 * time.Minute)) }), "bad_iat"},
		{"NbfInTheFuture", mod(func(cl *jwt.Claims) { cl.NotBefore = jwt.NewNumericDate(now.Add(2 * time.Minute)) }), "not_yet_valid"},
		{"MissingJTI", mod(func(cl *jwt.Claims) { cl.ID = "" }), "bad_jti"},
		{"ReplayedJTI", replayed, "assertion_replayed"},
		{"IssNotSub", mod(func(cl *jwt.Claims) { cl.Subject = other.ID }), "iss_sub_mismatch"},
		{"IssIsAnotherClient", mod(func(cl *jwt.Claims) { cl.Issuer, cl.Subject = other.ID, other.ID }), "unknown_kid"},
		{"UnknownClient", mod(func(cl *jwt.Claims) {
			cl.Issuer, cl.Subject = "cli_aaaaaaaaaaaaaaaaaaaaaaaa", "cli_aaaaaaaaaaaaaaaaaaaaaaaa"
		}), "unknown_client"},
		{"RevokedClient", mod(func(cl *jwt.Claims) { cl.Issuer, cl.Subject = revoked.ID, revoked.ID }), "client_revoked"},
		{"NotAJWS", "not.a.jws", "malformed_assertion"},
		{"TooLarge", strings.Repeat("a", oauth.MaxAssertion+1), "assertion_too_large"},
	}
	// header and payload tampering: swap in another header or payload
	v := parts(valid())
	cases = append(cases,
		struct{ name, assertion, reason string }{"HeaderTampered", enc(`{"alg":"ES384","kid":"ec1","typ":"jwt"}`) + "." + v[1] + "." + v[2], "bad_signature"},
		struct{ name, assertion, reason string }{"PayloadTampered", v[0] + "." + enc(`{"iss":"`+c.ID+`","sub":"`+c.ID+`","aud":"`+endpoint+`","jti":"x","exp":`+jsonNum(now.Add(time.Minute))+`}`) + "." + v[2], "bad_signature"},
	)
	for i := range len(v[2]) { // every byte of the signature
		b := []byte(v[2])
		b[i] ^= 1
		if string(b) == v[2] {
			continue
		}
		cases = append(cases, struct{ name, assertion, reason string }{"SignatureByteFlip", v[0] + "." + v[1] + "." + string(b), ""})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Exchange(t.Context(), req(tc.assertion))
			var oe *oauth.Error
			if !errors.As(err, &oe) {
				t.Fatalf("Exchange = %v, want an OAuth error", err)
			}
			if oe.Code != "invalid_client" || oe.Status() != http.StatusUnauthorized {
				t.Errorf("code %s status %d, want invalid_client 401", oe.Code, oe.Status())
			}
			if tc.reason != "" && oe.Reason != tc.reason {
				t.Errorf("reason %q, want %q", oe.Reason, tc.reason)
			}
			if e := f.rec.last(); e == nil || e.Action != audit.ActionClientAuthFailed || e.Reason != oe.Reason {
				t.Errorf("last audit entry %+v, want client.auth_failed %s", e, oe.Reason)
			} else if strings.Contains(e.Reason, tc.assertion) && len(tc.assertion) > 8 {
				t.Error("the audit entry holds the assertion")
			}
		})
	}
}

func jsonNum(t time.Time) string { b, _ := json.Marshal(t.Unix()); return string(b) }

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWKSURLKeysRotateAndRemovedKeysStopWorking(t *testing.T) {
	testKeys(t)
	ca := tlstest.NewCA(t)
	var mu sync.Mutex
	set := jwks(t, pub(ecKey, "ec1"))
	fetches := 0
	srv := ca.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Header().Set("Cache-Control", "max-age=120")
		w.Write(set)
	}))
	tlsCfg, err := tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New()
	fetch := oauth.NewFetcher(oauth.FetcherOptions{Client: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}, Now: clk.Now})
	f := newFixture(t, fetch)
	f.clk = clk // one clock: the fetcher's
	f.svc, _ = oauth.New(oauth.Options{Clients: f.st, Tokens: f.st, Authority: f.auth, TokenEndpoint: endpoint, Now: clk.Now, Fetcher: fetch, Record: f.rec.record})
	c := f.register(oauth.Registration{JWKSURL: srv.URL + "/jwks.json"})
	exchange := func(key any, kid string) error {
		_, err := f.svc.Exchange(t.Context(), req(sign(t, jose.ES384, key, kid, f.claims(c.ID))))
		return err
	}
	if err := exchange(ecKey, "ec1"); err != nil {
		t.Fatalf("first exchange: %v", err)
	}
	if err := exchange(ecKey, "ec1"); err != nil || fetches != 1 {
		t.Fatalf("second exchange: %v, %d fetches; want the cached set (1 fetch)", err, fetches)
	}
	// rotation: a new key appears; its kid is unknown, so the set is fetched again
	k2 := mustEC(t)
	mu.Lock()
	set = jwks(t, pub(k2, "ec2"))
	mu.Unlock()
	clk.Add(31 * time.Second)
	if err := exchange(k2, "ec2"); err != nil || fetches != 2 {
		t.Fatalf("new kid: %v, %d fetches; want success after 2 fetches", err, fetches)
	}
	// the removed key stops working after that fetch
	var oe *oauth.Error
	if err := exchange(ecKey, "ec1"); !errors.As(err, &oe) || oe.Reason != "unknown_kid" {
		t.Fatalf("removed key = %v, want unknown_kid", err)
	}
	// unknown kids do not amplify: no fetch within 30 s of the last
	for range 10 {
		exchange(ecKey, "nope")
	}
	if fetches != 2 {
		t.Fatalf("%d fetches after unknown kids within the refetch interval, want 2", fetches)
	}
}

func TestRegistrationIsAttenuatedAndRefusesBadKeySets(t *testing.T) {
	f := newFixture(t, nil)
	// a narrower admin token
	sec, _, err := f.auth.Create(t.Context(), f.root, authority.Spec{Subject: "ops", Kind: token.KindAdmin,
		Scopes: []string{"admin:clients", "admin:tokens", "system/Observation.rs"}, TTL: time.Hour, CIDRs: mustPrefixes("10.0.0.0/8")})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.auth.Verify(t.Context(), sec, authority.Request{Addr: mustAddr("10.1.2.3")})
	if err != nil || !d.Allowed() {
		t.Fatal(d.Reason, err)
	}
	ops := authority.ActorOf(d)
	ks := jwks(t, pub(ecKey, "ec1"))
	rsaSmall, _ := rsa.GenerateKey(rand.Reader, 1024)
	privJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ecKey, KeyID: "p"}}})
	for _, tc := range []struct {
		name string
		reg  oauth.Registration
		want string // "attenuation", "field"
	}{
		{"ScopeOutsideTheRegistrar", oauth.Registration{Scopes: []string{"system/Patient.r"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "attenuation"},
		{"NoCIDRsWhenTheRegistrarHasThem", oauth.Registration{Scopes: []string{"system/Observation.rs"}}, "attenuation"},
		{"WiderCIDRs", oauth.Registration{Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("0.0.0.0/0")}, "attenuation"},
		{"AdminScope", oauth.Registration{Scopes: []string{"admin:tokens"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "field"},
		{"MaxTTLOverTheCap", oauth.Registration{Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.0.0.0/8"), MaxTTL: 6 * time.Minute}, "field"},
		{"PrivateKeyInJWKS", oauth.Registration{JWKS: privJWKS, Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "field"},
		{"RSA1024", oauth.Registration{JWKS: jwks(t, pub(rsaSmall, "r")), Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "field"},
		{"P256", oauth.Registration{JWKS: jwks(t, pub(ec256Key, "e")), Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "field"},
		{"HTTPJWKSURL", oauth.Registration{JWKSURL: "http://keys.example/jwks", Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.0.0.0/8")}, "field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.reg.Name = "x"
			if tc.reg.JWKS == nil && tc.reg.JWKSURL == "" {
				tc.reg.JWKS = ks
			}
			_, err := f.svc.Register(t.Context(), ops, tc.reg)
			var at *authority.AttenuationError
			switch tc.want {
			case "attenuation":
				if !errors.As(err, &at) {
					t.Fatalf("Register = %v, want an attenuation error", err)
				}
				if e := f.rec.last(); e == nil || e.Action != audit.ActionClientRegistered || e.Outcome != audit.OutcomeDenied {
					t.Errorf("last audit entry %+v, want a denied client.registered", e)
				}
			default:
				if err == nil || errors.As(err, &at) {
					t.Fatalf("Register = %v, want a validation error", err)
				}
			}
		})
	}
	// within: accepted, and its tokens carry the constraints
	c, err := f.svc.Register(t.Context(), ops, oauth.Registration{Name: "ok", JWKS: ks, Scopes: []string{"system/Observation.rs"}, CIDRs: mustPrefixes("10.1.0.0/16")})
	if err != nil {
		t.Fatalf("Register within: %v", err)
	}
	iss, err := f.svc.Exchange(t.Context(), req(sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID))))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := f.auth.Verify(t.Context(), iss.AccessToken, authority.Request{Addr: mustAddr("10.2.0.1")}); d.Allowed() {
		t.Error("the client's token works outside the registration's CIDRs")
	}
	if d, _ := f.auth.Verify(t.Context(), iss.AccessToken, authority.Request{Addr: mustAddr("10.1.0.1")}); !d.Allowed() {
		t.Errorf("the client's token refused inside its CIDRs: %v", d.Reason)
	}
	// the non-root registrar sees its own clients only
	if _, err := f.svc.Get(t.Context(), ops, f.register(oauth.Registration{Name: "root's"}).ID); !errors.Is(err, oauth.ErrNotFound) {
		t.Errorf("Get(another's client) = %v, want ErrNotFound", err)
	}
}

func TestScopesAreRequestedWithinTheRegistration(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{Scopes: []string{"system/Observation.rs", "system/Patient.r"}})
	ask := func(scope string) (*oauth.Issued, error) {
		r := req(sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID)))
		r.Scope, r.ScopeGiven = scope, true
		return f.svc.Exchange(t.Context(), r)
	}
	if iss, err := ask("system/Observation.r"); err != nil || iss.Scope != "system/Observation.r" {
		t.Errorf("narrower scope: %v, %v; want system/Observation.r", iss, err)
	}
	for _, s := range []string{"system/Observation.rs system/Encounter.r", "system/*.rs", "admin:*", "patient/Observation.rs x", ""} {
		_, err := ask(s)
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Code != "invalid_scope" {
			t.Errorf("scope %q: %v, want invalid_scope (not dropped)", s, err)
		}
	}
}

func TestRevokingAClientRevokesItsLiveTokens(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{})
	var secrets []string
	for range 3 {
		iss, err := f.svc.Exchange(t.Context(), req(sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID))))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, iss.AccessToken)
	}
	_, ids, err := f.svc.Revoke(t.Context(), f.root, c.ID, "decommissioned")
	if err != nil || len(ids) != 3 {
		t.Fatalf("Revoke = %v, %d tokens; want 3", err, len(ids))
	}
	for _, s := range secrets {
		if d, _ := f.auth.Verify(t.Context(), s, authority.Request{}); d.Allowed() {
			t.Error("a token of the revoked client still works")
		}
	}
	if _, _, err := f.svc.Revoke(t.Context(), f.root, c.ID, ""); !errors.Is(err, oauth.ErrRevoked) {
		t.Errorf("second Revoke = %v, want ErrRevoked", err)
	}
}

func TestAReplayNeverLeavesALiveToken(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{})
	a := sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID))
	if _, err := f.svc.Exchange(t.Context(), req(a)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.svc.Exchange(t.Context(), req(a)); err == nil {
			t.Fatal("a replay got a token")
		}
	}
	recs, _, err := f.st.ListTokens(t.Context(), store.TokenFilter{ClientID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, r := range recs {
		if r.Status == token.StatusActive {
			live++
		}
	}
	if live != 1 {
		t.Fatalf("%d live tokens of the client after one exchange and three replays, want 1", live)
	}
}

// revokingStore revokes the client, as a racing DELETE /v1/clients/{id}
// on any node would, right after the token endpoint's first read of it:
// the grant saw it active, the token is issued after the revocation.
type revokingStore struct {
	*sqlite.Store
	reads atomic.Int32
	at    time.Time
}

func (s *revokingStore) Client(ctx context.Context, id string) (*store.Client, error) {
	c, err := s.Store.Client(ctx, id)
	if err == nil && s.reads.Add(1) == 1 {
		if _, rerr := s.Store.RevokeClient(ctx, id, "revoked during a grant", s.at); rerr != nil {
			return nil, rerr
		}
	}
	return c, err
}

// TestGrantRacingTheClientsRevocationLeavesNoLiveToken: a client revoked
// between the grant's check and its token's issue gets no token (the one
// made is revoked before its secret is returned), though the revocation's
// sweep of the client's tokens ran before that token existed.
func TestGrantRacingTheClientsRevocationLeavesNoLiveToken(t *testing.T) {
	f := newFixture(t, nil)
	c := f.register(oauth.Registration{})
	rs := &revokingStore{Store: f.st, at: f.clk.Now()}
	svc, err := oauth.New(oauth.Options{Clients: rs, Tokens: f.st, Authority: f.auth, TokenEndpoint: endpoint,
		Record: f.rec.record, Now: f.clk.Now, Fetcher: oauth.NewFetcher(oauth.FetcherOptions{Now: f.clk.Now})})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := svc.Exchange(t.Context(), req(sign(t, jose.ES384, ecKey, "ec1", f.claims(c.ID))))
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Reason != "client_revoked" || iss != nil {
		t.Fatalf("grant racing the revocation = %+v, %v; want invalid_client client_revoked", iss, err)
	}
	recs, _, err := f.st.ListTokens(t.Context(), store.TokenFilter{ClientID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Status != token.StatusRevoked {
		t.Fatalf("the client's tokens after the race: %+v; want the one issued, revoked", recs)
	}
}
