package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/pkg/client"
)

// tokenEndpointGoal: the SMART Backend Services token endpoint with a
// cached (inline) JWKS must issue at least 2,000 tokens/s (issue 17); the
// ratio to the baseline is reported too.
const tokenEndpointGoal = 2000

// runTokenEndpoint measures POST /v1/oauth/token: every request a fresh
// ES384 assertion (unique jti, signed before the measurement so that the
// load generator does not spend the CPU the server needs), every answer a
// durable, audited token.
func runTokenEndpoint(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	p, err := startInTempDir(ctx, "phigate-bench-oauth-", log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var key crypto.Signer
	alg := jose.SignatureAlgorithm(o.Alg)
	switch alg {
	case jose.ES384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.RS384:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("-alg %s: want ES384 or RS384", o.Alg)
	}
	if err != nil {
		return nil, err
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "bench", Use: "sig"}}})
	ac, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	oc, err := ac.RegisterClient(ctx, client.RegisterClientRequest{Name: "bench", JWKS: set, Scopes: []string{"system/Observation.rs"}})
	if err != nil {
		return nil, fmt.Errorf("register the bench client: %w", err)
	}
	endpoint := "https://" + p.Addr + "/v1/oauth/token"
	// enough assertions for the probe, the warm-ups and both targets'
	// rounds at up to 4,000 requests/s
	n := int(4000 * (o.Duration + 2*o.Warmup).Seconds())
	fmt.Fprintf(progress, "signing %d %s assertions...\n", n, alg)
	bodies, err := signAssertions(alg, key, oc.ID, endpoint, n)
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	t := &Target{
		Name: "phigate", URL: endpoint, ContentType: "application/x-www-form-urlencoded",
		Next: func() ([]byte, bool) {
			i := next.Add(1) - 1
			if i >= int64(len(bodies)-1) {
				return nil, false
			}
			return bodies[i], true
		},
		Check:        checkAccessToken,
		BaselineBody: bodies[len(bodies)-1], // the last: never reached by phigate's share
	}
	r, err := compare(ctx, o, "token-endpoint", p, t, 0)
	if err != nil {
		return nil, err
	}
	if next.Load() >= int64(len(bodies)-1) {
		return r, errors.New("ran out of assertions: raise -duration's pool or lower -duration")
	}
	phi := r.Results[1]
	r.Pass = phi.RPS >= tokenEndpointGoal && r.errors() == 0
	r.Lines = append(r.Lines, fmt.Sprintf("%-11s tokens/s  %.0f (target ≥ %d, audit on, inline JWKS cached, %s) %s", "token-endpoint", phi.RPS, tokenEndpointGoal, alg, passFail(r.Pass)))
	return r, nil
}

func signAssertions(alg jose.SignatureAlgorithm, key crypto.Signer, clientID, endpoint string, n int) ([][]byte, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	now := time.Now()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jti := make([]byte, 16)
			for i := w; i < n; i += workers {
				rand.Read(jti)
				cl := jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{endpoint},
					ID: base64.RawURLEncoding.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now),
					Expiry: jwt.NewNumericDate(now.Add(5*time.Minute - time.Second))}
				a, err := jwt.Signed(s).Claims(cl).Serialize()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				out[i] = []byte(url.Values{"grant_type": {"client_credentials"},
					"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
					"client_assertion":      {a}}.Encode())
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return out, nil
}

var errNoAccessToken = errors.New("answer holds no access token")

func checkAccessToken(body []byte) error {
	if !bytes.Contains(body, []byte(`"access_token":"phi_`)) {
		return errNoAccessToken
	}
	return nil
}
