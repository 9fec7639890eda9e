package token

import (
	"net/netip"
	"time"
)

// Kind says what a token stands for.
type Kind string

// Token kinds.
const (
	KindUser    Kind = "user"
	KindService Kind = "service"
	KindAdmin   Kind = "admin"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindUser || k == KindService || k == KindAdmin }

// Status is the lifecycle state of a token.
type Status string

// Token statuses. Revoked is final; suspended can be reinstated.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusRevoked   Status = "revoked"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusSuspended || s == StatusRevoked
}

// Hours restricts use to a daily window in a time zone. Start and End are
// "HH:MM" (24h). End before Start means the window crosses midnight. Days,
// when set, lists the weekdays ("Mon".."Sun") on which the window opens.
type Hours struct {
	Start string   `json:"start"`
	End   string   `json:"end"`
	TZ    string   `json:"tz"`
	Days  []string `json:"days,omitempty"`
}

// Rate is a token-bucket limit: PerSecond sustained, Burst at once.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// Limits on the free-form metadata of a token.
const (
	MaxMetadataEntries = 16
	MaxMetadataKey     = 64
	MaxMetadataValue   = 256
	MaxSubject         = 256
	MaxScopes          = 64
	MaxCIDRs           = 32
	MaxPurposes        = 16
)

// Record is everything phigate knows about a token except its secret. A
// Record held by the verification cache is shared and MUST be treated as
// immutable; change a Clone.
//
// The Subject is an asserted name: whoever issued the token chose it, and
// nothing checks it against an identity. CreatedBy (with the audit entry of
// the creation) is the proof of who vouched for it; SubjectPrefix bounds
// which names a delegated issuer may assert.
type Record struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Kind      Kind      `json:"kind"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the id of the token that authorised the creation (empty
	// for the bootstrap token).
	CreatedBy string `json:"created_by,omitempty"`
	// ParentID is the token whose scopes and constraints bound this one
	// (attenuation); cascade revocation follows it.
	ParentID string `json:"parent_id,omitempty"`
	// ClientID is the registered OAuth client (SMART Backend Services,
	// internal/oauth) whose client-credentials grant issued the token;
	// empty for tokens issued by another token. Fixed at issue.
	ClientID  string    `json:"client_id,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	// MaxLifetime is how long, counted from CreatedAt, the issuer asked the
	// token to be extendable by rotation. Zero means ExpiresAt never moves.
	// The bound rotation enforces is NotAfter, fixed from it at issue.
	MaxLifetime time.Duration `json:"max_lifetime,omitempty"`
	// NotAfter is the absolute end of the token, fixed at issue:
	// CreatedAt+MaxLifetime (ExpiresAt without one), never later than the
	// issuer's own NotAfter. ExpiresAt never passes it (no rotation or
	// change moves it there) and nothing moves NotAfter. See End.
	NotAfter time.Time `json:"not_after"`
	// TTL is the token's rotation period: every rotation gives the new
	// secret an expiry of now+TTL (never past NotAfter). Zero on a record
	// made before rotation chains: Period derives it.
	TTL time.Duration `json:"ttl,omitempty"`
	// Grace is how long the previous secret keeps working after a
	// rotation, unless the rotation asks for less (0..TTL; default 0).
	Grace time.Duration `json:"grace,omitempty"`
	// Rotations counts the rotations of the token's secret (its chain
	// position: 0 for the secret it was issued with). The id never changes.
	Rotations int64 `json:"rotations,omitempty"`
	// RotatedAt is the time of the last rotation (zero: never rotated).
	RotatedAt time.Time `json:"rotated_at,omitempty"`
	// RotatedFrom is the fingerprint (see Fingerprint) of the secret the
	// last rotation replaced: with Rotations it names the link of the
	// chain; the audit entry of each rotation names both ends.
	RotatedFrom string `json:"rotated_from,omitempty"`
	// IdleTimeout: a token unused for this long stops working. Zero: none.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	LastUsedAt  time.Time     `json:"last_used_at,omitempty"`
	// RemainingUses is nil when uses are unlimited. The store's value
	// excludes uses that a node has reserved but not yet spent.
	RemainingUses *int64         `json:"remaining_uses,omitempty"`
	CIDRs         []netip.Prefix `json:"cidrs,omitempty"`
	Hours         *Hours         `json:"hours,omitempty"`
	Rate          *Rate          `json:"rate,omitempty"`
	// Purposes lists the HL7 PurposeOfUse codes the token may be used for.
	// When PurposeRequired is set a request must name one of them.
	Purposes        []string `json:"purposes,omitempty"`
	PurposeRequired bool     `json:"purpose_required,omitempty"`
	PatientID       string   `json:"patient_id,omitempty"`
	BreakGlass      bool     `json:"break_glass,omitempty"`
	// SubjectPrefix, when set, restricts the subjects of the tokens this
	// one issues: each must start with it, and so must a child's own
	// SubjectPrefix (a child without one inherits it).
	SubjectPrefix   string            `json:"subject_prefix,omitempty"`
	Status          Status            `json:"status"`
	StatusReason    string            `json:"status_reason,omitempty"`
	StatusChangedAt time.Time         `json:"status_changed_at,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	UpdatedAt       time.Time         `json:"updated_at"`
	// Revision increases with every change; updates use it for optimistic
	// concurrency.
	Revision int64 `json:"revision"`
}

// End is the latest instant r's ExpiresAt may ever reach: NotAfter or,
// when NotAfter is unset, ExpiresAt itself (no extension: fail closed).
func (r *Record) End() time.Time {
	if r.NotAfter.IsZero() {
		return r.ExpiresAt
	}
	return r.NotAfter
}

// Period is the rotation period: TTL, or for a record without one (made
// before rotation chains) the length of its first expiry, ExpiresAt minus
// CreatedAt.
func (r *Record) Period() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return r.ExpiresAt.Sub(r.CreatedAt)
}

// Clone returns a deep copy of r.
func (r *Record) Clone() *Record {
	c := *r
	c.Scopes = append([]string(nil), r.Scopes...)
	c.CIDRs = append([]netip.Prefix(nil), r.CIDRs...)
	c.Purposes = append([]string(nil), r.Purposes...)
	if r.RemainingUses != nil {
		v := *r.RemainingUses
		c.RemainingUses = &v
	}
	if r.Hours != nil {
		h := *r.Hours
		h.Days = append([]string(nil), r.Hours.Days...)
		c.Hours = &h
	}
	if r.Rate != nil {
		rt := *r.Rate
		c.Rate = &rt
	}
	if r.Metadata != nil {
		c.Metadata = make(map[string]string, len(r.Metadata))
		for k, v := range r.Metadata {
			c.Metadata[k] = v
		}
	}
	return &c
}

// Secret is the stored form of one token secret: its keyed hash, the pepper
// version that produced it and, after a rotation, the moment it stops
// working. A token has one current secret and, during a rotation's grace
// period, older ones.
type Secret struct {
	Hash          Hash
	PepperVersion int
	TokenID       string
	CreatedAt     time.Time
	// NotAfter is zero for the current secret.
	NotAfter time.Time
}
