package postgres

import (
	"context"
	"fmt"
	"time"
)

// CountTokens counts the tokens by status at time at: "active",
// "suspended", "revoked", and "expired" for an active token whose expiry
// is not after at. One scan of the tokens table: for metrics, which cache
// the answer (internal/metrics), not for a request path.
func (s *Store) CountTokens(ctx context.Context, at time.Time) (map[string]int64, error) {
	const what = "count tokens"
	if at.IsZero() {
		return nil, fmt.Errorf("postgres: %s: zero time", what)
	}
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT
		CASE WHEN status = 'active' AND expires_at IS NOT NULL AND expires_at <= $1 THEN 'expired' ELSE status END AS st,
		COUNT(*) FROM tokens GROUP BY st`, at.UTC())
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.fail(ctx, what, err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	return out, nil
}
