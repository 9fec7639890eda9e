package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/reqctx"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// Errors of the registry; the HTTP layer maps them to 404, 409 and 403.
// Validation failures are *policy.FieldError, attenuation failures
// *authority.AttenuationError.
var (
	ErrNotFound    = errors.New("oauth: no such client")
	ErrRevoked     = errors.New("oauth: the client is revoked already")
	ErrForbidden   = errors.New("oauth: the caller may not do this")
	ErrUnavailable = errors.New("oauth: the store does not keep OAuth clients")
)

// MaxTokenTTL is the hard cap of a token the token endpoint issues.
const MaxTokenTTL = 5 * time.Minute

// MaxAssertionLife is how far in the future an assertion's exp may be.
const MaxAssertionLife = 5 * time.Minute

// TokenReader reads token records (store.Store is one).
type TokenReader interface {
	Token(ctx context.Context, id string) (*token.Record, error)
}

// Options configure a Service. Clients, Tokens, Authority and
// TokenEndpoint are required.
type Options struct {
	Clients   store.ClientStore
	Tokens    TokenReader
	Authority *authority.Authority
	// Fetcher fetches the key sets of clients registered with a jwks_url
	// (nil: a Fetcher with defaults and the system roots).
	Fetcher *Fetcher
	// TokenEndpoint is the URL the assertion's aud must name, exactly.
	TokenEndpoint string
	// TokenTTL is the life of an issued token (default and cap: MaxTokenTTL).
	TokenTTL time.Duration
	// Record writes the registry's and the token endpoint's audit entries
	// durably (nil: not recorded). A failure refuses the change.
	Record func(ctx context.Context, e *audit.Entry) error
	Now    func() time.Time
	Rand   io.Reader
}

// Service is the client registry and the token endpoint. It is safe for
// concurrent use.
type Service struct {
	opts   Options
	inline *inlineCache
}

// New returns a Service; it fails when a required option is missing.
func New(opts Options) (*Service, error) {
	if opts.Clients == nil {
		return nil, ErrUnavailable
	}
	if opts.Tokens == nil || opts.Authority == nil || opts.TokenEndpoint == "" {
		return nil, errors.New("oauth: Tokens, Authority and TokenEndpoint are required")
	}
	if opts.TokenTTL <= 0 || opts.TokenTTL > MaxTokenTTL {
		opts.TokenTTL = min(max(opts.TokenTTL, 0), MaxTokenTTL)
		if opts.TokenTTL == 0 {
			opts.TokenTTL = MaxTokenTTL
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Fetcher == nil {
		opts.Fetcher = NewFetcher(FetcherOptions{Now: opts.Now})
	}
	return &Service{opts: opts, inline: newInlineCache(4096)}, nil
}

// TokenEndpoint returns the token endpoint's URL.
func (s *Service) TokenEndpoint() string { return s.opts.TokenEndpoint }

// Registration is what POST /v1/clients asks for.
type Registration struct {
	Name string
	// Subject of the issued tokens (default "client:<id>").
	Subject string
	// Exactly one of JWKS (inline key set JSON) and JWKSURL (https).
	JWKS            []byte
	JWKSURL         string
	Scopes          []string
	CIDRs           []netip.Prefix
	Hours           *token.Hours
	Rate            *token.Rate
	Purposes        []string
	PurposeRequired bool
	// MaxTTL of an issued token (0: the server's token TTL; never more).
	MaxTTL time.Duration
}

func fieldErr(field, format string, a ...any) error {
	return &policy.FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func (s *Service) newID() (string, error) {
	var b [15]byte
	if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
		return "", fmt.Errorf("oauth: client id: %w", err)
	}
	return "cli_" + idEncoding.EncodeToString(b[:]), nil
}

// ValidClientID reports whether id has the form of a client id.
func ValidClientID(id string) bool {
	rest, ok := strings.CutPrefix(id, "cli_")
	if !ok || len(rest) != 24 {
		return false
	}
	_, err := idEncoding.DecodeString(rest)
	return err == nil
}

// Grant returns the registration of c as an authority grant, its tokens
// living at most ttl.
func grant(c *store.Client, ttl time.Duration) authority.ClientGrant {
	return authority.ClientGrant{
		ClientID: c.ID, Registrar: c.CreatedBy, Subject: c.Subject, Scopes: c.Scopes,
		CIDRs: c.CIDRs, Hours: c.Hours, Rate: c.Rate, Purposes: c.Purposes, PurposeRequired: c.PurposeRequired,
		MaxTTL: ttl,
	}
}

// Register registers a client on behalf of ac, which must hold
// admin:clients and cover everything the registration asks for
// (attenuation). The registration is audited (client.registered) before it
// is stored; a refused one is audited as denied.
func (s *Service) Register(ctx context.Context, ac authority.Actor, reg Registration) (*store.Client, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminClients) {
		return nil, s.denied(ctx, audit.ActionClientRegistered, ac, "", ErrForbidden)
	}
	name := strings.TrimSpace(reg.Name)
	if name == "" || utf8.RuneCountInString(name) > 128 || !utf8.ValidString(name) {
		return nil, fieldErr("name", "1 to 128 characters")
	}
	switch {
	case len(reg.JWKS) > 0 && reg.JWKSURL != "":
		return nil, fieldErr("jwks", "give either jwks or jwks_url, not both")
	case len(reg.JWKS) > 0:
		if _, err := ParseJWKS(reg.JWKS); err != nil {
			return nil, fieldErr("jwks", "%s", strings.TrimPrefix(err.Error(), "oauth: "))
		}
	case reg.JWKSURL != "":
		if err := CheckJWKSURL(reg.JWKSURL); err != nil {
			return nil, fieldErr("jwks_url", "must be an absolute https URL")
		}
	default:
		return nil, fieldErr("jwks", "a key set is required: jwks or jwks_url")
	}
	ttl := reg.MaxTTL
	if ttl == 0 {
		ttl = s.opts.TokenTTL
	}
	if ttl < 0 || ttl > s.opts.TokenTTL {
		return nil, fieldErr("max_ttl", "must be positive and at most %s (the token endpoint's cap)", s.opts.TokenTTL)
	}
	set, err := scope.ParseSet(reg.Scopes)
	if err != nil || len(reg.Scopes) == 0 {
		return nil, fieldErr("scopes", "at least one valid scope is required")
	}
	id, err := s.newID()
	if err != nil {
		return nil, err
	}
	subject := reg.Subject
	if subject == "" {
		subject = ac.Token.SubjectPrefix + "client:" + id
	}
	now := s.opts.Now().UTC()
	c := &store.Client{
		ID: id, Name: name, Subject: subject, JWKS: reg.JWKS, JWKSURL: reg.JWKSURL, Scopes: set.Strings(),
		CIDRs: reg.CIDRs, Hours: reg.Hours, Rate: reg.Rate, Purposes: reg.Purposes, PurposeRequired: reg.PurposeRequired,
		MaxTTL: ttl, CreatedBy: ac.Token.ID, Status: store.ClientActive, CreatedAt: now, UpdatedAt: now, StatusChangedAt: now,
	}
	if err := s.opts.Authority.CheckClientRegistration(ac, grant(c, ttl)); err != nil {
		var at *authority.AttenuationError
		if errors.As(err, &at) || errors.Is(err, authority.ErrForbidden) {
			return nil, s.denied(ctx, audit.ActionClientRegistered, ac, id, err)
		}
		return nil, err
	}
	if err := s.record(ctx, &audit.Entry{Action: audit.ActionClientRegistered, Outcome: audit.OutcomeSuccess,
		Actor: audit.ActorOf(ac.Token), Target: id, After: audit.Snapshot(View(c))}); err != nil {
		return nil, err
	}
	if err := s.opts.Clients.CreateClient(ctx, c); err != nil {
		s.record(ctx, &audit.Entry{Action: audit.ActionClientRegistered, Outcome: audit.OutcomeFailure,
			Actor: audit.ActorOf(ac.Token), Target: id, Reason: "store: " + err.Error()})
		return nil, fmt.Errorf("oauth: register: %w", err)
	}
	return c, nil
}

// visible returns client id if ac may see it: the root sees every client,
// another holder of admin:clients those it registered (others are
// ErrNotFound, so they cannot be discovered).
func (s *Service) visible(ctx context.Context, ac authority.Actor, id string) (*store.Client, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminClients) {
		return nil, ErrForbidden
	}
	if !ValidClientID(id) {
		return nil, ErrNotFound
	}
	c, err := s.opts.Clients.Client(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	if !ac.Scopes.Has(scope.Root) && c.CreatedBy != ac.Token.ID {
		return nil, ErrNotFound
	}
	return c, nil
}

// Get returns client id if ac may see it.
func (s *Service) Get(ctx context.Context, ac authority.Actor, id string) (*store.Client, error) {
	return s.visible(ctx, ac, id)
}

// List lists the clients ac may see (see Get), a page at a time.
func (s *Service) List(ctx context.Context, ac authority.Actor, f store.ClientFilter) ([]*store.Client, string, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminClients) {
		return nil, "", ErrForbidden
	}
	if !ac.Scopes.Has(scope.Root) {
		f.CreatedBy = ac.Token.ID
	}
	cl, next, err := s.opts.Clients.ListClients(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("oauth: %w", err)
	}
	return cl, next, nil
}

// Revoke revokes client id (final) and every live token issued to it, on
// behalf of ac (the root, or the token that registered it). The
// revocation is audited (client.revoked) before it is stored, and each
// token's revocation as token.revoked.
func (s *Service) Revoke(ctx context.Context, ac authority.Actor, id, reason string) (*store.Client, []string, error) {
	c, err := s.visible(ctx, ac, id)
	if err != nil {
		return nil, nil, s.denied(ctx, audit.ActionClientRevoked, ac, id, err)
	}
	if c.Status == store.ClientRevoked {
		return nil, nil, ErrRevoked
	}
	if reason == "" {
		reason = "client revoked"
	}
	if err := s.record(ctx, &audit.Entry{Action: audit.ActionClientRevoked, Outcome: audit.OutcomeSuccess,
		Actor: audit.ActorOf(ac.Token), Target: id, Reason: reason}); err != nil {
		return nil, nil, err
	}
	c, err = s.opts.Clients.RevokeClient(ctx, id, reason, s.opts.Now().UTC())
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, nil, ErrRevoked
	case err != nil:
		return nil, nil, fmt.Errorf("oauth: revoke: %w", err)
	}
	s.inline.drop(id)
	ids, err := s.opts.Authority.RevokeClientTokens(ctx, ac, id, "client "+id+" revoked")
	if err != nil {
		return c, ids, fmt.Errorf("oauth: revoke the client's tokens: %w", err)
	}
	return c, ids, nil
}

// record writes e (with the request's id and source) durably.
func (s *Service) record(ctx context.Context, e *audit.Entry) error {
	if s.opts.Record == nil {
		return nil
	}
	info := reqctx.From(ctx)
	e.RequestID, e.Purpose = info.RequestID, info.Purpose
	e.Source.UserAgent = info.UserAgent
	if info.Source.IsValid() {
		e.Source.IP = info.Source.String()
	}
	if err := s.opts.Record(ctx, e); err != nil {
		if e.Outcome == audit.OutcomeSuccess {
			return fmt.Errorf("%w: %v", authority.ErrAuditUnavailable, err)
		}
	}
	return nil
}

// denied records a refused change and returns err unchanged.
func (s *Service) denied(ctx context.Context, action audit.Action, ac authority.Actor, target string, err error) error {
	s.record(ctx, &audit.Entry{Action: action, Outcome: audit.OutcomeDenied, Actor: audit.ActorOf(ac.Token), Target: target, Reason: err.Error()})
	return err
}

// ClientView is a client as the admin API shows it (public keys only).
type ClientView struct {
	ID              string       `json:"id"`
	Name            string       `json:"name"`
	Subject         string       `json:"subject"`
	JWKSURL         string       `json:"jwks_url,omitempty"`
	JWKS            any          `json:"jwks,omitempty"`
	Scopes          []string     `json:"scopes"`
	CIDRs           []string     `json:"cidrs,omitempty"`
	Hours           *token.Hours `json:"hours,omitempty"`
	Rate            *token.Rate  `json:"rate,omitempty"`
	Purposes        []string     `json:"purposes,omitempty"`
	PurposeRequired bool         `json:"purpose_required,omitempty"`
	MaxTTL          string       `json:"max_ttl"`
	CreatedBy       string       `json:"created_by"`
	Status          string       `json:"status"`
	StatusReason    string       `json:"status_reason,omitempty"`
	CreatedAt       time.Time    `json:"created_at"`
	UpdatedAt       time.Time    `json:"updated_at"`
}

// View returns the API view of c.
func View(c *store.Client) ClientView {
	v := ClientView{
		ID: c.ID, Name: c.Name, Subject: c.Subject, JWKSURL: c.JWKSURL, Scopes: c.Scopes, Hours: c.Hours, Rate: c.Rate,
		Purposes: c.Purposes, PurposeRequired: c.PurposeRequired, MaxTTL: c.MaxTTL.String(), CreatedBy: c.CreatedBy,
		Status: string(c.Status), StatusReason: c.StatusReason, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
	if len(c.JWKS) > 0 {
		v.JWKS = rawJSON(c.JWKS)
	}
	for _, p := range c.CIDRs {
		v.CIDRs = append(v.CIDRs, p.String())
	}
	return v
}
