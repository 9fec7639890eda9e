package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/phigate/phigate/internal/token"
)

// Times are stored as INTEGER unix nanoseconds (UTC by definition), which
// cover the years 1678 to 2262; the zero time.Time is stored as NULL. A time
// outside that range is refused rather than silently wrapped.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// errTimeRange reports a time that INTEGER nanoseconds cannot hold.
var errTimeRange = errors.New("time outside the years 1678..2262")

// encTime returns the column value for t: nil (NULL) for the zero time, unix
// nanoseconds otherwise.
func encTime(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return nil, errTimeRange
	}
	return t.UnixNano(), nil
}

// decTime is the inverse of encTime. Times come back in UTC.
func decTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

// nullString stores "" as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// attrs is the JSON stored in tokens.attrs: the parts of a record that are
// never filtered or changed on their own. It has its own types so that the
// stored format does not follow changes of the API's JSON tags.
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
	// TTL and Grace are nanoseconds (rotation period, default grace).
	TTL   int64 `json:"ttl,omitempty"`
	Grace int64 `json:"grace,omitempty"`
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

// row is a token.Record as column values, computed in the caller's
// goroutine so that the writer never touches the caller's record.
type row struct {
	id, subject, kind, status, statusReason string
	parentID, createdBy                     any
	statusChangedAt, createdAt, expiresAt   any
	updatedAt, lastUsedAt, notAfter         any
	remainingUses                           any
	maxLifetime, idleTimeout                int64
	rotations                               int64
	rotatedAt, rotatedFrom                  any
	clientID                                any
	revision                                int64
	attrs                                   string // JSON; a string, for the STRICT TEXT column
}

// validate refuses records the store must not hold. It checks what the
// store relies on, not policy (scopes, limits), which the authority checks.
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

// encodeRecord validates rec and turns it into column values.
func encodeRecord(rec *token.Record) (*row, error) {
	if err := validate(rec); err != nil {
		return nil, err
	}
	r := &row{
		id:           rec.ID,
		subject:      rec.Subject,
		kind:         string(rec.Kind),
		status:       string(rec.Status),
		statusReason: rec.StatusReason,
		parentID:     nullString(rec.ParentID),
		createdBy:    nullString(rec.CreatedBy),
		maxLifetime:  int64(rec.MaxLifetime),
		idleTimeout:  int64(rec.IdleTimeout),
		revision:     rec.Revision,
		rotations:    rec.Rotations,
		rotatedFrom:  nullString(rec.RotatedFrom),
		clientID:     nullString(rec.ClientID),
	}
	if rec.RemainingUses != nil {
		r.remainingUses = *rec.RemainingUses
	}
	for _, f := range []struct {
		name string
		dst  *any
		t    time.Time
	}{
		{"status_changed_at", &r.statusChangedAt, rec.StatusChangedAt},
		{"created_at", &r.createdAt, rec.CreatedAt},
		{"expires_at", &r.expiresAt, rec.ExpiresAt},
		{"updated_at", &r.updatedAt, rec.UpdatedAt},
		{"last_used_at", &r.lastUsedAt, rec.LastUsedAt},
		{"not_after", &r.notAfter, rec.NotAfter},
		{"rotated_at", &r.rotatedAt, rec.RotatedAt},
	} {
		v, err := encTime(f.t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.dst = v
	}
	a := attrs{
		Scopes:          rec.Scopes,
		CIDRs:           rec.CIDRs,
		Purposes:        rec.Purposes,
		PurposeRequired: rec.PurposeRequired,
		PatientID:       rec.PatientID,
		BreakGlass:      rec.BreakGlass,
		SubjectPrefix:   rec.SubjectPrefix,
		Metadata:        rec.Metadata,
		TTL:             int64(rec.TTL),
		Grace:           int64(rec.Grace),
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
	r.attrs = string(b)
	return r, nil
}

// tokenCols are the columns scanRecord reads, in its order.
const tokenCols = `t.id, t.subject, t.kind, t.status, t.status_reason, t.status_changed_at,
	t.parent_id, t.created_by, t.created_at, t.expires_at, t.updated_at, t.last_used_at,
	t.remaining_uses, t.max_lifetime, t.idle_timeout, t.revision, t.attrs, t.not_after,
	t.rotations, t.rotated_at, t.rotated_from, t.client_id`

// recordScan holds the scan destinations of one token row.
type recordScan struct {
	id, subject, kind, status, statusReason string
	parentID, createdBy                     sql.NullString
	statusChangedAt, createdAt, expiresAt   sql.NullInt64
	updatedAt, lastUsedAt, remainingUses    sql.NullInt64
	maxLifetime, idleTimeout, revision      int64
	attrs                                   []byte
	notAfter                                sql.NullInt64
	rotations                               int64
	rotatedAt                               sql.NullInt64
	rotatedFrom                             sql.NullString
	clientID                                sql.NullString
	pepperVersion                           int64
	secretCreatedAt, secretNotAfter         sql.NullInt64
}

// dest returns the scan destinations for tokenCols.
func (s *recordScan) dest() []any {
	return []any{
		&s.id, &s.subject, &s.kind, &s.status, &s.statusReason, &s.statusChangedAt,
		&s.parentID, &s.createdBy, &s.createdAt, &s.expiresAt, &s.updatedAt, &s.lastUsedAt,
		&s.remainingUses, &s.maxLifetime, &s.idleTimeout, &s.revision, &s.attrs, &s.notAfter,
		&s.rotations, &s.rotatedAt, &s.rotatedFrom, &s.clientID,
	}
}

// record builds the token.Record from a scanned row.
func (s *recordScan) record() (*token.Record, error) {
	var a attrs
	if err := json.Unmarshal(s.attrs, &a); err != nil {
		return nil, fmt.Errorf("decode attributes of token %s: %w", s.id, err)
	}
	rec := &token.Record{
		ID:              s.id,
		Subject:         s.subject,
		Kind:            token.Kind(s.kind),
		Scopes:          a.Scopes,
		CreatedAt:       decTime(s.createdAt),
		CreatedBy:       s.createdBy.String,
		ParentID:        s.parentID.String,
		ExpiresAt:       decTime(s.expiresAt),
		MaxLifetime:     time.Duration(s.maxLifetime),
		NotAfter:        decTime(s.notAfter),
		IdleTimeout:     time.Duration(s.idleTimeout),
		LastUsedAt:      decTime(s.lastUsedAt),
		CIDRs:           a.CIDRs,
		Purposes:        a.Purposes,
		PurposeRequired: a.PurposeRequired,
		PatientID:       a.PatientID,
		BreakGlass:      a.BreakGlass,
		SubjectPrefix:   a.SubjectPrefix,
		Status:          token.Status(s.status),
		StatusReason:    s.statusReason,
		StatusChangedAt: decTime(s.statusChangedAt),
		Metadata:        a.Metadata,
		UpdatedAt:       decTime(s.updatedAt),
		Revision:        s.revision,
		TTL:             time.Duration(a.TTL),
		Grace:           time.Duration(a.Grace),
		Rotations:       s.rotations,
		RotatedAt:       decTime(s.rotatedAt),
		RotatedFrom:     s.rotatedFrom.String,
		ClientID:        s.clientID.String,
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

// secret builds the token.Secret scanned alongside a record (TokenBySecret).
func (s *recordScan) secret(h token.Hash) token.Secret {
	return token.Secret{
		Hash:          h,
		PepperVersion: int(s.pepperVersion),
		TokenID:       s.id,
		CreatedAt:     decTime(s.secretCreatedAt),
		NotAfter:      decTime(s.secretNotAfter),
	}
}

// encodeSecret checks sec against its token id and returns its columns.
func encodeSecret(tokenID string, sec token.Secret) (createdAt, notAfter any, err error) {
	if sec.TokenID != "" && sec.TokenID != tokenID {
		return nil, nil, fmt.Errorf("secret belongs to token %s, not %s", sec.TokenID, tokenID)
	}
	if createdAt, err = encTime(sec.CreatedAt); err != nil {
		return nil, nil, fmt.Errorf("secret created_at: %w", err)
	}
	if notAfter, err = encTime(sec.NotAfter); err != nil {
		return nil, nil, fmt.Errorf("secret not_after: %w", err)
	}
	return createdAt, notAfter, nil
}
