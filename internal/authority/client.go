package authority

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// ClientGrant is what a registered OAuth client (SMART Backend Services,
// internal/oauth) may be issued at most: its registration. The tokens
// IssueToClient makes are attenuated to it exactly as a token's children
// are attenuated to their issuer.
type ClientGrant struct {
	// ClientID is the client's id (cli_…), kept as the token's ClientID.
	ClientID string
	// Registrar is the id of the token that registered the client: the
	// issued token's CreatedBy and ParentID.
	Registrar string
	// Subject is the subject of the issued tokens.
	Subject         string
	Scopes          []string
	CIDRs           []netip.Prefix
	Hours           *token.Hours
	Rate            *token.Rate
	Purposes        []string
	PurposeRequired bool
	// MaxTTL is the longest life of an issued token (positive).
	MaxTTL time.Duration
}

type clientLineage struct {
	clientID, registrar string
	at                  time.Time
}

// bound is the registration as an issuing record, valid from now for
// MaxTTL: what attenuation compares an issued token against.
func (g *ClientGrant) bound(now time.Time) *token.Record {
	end := now.Add(g.MaxTTL)
	return &token.Record{
		ID: g.ClientID, Subject: g.Subject, Kind: token.KindService, Scopes: g.Scopes,
		CreatedAt: now, ExpiresAt: end, NotAfter: end, TTL: g.MaxTTL, MaxLifetime: g.MaxTTL,
		CIDRs: g.CIDRs, Hours: g.Hours, Rate: g.Rate, Purposes: g.Purposes, PurposeRequired: g.PurposeRequired,
		Status: token.StatusActive,
	}
}

// CheckClientRegistration checks that ac may register a client with grant
// g: ac holds admin:clients, and g's scopes and constraints (and a token of
// g.MaxTTL issued now) are within ac's own (attenuation). It returns a
// *policy.FieldError for an invalid grant, an *AttenuationError for one
// wider than ac, ErrForbidden without the scope. It records nothing: the
// caller audits the registration.
func (a *Authority) CheckClientRegistration(ac Actor, g ClientGrant) error {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminClients) {
		return ErrForbidden
	}
	if err := a.checkTTL("max_ttl", g.MaxTTL); err != nil {
		return err
	}
	set, err := normaliseScopes(g.Scopes)
	if err != nil {
		return err
	}
	if err := a.cfg.ResourceTypes.Check(set); err != nil {
		return fieldErr("scopes", "%v", err)
	}
	for sc := range set.All() {
		if sc.IsRoot() || sc.IsPlain() && strings.HasPrefix(sc.String(), "admin:") || sc.String() == scope.Introspect {
			return fieldErr("scopes", "%q: a client may not hold admin scopes", sc.String())
		}
	}
	b := g.bound(a.cfg.Now().UTC())
	b.SubjectPrefix = ac.Token.SubjectPrefix
	if err := policy.Validate(b); err != nil {
		return err
	}
	return attenuate(ac, b, set)
}

// IssueToClient issues a token to the registered client g: scopes (within
// g.Scopes; nil means all of them) for ttl (0: g.MaxTTL; never more), with
// g's constraints. The token is of kind service, its ClientID is g's, its
// CreatedBy and ParentID the registrar, and its creation is recorded like
// any other with the client as the actor. Attenuation failures are
// *AttenuationError (a scope outside the registration among them).
func (a *Authority) IssueToClient(ctx context.Context, g ClientGrant, scopes []string, ttl time.Duration) (string, *token.Record, error) {
	if g.ClientID == "" || g.Registrar == "" || g.MaxTTL <= 0 {
		return "", nil, fmt.Errorf("authority: issue to client: incomplete grant")
	}
	if ttl <= 0 || ttl > g.MaxTTL {
		ttl = g.MaxTTL
	}
	now := a.cfg.Now().UTC()
	regSet, err := normaliseScopes(g.Scopes)
	if err != nil {
		return "", nil, err
	}
	if scopes == nil {
		scopes = g.Scopes
	}
	ac := &Actor{Token: g.bound(now), Scopes: regSet, client: &clientLineage{clientID: g.ClientID, registrar: g.Registrar, at: now}}
	return a.create(ctx, ac, Spec{
		Subject: g.Subject, Kind: token.KindService, Scopes: scopes, TTL: ttl, MaxLifetime: ttl,
		CIDRs: g.CIDRs, Hours: g.Hours, Rate: g.Rate, Purposes: g.Purposes, PurposeRequired: g.PurposeRequired,
	})
}

// RevokeClientTokens revokes every token issued to client clientID that is
// not revoked yet, each recorded as a revocation by ac (whom the caller has
// authorised to revoke the client). It returns the ids it revoked.
func (a *Authority) RevokeClientTokens(ctx context.Context, ac Actor, clientID, reason string) ([]string, error) {
	if clientID == "" {
		return nil, fmt.Errorf("authority: revoke client tokens: empty client id")
	}
	var ids []string
	f := store.TokenFilter{ClientID: clientID, Limit: 1000}
	for {
		recs, next, err := a.st.ListTokens(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("authority: client tokens: %w", err)
		}
		for _, r := range recs {
			if r.Status != token.StatusRevoked {
				ids = append(ids, r.ID)
			}
		}
		if next == "" {
			break
		}
		f.After = next
	}
	var revoked []string
	for _, id := range ids {
		ch, err := a.revoke(ctx, ac.Token, id, false, reason)
		if err != nil {
			return revoked, err
		}
		revoked = append(revoked, ch...)
	}
	return revoked, nil
}

// Discard revokes token id, which the caller has just issued and whose
// secret it will never return (an issue that turned out to be refused),
// recorded as a revocation by nobody with reason.
func (a *Authority) Discard(ctx context.Context, id, reason string) ([]string, error) {
	return a.revoke(ctx, nil, id, false, reason)
}
