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
)

const alertCols = `id, detector, severity, token_id, subject, source, summary, evidence,
	audit_seqs, action, created_at, state, acked_at, acked_by, ack_note`

// CreateAlert implements store.Store.
func (s *Store) CreateAlert(ctx context.Context, a *store.Alert) error {
	if err := store.ValidateNewAlert(a); err != nil {
		return fmt.Errorf("postgres: create alert: %w", err)
	}
	name := "create alert " + a.ID
	seqs := a.AuditSeqs
	if seqs == nil {
		seqs = []uint64{}
	}
	seqJSON, err := json.Marshal(seqs)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", name, err)
	}
	if err := s.check(ctx, name); err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO alerts (id, detector, severity, token_id, subject, source, summary,
		evidence, audit_seqs, action, created_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		a.ID, a.Detector, string(a.Severity), a.TokenID, a.Subject, a.Source, a.Summary, string(a.Evidence),
		string(seqJSON), a.Action, a.CreatedAt.UTC(), string(store.AlertOpen))
	if isUnique(err) {
		return fmt.Errorf("postgres: %s: id exists: %w", name, store.ErrConflict)
	}
	if err != nil {
		return s.fail(ctx, name, err)
	}
	return nil
}

// alertScan receives one row of alertCols.
type alertScan struct {
	a                  store.Alert
	severity, state    string
	evidence, seqs     string
	createdAt, ackedAt pgtype.Timestamptz
}

func (sc *alertScan) dest() []any {
	a := &sc.a
	return []any{&a.ID, &a.Detector, &sc.severity, &a.TokenID, &a.Subject, &a.Source, &a.Summary,
		&sc.evidence, &sc.seqs, &a.Action, &sc.createdAt, &sc.state, &sc.ackedAt, &a.AckedBy, &a.AckNote}
}

func (sc *alertScan) alert() (*store.Alert, error) {
	a := sc.a
	a.Severity = store.Severity(sc.severity)
	a.State = store.AlertState(sc.state)
	a.CreatedAt = decTime(sc.createdAt)
	a.AckedAt = decTime(sc.ackedAt)
	if sc.evidence != "" {
		a.Evidence = []byte(sc.evidence)
	}
	if err := json.Unmarshal([]byte(sc.seqs), &a.AuditSeqs); err != nil {
		return nil, fmt.Errorf("alert %s: audit_seqs: %w", a.ID, err)
	}
	return &a, nil
}

// Alert implements store.Store.
func (s *Store) Alert(ctx context.Context, id string) (*store.Alert, error) {
	what := "alert " + id
	if err := s.check(ctx, what); err != nil {
		return nil, err
	}
	var sc alertScan
	if err := s.pool.QueryRow(ctx, "SELECT "+alertCols+" FROM alerts WHERE id = $1", id).Scan(sc.dest()...); err != nil {
		return nil, s.fail(ctx, what, err)
	}
	a, err := sc.alert()
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return a, nil
}

// ListAlerts implements store.Store.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]*store.Alert, string, error) {
	const what = "list alerts"
	if err := s.check(ctx, what); err != nil {
		return nil, "", err
	}
	limit := pageLimit(f.Limit)
	var q strings.Builder
	q.WriteString("SELECT " + alertCols + " FROM alerts WHERE id > $1")
	args := []any{f.After}
	add := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&q, " AND %s $%d", cond, len(args))
	}
	if f.TokenID != "" {
		add("token_id =", f.TokenID)
	}
	if f.Severity != "" {
		add("severity =", string(f.Severity))
	}
	if f.State != "" {
		add("state =", string(f.State))
	}
	for _, b := range []struct {
		t  time.Time
		op string
	}{{f.Since, ">="}, {f.Until, "<"}} {
		if !b.t.IsZero() {
			add("created_at "+b.op, b.t.UTC())
		}
	}
	args = append(args, limit+1)
	fmt.Fprintf(&q, " ORDER BY id LIMIT $%d", len(args))
	return queryPage(ctx, s, what, q.String(), args, limit, func(rows pgx.Rows) (*store.Alert, error) {
		var sc alertScan
		if err := rows.Scan(sc.dest()...); err != nil {
			return nil, scanError{err}
		}
		return sc.alert()
	}, func(a *store.Alert) string { return a.ID })
}

// AckAlert implements store.Store.
func (s *Store) AckAlert(ctx context.Context, id, by, note string, at time.Time) (*store.Alert, error) {
	name := "ack alert " + id
	if by == "" || at.IsZero() {
		return nil, fmt.Errorf("postgres: %s: empty acknowledger or zero time", name)
	}
	if err := s.check(ctx, name); err != nil {
		return nil, err
	}
	var sc alertScan
	err := s.pool.QueryRow(ctx, `UPDATE alerts SET state = 'acked', acked_at = $1, acked_by = $2, ack_note = $3
		WHERE id = $4 AND state = 'open' RETURNING `+alertCols, at.UTC(), by, note, id).Scan(sc.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		var one int
		err := s.pool.QueryRow(ctx, "SELECT 1 FROM alerts WHERE id = $1", id).Scan(&one)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, fmt.Errorf("postgres: %s: %w", name, store.ErrNotFound)
		case err != nil:
			return nil, s.fail(ctx, name, err)
		default:
			return nil, fmt.Errorf("postgres: %s: acknowledged already: %w", name, store.ErrConflict)
		}
	}
	if err != nil {
		return nil, s.fail(ctx, name, err)
	}
	return sc.alert()
}
