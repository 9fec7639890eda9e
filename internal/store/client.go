package store

import (
	"context"
	"net/netip"
	"time"

	"github.com/phigate/phigate/internal/token"
)

// ClientStore is the optional capability of a backend that keeps the
// registered OAuth clients of SMART Backend Services (internal/oauth) and
// their assertion replay cache. A backend offers it by implementing it on
// the same value as Store; callers find it by type assertion and refuse
// clearly when it is absent. The contract common to Store's methods holds.
type ClientStore interface {
	// CreateClient stores a new client as given. c.ID and c.Name MUST NOT
	// be empty, c.Status MUST be active, c.CreatedAt MUST NOT be zero, and
	// exactly one of c.JWKS and c.JWKSURL MUST be set. ErrConflict if the
	// id exists.
	CreateClient(ctx context.Context, c *Client) error

	// Client returns the client with this id, or ErrNotFound.
	Client(ctx context.Context, id string) (*Client, error)

	// ListClients returns clients ordered by id ascending, after f.After,
	// at most f.Limit of them (the limits of ListTokens), and the cursor of
	// the next page ("" when there is none).
	ListClients(ctx context.Context, f ClientFilter) ([]*Client, string, error)

	// RevokeClient sets an active client's status to revoked, with reason
	// and StatusChangedAt = UpdatedAt = at, and returns it. Revocation is
	// final: ErrConflict (and nothing changed) if it is revoked already,
	// ErrNotFound if absent.
	RevokeClient(ctx context.Context, id, reason string, at time.Time) (*Client, error)

	// UseAssertion records that client clientID presented the assertion
	// with this jti, valid until exp, at time now. It is an atomic
	// insert-if-absent across every node sharing the store: ErrConflict
	// (and nothing changed) when the same (clientID, jti) was recorded
	// before with an exp after now (a replay). Recorded assertions whose
	// exp is not after now may be deleted by any call. exp MUST be after
	// now; jti MUST NOT be empty or longer than MaxJTI bytes.
	UseAssertion(ctx context.Context, clientID, jti string, exp, now time.Time) error
}

// MaxJTI bounds the jti of an assertion (UseAssertion).
const MaxJTI = 256

// ClientStatus is the lifecycle state of a client. Revoked is final.
type ClientStatus string

// Client statuses.
const (
	ClientActive  ClientStatus = "active"
	ClientRevoked ClientStatus = "revoked"
)

// Valid reports whether s is a known status.
func (s ClientStatus) Valid() bool { return s == ClientActive || s == ClientRevoked }

// Client is a registered OAuth client (SMART Backend Services): who may
// ask the token endpoint for tokens by signing an assertion with a key of
// its JWKS, and what those tokens may be at most. It holds public keys
// only.
type Client struct {
	// ID is the client's public id ("cli_…"), its client_id.
	ID   string
	Name string
	// Subject is the subject of the tokens issued to it.
	Subject string
	// JWKS is the client's JSON Web Key Set as registered (inline), or
	// empty when JWKSURL is set.
	JWKS []byte
	// JWKSURL is the https URL the key set is fetched from.
	JWKSURL string
	// Scopes are the most its tokens may hold (canonical strings).
	Scopes []string
	// The constraints its tokens carry (see token.Record).
	CIDRs           []netip.Prefix
	Hours           *token.Hours
	Rate            *token.Rate
	Purposes        []string
	PurposeRequired bool
	// MaxTTL is the longest life of a token issued to it (0: the
	// server's default for the token endpoint).
	MaxTTL time.Duration
	// CreatedBy is the token that registered it.
	CreatedBy       string
	Status          ClientStatus
	StatusReason    string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	StatusChangedAt time.Time
}

// ClientFilter selects clients for ListClients. Zero fields do not filter.
type ClientFilter struct {
	Status ClientStatus
	// CreatedBy lists the clients one token registered.
	CreatedBy string
	// After is the cursor: the last id of the previous page.
	After string
	Limit int
}
