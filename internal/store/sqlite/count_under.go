package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/phigate/phigate/internal/store"
)

// CountTokensUnder counts the tokens (those created under parentID when it is
// not empty) by status, an active token past its expiry at now as
// expired, and the active ones expiring before now+within, in one read
// transaction. It counts ranges of the covering index tokens_status
// (status, expires_at, parent_id), never reading a record: an optional
// capability beyond store.Store (authority uses it when the store has it).
func (s *Store) CountTokensUnder(ctx context.Context, parentID string, now time.Time, within time.Duration) (store.TokenCounts, error) {
	var c store.TokenCounts
	if err := s.checkOpen("count tokens"); err != nil {
		return c, err
	}
	n, soon := now.UnixNano(), now.Add(within).UnixNano()
	// five range counts over the index (count(*) of a range evaluates
	// nothing per row), the parent, when asked for, checked per entry
	where, args := "", []any{}
	if parentID != "" {
		where, args = " AND parent_id = ?", []any{parentID}
	}
	counts := []struct {
		dst  *int
		cond string
		args []any
	}{
		{&c.Active, "status = 'active' AND (expires_at IS NULL OR expires_at > ?)", []any{n}},
		{&c.Expired, "status = 'active' AND expires_at <= ?", []any{n}},
		{&c.Expiring, "status = 'active' AND expires_at > ? AND expires_at < ?", []any{n, soon}},
		{&c.Suspended, "status = 'suspended'", nil},
		{&c.Revoked, "status = 'revoked'", nil},
	}
	// one read transaction: the five counts are of one snapshot
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return c, s.readErr("count tokens", err)
	}
	defer tx.Rollback()
	for _, k := range counts {
		q := "SELECT count(*) FROM tokens INDEXED BY tokens_status WHERE " + k.cond + where
		if err := tx.QueryRowContext(ctx, q, append(k.args, args...)...).Scan(k.dst); err != nil {
			return c, s.readErr("count tokens", err)
		}
	}
	return c, nil
}
