package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The store implements store.ClientStore.
var _ store.ClientStore = (*Store)(nil)

const clientCols = `id, name, subject, jwks, jwks_url, attrs, max_ttl, created_by, status,
	status_reason, created_at, updated_at, status_changed_at`

// CreateClient implements store.ClientStore.
func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	if err := store.ValidateNewClient(c); err != nil {
		return fmt.Errorf("sqlite: create client: %w", err)
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
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	var times [3]any
	for i, t := range []time.Time{c.CreatedAt, c.UpdatedAt, c.StatusChangedAt} {
		if times[i], err = encTime(t); err != nil {
			return fmt.Errorf("sqlite: %s: %w", name, err)
		}
	}
	var jwks any
	if len(c.JWKS) > 0 {
		jwks = string(c.JWKS)
	}
	row := []any{c.ID, c.Name, c.Subject, jwks, nullString(c.JWKSURL), string(ab), int64(c.MaxTTL),
		c.CreatedBy, string(c.Status), c.StatusReason, times[0], times[1], times[2]}
	return s.write(ctx, name, func(tx *wtx) error {
		_, err := tx.exec(`INSERT INTO oauth_clients (`+clientCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row...)
		if isUniqueViolation(err) {
			return fmt.Errorf("id exists: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert client: %w", err)
		}
		return nil
	})
}

// clientScan receives one row of clientCols.
type clientScan struct {
	c                                     store.Client
	jwks, jwksURL                         sql.NullString
	attrs, status                         string
	maxTTL                                int64
	createdAt, updatedAt, statusChangedAt sql.NullInt64
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
	return queryOne(ctx, s, "client "+id, "SELECT "+clientCols+" FROM oauth_clients WHERE id = ?", id,
		func() ([]any, func() (*store.Client, error)) {
			sc := new(clientScan)
			return sc.dest(), sc.client
		})
}

// ListClients implements store.ClientStore.
func (s *Store) ListClients(ctx context.Context, f store.ClientFilter) ([]*store.Client, string, error) {
	const what = "list clients"
	if err := s.checkOpen(what); err != nil {
		return nil, "", err
	}
	var q strings.Builder
	q.WriteString("SELECT " + clientCols + " FROM oauth_clients WHERE id > ?")
	args := []any{f.After}
	if f.Status != "" {
		q.WriteString(" AND status = ?")
		args = append(args, string(f.Status))
	}
	if f.CreatedBy != "" {
		q.WriteString(" AND created_by = ?")
		args = append(args, f.CreatedBy)
	}
	return queryPage(ctx, s, what, &q, "id", args, f.Limit, func() ([]any, func() (*store.Client, error)) {
		sc := new(clientScan)
		return sc.dest(), sc.client
	}, func(c *store.Client) string { return c.ID })
}

// RevokeClient implements store.ClientStore.
func (s *Store) RevokeClient(ctx context.Context, id, reason string, at time.Time) (*store.Client, error) {
	name := "revoke client " + id
	t, err := encTime(at)
	if err != nil || t == nil {
		return nil, fmt.Errorf("sqlite: %s: invalid time", name)
	}
	err = s.write(ctx, name, func(tx *wtx) error {
		res, err := tx.exec(`UPDATE oauth_clients SET status = 'revoked', status_reason = ?,
			status_changed_at = ?, updated_at = ? WHERE id = ? AND status = 'active'`, reason, t, t, id)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var one int
		err = tx.scan("SELECT 1 FROM oauth_clients WHERE id = ?", []any{id}, &one)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("revoked already: %w", store.ErrConflict)
	})
	if err != nil {
		return nil, err
	}
	return s.Client(ctx, id)
}

// UseAssertion implements store.ClientStore.
func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, exp, now time.Time) error {
	const name = "use assertion"
	switch {
	case clientID == "":
		return fmt.Errorf("sqlite: %s: empty client id", name)
	case jti == "" || len(jti) > store.MaxJTI:
		return fmt.Errorf("sqlite: %s: jti empty or longer than %d bytes", name, store.MaxJTI)
	case !exp.After(now):
		return fmt.Errorf("sqlite: %s: exp is not after now", name)
	}
	e, err := encTime(exp)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	n, err := encTime(now)
	if err != nil || n == nil {
		return fmt.Errorf("sqlite: %s: invalid now", name)
	}
	return s.write(ctx, name, func(tx *wtx) error {
		// An expired row of the same jti no longer counts: replace it.
		if _, err := tx.exec(`DELETE FROM oauth_assertions WHERE expires_at <= ?`, n); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		_, err := tx.exec(`INSERT INTO oauth_assertions (client_id, jti, expires_at) VALUES (?, ?, ?)`, clientID, jti, e)
		if isUniqueViolation(err) {
			return fmt.Errorf("jti seen before: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return nil
	})
}
