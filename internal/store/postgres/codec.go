package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/phigate/phigate/internal/token"
)

// encTime is the column value of t: nil (NULL) for the zero time, else t
// in UTC (timestamptz keeps microseconds; pgx truncates the rest).
func encTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// decTime is the inverse of encTime: UTC, no monotonic reading.
func decTime(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
}

// nullString stores "" as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// attrs is the JSON kept in tokens.attrs (the same shape as store/sqlite's,
// so that a record moves between the backends unchanged): the parts of a
// record that are never filtered or changed on their own.
type attrs struct {
	Scopes          []string          `json:"scopes,omitempty"`
	CIDRs           []netip.Prefix    `json:"cidrs,omitempty"`
	Hours           *hoursJSON        `json:"hours,omitempty"`
	Rate            *rateJSON         `json:"rate,omitempty"`
	Purposes        []string          `json:"purposes,omitempty"`
	PurposeRequired bool              `json:"purpose_required,omitempty"`
	PatientID       string            `json:"patient_id,omitempty"`
	BreakGlass      bool              `json:"break_glass,omitempty"`
	SubjectPrefix   string            `json:"subject_prefix,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	TTL             int64             `json:"ttl,omitempty"`
	Grace           int64             `json:"grace,omitempty"`
}

type hoursJSON struct {
	Start string   `json:"start"`
	End   string   `json:"end"`
	TZ    string   `json:"tz"`
	Days  []string `json:"days,omitempty"`
}

type rateJSON struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// validate refuses records the store must not hold (what the store relies
// on, not policy).
func validate(rec *token.Record) error {
	switch {
	case rec == nil:
		return errors.New("nil record")
	case rec.ID == "":
		return errors.New("empty token id")
	case !rec.Kind.Valid():
		return fmt.Errorf("unknown kind %q", rec.Kind)
	case !rec.Status.Valid():
		return fmt.Errorf("unknown status %q", rec.Status)
	case rec.RemainingUses != nil && *rec.RemainingUses < 0:
		return errors.New("negative remaining uses")
	case rec.Rotations < 0:
		return errors.New("negative rotation count")
	}
	return nil
}

// row is a record as column values, in the order of insertCols.
type row []any

// insertCols are the columns CreateToken writes, in row's order.
const insertCols = `id, subject, kind, status, status_reason, status_changed_at,
	parent_id, created_by, client_id, created_at, expires_at, updated_at, last_used_at, not_after,
	remaining_uses, max_lifetime, idle_timeout, rotations, rotated_at, rotated_from, revision, attrs`

// encodeRecord validates rec and returns its column values.
func encodeRecord(rec *token.Record) (row, error) {
	if err := validate(rec); err != nil {
		return nil, err
	}
	a := attrs{
		Scopes: rec.Scopes, CIDRs: rec.CIDRs, Purposes: rec.Purposes, PurposeRequired: rec.PurposeRequired,
		PatientID: rec.PatientID, BreakGlass: rec.BreakGlass, SubjectPrefix: rec.SubjectPrefix,
		Metadata: rec.Metadata, TTL: int64(rec.TTL), Grace: int64(rec.Grace),
	}
	if h := rec.Hours; h != nil {
		a.Hours = &hoursJSON{Start: h.Start, End: h.End, TZ: h.TZ, Days: h.Days}
	}
	if rt := rec.Rate; rt != nil {
		a.Rate = &rateJSON{PerSecond: rt.PerSecond, Burst: rt.Burst}
	}
	b, err := json.Marshal(&a)
	if err != nil {
		return nil, fmt.Errorf("encode attributes: %w", err)
	}
	var uses any
	if rec.RemainingUses != nil {
		uses = *rec.RemainingUses
	}
	return row{
		rec.ID, rec.Subject, string(rec.Kind), string(rec.Status), rec.StatusReason, encTime(rec.StatusChangedAt),
		nullString(rec.ParentID), nullString(rec.CreatedBy), nullString(rec.ClientID),
		encTime(rec.CreatedAt), encTime(rec.ExpiresAt), encTime(rec.UpdatedAt), encTime(rec.LastUsedAt), encTime(rec.NotAfter),
		uses, int64(rec.MaxLifetime), int64(rec.IdleTimeout), rec.Rotations, encTime(rec.RotatedAt), nullString(rec.RotatedFrom),
		rec.Revision, string(b),
	}, nil
}

// tokenCols are the columns recordScan reads, in its order.
const tokenCols = `t.id, t.subject, t.kind, t.status, t.status_reason, t.status_changed_at,
	t.parent_id, t.created_by, t.client_id, t.created_at, t.expires_at, t.updated_at, t.last_used_at, t.not_after,
	t.remaining_uses, t.max_lifetime, t.idle_timeout, t.rotations, t.rotated_at, t.rotated_from, t.revision, t.attrs`

// recordScan holds the scan destinations of one token row.
type recordScan struct {
	id, subject, kind, status, statusReason string
	statusChangedAt                         pgtype.Timestamptz
	parentID, createdBy, clientID           pgtype.Text
	createdAt, expiresAt, updatedAt         pgtype.Timestamptz
	lastUsedAt, notAfter                    pgtype.Timestamptz
	remainingUses                           pgtype.Int8
	maxLifetime, idleTimeout, rotations     int64
	rotatedAt                               pgtype.Timestamptz
	rotatedFrom                             pgtype.Text
	revision                                int64
	attrs                                   string

	pepperVersion                   int32
	secretCreatedAt, secretNotAfter pgtype.Timestamptz
}

func (s *recordScan) dest() []any {
	return []any{
		&s.id, &s.subject, &s.kind, &s.status, &s.statusReason, &s.statusChangedAt,
		&s.parentID, &s.createdBy, &s.clientID, &s.createdAt, &s.expiresAt, &s.updatedAt, &s.lastUsedAt, &s.notAfter,
		&s.remainingUses, &s.maxLifetime, &s.idleTimeout, &s.rotations, &s.rotatedAt, &s.rotatedFrom, &s.revision, &s.attrs,
	}
}

// record builds the token.Record of a scanned row.
func (s *recordScan) record() (*token.Record, error) {
	var a attrs
	if err := json.Unmarshal([]byte(s.attrs), &a); err != nil {
		return nil, fmt.Errorf("decode attributes of token %s: %w", s.id, err)
	}
	rec := &token.Record{
		ID: s.id, Subject: s.subject, Kind: token.Kind(s.kind), Scopes: a.Scopes,
		CreatedAt: decTime(s.createdAt), CreatedBy: s.createdBy.String, ParentID: s.parentID.String, ClientID: s.clientID.String,
		ExpiresAt: decTime(s.expiresAt), MaxLifetime: time.Duration(s.maxLifetime), NotAfter: decTime(s.notAfter),
		IdleTimeout: time.Duration(s.idleTimeout), LastUsedAt: decTime(s.lastUsedAt),
		CIDRs: a.CIDRs, Purposes: a.Purposes, PurposeRequired: a.PurposeRequired, PatientID: a.PatientID,
		BreakGlass: a.BreakGlass, SubjectPrefix: a.SubjectPrefix,
		Status: token.Status(s.status), StatusReason: s.statusReason, StatusChangedAt: decTime(s.statusChangedAt),
		Metadata: a.Metadata, UpdatedAt: decTime(s.updatedAt), Revision: s.revision,
		TTL: time.Duration(a.TTL), Grace: time.Duration(a.Grace),
		Rotations: s.rotations, RotatedAt: decTime(s.rotatedAt), RotatedFrom: s.rotatedFrom.String,
	}
	if s.remainingUses.Valid {
		v := s.remainingUses.Int64
		rec.RemainingUses = &v
	}
	if h := a.Hours; h != nil {
		rec.Hours = &token.Hours{Start: h.Start, End: h.End, TZ: h.TZ, Days: h.Days}
	}
	if rt := a.Rate; rt != nil {
		rec.Rate = &token.Rate{PerSecond: rt.PerSecond, Burst: rt.Burst}
	}
	return rec, nil
}

// secret builds the token.Secret scanned with a record (TokenBySecret).
func (s *recordScan) secret(h token.Hash) token.Secret {
	return token.Secret{Hash: h, PepperVersion: int(s.pepperVersion), TokenID: s.id,
		CreatedAt: decTime(s.secretCreatedAt), NotAfter: decTime(s.secretNotAfter)}
}

// checkSecret checks sec against its token id.
func checkSecret(tokenID string, sec token.Secret) error {
	if sec.TokenID != "" && sec.TokenID != tokenID {
		return fmt.Errorf("secret belongs to token %s, not %s", sec.TokenID, tokenID)
	}
	return nil
}
