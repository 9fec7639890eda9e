package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/phigate/phigate/internal/store"
)

// CountTokens counts the tokens (those created under parentID when it is
// not empty) by status, an active token past its expiry at now as
// expired, and the active ones expiring before now+within. It reads the
// covering index tokens_status (status, expires_at, parent_id), never a
// record: an optional capability beyond store.Store (authority uses it
// when the store has it).
func (s *Store) CountTokens(ctx context.Context, parentID string, now time.Time, within time.Duration) (store.TokenCounts, error) {
	var c store.TokenCounts
	if err := s.checkOpen("count tokens"); err != nil {
		return c, err
	}
	n, soon := now.UnixNano(), now.Add(within).UnixNano()
	q := `SELECT status,
	        count(*),
	        coalesce(sum(expires_at IS NOT NULL AND expires_at <= ?), 0),
	        coalesce(sum(expires_at IS NOT NULL AND expires_at > ? AND expires_at < ?), 0)
	      FROM tokens INDEXED BY tokens_status`
	args := []any{n, n, soon}
	if parentID != "" {
		q += " WHERE parent_id = ?"
		args = append(args, parentID)
	}
	q += " GROUP BY status"
	rows, err := s.readDB.QueryContext(ctx, q, args...)
	if err != nil {
		return c, s.readErr("count tokens", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var all, expired, expiring int
		if err := rows.Scan(&status, &all, &expired, &expiring); err != nil {
			return c, s.readErr("count tokens", err)
		}
		switch status {
		case "active":
			c.Active, c.Expired, c.Expiring = all-expired, expired, expiring
		case "suspended":
			c.Suspended = all
		case "revoked":
			c.Revoked = all
		default:
			return c, fmt.Errorf("sqlite: count tokens: unknown status %q", status)
		}
	}
	if err := rows.Err(); err != nil {
		return c, s.readErr("count tokens", err)
	}
	return c, nil
}
