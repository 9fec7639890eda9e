package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The grant and assertion type the token endpoint accepts.
const (
	GrantClientCredentials = "client_credentials"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// MaxAssertion bounds the compact JWS of an assertion.
const MaxAssertion = 8 << 10

// Algorithms are the only signature algorithms of an assertion (SMART
// Backend Services: RS384, ES384). Every other, none and HS* among them,
// is refused by the parser before any key is looked at.
var Algorithms = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

// Error is an RFC 6749 §5.2 error of the token endpoint. Description is
// for the client and never holds the assertion; Reason is the audit's
// reason code.
type Error struct {
	Code        string // invalid_request, invalid_client, invalid_grant, invalid_scope, unsupported_grant_type
	Description string
	Reason      string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// Status is the HTTP status of e: 401 for invalid_client, 400 otherwise.
func (e *Error) Status() int {
	if e.Code == "invalid_client" {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

func clientErr(reason, desc string) *Error {
	return &Error{Code: "invalid_client", Description: desc, Reason: reason}
}

// TokenRequest is the form of POST /v1/oauth/token.
type TokenRequest struct {
	GrantType, AssertionType, Assertion string
	// Scope is the space-separated scopes asked for; ScopeGiven tells an
	// absent scope (the registration's) from an empty one (refused).
	Scope      string
	ScopeGiven bool
}

// Issued is a token the endpoint issued.
type Issued struct {
	AccessToken string
	ExpiresIn   int64
	Scope       string
	Record      *token.Record
}

// Exchange verifies the client's assertion and issues a token. A refusal
// is an *Error, audited (client.auth_failed) with its reason; anything
// else is an internal failure (the assertion is never logged or audited).
func (s *Service) Exchange(ctx context.Context, req TokenRequest) (*Issued, error) {
	clientID, iss, err := s.exchange(ctx, req)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) {
			if rerr := s.record(ctx, &audit.Entry{Action: audit.ActionClientAuthFailed, Outcome: audit.OutcomeDenied,
				Target: clientID, Reason: oe.Reason}); rerr != nil {
				return nil, rerr
			}
		}
		return nil, err
	}
	return iss, nil
}

func (s *Service) exchange(ctx context.Context, req TokenRequest) (string, *Issued, error) {
	switch {
	case req.GrantType == "":
		return "", nil, &Error{"invalid_request", "grant_type is required", "missing_grant_type"}
	case req.GrantType != GrantClientCredentials:
		return "", nil, &Error{"unsupported_grant_type", "only client_credentials is supported", "unsupported_grant_type"}
	case req.AssertionType != AssertionTypeJWTBearer:
		return "", nil, &Error{"invalid_request", "client_assertion_type must be " + AssertionTypeJWTBearer, "bad_assertion_type"}
	case req.Assertion == "":
		return "", nil, &Error{"invalid_request", "client_assertion is required", "missing_assertion"}
	case len(req.Assertion) > MaxAssertion:
		return "", nil, clientErr("assertion_too_large", fmt.Sprintf("client_assertion is longer than %d bytes", MaxAssertion))
	}
	now := s.opts.Now()
	tok, err := jwt.ParseSigned(req.Assertion, Algorithms)
	if err != nil {
		return "", nil, clientErr("malformed_assertion", "client_assertion is not a compact JWS signed with RS384 or ES384")
	}
	if len(tok.Headers) != 1 {
		return "", nil, clientErr("malformed_assertion", "client_assertion must have one signature")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "", nil, clientErr("malformed_assertion", "client_assertion's claims are not valid JSON claims")
	}
	claimed := ""
	if ValidClientID(unverified.Issuer) {
		claimed = unverified.Issuer
	} else {
		return "", nil, clientErr("unknown_client", "iss does not name a registered client")
	}
	c, err := s.opts.Clients.Client(ctx, claimed)
	if errors.Is(err, store.ErrNotFound) {
		return claimed, nil, clientErr("unknown_client", "iss does not name a registered client")
	}
	if err != nil {
		return claimed, nil, fmt.Errorf("oauth: client: %w", err)
	}
	if c.Status != store.ClientActive {
		return claimed, nil, clientErr("client_revoked", "the client is revoked")
	}
	h := tok.Headers[0]
	key, oe, err := s.key(ctx, c, h.KeyID)
	if err != nil {
		return claimed, nil, err
	}
	if oe != nil {
		return claimed, nil, oe
	}
	var cl jwt.Claims
	if err := tok.Claims(key.Key, &cl); err != nil {
		return claimed, nil, clientErr("bad_signature", "the signature does not verify with the client's key")
	}
	if oe := s.checkClaims(&cl, c.ID, now); oe != nil {
		return claimed, nil, oe
	}
	// the registering token vouches for the client: without it, no token
	reg, err := s.opts.Tokens.Token(ctx, c.CreatedBy)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return claimed, nil, clientErr("registrar_gone", "the token that registered the client no longer exists")
	case err != nil:
		return claimed, nil, fmt.Errorf("oauth: registrar: %w", err)
	case reg.Status == token.StatusRevoked:
		return claimed, nil, clientErr("registrar_revoked", "the token that registered the client is revoked")
	}
	scopes, oe := requested(c, req)
	if oe != nil {
		return claimed, nil, oe
	}
	// The replay cache, for a verified assertion only. Its durable insert
	// runs alongside the token's issue (two commits' latency would be
	// one after the other otherwise); a replay revokes the token just
	// made, whose secret is then never returned.
	ttl := min(c.MaxTTL, s.opts.TokenTTL)
	if ttl <= 0 {
		ttl = s.opts.TokenTTL
	}
	used := make(chan error, 1)
	go func() { used <- s.opts.Clients.UseAssertion(ctx, c.ID, cl.ID, cl.Expiry.Time(), now) }()
	secret, rec, err := s.opts.Authority.IssueToClient(ctx, grant(c, ttl), scopes, ttl)
	uerr := <-used
	if uerr != nil && err == nil {
		if _, rerr := s.opts.Authority.Discard(context.WithoutCancel(ctx), rec.ID, "issued for a refused assertion ("+reasonOf(uerr)+"); never shown"); rerr != nil {
			return claimed, nil, fmt.Errorf("oauth: revoking the token of a refused assertion: %w", rerr)
		}
	}
	switch {
	case errors.Is(uerr, store.ErrConflict):
		return claimed, nil, clientErr("assertion_replayed", "this jti was used before")
	case uerr != nil:
		return claimed, nil, fmt.Errorf("oauth: replay cache: %w", uerr)
	}
	if err != nil {
		var at *authority.AttenuationError
		if errors.As(err, &at) {
			return claimed, nil, &Error{"invalid_grant", "the registration cannot issue this token: " + at.Field + ": " + at.Msg, "attenuation"}
		}
		return claimed, nil, err
	}
	// A revocation of the client racing this grant: it marks the client
	// revoked, then revokes the client's tokens. Read after the token is
	// durable, the client is either still active (the revocation's token
	// sweep comes later and finds this token) or revoked (the sweep may
	// have missed it: discard it here). Either way no token of a revoked
	// client survives, on this node or another.
	if cur, cerr := s.opts.Clients.Client(ctx, c.ID); cerr != nil || cur.Status != store.ClientActive {
		if _, rerr := s.opts.Authority.Discard(context.WithoutCancel(ctx), rec.ID, "issued while its client was revoked; never shown"); rerr != nil {
			return claimed, nil, fmt.Errorf("oauth: revoking the token of a revoked client: %w", rerr)
		}
		if cerr != nil && !errors.Is(cerr, store.ErrNotFound) {
			return claimed, nil, fmt.Errorf("oauth: client: %w", cerr)
		}
		return claimed, nil, clientErr("client_revoked", "the client is revoked")
	}
	return claimed, &Issued{AccessToken: secret, ExpiresIn: int64(rec.ExpiresAt.Sub(rec.CreatedAt) / time.Second),
		Scope: strings.Join(rec.Scopes, " "), Record: rec}, nil
}

func reasonOf(err error) string {
	if errors.Is(err, store.ErrConflict) {
		return "replayed jti"
	}
	return "replay cache unavailable"
}

// requested is the scopes asked for, each within the registration (one
// outside it is invalid_scope, not dropped); none asked: the registration's.
func requested(c *store.Client, req TokenRequest) ([]string, *Error) {
	if !req.ScopeGiven {
		return c.Scopes, nil
	}
	asked := strings.Fields(req.Scope)
	if len(asked) == 0 || len(asked) > token.MaxScopes {
		return nil, &Error{"invalid_scope", fmt.Sprintf("scope must name 1 to %d scopes", token.MaxScopes), "bad_scope"}
	}
	set, err := scope.ParseSet(asked)
	if err != nil {
		return nil, &Error{"invalid_scope", "scope: " + err.Error(), "bad_scope"}
	}
	reg, err := scope.ParseSet(c.Scopes)
	if err != nil {
		return nil, &Error{"invalid_scope", "the registration's scopes do not parse", "bad_registration"}
	}
	if missing := reg.Uncovered(set); len(missing) > 0 {
		return nil, &Error{"invalid_scope", fmt.Sprintf("%q is not within the client's registration", missing[0].String()), "scope_not_registered"}
	}
	return set.Strings(), nil
}

// key picks the verification key: by kid from the client's set (a set
// fetched again, within its limits, for an unknown kid); without a kid,
// only a set of exactly one key.
func (s *Service) key(ctx context.Context, c *store.Client, kid string) (*jose.JSONWebKey, *Error, error) {
	var set *jose.JSONWebKeySet
	if len(c.JWKS) > 0 {
		var err error
		if set, err = s.inline.get(c.ID, c.JWKS); err != nil {
			return nil, clientErr("bad_jwks", "the client's registered key set is not usable"), nil
		}
	} else {
		var err error
		if set, err = s.opts.Fetcher.Keys(ctx, c.JWKSURL, kid); err != nil {
			return nil, clientErr("jwks_unavailable", "the client's key set could not be fetched"), nil
		}
	}
	if kid == "" {
		if len(set.Keys) != 1 {
			return nil, clientErr("kid_required", "the client has several keys: the assertion must name one with kid"), nil
		}
		return &set.Keys[0], nil, nil
	}
	for i := range set.Keys {
		if set.Keys[i].KeyID == kid {
			return &set.Keys[i], nil, nil
		}
	}
	return nil, clientErr("unknown_kid", "kid names no key of the client"), nil
}

// checkClaims checks iss, sub, aud, exp, iat, nbf and jti of a verified
// assertion at now.
func (s *Service) checkClaims(cl *jwt.Claims, clientID string, now time.Time) *Error {
	const skew = 30 * time.Second
	switch {
	case cl.Issuer != clientID || cl.Subject != clientID:
		return clientErr("iss_sub_mismatch", "iss and sub must both be the client id")
	case !cl.Audience.Contains(s.opts.TokenEndpoint):
		return clientErr("bad_audience", "aud must be the token endpoint URL "+s.opts.TokenEndpoint)
	case cl.Expiry == nil:
		return clientErr("missing_exp", "exp is required")
	case !cl.Expiry.Time().After(now):
		return clientErr("expired", "the assertion has expired")
	case cl.Expiry.Time().After(now.Add(MaxAssertionLife)):
		return clientErr("exp_too_far", fmt.Sprintf("exp must be at most %s after now", MaxAssertionLife))
	case cl.IssuedAt != nil && (!cl.Expiry.Time().After(cl.IssuedAt.Time()) || cl.IssuedAt.Time().After(now.Add(skew))):
		return clientErr("bad_iat", "iat must be before exp and not in the future")
	case cl.NotBefore != nil && (!cl.Expiry.Time().After(cl.NotBefore.Time()) || cl.NotBefore.Time().After(now.Add(skew))):
		return clientErr("not_yet_valid", "nbf must be before exp and not in the future")
	case cl.ID == "" || len(cl.ID) > store.MaxJTI:
		return clientErr("bad_jti", fmt.Sprintf("jti is required (at most %d bytes)", store.MaxJTI))
	}
	return nil
}

// inlineCache keeps parsed inline key sets by client id.
type inlineCache struct {
	mu  sync.Mutex
	max int
	m   map[string]inlineSet
}

type inlineSet struct {
	raw string
	set *jose.JSONWebKeySet
}

func newInlineCache(n int) *inlineCache { return &inlineCache{max: n, m: map[string]inlineSet{}} }

func (c *inlineCache) get(id string, raw []byte) (*jose.JSONWebKeySet, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.raw == string(raw) {
		return e.set, nil
	}
	set, err := ParseJWKS(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[id] = inlineSet{raw: string(raw), set: set}
	c.mu.Unlock()
	return set, nil
}

func (c *inlineCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// rawJSON is JSON kept as given.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if !json.Valid(r) {
		return []byte("null"), nil
	}
	return r, nil
}
