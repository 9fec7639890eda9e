// Package store declares what phigate needs from persistent storage, as one
// interface that every backend (the embedded SQLite store in store/sqlite,
// the PostgreSQL store of a cluster in store/postgres) implements, and whose
// contract the conformance suite in store/storetest checks.
//
// Contract common to every method:
//
//   - A method that changes state MUST NOT return nil until the change is
//     durable (committed and fsync'd). Backends are expected to batch
//     concurrent changes into one transaction and one fsync (group commit),
//     so many callers share the cost of a sync; each caller still learns
//     only about its own change.
//   - A method that returns an error has changed nothing (no partial writes),
//     with one exception: when ctx ends while a change is already waiting for
//     its commit, the method returns an error wrapping ctx.Err() and the
//     change may still commit. The outcome is then unknown; read to find out.
//     A method called with a ctx that is already done returns an error
//     wrapping ctx.Err() and changes nothing.
//   - Records handed in are not retained; records returned are fresh copies
//     the caller may change.
//   - Times come back in UTC, without a monotonic clock reading, equal to the
//     time handed in or to that time truncated to the microsecond (a backend
//     MAY keep nanoseconds; store/sqlite does). The zero time comes back as
//     the zero time.
//   - Nil and empty slices and maps are not told apart: either may come back
//     for the other. A nil *int64, *Hours or *Rate comes back nil, a non-nil
//     one non-nil.
//   - Errors are ErrNotFound, ErrConflict, ErrClosed, or a wrapped technical
//     failure; callers check with errors.Is. Invalid arguments (a record with
//     an empty ID, an unknown Kind or Status, negative RemainingUses; a
//     non-positive use count) are refused with an error that is none of the
//     three sentinels.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/phigate/phigate/internal/token"
)

// Errors with an operational meaning.
var (
	// ErrNotFound: no such token, secret, key or alert.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique value already exists, or an update's expected
	// revision is stale.
	ErrConflict = errors.New("store: conflict")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
)

// Store is the persistent state of a phigate node. Implementations are safe
// for concurrent use.
type Store interface {
	// CreateToken stores a new token record together with its first secret.
	// The record is stored as given, Revision included. sec.TokenID, when
	// not empty, MUST equal rec.ID. ErrConflict if the id or the secret hash
	// exists already.
	CreateToken(ctx context.Context, rec *token.Record, sec token.Secret) error

	// Token returns the record with this id, or ErrNotFound.
	Token(ctx context.Context, id string) (*token.Record, error)

	// TokenBySecret returns the record owning the secret with this hash and
	// that secret's stored form (whose NotAfter tells whether a rotated
	// secret is still within its grace period). ErrNotFound when no secret
	// has this hash. Expired secrets may be returned; the caller checks.
	TokenBySecret(ctx context.Context, hash token.Hash) (*token.Record, token.Secret, error)

	// ListTokens returns tokens ordered by id ascending, after filter.After,
	// at most filter.Limit (1..1000; 0 means 100) of them, and the cursor of
	// the next page ("" when there is none). A Limit above 1000 is taken as
	// 1000 and one below 0 as 100.
	ListTokens(ctx context.Context, filter TokenFilter) (recs []*token.Record, next string, err error)

	// UpdateToken replaces the stored record whose id is rec.ID, provided its
	// stored revision equals rec.Revision; the stored revision becomes
	// rec.Revision+1 and is written back into rec. ErrNotFound if absent,
	// ErrConflict if the revision is stale. RemainingUses and LastUsedAt are
	// not changed by UpdateToken (see ReserveUses, TouchLastUsed), nor are
	// NotAfter and ClientID, which are fixed when the token is created;
	// everything else is.
	UpdateToken(ctx context.Context, rec *token.Record) error

	// SetStatus sets status, reason and StatusChangedAt=at on each listed
	// token whose status differs and is not revoked (revocation is final),
	// bumping its revision and setting UpdatedAt=at, in one transaction. It
	// returns the ids it changed, in the order given. Unknown ids are
	// skipped; an id listed twice is changed once.
	SetStatus(ctx context.Context, ids []string, status token.Status, reason string, at time.Time) (changed []string, err error)

	// Descendants returns the ids of every token whose ParentID chain leads
	// to id (children, grandchildren, ...), not including id itself, in no
	// particular order. An unknown id or a leaf has none (nil error). A cycle
	// of ParentIDs (which UpdateToken can create) does not make it loop.
	Descendants(ctx context.Context, id string) ([]string, error)

	// RotateSecret adds sec as the token's current secret and sets NotAfter
	// of every other secret of the token that has none (or a later one) to
	// oldNotAfter. Secrets whose NotAfter is not after "now" may be deleted.
	// If newExpiresAt is not zero the token's ExpiresAt becomes it (the
	// caller keeps it within the token's NotAfter). Bumps
	// the revision and sets UpdatedAt to sec.CreatedAt. oldNotAfter MUST NOT
	// be zero; sec.TokenID, when not empty, MUST equal id. ErrNotFound if
	// the token is absent, ErrConflict if the hash exists.
	//
	// A rotation is a link of the token's chain: the token's Rotations
	// goes up by one and its RotatedAt becomes sec.CreatedAt (RotatedFrom
	// is left empty; see RotateSecretWith).
	RotateSecret(ctx context.Context, id string, sec token.Secret, oldNotAfter, newExpiresAt time.Time) error

	// RotateSecretWith is RotateSecret for r.Secret, r.OldNotAfter and
	// r.NewExpiresAt that also sets the token's RotatedFrom to
	// r.RotatedFrom and, when r.Replay is set, stores the replay in the
	// same transaction: either both are durable or neither is. ErrConflict
	// (and nothing changed) if the token already has an unexpired replay
	// under r.Replay.Key: two rotations racing with one idempotency key
	// make one rotation. r.Replay.TokenID MUST equal id, and its ExpiresAt
	// MUST be after its CreatedAt. Expired replays (ExpiresAt not after
	// the store's clock) may be deleted by any write; a token keeps at
	// most MaxReplays of them (the oldest go first).
	RotateSecretWith(ctx context.Context, id string, r Rotation) error

	// Replay returns the replay stored under key for token id whose
	// ExpiresAt is after at, or ErrNotFound (none, or expired).
	Replay(ctx context.Context, id string, key [32]byte, at time.Time) (*Replay, error)

	// Secrets returns the stored secrets of a token (hashes included), newest
	// (by CreatedAt) first. ErrNotFound if the token is absent.
	Secrets(ctx context.Context, id string) ([]token.Secret, error)

	// LiveSecretsByPepper counts, per pepper version, the secrets that can
	// still verify at time at: the token is not revoked and expires after
	// at, and the secret's NotAfter is zero or after at. A suspended
	// token's secrets count (it can be reinstated). Versions without such
	// a secret are absent from the map. Pepper retirement asks it whether
	// a version is still needed. at MUST NOT be the zero time.
	LiveSecretsByPepper(ctx context.Context, at time.Time) (map[int]int64, error)

	// ReserveUses atomically takes up to n uses from the token's remaining
	// uses and returns how many it took (0 when none remain). For a token
	// without a use limit it returns n. Remaining uses never go below zero,
	// whatever the concurrency, across every node sharing the store. n MUST
	// be positive. ErrNotFound if the token is absent. It does not bump the
	// revision.
	ReserveUses(ctx context.Context, id string, n int64) (int64, error)

	// ReleaseUses gives back n reserved but unspent uses (at shutdown). For a
	// token without a use limit it does nothing. n MUST be positive.
	// ErrNotFound if the token is absent. It does not bump the revision.
	ReleaseUses(ctx context.Context, id string, n int64) error

	// TouchLastUsed records last-use times in one batch. A time older than
	// the stored one (or zero) is ignored. Unknown ids are skipped. It does
	// not bump revisions.
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error

	// GetMeta and PutMeta keep small named values (schema facts, bootstrap
	// state). GetMeta returns ErrNotFound for an unknown key.
	GetMeta(ctx context.Context, key string) ([]byte, error)
	PutMeta(ctx context.Context, key string, value []byte) error

	// CreateAlert stores a new alert (state open, as given otherwise).
	// a.ID MUST NOT be empty, a.Detector MUST NOT be empty, a.Severity
	// MUST be a known severity, a.Evidence MUST be empty or one JSON
	// object, a.CreatedAt MUST NOT be zero; AckedAt, AckedBy and AckNote
	// MUST be empty (an alert is created open). ErrConflict if the id
	// exists.
	CreateAlert(ctx context.Context, a *Alert) error

	// Alert returns the alert with this id, or ErrNotFound.
	Alert(ctx context.Context, id string) (*Alert, error)

	// ListAlerts returns alerts ordered by id ascending, after f.After,
	// at most f.Limit of them (the limits of ListTokens), and the cursor
	// of the next page ("" when there is none).
	ListAlerts(ctx context.Context, f AlertFilter) (alerts []*Alert, next string, err error)

	// AckAlert acknowledges an open alert: its state becomes acked, with
	// AckedAt=at, AckedBy=by and AckNote=note, and returns it. ErrNotFound
	// if absent, ErrConflict (and nothing changed) if it is acked already.
	// by and at MUST NOT be empty or zero.
	AckAlert(ctx context.Context, id, by, note string, at time.Time) (*Alert, error)

	// Ping reports whether the store can serve requests (readiness).
	Ping(ctx context.Context) error

	// Close flushes pending writes (changes handed to the store before Close
	// still commit and their callers learn the outcome) and releases
	// resources. Calls after Close, Close included, return ErrClosed.
	Close() error
}

// TokenFilter selects tokens for ListTokens. Zero fields do not filter.
type TokenFilter struct {
	Subject string
	Status  token.Status
	// ParentID lists the tokens created under this one.
	ParentID string
	// ClientID lists the tokens issued to this OAuth client.
	ClientID string
	// After is the cursor: the last id of the previous page.
	After string
	Limit int
}

// Severity ranks an alert.
type Severity string

// Severities, from least to most urgent.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Valid reports whether s is one of the severities above.
func (s Severity) Valid() bool {
	switch s {
	case SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return true
	}
	return false
}

// AlertState is where an alert is in its handling.
type AlertState string

// Alert states: an alert is created open and acknowledged once.
const (
	AlertOpen  AlertState = "open"
	AlertAcked AlertState = "acked"
)

// Valid reports whether s is one of the states above.
func (s AlertState) Valid() bool { return s == AlertOpen || s == AlertAcked }

// Alert is what a monitor detector raised, as stored. It never holds a
// token secret: Evidence is counts, prefixes and baselines.
type Alert struct {
	// ID is the alert's public id ("alr_…"; ids sort by creation).
	ID string
	// Detector names what raised it ("rate_spike", "brute_force", ...).
	Detector string
	Severity Severity
	// TokenID and Subject name the token the alert is about ("" for a
	// source, as with brute force).
	TokenID, Subject string
	// Source is the address or prefix the alert is about, if any.
	Source string
	// Summary is one line for people.
	Summary string
	// Evidence is a JSON object: counts, prefixes, the baseline compared
	// with. Kept as given.
	Evidence []byte
	// AuditSeqs are the audit sequence numbers of the requests that
	// tripped it.
	AuditSeqs []uint64
	// Action is what was done ("none", "blocked", "suspended",
	// "ip_blocked").
	Action    string
	CreatedAt time.Time

	State   AlertState
	AckedAt time.Time
	AckedBy string // the token id that acknowledged it
	AckNote string
}

// AlertFilter selects alerts for ListAlerts. Zero fields do not filter.
type AlertFilter struct {
	TokenID  string
	Severity Severity
	State    AlertState
	// Since and Until bound CreatedAt: Since <= CreatedAt < Until.
	Since, Until time.Time
	// After is the cursor: the last id of the previous page.
	After string
	Limit int
}

// MaxReplays bounds the replays a token keeps (RotateSecretWith).
const MaxReplays = 16

// Rotation is one rotation of a token's secret (RotateSecretWith).
type Rotation struct {
	// Secret becomes the current secret.
	Secret token.Secret
	// OldNotAfter is when the secrets it replaces stop working (not zero).
	OldNotAfter time.Time
	// NewExpiresAt, when not zero, is the token's new ExpiresAt.
	NewExpiresAt time.Time
	// RotatedFrom is the fingerprint of the secret replaced
	// (token.Fingerprint), kept as the record's RotatedFrom.
	RotatedFrom string
	// Revision, when not zero, MUST equal the stored revision (else
	// ErrConflict and nothing changes): two rotations of one revision
	// make one link of the chain.
	Revision int64
	// Replay, when set, is kept for retries of this rotation.
	Replay *Replay
}

// Replay is what an idempotent rotation keeps, until ExpiresAt, so that a
// retry with the same idempotency key gets the same answer. The store
// never sees a secret: Sealed is encrypted by the caller.
type Replay struct {
	TokenID string
	// Key is the SHA-256 of the idempotency key.
	Key [32]byte
	// CallerID is the token that asked for the rotation.
	CallerID string
	// Request is the SHA-256 of what was asked (a retry must ask the same).
	Request [32]byte
	// Rotation is the token's rotation count after this rotation.
	Rotation int64
	// Sealed is the answer, encrypted and bound to the token and the key.
	Sealed    []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// TokenCounts are the tokens of a scope by status, as an overview shows
// them: Expired counts the active tokens already past ExpiresAt (not in
// Active), Expiring the active ones expiring within the window asked for.
type TokenCounts struct {
	Active, Suspended, Revoked, Expired int
	Expiring                            int
}
