package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// isUniqueViolation reports whether err is a PRIMARY KEY or UNIQUE
// constraint failure, which the store reports as ErrConflict.
func isUniqueViolation(err error) bool {
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, rec *token.Record, sec token.Secret) error {
	if rec == nil {
		return errors.New("sqlite: create token: nil record")
	}
	name := "create token " + rec.ID
	r, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	secCreated, secNotAfter, err := encodeSecret(rec.ID, sec)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	hash := sec.Hash
	pepper := sec.PepperVersion
	return s.write(ctx, name, func(tx *wtx) error {
		_, err := tx.exec(`INSERT INTO tokens (id, subject, kind, status, status_reason, status_changed_at,
			parent_id, created_by, created_at, expires_at, updated_at, last_used_at,
			remaining_uses, max_lifetime, idle_timeout, revision, attrs, not_after,
			rotations, rotated_at, rotated_from, client_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.id, r.subject, r.kind, r.status, r.statusReason, r.statusChangedAt,
			r.parentID, r.createdBy, r.createdAt, r.expiresAt, r.updatedAt, r.lastUsedAt,
			r.remainingUses, r.maxLifetime, r.idleTimeout, r.revision, r.attrs, r.notAfter,
			r.rotations, r.rotatedAt, r.rotatedFrom, r.clientID)
		if isUniqueViolation(err) {
			return fmt.Errorf("id exists: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		return insertSecret(tx, r.id, hash, pepper, secCreated, secNotAfter)
	})
}

// insertSecret stores one secret of token id; ErrConflict if the hash exists.
func insertSecret(tx *wtx, id string, hash token.Hash, pepper int, createdAt, notAfter any) error {
	_, err := tx.exec(`INSERT INTO token_secrets (hash, token_id, pepper_version, created_at, not_after)
		VALUES (?, ?, ?, ?, ?)`, hash[:], id, pepper, createdAt, notAfter)
	if isUniqueViolation(err) {
		// Do not say which hash: hashes stay out of errors and logs.
		return fmt.Errorf("secret hash exists: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("insert secret: %w", err)
	}
	return nil
}

// Token implements store.Store.
func (s *Store) Token(ctx context.Context, id string) (*token.Record, error) {
	what := "token " + id
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	var sc recordScan
	if err := s.stmtToken.QueryRowContext(ctx, id).Scan(sc.dest()...); err != nil {
		return nil, s.readErr(what, err)
	}
	rec, err := sc.record()
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return rec, nil
}

// TokenBySecret implements store.Store.
func (s *Store) TokenBySecret(ctx context.Context, hash token.Hash) (*token.Record, token.Secret, error) {
	const what = "token by secret"
	if err := s.checkOpen(what); err != nil {
		return nil, token.Secret{}, err
	}
	var sc recordScan
	dest := append(sc.dest(), &sc.pepperVersion, &sc.secretCreatedAt, &sc.secretNotAfter)
	if err := s.stmtBySecret.QueryRowContext(ctx, hash[:]).Scan(dest...); err != nil {
		return nil, token.Secret{}, s.readErr(what, err)
	}
	rec, err := sc.record()
	if err != nil {
		return nil, token.Secret{}, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return rec, sc.secret(hash), nil
}

// Page sizes of the listings (ListTokens, ListAlerts, ListClients).
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, f store.TokenFilter) ([]*token.Record, string, error) {
	const what = "list tokens"
	if err := s.checkOpen(what); err != nil {
		return nil, "", err
	}
	var q strings.Builder
	q.WriteString("SELECT " + tokenCols + " FROM tokens t WHERE t.id > ?")
	args := []any{f.After}
	if f.Subject != "" {
		q.WriteString(" AND t.subject = ?")
		args = append(args, f.Subject)
	}
	if f.Status != "" {
		// "+" keeps the planner off tokens_status (the counting index):
		// by it, a page would read and sort every token of the status
		q.WriteString(" AND +t.status = ?")
		args = append(args, string(f.Status))
	}
	if f.ParentID != "" {
		q.WriteString(" AND t.parent_id = ?")
		args = append(args, f.ParentID)
	}
	if f.ClientID != "" {
		q.WriteString(" AND t.client_id = ?")
		args = append(args, f.ClientID)
	}
	return queryPage(ctx, s, what, &q, "t.id", args, f.Limit, func() ([]any, func() (*token.Record, error)) {
		sc := new(recordScan)
		return sc.dest(), sc.record
	}, func(r *token.Record) string { return r.ID })
}

// queryOne reads the one row query selects with the argument id (what
// names it in errors), scanned into the destinations row returns and made
// an item by its decode. No row is store.ErrNotFound (as readErr says),
// a row that does not decode a plain error.
func queryOne[T any](ctx context.Context, s *Store, what, query, id string,
	row func() (dest []any, decode func() (T, error))) (T, error) {
	var zero T
	if err := s.checkOpen(what); err != nil {
		return zero, err
	}
	dest, decode := row()
	if err := s.readDB.QueryRowContext(ctx, query, id).Scan(dest...); err != nil {
		return zero, s.readErr(what, err)
	}
	v, err := decode()
	if err != nil {
		return zero, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return v, nil
}

// queryPage finishes a listing query (q holds its SELECT … WHERE, args
// its arguments) with ORDER BY idCol and a LIMIT one row past the page,
// which tells whether there is a next page. limit is the filter's: zero
// or less is defaultLimit, more than maxLimit is maxLimit. Each row is
// scanned into the destinations row returns and made an item by its
// decode; at most limit items come back, with the id of the last one as
// the next page's cursor ("" when the extra row was not there). A read or
// scan error is reported as readErr does, a row that does not decode as
// a plain error.
func queryPage[T any](ctx context.Context, s *Store, what string, q *strings.Builder, idCol string, args []any,
	limit int, row func() (dest []any, decode func() (T, error)), id func(T) string) ([]T, string, error) {
	switch {
	case limit <= 0:
		limit = defaultLimit
	case limit > maxLimit:
		limit = maxLimit
	}
	q.WriteString(" ORDER BY " + idCol + " LIMIT ?")
	args = append(args, limit+1)
	rows, err := s.readDB.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, "", s.readErr(what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		dest, decode := row()
		if err := rows.Scan(dest...); err != nil {
			return nil, "", s.readErr(what, err)
		}
		v, err := decode()
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", s.readErr(what, err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = id(out[limit-1])
	}
	return out, next, nil
}

// UpdateToken implements store.Store.
func (s *Store) UpdateToken(ctx context.Context, rec *token.Record) error {
	if rec == nil {
		return errors.New("sqlite: update token: nil record")
	}
	name := "update token " + rec.ID
	r, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	err = s.write(ctx, name, func(tx *wtx) error {
		// remaining_uses and last_used_at are left alone: they belong to
		// ReserveUses/ReleaseUses and TouchLastUsed; not_after is fixed at
		// creation; rotations, rotated_at and rotated_from belong to
		// RotateSecret.
		res, err := tx.exec(`UPDATE tokens SET subject = ?, kind = ?, status = ?, status_reason = ?,
			status_changed_at = ?, parent_id = ?, created_by = ?, created_at = ?, expires_at = ?,
			updated_at = ?, max_lifetime = ?, idle_timeout = ?, attrs = ?, revision = revision + 1
			WHERE id = ? AND revision = ?`,
			r.subject, r.kind, r.status, r.statusReason,
			r.statusChangedAt, r.parentID, r.createdBy, r.createdAt, r.expiresAt,
			r.updatedAt, r.maxLifetime, r.idleTimeout, r.attrs,
			r.id, r.revision)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		return affectedOrWhy(tx, res, r.id, "stale revision")
	})
	if err != nil {
		return err
	}
	rec.Revision = r.revision + 1
	return nil
}

// affectedOrWhy returns nil if res changed a row, else ErrNotFound if the
// token does not exist, else ErrConflict (with why).
func affectedOrWhy(tx *wtx, res sql.Result, id, why string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("rows affected: %w", err)
	}
	if n > 0 {
		return nil
	}
	ok, err := tx.exists(id)
	switch {
	case err != nil:
		return fmt.Errorf("look up token: %w", err)
	case !ok:
		return store.ErrNotFound
	default:
		return fmt.Errorf("%s: %w", why, store.ErrConflict)
	}
}

// SetStatus implements store.Store.
func (s *Store) SetStatus(ctx context.Context, ids []string, status token.Status, reason string, at time.Time) ([]string, error) {
	name := fmt.Sprintf("set status %s of %d tokens", status, len(ids))
	if !status.Valid() {
		return nil, fmt.Errorf("sqlite: %s: unknown status %q", name, status)
	}
	atv, err := encTime(at)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", name, err)
	}
	if len(ids) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", name, err)
		}
		return nil, s.checkOpen(name)
	}
	ids = slices.Clone(ids)
	var changed []string
	err = s.write(ctx, name, func(tx *wtx) error {
		for _, id := range ids {
			// Revoked is final: a revoked token is never changed again.
			res, err := tx.exec(`UPDATE tokens SET status = ?, status_reason = ?, status_changed_at = ?,
				updated_at = ?, revision = revision + 1
				WHERE id = ? AND status <> ? AND status <> 'revoked'`,
				string(status), reason, atv, atv, id, string(status))
			if err != nil {
				return fmt.Errorf("update %s: %w", id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("rows affected: %w", err)
			}
			if n > 0 {
				changed = append(changed, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// Descendants implements store.Store. UNION (not UNION ALL) drops ids seen
// before, so a cycle of parent ids ends the recursion instead of looping.
func (s *Store) Descendants(ctx context.Context, id string) ([]string, error) {
	what := "descendants of " + id
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	rows, err := s.readDB.QueryContext(ctx, `
		WITH RECURSIVE d(id) AS (
			SELECT id FROM tokens WHERE parent_id = ?1
			UNION
			SELECT t.id FROM tokens t JOIN d ON t.parent_id = d.id
		)
		SELECT id FROM d WHERE id <> ?1 ORDER BY id`, id)
	if err != nil {
		return nil, s.readErr(what, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, s.readErr(what, err)
		}
		ids = append(ids, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(what, err)
	}
	return ids, nil
}

// RotateSecret implements store.Store.
func (s *Store) RotateSecret(ctx context.Context, id string, sec token.Secret, oldNotAfter, newExpiresAt time.Time) error {
	return s.RotateSecretWith(ctx, id, store.Rotation{Secret: sec, OldNotAfter: oldNotAfter, NewExpiresAt: newExpiresAt})
}

// RotateSecretWith implements store.Store.
func (s *Store) RotateSecretWith(ctx context.Context, id string, rot store.Rotation) error {
	name := "rotate secret of token " + id
	sec := rot.Secret
	if rot.OldNotAfter.IsZero() {
		return fmt.Errorf("sqlite: %s: zero grace end (oldNotAfter)", name)
	}
	secCreated, secNotAfter, err := encodeSecret(id, sec)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	oldNA, err := encTime(rot.OldNotAfter)
	if err != nil {
		return fmt.Errorf("sqlite: %s: oldNotAfter: %w", name, err)
	}
	newExp, err := encTime(rot.NewExpiresAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: newExpiresAt: %w", name, err)
	}
	var rp *replayRow
	if rot.Replay != nil {
		if rp, err = encodeReplay(id, rot.Replay); err != nil {
			return fmt.Errorf("sqlite: %s: replay: %w", name, err)
		}
	}
	hash := sec.Hash
	pepper := sec.PepperVersion
	from := nullString(rot.RotatedFrom)
	return s.write(ctx, name, func(tx *wtx) error {
		now, err := encTime(s.opts.Now())
		if err != nil {
			return fmt.Errorf("clock: %w", err)
		}
		// COALESCE keeps expires_at when newExpiresAt is zero (NULL).
		res, err := tx.exec(`UPDATE tokens SET expires_at = COALESCE(?, expires_at), updated_at = ?,
			rotations = rotations + 1, rotated_at = ?, rotated_from = ?,
			revision = revision + 1 WHERE id = ? AND (? = 0 OR revision = ?)`,
			newExp, secCreated, secCreated, from, id, rot.Revision, rot.Revision)
		if err != nil {
			return fmt.Errorf("update token: %w", err)
		}
		if err := affectedOrWhy(tx, res, id, "stale revision"); err != nil {
			return err
		}
		if err := insertSecret(tx, id, hash, pepper, secCreated, secNotAfter); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE token_secrets SET not_after = ?1
			WHERE token_id = ?2 AND hash <> ?3 AND (not_after IS NULL OR not_after > ?1)`,
			oldNA, id, hash[:]); err != nil {
			return fmt.Errorf("end older secrets: %w", err)
		}
		// Secrets past their grace period are of no use any more.
		if _, err := tx.exec(`DELETE FROM token_secrets
			WHERE token_id = ? AND hash <> ? AND not_after IS NOT NULL AND not_after <= ?`,
			id, hash[:], now); err != nil {
			return fmt.Errorf("delete ended secrets: %w", err)
		}
		// Nor are replays past theirs, of any token (bounded storage).
		if _, err := tx.exec(`DELETE FROM rotation_replays WHERE expires_at <= ?`, now); err != nil {
			return fmt.Errorf("delete expired replays: %w", err)
		}
		if rp == nil {
			return nil
		}
		_, err = tx.exec(`INSERT INTO rotation_replays (token_id, key_hash, caller_id, request_hash,
			rotation, sealed, created_at, expires_at) VALUES (?, ?, ?, ?,
			(SELECT rotations FROM tokens WHERE id = ?), ?, ?, ?)`,
			id, rp.key, rp.caller, rp.request, id, rp.sealed, rp.createdAt, rp.expiresAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("replay exists: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert replay: %w", err)
		}
		if _, err := tx.exec(`DELETE FROM rotation_replays WHERE token_id = ?1 AND key_hash NOT IN (
			SELECT key_hash FROM rotation_replays WHERE token_id = ?1
			ORDER BY created_at DESC, key_hash LIMIT ?2)`, id, store.MaxReplays); err != nil {
			return fmt.Errorf("bound replays: %w", err)
		}
		return nil
	})
}

// replayRow is a store.Replay as column values.
type replayRow struct {
	key, request         []byte
	caller               string
	sealed               []byte
	createdAt, expiresAt int64
}

func encodeReplay(id string, r *store.Replay) (*replayRow, error) {
	switch {
	case r.TokenID != id:
		return nil, fmt.Errorf("belongs to token %s, not %s", r.TokenID, id)
	case r.CallerID == "":
		return nil, errors.New("empty caller id")
	case len(r.Sealed) == 0:
		return nil, errors.New("empty answer")
	case !r.ExpiresAt.After(r.CreatedAt):
		return nil, errors.New("expires_at not after created_at")
	}
	c, err := encTime(r.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("created_at: %w", err)
	}
	e, err := encTime(r.ExpiresAt)
	if err != nil {
		return nil, fmt.Errorf("expires_at: %w", err)
	}
	k, q := r.Key, r.Request
	return &replayRow{key: k[:], request: q[:], caller: r.CallerID, sealed: slices.Clone(r.Sealed),
		createdAt: c.(int64), expiresAt: e.(int64)}, nil
}

// Replay implements store.Store.
func (s *Store) Replay(ctx context.Context, id string, key [32]byte, at time.Time) (*store.Replay, error) {
	what := "replay of token " + id
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	atv, err := encTime(at)
	if err != nil || atv == nil {
		return nil, fmt.Errorf("sqlite: %s: bad time", what)
	}
	var (
		caller           string
		req, sealed      []byte
		rotation, ca, ea int64
	)
	err = s.readDB.QueryRowContext(ctx, `SELECT caller_id, request_hash, rotation, sealed, created_at, expires_at
		FROM rotation_replays WHERE token_id = ? AND key_hash = ? AND expires_at > ?`, id, key[:], atv).
		Scan(&caller, &req, &rotation, &sealed, &ca, &ea)
	if err != nil {
		return nil, s.readErr(what, err)
	}
	r := &store.Replay{TokenID: id, Key: key, CallerID: caller, Rotation: rotation, Sealed: sealed,
		CreatedAt: time.Unix(0, ca).UTC(), ExpiresAt: time.Unix(0, ea).UTC()}
	if copy(r.Request[:], req) != len(r.Request) {
		return nil, fmt.Errorf("sqlite: %s: malformed request hash", what)
	}
	return r, nil
}

// Secrets implements store.Store.
func (s *Store) Secrets(ctx context.Context, id string) ([]token.Secret, error) {
	what := "secrets of token " + id
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	// One read transaction, so that "no secrets" and "no token" agree.
	tx, err := s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(what, err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT hash, pepper_version, created_at, not_after
		FROM token_secrets WHERE token_id = ? ORDER BY created_at DESC, (not_after IS NULL) DESC, not_after DESC`, id)
	if err != nil {
		return nil, s.readErr(what, err)
	}
	defer rows.Close()
	var secs []token.Secret
	for rows.Next() {
		var (
			h                   []byte
			pepper              int64
			createdAt, notAfter sql.NullInt64
		)
		if err := rows.Scan(&h, &pepper, &createdAt, &notAfter); err != nil {
			return nil, s.readErr(what, err)
		}
		sec := token.Secret{PepperVersion: int(pepper), TokenID: id, CreatedAt: decTime(createdAt), NotAfter: decTime(notAfter)}
		if copy(sec.Hash[:], h) != token.HashLen {
			return nil, fmt.Errorf("sqlite: %s: stored hash has %d bytes", what, len(h))
		}
		secs = append(secs, sec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(what, err)
	}
	if len(secs) == 0 {
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM tokens WHERE id = ?", id).Scan(&one); err != nil {
			return nil, s.readErr(what, err)
		}
	}
	return secs, nil
}

// LiveSecretsByPepper implements store.Store. It reads every secret once
// (an admin operation, not a request path).
func (s *Store) LiveSecretsByPepper(ctx context.Context, at time.Time) (map[int]int64, error) {
	const what = "live secrets by pepper"
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	atv, err := encTime(at)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if atv == nil {
		return nil, fmt.Errorf("sqlite: %s: zero time", what)
	}
	rows, err := s.readDB.QueryContext(ctx, `SELECT s.pepper_version, COUNT(*)
		FROM token_secrets s JOIN tokens t ON t.id = s.token_id
		WHERE t.status <> 'revoked' AND t.expires_at > ?1 AND (s.not_after IS NULL OR s.not_after > ?1)
		GROUP BY s.pepper_version`, atv)
	if err != nil {
		return nil, s.readErr(what, err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var v, n int64
		if err := rows.Scan(&v, &n); err != nil {
			return nil, s.readErr(what, err)
		}
		out[int(v)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(what, err)
	}
	return out, nil
}

// ReserveUses implements store.Store. The single writer runs the read and
// the update in one BEGIN IMMEDIATE transaction, which also excludes every
// other process writing the file, so no two reservations see the same count.
func (s *Store) ReserveUses(ctx context.Context, id string, n int64) (int64, error) {
	name := "reserve uses of token " + id
	if n <= 0 {
		return 0, fmt.Errorf("sqlite: %s: non-positive count %d", name, n)
	}
	var took int64
	err := s.write(ctx, name, func(tx *wtx) error {
		var rem sql.NullInt64
		err := tx.scan("SELECT remaining_uses FROM tokens WHERE id = ?", []any{id}, &rem)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read remaining uses: %w", err)
		}
		if !rem.Valid { // unlimited
			took = n
			return nil
		}
		took = min(n, max(rem.Int64, 0))
		if took == 0 {
			return nil
		}
		res, err := tx.exec(`UPDATE tokens SET remaining_uses = remaining_uses - ?1
			WHERE id = ?2 AND remaining_uses >= ?1`, took, id)
		if err != nil {
			return fmt.Errorf("take uses: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return fmt.Errorf("take uses: remaining uses changed underneath (%d rows, %v)", k, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return took, nil
}

// ReleaseUses implements store.Store. The sum saturates at the largest
// int64 instead of overflowing.
func (s *Store) ReleaseUses(ctx context.Context, id string, n int64) error {
	name := "release uses of token " + id
	if n <= 0 {
		return fmt.Errorf("sqlite: %s: non-positive count %d", name, n)
	}
	return s.write(ctx, name, func(tx *wtx) error {
		ok, err := tx.exists(id)
		if err != nil {
			return fmt.Errorf("look up token: %w", err)
		}
		if !ok {
			return store.ErrNotFound
		}
		_, err = tx.exec(`UPDATE tokens SET remaining_uses = CASE
				WHEN remaining_uses > ?1 - ?2 THEN ?1 ELSE remaining_uses + ?2 END
			WHERE id = ?3 AND remaining_uses IS NOT NULL`, int64(math.MaxInt64), n, id)
		if err != nil {
			return fmt.Errorf("give back uses: %w", err)
		}
		return nil
	})
}

// TouchLastUsed implements store.Store.
func (s *Store) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	name := fmt.Sprintf("touch last use of %d tokens", len(used))
	type touch struct {
		id string
		at int64
	}
	touches := make([]touch, 0, len(used))
	for id, at := range used {
		if at.IsZero() {
			continue
		}
		v, err := encTime(at)
		if err != nil {
			return fmt.Errorf("sqlite: %s: token %s: %w", name, id, err)
		}
		touches = append(touches, touch{id, v.(int64)})
	}
	if len(touches) == 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sqlite: %s: %w", name, err)
		}
		return s.checkOpen(name)
	}
	// A fixed order keeps the writes deterministic.
	slices.SortFunc(touches, func(a, b touch) int { return strings.Compare(a.id, b.id) })
	return s.write(ctx, name, func(tx *wtx) error {
		for _, t := range touches {
			if _, err := tx.exec(`UPDATE tokens SET last_used_at = ?1
				WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)`, t.at, t.id); err != nil {
				return fmt.Errorf("token %s: %w", t.id, err)
			}
		}
		return nil
	})
}

// GetMeta implements store.Store.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	what := "get meta " + key
	if err := s.checkOpen(what); err != nil {
		return nil, err
	}
	var v []byte
	if err := s.readDB.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v); err != nil {
		return nil, s.readErr(what, err)
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
	return s.write(ctx, name, func(tx *wtx) error {
		if _, err := tx.exec(`INSERT INTO meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, v); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		return nil
	})
}
