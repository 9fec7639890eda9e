package authority

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The lifetime rule: every token has an absolute end, its not_after, fixed
// when it is issued and never moved. This file is the one place that
// computes it (notAfterAt) and the one place that decides how far a
// rotation may push an expiry (extensionLimit); Create, Rotate and Update
// go through them.

// Errors of the lifetime rule. Both wrap ErrInvalidState.
var (
	// ErrLifetimeEnded: the token's not_after has passed; only a new token
	// (issued by a live issuer) can replace it.
	ErrLifetimeEnded = fmt.Errorf("%w: the token has reached its not_after", ErrInvalidState)
	// ErrIssuerRevoked: a token that issued this one (directly or further up
	// the chain) is revoked, so this one can no longer be renewed.
	ErrIssuerRevoked = fmt.Errorf("%w: a token that issued this one has been revoked", ErrInvalidState)
)

// maxChain bounds the issuer chains walked (a longer one is refused).
const maxChain = 64

// notAfterAt is the not_after of a token created at createdAt with expiry
// expiresAt and the given max lifetime, issued by issuer (nil for the
// bootstrap token): createdAt+maxLifetime (expiresAt without a max
// lifetime), never later than the issuer's own end.
func notAfterAt(createdAt, expiresAt time.Time, maxLifetime time.Duration, issuer *token.Record) time.Time {
	na := expiresAt
	if maxLifetime > 0 {
		na = createdAt.Add(maxLifetime)
	}
	if issuer != nil {
		if end := issuer.End(); na.After(end) {
			na = end
		}
	}
	return na
}

// extensionLimit is the latest expiry a rotation of rec at now may give:
// rec's end, and never beyond the end of a token up its issuer chain. It
// fails with ErrLifetimeEnded once rec's end has passed and with
// ErrIssuerRevoked when a token up the chain is revoked (or cannot be
// found, or the chain is longer than maxChain: it fails closed).
func (a *Authority) extensionLimit(ctx context.Context, rec *token.Record, now time.Time) (time.Time, error) {
	limit := rec.End()
	if !now.Before(limit) {
		return time.Time{}, fmt.Errorf("%w (%s); issue a new token", ErrLifetimeEnded, limit.UTC().Format(time.RFC3339))
	}
	cur := rec
	for depth := 0; cur.ParentID != ""; depth++ {
		if depth == maxChain {
			return time.Time{}, fmt.Errorf("%w: its issuer chain is longer than %d", ErrIssuerRevoked, maxChain)
		}
		p, err := a.st.Token(ctx, cur.ParentID)
		if errors.Is(err, store.ErrNotFound) {
			return time.Time{}, fmt.Errorf("%w: issuer %s not found", ErrIssuerRevoked, cur.ParentID)
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("authority: issuer of %s: %w", cur.ID, err)
		}
		if p.Status == token.StatusRevoked {
			return time.Time{}, fmt.Errorf("%w (%s)", ErrIssuerRevoked, p.ID)
		}
		if end := p.End(); end.Before(limit) {
			limit = end
		}
		cur = p
	}
	if !now.Before(limit) { // an issuer's end, before this token's own
		return time.Time{}, fmt.Errorf("%w (an issuer's, %s); issue a new token", ErrLifetimeEnded, limit.UTC().Format(time.RFC3339))
	}
	return limit, nil
}
