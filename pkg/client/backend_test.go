package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/pkg/client"
)

// tokenEndpoint verifies assertions like phigate's (alg, kid, iss, sub,
// aud, exp, jti never reused) and answers tokens of life ttl.
type tokenEndpoint struct {
	*httptest.Server
	t     *testing.T
	clock *testclock.Clock
	key   any
	ttl   time.Duration
	fail  bool

	mu        sync.Mutex
	exchanges int
	jtis      map[string]bool
	issued    []string
}

func newTokenEndpoint(t *testing.T, clock *testclock.Clock, pub any, ttl time.Duration) *tokenEndpoint {
	te := &tokenEndpoint{t: t, clock: clock, key: pub, ttl: ttl, jtis: map[string]bool{}}
	te.Server = httptest.NewTLSServer(http.HandlerFunc(te.serve))
	te.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	te.mu.Lock()
	defer te.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	refuse := func(why string) {
		w.WriteHeader(401)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": why, "request_id": "req_1"})
	}
	if te.fail {
		refuse("scripted failure")
		return
	}
	if r.URL.Path != "/v1/oauth/token" || r.FormValue("grant_type") != "client_credentials" ||
		r.FormValue("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		refuse("bad form")
		return
	}
	tok, err := jwt.ParseSigned(r.FormValue("client_assertion"), []jose.SignatureAlgorithm{jose.ES384, jose.RS384})
	if err != nil || tok.Headers[0].KeyID != "k1" {
		refuse("bad assertion header")
		return
	}
	var cl jwt.Claims
	if err := tok.Claims(te.key, &cl); err != nil {
		refuse("bad signature")
		return
	}
	now := te.clock.Now()
	aud := "https://" + te.Listener.Addr().String() + "/v1/oauth/token"
	if cl.Issuer != "cli_x" || cl.Subject != "cli_x" || !cl.Audience.Contains(aud) || cl.Expiry == nil ||
		!cl.Expiry.Time().After(now) || cl.Expiry.Time().After(now.Add(5*time.Minute)) || cl.ID == "" || te.jtis[cl.ID] {
		refuse("bad claims")
		return
	}
	te.jtis[cl.ID] = true
	te.exchanges++
	secret := newSecret(te.t)
	te.issued = append(te.issued, secret)
	json.NewEncoder(w).Encode(map[string]any{"access_token": secret, "token_type": "Bearer", "expires_in": int(te.ttl / time.Second), "scope": r.FormValue("scope")})
}

func TestBackendServicesSourceCachesAndRenewsBeforeExpiry(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		signer any
	}{{"ES384", ec}, {"RS384", rk}} {
		t.Run(tc.name, func(t *testing.T) {
			clock := testclock.New()
			var pub any
			var src *client.BackendServicesSource
			switch k := tc.signer.(type) {
			case *ecdsa.PrivateKey:
				pub = k.Public()
			case *rsa.PrivateKey:
				pub = k.Public()
			}
			te := newTokenEndpoint(t, clock, pub, 5*time.Minute)
			c, err := client.New(te.URL, client.WithPins(pinOf(te.Server)))
			if err != nil {
				t.Fatal(err)
			}
			cfg := client.BackendServicesConfig{ClientID: "cli_x", KeyID: "k1", Scopes: []string{"system/Observation.rs"}, Now: clock.Now}
			switch k := tc.signer.(type) {
			case *ecdsa.PrivateKey:
				cfg.Key = k
			case *rsa.PrivateKey:
				cfg.Key = k
			}
			if src, err = c.BackendServicesSource(cfg); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first, err := src.Token(ctx)
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			// concurrent callers within the token's first two thirds: one exchange
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if tok, err := src.Token(ctx); err != nil || tok != first {
						t.Errorf("cached Token = %v; want the first token", err)
					}
				}()
			}
			wg.Wait()
			clock.Add(3*time.Minute + 10*time.Second)
			if tok, _ := src.Token(ctx); tok != first || te.exchanges != 1 {
				t.Fatalf("before renewal: %d exchanges; want the cached token after 1", te.exchanges)
			}
			clock.Add(30 * time.Second) // past two thirds of 5 minutes
			second, err := src.Token(ctx)
			if err != nil || second == first || te.exchanges != 2 {
				t.Fatalf("renewal: %v, %d exchanges; want a new token after 2", err, te.exchanges)
			}
			// a failed renewal keeps the still valid token; once it has
			// expired, the failure is returned without the token in it
			te.mu.Lock()
			te.fail = true
			te.mu.Unlock()
			clock.Add(4 * time.Minute)
			if tok, err := src.Token(ctx); err != nil || tok != second {
				t.Errorf("failed renewal before expiry = %v; want the current token", err)
			}
			clock.Add(2 * time.Minute)
			_, err = src.Token(ctx)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Code != "invalid_client" {
				t.Fatalf("after expiry: %v, want the endpoint's invalid_client", err)
			}
			if strings.Contains(err.Error(), second) || strings.Contains(err.Error(), "eyJ") {
				t.Error("the error holds the token or an assertion")
			}
		})
	}
}

func TestBackendServicesSourceRefusesWeakKeys(t *testing.T) {
	c, err := client.New("https://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	r1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, k := range map[string]any{"P256": p256, "RSA1024": r1024} {
		var cfg client.BackendServicesConfig
		cfg.ClientID = "cli_x"
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			cfg.Key = k
		case *rsa.PrivateKey:
			cfg.Key = k
		}
		if _, err := c.BackendServicesSource(cfg); !errors.Is(err, client.ErrBackendKey) {
			t.Errorf("%s: %v, want ErrBackendKey", name, err)
		}
	}
}
