package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The store implements store.ClientStore. Every method is one statement,
// so the nodes sharing the database see one another's changes at once:
// there is no client cache to invalidate (internal/oauth reads the client
// on each token request), and the tokens of a revoked client are revoked
// through SetStatus, which notifies.
var _ store.ClientStore = (*Store)(nil)

const clientCols = `id, name, subject, jwks, jwks_url, attrs, max_ttl, created_by, status,
	status_reason, created_at, updated_at, status_changed_at`

// CreateClient implements store.ClientStore.
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	if err := store.ValidateNewClient(c); err != nil {
		return fmt.Errorf("postgres: create client: %w", err)
	}
	name := "create client " + c.ID
	a := attrs{Scopes: c.Scopes, CIDRs: c.CIDRs, Purposes: c.Purposes, PurposeRequired: c.PurposeRequired}
	if h := c.Hours; h != nil {
		a.Hours = &hoursJSON{Start: h.Start, End: h.End, TZ: h.TZ, Days: h.Days}
	}
	if rt := c.Rate; rt != nil {
		a.Rate = &rateJSON{PerSecond: rt.PerSecond, Burst: rt.Burst}
	}
	ab, err := json.Marshal(&a)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	var jwks any
	if len(c.JWKS) > 0 {
		jwks = string(c.JWKS)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO oauth_clients (`+clientCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		c.ID, c.Name, c.Subject, jwks, nullString(c.JWKSURL), string(ab), int64(c.MaxTTL),
		c.CreatedBy, string(c.Status), c.StatusReason, encTime(c.CreatedAt), encTime(c.UpdatedAt), encTime(c.StatusChangedAt))
	if isUnique(err) {
		return fmt.Errorf("postgres: %s: id exists: %w", name, store.ErrConflict)
	}
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}

// clientScan receives one row of clientCols.
type clientScan struct {
	c                                     store.Client
	jwks, jwksURL                         pgtype.Text
	attrs, status                         string
	maxTTL                                int64
	createdAt, updatedAt, statusChangedAt pgtype.Timestamptz
}

func (sc *clientScan) dest() []any {
	c := &sc.c
	return []any{&c.ID, &c.Name, &c.Subject, &sc.jwks, &sc.jwksURL, &sc.attrs, &sc.maxTTL,
		&c.CreatedBy, &sc.status, &c.StatusReason, &sc.createdAt, &sc.updatedAt, &sc.statusChangedAt}
}

func (sc *clientScan) client() (*store.Client, error) {
	c := sc.c
	var a attrs
	if err := json.Unmarshal([]byte(sc.attrs), &a); err != nil {
		return nil, fmt.Errorf("client %s: attrs: %w", c.ID, err)
	}
	if sc.jwks.Valid {
		c.JWKS = []byte(sc.jwks.String)
	}
	c.JWKSURL = sc.jwksURL.String
	c.Scopes, c.CIDRs, c.Purposes, c.PurposeRequired = a.Scopes, a.CIDRs, a.Purposes, a.PurposeRequired
	if h := a.Hours; h != nil {
		c.Hours = &token.Hours{Start: h.Start, End: h.End, TZ: h.TZ, Days: h.Days}
	}
	if rt := a.Rate; rt != nil {
		c.Rate = &token.Rate{PerSecond: rt.PerSecond, Burst: rt.Burst}
	}
	c.MaxTTL = time.Duration(sc.maxTTL)
	c.Status = store.ClientStatus(sc.status)
	c.CreatedAt, c.UpdatedAt, c.StatusChangedAt = decTime(sc.createdAt), decTime(sc.updatedAt), decTime(sc.statusChangedAt)
	return &c, nil
}

// Client implements store.ClientStore.
func (s *Store) Client(ctx context.Context, id string) (*store.Client, error) {
	what := "client " + id
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	var sc clientScan
	if err := s.pool.QueryRow(ctx, "SELECT "+clientCols+" FROM oauth_clients WHERE id = $1", id).Scan(sc.dest()...); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	c, err := sc.client()
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return c, nil
}

// ListClients implements store.ClientStore.
func (s *Store) ListClients(ctx context.Context, f store.ClientFilter) ([]*store.Client, string, error) {
	const what = "list clients"
	if err := s.check(ctx, what); err != nil {
		return nil, "", err
	}
	limit := pageLimit(f.Limit)
	var q strings.Builder
	q.WriteString("SELECT " + clientCols + " FROM oauth_clients WHERE id > $1")
	args := []any{f.After}
	add := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&q, " AND %s $%d", cond, len(args))
	}
	if f.Status != "" {
		add("status =", string(f.Status))
	}
	if f.CreatedBy != "" {
		add("created_by =", f.CreatedBy)
	}
	args = append(args, limit+1)
	fmt.Fprintf(&q, " ORDER BY id LIMIT $%d", len(args))
	return queryPage(ctx, s, what, q.String(), args, limit, func(rows pgx.Rows) (*store.Client, error) {
		var sc clientScan
		if err := rows.Scan(sc.dest()...); err != nil {
			return nil, scanError{err}
		}
		return sc.client()
	}, func(c *store.Client) string { return c.ID })
}

// RevokeClient implements store.ClientStore: one UPDATE of the active
// row, so that of two nodes revoking at once exactly one succeeds.
func (s *Store) RevokeClient(ctx context.Context, id, reason string, at time.Time) (*store.Client, error) {
	name := "revoke client " + id
	if at.IsZero() {
		return nil, fmt.Errorf("postgres: %s: zero time", name)
	}
	if err := s.check(ctx, name); err != nil {
		return nil, err
	}
	var sc clientScan
	err := s.pool.QueryRow(ctx, `UPDATE oauth_clients SET status = 'revoked', status_reason = $2,
		status_changed_at = $3, updated_at = $3 WHERE id = $1 AND status = 'active'
		RETURNING `+clientCols, id, reason, encTime(at)).Scan(sc.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		var one int
		err = s.pool.QueryRow(ctx, "SELECT 1 FROM oauth_clients WHERE id = $1", id).Scan(&one)
		if err != nil {
			return nil, s.fail(ctx, name, err) // ErrNotFound when absent
		}
		return nil, fmt.Errorf("postgres: %s: revoked already: %w", name, store.ErrConflict)
	}
	if err != nil {
		return nil, s.fail(ctx, name, err)
	}
	c, err := sc.client()
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", name, err)
	}
	return c, nil
}

// purgeAssertions bounds the expired rows one UseAssertion deletes, so
// that a call's cost stays bounded after a long quiet spell.
const purgeAssertions = 100

// UseAssertion implements store.ClientStore in one statement. The insert
// takes the row of (client, jti) whatever node asks: a row absent, or
// present with an exp not after now, becomes the new one; a row still
// valid is left alone and no row comes back (a replay). PostgreSQL's
// ON CONFLICT makes a concurrent second insert of the key wait for the
// first and then see its row. The CTE deletes some other expired rows,
// skipping rows another call holds, so that nodes purging at once never
// wait for one another.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, exp, now time.Time) error {
	const name = "use assertion"
	switch {
	case clientID == "":
		return fmt.Errorf("postgres: %s: empty client id", name)
	case jti == "" || len(jti) > store.MaxJTI:
		return fmt.Errorf("postgres: %s: jti empty or longer than %d bytes", name, store.MaxJTI)
	case now.IsZero():
		return fmt.Errorf("postgres: %s: zero now", name)
	case !exp.After(now):
		return fmt.Errorf("postgres: %s: exp is not after now", name)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	var one int
	err := s.pool.QueryRow(ctx, `WITH purge AS (
			DELETE FROM oauth_assertions WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM oauth_assertions
				WHERE expires_at <= $4 AND (client_id, jti) <> ($1, $2)
				LIMIT $5 FOR UPDATE SKIP LOCKED)))
		INSERT INTO oauth_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
			WHERE oauth_assertions.expires_at <= $4
		RETURNING 1`, clientID, jti, encTime(exp), encTime(now), purgeAssertions).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: jti seen before: %w", name, store.ErrConflict)
	}
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}
