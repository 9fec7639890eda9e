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
)

const alertCols = `id, detector, severity, token_id, subject, source, summary, evidence,
	audit_seqs, action, created_at, state, acked_at, acked_by, ack_note`

// CreateAlert implements store.Store.
func (s *Store) CreateAlert(ctx context.Context, a *store.Alert) error {
	if err := store.ValidateNewAlert(a); err != nil {
		return fmt.Errorf("sqlite: create alert: %w", err)
	}
	name := "create alert " + a.ID
	created, err := encTime(a.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	seqs := a.AuditSeqs
	if seqs == nil {
		seqs = []uint64{}
	}
	seqJSON, err := json.Marshal(seqs)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	ev := string(a.Evidence)
	row := []any{a.ID, a.Detector, string(a.Severity), a.TokenID, a.Subject, a.Source, a.Summary, ev,
		string(seqJSON), a.Action, created, string(store.AlertOpen)}
	return s.write(ctx, name, func(tx *wtx) error {
		_, err := tx.exec(`INSERT INTO alerts (id, detector, severity, token_id, subject, source, summary,
			evidence, audit_seqs, action, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row...)
		if isUniqueViolation(err) {
			return fmt.Errorf("id exists: %w", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert alert: %w", err)
		}
		return nil
	})
}

// alertScan receives one row of alertCols.
type alertScan struct {
	a                  store.Alert
	severity, state    string
	evidence, seqs     string
	createdAt, ackedAt sql.NullInt64
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
	return queryOne(ctx, s, "alert "+id, "SELECT "+alertCols+" FROM alerts WHERE id = ?", id,
		func() ([]any, func() (*store.Alert, error)) {
			sc := new(alertScan)
			return sc.dest(), sc.alert
		})
}

// ListAlerts implements store.Store.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]*store.Alert, string, error) {
	const what = "list alerts"
	if err := s.checkOpen(what); err != nil {
		return nil, "", err
	}
	var q strings.Builder
	q.WriteString("SELECT " + alertCols + " FROM alerts WHERE id > ?")
	args := []any{f.After}
	if f.TokenID != "" {
		q.WriteString(" AND token_id = ?")
		args = append(args, f.TokenID)
	}
	if f.Severity != "" {
		q.WriteString(" AND severity = ?")
		args = append(args, string(f.Severity))
	}
	if f.State != "" {
		q.WriteString(" AND state = ?")
		args = append(args, string(f.State))
	}
	for _, b := range []struct {
		t  time.Time
		op string
	}{{f.Since, ">="}, {f.Until, "<"}} {
		if b.t.IsZero() {
			continue
		}
		v, err := encTime(b.t)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: %s: %w", what, err)
		}
		q.WriteString(" AND created_at " + b.op + " ?")
		args = append(args, v)
	}
	return queryPage(ctx, s, what, &q, "id", args, f.Limit, func() ([]any, func() (*store.Alert, error)) {
		sc := new(alertScan)
		return sc.dest(), sc.alert
	}, func(a *store.Alert) string { return a.ID })
}

// AckAlert implements store.Store.
func (s *Store) AckAlert(ctx context.Context, id, by, note string, at time.Time) (*store.Alert, error) {
	name := "ack alert " + id
	if by == "" || at.IsZero() {
		return nil, fmt.Errorf("sqlite: %s: empty acknowledger or zero time", name)
	}
	ackedAt, err := encTime(at)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", name, err)
	}
	err = s.write(ctx, name, func(tx *wtx) error {
		res, err := tx.exec(`UPDATE alerts SET state = 'acked', acked_at = ?, acked_by = ?, ack_note = ?
			WHERE id = ? AND state = 'open'`, ackedAt, by, note, id)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("rows affected: %w", err)
		}
		if n > 0 {
			return nil
		}
		var one int
		err = tx.scan("SELECT 1 FROM alerts WHERE id = ?", []any{id}, &one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return fmt.Errorf("look up alert: %w", err)
		default:
			return fmt.Errorf("acknowledged already: %w", store.ErrConflict)
		}
	})
	if err != nil {
		return nil, err
	}
	return s.Alert(ctx, id)
}
