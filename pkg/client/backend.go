package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// BackendServicesConfig configures a BackendServicesSource.
type BackendServicesConfig struct {
	// ClientID is the registered client's id (cli_…): the assertion's iss
	// and sub.
	ClientID string
	// Key signs the assertions: an ECDSA P-384 key (ES384) or an RSA key
	// of at least 2048 bits (RS384), whose public half is in the client's
	// registered JWKS under KeyID. It may be an HSM or KMS signer.
	Key   crypto.Signer
	KeyID string
	// Scopes asked for (nil: the registration's).
	Scopes []string
	// TokenURL is the token endpoint, the assertion's aud exactly
	// (default: the client's address + /v1/oauth/token).
	TokenURL string
	// AssertionLife is the assertion's exp from now (default and at most
	// 5 minutes; the server refuses more).
	AssertionLife time.Duration
	// RenewBefore is how long before its expiry a token is replaced
	// (default a third of its life).
	RenewBefore time.Duration
	// Now is the clock (default time.Now); Rand the source of jtis
	// (default crypto/rand).
	Now  func() time.Time
	Rand io.Reader
}

// BackendServicesSource is a TokenSource for a SMART Backend Services
// client: it signs a fresh assertion (random jti, exp at most 5 minutes
// ahead) with the client's key, exchanges it at the token endpoint for a
// short-lived token, caches the token and replaces it before it expires.
// It is safe for concurrent use; concurrent callers share one exchange.
// Neither the token nor the assertion appears in an error it returns.
//
//	src, err := c.BackendServicesSource(client.BackendServicesConfig{
//		ClientID: "cli_…", Key: key, KeyID: "lab-2026",
//		Scopes: []string{"system/Observation.rs"},
//	})
//	tok, err := src.Token(ctx) // a phi_… bearer token, fresh for minutes
type BackendServicesSource struct {
	c      *Client
	cfg    BackendServicesConfig
	signer jose.Signer

	mu      sync.Mutex
	token   string
	expires time.Time
	renewAt time.Time
}

// ErrBackendKey: the key is neither ECDSA P-384 nor RSA ≥ 2048 bits.
var ErrBackendKey = errors.New("phigate: a backend services key must be ECDSA P-384 (ES384) or RSA of 2048 bits or more (RS384)")

// BackendServicesSource returns a token source for the client cfg names,
// exchanging assertions at this client's server (over its TLS and pins).
func (c *Client) BackendServicesSource(cfg BackendServicesConfig) (*BackendServicesSource, error) {
	if cfg.ClientID == "" || cfg.Key == nil {
		return nil, errors.New("phigate: BackendServicesConfig needs ClientID and Key")
	}
	var alg jose.SignatureAlgorithm
	switch pk := cfg.Key.Public().(type) {
	case *ecdsa.PublicKey:
		if pk.Curve != elliptic.P384() {
			return nil, ErrBackendKey
		}
		alg = jose.ES384
	case *rsa.PublicKey:
		if pk.N.BitLen() < 2048 {
			return nil, ErrBackendKey
		}
		alg = jose.RS384
	default:
		return nil, ErrBackendKey
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = c.base.String() + "/v1/oauth/token"
	}
	if cfg.AssertionLife <= 0 || cfg.AssertionLife > 5*time.Minute {
		cfg.AssertionLife = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if cfg.KeyID != "" {
		opts = opts.WithHeader("kid", cfg.KeyID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(cfg.Key)}, opts)
	if err != nil {
		return nil, fmt.Errorf("phigate: assertion signer: %w", err)
	}
	return &BackendServicesSource{c: c, cfg: cfg, signer: s}, nil
}

// Token returns a valid token, exchanging a new assertion when there is
// none or the current one is due for renewal. When a renewal fails while
// the current token is still valid, the current one is returned.
func (s *BackendServicesSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.token != "" && now.Before(s.renewAt) {
		return s.token, nil
	}
	tok, life, err := s.exchange(ctx, now)
	if err != nil {
		if s.token != "" && now.Before(s.expires) {
			return s.token, nil
		}
		return "", err
	}
	renew := s.cfg.RenewBefore
	if renew <= 0 || renew >= life {
		renew = life / 3
	}
	s.token, s.expires, s.renewAt = tok, now.Add(life), now.Add(life-renew)
	return tok, nil
}

// Invalidate drops the cached token (after a 401, say): the next Token
// exchanges a new assertion.
func (s *BackendServicesSource) Invalidate() {
	s.mu.Lock()
	s.token, s.expires, s.renewAt = "", time.Time{}, time.Time{}
	s.mu.Unlock()
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

func (s *BackendServicesSource) exchange(ctx context.Context, now time.Time) (string, time.Duration, error) {
	jti := make([]byte, 18)
	if _, err := io.ReadFull(s.cfg.Rand, jti); err != nil {
		return "", 0, fmt.Errorf("phigate: jti: %w", err)
	}
	cl := jwt.Claims{Issuer: s.cfg.ClientID, Subject: s.cfg.ClientID, Audience: jwt.Audience{s.cfg.TokenURL},
		ID: base64.RawURLEncoding.EncodeToString(jti), IssuedAt: jwt.NewNumericDate(now),
		Expiry: jwt.NewNumericDate(now.Add(s.cfg.AssertionLife))}
	assertion, err := jwt.Signed(s.signer).Claims(cl).Serialize()
	if err != nil {
		return "", 0, fmt.Errorf("phigate: signing the assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	if len(s.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	path := "/v1/oauth/token"
	if u, err := url.Parse(s.cfg.TokenURL); err == nil && u.Path != "" {
		path = u.EscapedPath()
	}
	var ans tokenAnswer
	if err := s.c.do(ctx, request{method: http.MethodPost, path: path, form: form, redact: []string{assertion}}, &ans); err != nil {
		return "", 0, err
	}
	if err := checkToken(ans.AccessToken); err != nil || !strings.EqualFold(ans.TokenType, "bearer") || ans.ExpiresIn <= 0 {
		return "", 0, errors.New("phigate: the token endpoint's answer is not a bearer token with an expiry")
	}
	return ans.AccessToken, time.Duration(ans.ExpiresIn) * time.Second, nil
}
