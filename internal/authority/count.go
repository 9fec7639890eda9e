package authority

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
)

// ErrCannotCount: the store has no way to count tokens without reading
// them (the caller pages through List instead).
var ErrCannotCount = errors.New("authority: the store cannot count tokens")

// tokenCounter is the optional capability of a store that counts tokens
// by status without reading them (store/sqlite has it, with an index).
type tokenCounter interface {
	CountTokensUnder(ctx context.Context, parentID string, now time.Time, within time.Duration) (store.TokenCounts, error)
}

// CountTokens counts the tokens ac may list (every token for a root
// token, else those created under it, as List shows them) by status,
// with the active ones past their expiry at now as expired and those
// expiring before now+within. ErrForbidden without admin:tokens;
// ErrCannotCount when the store lacks the capability.
func (a *Authority) CountTokens(ctx context.Context, ac Actor, now time.Time, within time.Duration) (store.TokenCounts, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminTokens) {
		return store.TokenCounts{}, ErrForbidden
	}
	tc, ok := a.st.(tokenCounter)
	if !ok {
		return store.TokenCounts{}, ErrCannotCount
	}
	parent := ""
	if !ac.root() {
		parent = ac.Token.ID
	}
	c, err := tc.CountTokensUnder(ctx, parent, now, within)
	if err != nil {
		return c, fmt.Errorf("authority: count: %w", err)
	}
	return c, nil
}
