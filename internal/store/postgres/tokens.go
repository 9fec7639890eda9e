package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// CreateToken implements store.Store: the record and its secret in one
// statement (one implicit transaction).
func (s *Store) CreateToken(ctx context.Context, rec *token.Record, sec token.Secret) error {
	if rec == nil {
		return errors.New("postgres: create token: nil record")
	}
	name := "create token " + rec.ID
	r, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	if err := checkSecret(rec.ID, sec); err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	args := append(r, sec.Hash[:], int32(sec.PepperVersion), encTime(sec.CreatedAt), encTime(sec.NotAfter))
	_, err = s.pool.Exec(ctx, `WITH t AS (
		INSERT INTO tokens (`+insertCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
		RETURNING id)
		INSERT INTO token_secrets (hash, token_id, pepper_version, created_at, not_after)
		SELECT $23, t.id, $24, $25, $26 FROM t`, args...)
	if isUnique(err) {
		// Do not say which hash: hashes stay out of errors and logs.
		return fmt.Errorf("postgres: %s: id or secret hash exists: %w", name, store.ErrConflict)
	}
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}

// Token implements store.Store.
func (s *Store) Token(ctx context.Context, id string) (*token.Record, error) {
	what := "token " + id
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	var sc recordScan
	if err := s.pool.QueryRow(ctx, "SELECT "+tokenCols+" FROM tokens t WHERE t.id = $1", id).Scan(sc.dest()...); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	rec, err := sc.record()
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return rec, nil
}

// TokenBySecret implements store.Store.
func (s *Store) TokenBySecret(ctx context.Context, hash token.Hash) (*token.Record, token.Secret, error) {
	const what = "token by secret"
	if err := s.check(ctx, what); err != nil {
		return nil, token.Secret{}, err
	}
	var sc recordScan
	dest := append(sc.dest(), &sc.pepperVersion, &sc.secretCreatedAt, &sc.secretNotAfter)
	err := s.pool.QueryRow(ctx, "SELECT "+tokenCols+`, s.pepper_version, s.created_at, s.not_after
		FROM token_secrets s JOIN tokens t ON t.id = s.token_id WHERE s.hash = $1`, hash[:]).Scan(dest...)
	if err != nil {
		return nil, token.Secret{}, s.fail(ctx, what, err)
	}
	rec, err := sc.record()
	if err != nil {
		return nil, token.Secret{}, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return rec, sc.secret(hash), nil
}

// Page sizes of the listings.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

func pageLimit(l int) int {
	switch {
	case l <= 0:
		return defaultLimit
	case l > maxLimit:
		return maxLimit
	}
	return l
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, f store.TokenFilter) ([]*token.Record, string, error) {
	const what = "list tokens"
	if err := s.check(ctx, what); err != nil {
		return nil, "", err
	}
	limit := pageLimit(f.Limit)
	var q strings.Builder
	q.WriteString("SELECT " + tokenCols + " FROM tokens t WHERE t.id > $1")
	args := []any{f.After}
	add := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&q, " AND %s $%d", cond, len(args))
	}
	if f.Subject != "" {
		add("t.subject =", f.Subject)
	}
	if f.Status != "" {
		add("t.status =", string(f.Status))
	}
	if f.ParentID != "" {
		add("t.parent_id =", f.ParentID)
	}
	if f.ClientID != "" {
		add("t.client_id =", f.ClientID)
	}
	args = append(args, limit+1)
	fmt.Fprintf(&q, " ORDER BY t.id LIMIT $%d", len(args))
	return queryPage(ctx, s, what, q.String(), args, limit, func(rows pgx.Rows) (*token.Record, error) {
		var sc recordScan
		if err := rows.Scan(sc.dest()...); err != nil {
			return nil, scanError{err}
		}
		return sc.record()
	}, func(r *token.Record) string { return r.ID })
}

// queryPage runs a listing query asking for limit+1 rows and returns at
// most limit items and the next page's cursor.
func queryPage[T any](ctx context.Context, s *Store, what, query string, args []any, limit int,
	scan func(pgx.Rows) (T, error), id func(T) string) ([]T, string, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, "", s.fail(ctx, what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			var se scanError
			if errors.As(err, &se) {
				return nil, "", s.fail(ctx, what, se.err)
			}
			return nil, "", fmt.Errorf("postgres: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.fail(ctx, what, err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = id(out[limit-1])
	}
	return out, next, nil
}

// scanError marks a failure of rows.Scan apart from a row that does not
// decode.
type scanError struct{ err error }

func (e scanError) Error() string { return e.err.Error() }

// notifyFrom is the tail of a change statement: it sends one notification
// per changed row of the CTE u (columns id, revision) on channel $1, in
// the statement's transaction, and returns the ids.
const notifyFrom = ` SELECT u.id, pg_notify($1, u.id || ' ' || u.revision::text) FROM u`

// UpdateToken implements store.Store.
func (s *Store) UpdateToken(ctx context.Context, rec *token.Record) error {
	if rec == nil {
		return errors.New("postgres: update token: nil record")
	}
	name := "update token " + rec.ID
	r, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	// remaining_uses and last_used_at belong to ReserveUses/ReleaseUses
	// and TouchLastUsed, not_after is fixed at creation, the rotation
	// columns belong to RotateSecret, client_id is fixed at creation.
	n, err := s.changeRows(ctx, `WITH u AS (UPDATE tokens SET subject = $2, kind = $3, status = $4, status_reason = $5,
			status_changed_at = $6, parent_id = $7, created_by = $8, created_at = $9, expires_at = $10,
			updated_at = $11, max_lifetime = $12, idle_timeout = $13, attrs = $14, revision = revision + 1,
			change_xid = pg_current_xact_id()
			WHERE id = $15 AND revision = $16 RETURNING id, revision)`+notifyFrom,
		s.channel, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9], r[10], r[11], r[15], r[16], r[21], rec.ID, rec.Revision)
	if err != nil {
		return s.fail(ctx, name, err)
	}
	if len(n) == 0 {
		return s.whyNot(ctx, name, rec.ID)
	}
	rec.Revision++
	return nil
}

// changeRows runs a change statement ending in notifyFrom and returns the
// ids it changed.
func (s *Store) changeRows(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id string
		var v any
		err := r.Scan(&id, &v)
		return id, err
	})
	return ids, err
}

// whyNot tells why a change of token id matched no row: ErrNotFound when
// there is no such token, else a stale revision (ErrConflict).
func (s *Store) whyNot(ctx context.Context, name, id string) error {
	var one int
	err := s.pool.QueryRow(ctx, "SELECT 1 FROM tokens WHERE id = $1", id).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w", name, store.ErrNotFound)
	case err != nil:
		return s.fail(ctx, name, err)
	default:
		return fmt.Errorf("postgres: %s: stale revision: %w", name, store.ErrConflict)
	}
}

// SetStatus implements store.Store, in one statement.
func (s *Store) SetStatus(ctx context.Context, ids []string, status token.Status, reason string, at time.Time) ([]string, error) {
	name := fmt.Sprintf("set status %s of %d tokens", status, len(ids))
	if !status.Valid() {
		return nil, fmt.Errorf("postgres: %s: unknown status %q", name, status)
	}
	if err := s.check(ctx, name); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// Revoked is final: a revoked token is never changed again.
	got, err := s.changeRows(ctx, `WITH u AS (UPDATE tokens SET status = $2, status_reason = $3, status_changed_at = $4,
			updated_at = $4, revision = revision + 1, change_xid = pg_current_xact_id()
			WHERE id = ANY($5) AND status <> $2 AND status <> 'revoked' RETURNING id, revision)`+notifyFrom,
		s.channel, string(status), reason, encTime(at), ids)
	if err != nil {
		return nil, s.fail(ctx, name, err)
	}
	// In the order given, each once.
	var changed []string
	for _, id := range ids {
		if slices.Contains(got, id) && !slices.Contains(changed, id) {
			changed = append(changed, id)
		}
	}
	return changed, nil
}

// Descendants implements store.Store. UNION drops ids seen before, so a
// cycle of parent ids ends the recursion.
func (s *Store) Descendants(ctx context.Context, id string) ([]string, error) {
	what := "descendants of " + id
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
		WITH RECURSIVE d(id) AS (
			SELECT id FROM tokens WHERE parent_id = $1
			UNION
			SELECT t.id FROM tokens t JOIN d ON t.parent_id = d.id
		)
		SELECT id FROM d WHERE id <> $1 ORDER BY id`, id)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	return ids, nil
}

// RotateSecret implements store.Store.
func (s *Store) RotateSecret(ctx context.Context, id string, sec token.Secret, oldNotAfter, newExpiresAt time.Time) error {
	return s.RotateSecretWith(ctx, id, store.Rotation{Secret: sec, OldNotAfter: oldNotAfter, NewExpiresAt: newExpiresAt})
}

// errRollback carries a sentinel result out of a transaction function.
type errRollback struct{ err error }

func (e errRollback) Error() string { return e.err.Error() }

// RotateSecretWith implements store.Store, in one transaction.
func (s *Store) RotateSecretWith(ctx context.Context, id string, rot store.Rotation) error {
	name := "rotate secret of token " + id
	sec := rot.Secret
	if rot.OldNotAfter.IsZero() {
		return fmt.Errorf("postgres: %s: zero grace end (oldNotAfter)", name)
	}
	if err := checkSecret(id, sec); err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	rp := rot.Replay
	if rp != nil {
		if err := checkReplay(id, rp); err != nil {
			return fmt.Errorf("postgres: %s: replay: %w", name, err)
		}
		rp = &store.Replay{TokenID: rp.TokenID, Key: rp.Key, CallerID: rp.CallerID, Request: rp.Request,
			Sealed: slices.Clone(rp.Sealed), CreatedAt: rp.CreatedAt, ExpiresAt: rp.ExpiresAt}
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	now := s.opts.Now().UTC()
	hash := sec.Hash
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// COALESCE keeps expires_at when newExpiresAt is zero (NULL).
		var rev int64
		err := tx.QueryRow(ctx, `WITH u AS (UPDATE tokens SET expires_at = COALESCE($2, expires_at), updated_at = $3,
			rotations = rotations + 1, rotated_at = $3, rotated_from = $4,
			revision = revision + 1, change_xid = pg_current_xact_id()
			WHERE id = $5 AND ($6 = 0 OR revision = $6) RETURNING id, revision)
			SELECT u.revision FROM u, pg_notify($1, u.id || ' ' || u.revision::text)`,
			s.channel, encTime(rot.NewExpiresAt), encTime(sec.CreatedAt), nullString(rot.RotatedFrom), id, rot.Revision).Scan(&rev)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRollback{s.whyNot(ctx, name, id)}
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO token_secrets (hash, token_id, pepper_version, created_at, not_after)
			VALUES ($1, $2, $3, $4, $5)`, hash[:], id, int32(sec.PepperVersion), encTime(sec.CreatedAt), encTime(sec.NotAfter))
		if isUnique(err) {
			return errRollback{fmt.Errorf("postgres: %s: secret hash exists: %w", name, store.ErrConflict)}
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE token_secrets SET not_after = $1
			WHERE token_id = $2 AND hash <> $3 AND (not_after IS NULL OR not_after > $1)`,
			rot.OldNotAfter.UTC(), id, hash[:]); err != nil {
			return err
		}
		// Secrets past their grace period are of no use any more; nor are
		// replays past theirs, of any token (bounded storage).
		if _, err := tx.Exec(ctx, `DELETE FROM token_secrets
			WHERE token_id = $1 AND hash <> $2 AND not_after IS NOT NULL AND not_after <= $3`, id, hash[:], now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM rotation_replays WHERE expires_at <= $1`, now); err != nil {
			return err
		}
		if rp == nil {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO rotation_replays (token_id, key_hash, caller_id, request_hash,
			rotation, sealed, created_at, expires_at) VALUES ($1, $2, $3, $4,
			(SELECT rotations FROM tokens WHERE id = $1), $5, $6, $7)`,
			id, rp.Key[:], rp.CallerID, rp.Request[:], rp.Sealed, rp.CreatedAt.UTC(), rp.ExpiresAt.UTC())
		if isUnique(err) {
			return errRollback{fmt.Errorf("postgres: %s: replay exists: %w", name, store.ErrConflict)}
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM rotation_replays WHERE token_id = $1 AND key_hash NOT IN (
			SELECT key_hash FROM rotation_replays WHERE token_id = $1
			ORDER BY created_at DESC, key_hash LIMIT $2)`, id, store.MaxReplays)
		return err
	})
	var rb errRollback
	if errors.As(err, &rb) {
		return rb.err
	}
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}

func checkReplay(id string, r *store.Replay) error {
	switch {
	case r.TokenID != id:
		return fmt.Errorf("belongs to token %s, not %s", r.TokenID, id)
	case r.CallerID == "":
		return errors.New("empty caller id")
	case len(r.Sealed) == 0:
		return errors.New("empty answer")
	case r.CreatedAt.IsZero():
		return errors.New("zero created_at")
	case !r.ExpiresAt.After(r.CreatedAt):
		return errors.New("expires_at not after created_at")
	}
	return nil
}

// Replay implements store.Store.
func (s *Store) Replay(ctx context.Context, id string, key [32]byte, at time.Time) (*store.Replay, error) {
	what := "replay of token " + id
	if at.IsZero() {
		return nil, fmt.Errorf("postgres: %s: zero time", what)
	}
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	var (
		caller      string
		req, sealed []byte
		rotation    int64
		ca, ea      time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT caller_id, request_hash, rotation, sealed, created_at, expires_at
		FROM rotation_replays WHERE token_id = $1 AND key_hash = $2 AND expires_at > $3`, id, key[:], at.UTC()).
		Scan(&caller, &req, &rotation, &sealed, &ca, &ea)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	r := &store.Replay{TokenID: id, Key: key, CallerID: caller, Rotation: rotation, Sealed: sealed,
		CreatedAt: ca.UTC(), ExpiresAt: ea.UTC()}
	if copy(r.Request[:], req) != len(r.Request) {
		return nil, fmt.Errorf("postgres: %s: malformed request hash", what)
	}
	return r, nil
}

// Secrets implements store.Store: one statement, so that "no secrets" and
// "no token" agree.
func (s *Store) Secrets(ctx context.Context, id string) ([]token.Secret, error) {
	what := "secrets of token " + id
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT s.hash, s.pepper_version, s.created_at, s.not_after
		FROM tokens t LEFT JOIN token_secrets s ON s.token_id = t.id WHERE t.id = $1
		ORDER BY s.created_at DESC NULLS LAST, (s.not_after IS NULL) DESC, s.not_after DESC NULLS LAST`, id)
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	defer rows.Close()
	found := false
	var secs []token.Secret
	for rows.Next() {
		found = true
		var (
			h                   []byte
			pepper              pgtype.Int4
			createdAt, notAfter pgtype.Timestamptz
		)
		if err := rows.Scan(&h, &pepper, &createdAt, &notAfter); err != nil {
			return nil, s.fail(ctx, what, err)
		}
		if h == nil { // the token, without a secret
			continue
		}
		sec := token.Secret{PepperVersion: int(pepper.Int32), TokenID: id, CreatedAt: decTime(createdAt), NotAfter: decTime(notAfter)}
		if copy(sec.Hash[:], h) != token.HashLen {
			return nil, fmt.Errorf("postgres: %s: stored hash has %d bytes", what, len(h))
		}
		secs = append(secs, sec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	if !found {
		return nil, fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
	}
	return secs, nil
}

// LiveSecretsByPepper implements store.Store.
func (s *Store) LiveSecretsByPepper(ctx context.Context, at time.Time) (map[int]int64, error) {
	const what = "live secrets by pepper"
	if at.IsZero() {
		return nil, fmt.Errorf("postgres: %s: zero time", what)
	}
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT s.pepper_version, COUNT(*)
		FROM token_secrets s JOIN tokens t ON t.id = s.token_id
		WHERE t.status <> 'revoked' AND t.expires_at > $1 AND (s.not_after IS NULL OR s.not_after > $1)
		GROUP BY s.pepper_version`, at.UTC())
	if err != nil {
		return nil, s.fail(ctx, what, err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var v int32
		var n int64
		if err := rows.Scan(&v, &n); err != nil {
			return nil, s.fail(ctx, what, err)
		}
		out[int(v)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	return out, nil
}

// ReserveUses implements store.Store: an atomic decrement under the row
// lock in the database (phigate_reserve_uses), whichever node asks.
func (s *Store) ReserveUses(ctx context.Context, id string, n int64) (int64, error) {
	name := "reserve uses of token " + id
	if n <= 0 {
		return 0, fmt.Errorf("postgres: %s: non-positive count %d", name, n)
	}
	if err := s.check(ctx, name); err != nil {
		return 0, err
	}
	var took int64
	if err := s.pool.QueryRow(ctx, "SELECT phigate_reserve_uses($1, $2)", id, n).Scan(&took); err != nil {
		return 0, s.fail(ctx, name, err)
	}
	if took < 0 {
		return 0, fmt.Errorf("postgres: %s: %w", name, store.ErrNotFound)
	}
	return took, nil
}

// ReleaseUses implements store.Store. The sum saturates at the largest
// int64.
func (s *Store) ReleaseUses(ctx context.Context, id string, n int64) error {
	name := "release uses of token " + id
	if n <= 0 {
		return fmt.Errorf("postgres: %s: non-positive count %d", name, n)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET remaining_uses = CASE
			WHEN remaining_uses IS NULL THEN NULL
			WHEN remaining_uses > $1::bigint - $2::bigint THEN $1::bigint ELSE remaining_uses + $2::bigint END
		WHERE id = $3`, int64(math.MaxInt64), n, id)
	if err != nil {
		return s.fail(ctx, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", name, store.ErrNotFound)
	}
	return nil
}

// TouchLastUsed implements store.Store, in one statement.
func (s *Store) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	name := fmt.Sprintf("touch last use of %d tokens", len(used))
	ids := make([]string, 0, len(used))
	for id, at := range used {
		if !at.IsZero() {
			ids = append(ids, id)
		}
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	// A fixed order: nodes flushing at once lock rows in the same order.
	slices.Sort(ids)
	ats := make([]time.Time, len(ids))
	for i, id := range ids {
		ats[i] = used[id].UTC()
	}
	_, err := s.pool.Exec(ctx, `UPDATE tokens t SET last_used_at = v.at
		FROM (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS v(id, at) ORDER BY id) v
		WHERE t.id = v.id AND (t.last_used_at IS NULL OR t.last_used_at < v.at)`, ids, ats)
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}

// GetMeta implements store.Store.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	what := "get meta " + key
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	var v []byte
	if err := s.pool.QueryRow(ctx, "SELECT value FROM meta WHERE key = $1", key).Scan(&v); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutMeta implements store.Store.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte) error {
	name := "put meta " + key
	v := slices.Clone(value)
	if v == nil {
		v = []byte{}
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, v); err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}
