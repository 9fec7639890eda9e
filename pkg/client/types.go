package client

import "time"

// The wire types of phigate's admin API. Durations travel as Go duration
// strings ("15m", "1h30m"); times as RFC 3339 with nanoseconds, UTC.

// Token is the public view of a token record. It never carries the secret.
// NotAfter is the token's absolute end, fixed at issue: no rotation or
// change moves the expiry past it (zero from a server that predates it).
// SubjectPrefix, when set, is what the subject of every token this one
// issues must start with; the subject is a name the issuer asserted, and
// CreatedBy is who asserted it.
type Token struct {
	ID              string            `json:"id"`
	Subject         string            `json:"subject"`
	Kind            string            `json:"kind"`
	Scopes          []string          `json:"scopes"`
	Status          string            `json:"status"`
	StatusReason    string            `json:"status_reason,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	CreatedBy       string            `json:"created_by,omitempty"`
	ParentID        string            `json:"parent_id,omitempty"`
	ExpiresAt       time.Time         `json:"expires_at"`
	MaxLifetime     string            `json:"max_lifetime,omitempty"`
	NotAfter        time.Time         `json:"not_after,omitzero"`
	IdleTimeout     string            `json:"idle_timeout,omitempty"`
	LastUsedAt      *time.Time        `json:"last_used_at,omitempty"`
	RemainingUses   *int64            `json:"remaining_uses,omitempty"`
	CIDRs           []string          `json:"cidrs,omitempty"`
	Hours           *Hours            `json:"hours,omitempty"`
	Rate            *Rate             `json:"rate,omitempty"`
	Purposes        []string          `json:"purposes,omitempty"`
	PurposeRequired bool              `json:"purpose_required,omitempty"`
	PatientID       string            `json:"patient_id,omitempty"`
	BreakGlass      bool              `json:"break_glass,omitempty"`
	SubjectPrefix   string            `json:"subject_prefix,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Revision        int64             `json:"revision"`
	// The rotation chain (server side; see the README's rotation section):
	// TTL is the rotation period, Grace how long a replaced secret keeps
	// working, Rotations the number of rotations so far, RotatedAt the
	// last one and RotatedFrom the fingerprint of the secret it replaced.
	TTL         string     `json:"ttl,omitempty"`
	Grace       string     `json:"grace,omitempty"`
	Rotations   int64      `json:"rotations,omitempty"`
	RotatedAt   *time.Time `json:"rotated_at,omitempty"`
	RotatedFrom string     `json:"rotated_from,omitempty"`
}

// Hours restricts use to a daily window ("07:00"-"19:00") in an IANA time
// zone, optionally on some weekdays only ("Mon".."Sun"). End before start
// crosses midnight.
type Hours struct {
	Start string   `json:"start"`
	End   string   `json:"end"`
	TZ    string   `json:"tz"`
	Days  []string `json:"days,omitempty"`
}

// Rate is a token-bucket limit.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// CreateTokenRequest is the body of POST /v1/tokens. Only Subject and Scopes
// are required; TTL defaults to the server's default TTL. An empty
// SubjectPrefix inherits the caller's.
type CreateTokenRequest struct {
	Subject         string            `json:"subject"`
	Kind            string            `json:"kind,omitempty"`
	Scopes          []string          `json:"scopes"`
	TTL             string            `json:"ttl,omitempty"`
	MaxLifetime     string            `json:"max_lifetime,omitempty"`
	IdleTimeout     string            `json:"idle_timeout,omitempty"`
	MaxUses         *int64            `json:"max_uses,omitempty"`
	CIDRs           []string          `json:"cidrs,omitempty"`
	Hours           *Hours            `json:"hours,omitempty"`
	Rate            *Rate             `json:"rate,omitempty"`
	Purposes        []string          `json:"purposes,omitempty"`
	PurposeRequired bool              `json:"purpose_required,omitempty"`
	PatientID       string            `json:"patient_id,omitempty"`
	BreakGlass      bool              `json:"break_glass,omitempty"`
	SubjectPrefix   string            `json:"subject_prefix,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	// Grace is how long the previous secret keeps working after each
	// rotation (default 0, at most TTL).
	Grace string `json:"grace,omitempty"`
}

// IssuedToken is the answer to a creation or a rotation: the token's view and
// its secret, shown this once.
type IssuedToken struct {
	Token
	Secret string `json:"token"`
	// PreviousNotAfter, after a rotation, is when the old secret stops
	// working (equal to the rotation time when there is no grace period).
	PreviousNotAfter *time.Time `json:"previous_not_after,omitempty"`
}

// UpdateTokenRequest is the body of PATCH /v1/tokens/{id}. An absent (or
// null) field is left alone; Clear names constraints to remove. Revision,
// when not zero, makes the update conditional (409 if the token changed
// meanwhile). Every change must stay within the caller's own scopes and
// constraints (attenuation). SubjectPrefix can only be narrowed (the new
// prefix starts with the current one), and the expiry never moves past the
// token's NotAfter.
type UpdateTokenRequest struct {
	Scopes          *[]string          `json:"scopes,omitempty"`
	ExpiresAt       *time.Time         `json:"expires_at,omitempty"`
	TTL             *string            `json:"ttl,omitempty"`
	IdleTimeout     *string            `json:"idle_timeout,omitempty"`
	MaxUses         *int64             `json:"max_uses,omitempty"`
	CIDRs           *[]string          `json:"cidrs,omitempty"`
	Hours           *Hours             `json:"hours,omitempty"`
	Rate            *Rate              `json:"rate,omitempty"`
	Purposes        *[]string          `json:"purposes,omitempty"`
	PurposeRequired *bool              `json:"purpose_required,omitempty"`
	PatientID       *string            `json:"patient_id,omitempty"`
	BreakGlass      *bool              `json:"break_glass,omitempty"`
	SubjectPrefix   *string            `json:"subject_prefix,omitempty"`
	Metadata        *map[string]string `json:"metadata,omitempty"`
	Revision        int64              `json:"revision,omitempty"`
	// Clear lists constraints to remove: "idle_timeout", "max_uses",
	// "cidrs", "hours", "rate", "purposes", "patient_id", "metadata".
	Clear []string `json:"clear,omitempty"`
	// Grace sets the token's grace period (at most its TTL).
	Grace *string `json:"grace,omitempty"`
}

// RotateRequest is the body of POST /v1/tokens/{id}/rotate and
// /v1/tokens/self/rotate (all fields optional).
type RotateRequest struct {
	// Grace is how long the previous secret keeps working (default: the
	// token's grace; it may only be shorter).
	Grace string `json:"grace,omitempty"`
	// TTL, when set, is the new secret's lifetime (default: the token's
	// rotation period, its ttl; it may only be shorter), capped at the
	// token's not_after (and its issuers').
	TTL string `json:"ttl,omitempty"`
}

// StatusRequest is the optional body of revoke, suspend and reinstate.
type StatusRequest struct {
	Reason string `json:"reason,omitempty"`
}

// TokenList is the answer to GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
	// Next is the cursor for the next page ("after="), empty on the last.
	Next string `json:"next,omitempty"`
}

// RevokeResult is the answer to DELETE /v1/tokens/{id}.
type RevokeResult struct {
	Revoked []string `json:"revoked"`
}

// Introspection is the RFC 7662 answer of POST /v1/introspect.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Jti       string `json:"jti,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Kind      string `json:"phigate_kind,omitempty"`
	PatientID string `json:"patient,omitempty"`
	// Nbf is when the token became valid (its creation).
	Nbf int64 `json:"nbf,omitempty"`
	// ClientID is the OAuth client that issued the token, else the token
	// that created it, else the token's own id.
	ClientID string `json:"client_id,omitempty"`
	// Aud names the upstreams the token's scopes can reach.
	Aud []string `json:"aud,omitempty"`
	// FHIRUser is the SMART fhirUser (a relative reference such as
	// Practitioner/123), from the token's metadata key "fhirUser".
	FHIRUser string `json:"fhirUser,omitempty"`
}

// ErrorBody is every error answer: {"error":{"code","message","request_id"}}.
type ErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
		// Field names the offending request field, when there is one.
		Field string `json:"field,omitempty"`
	} `json:"error"`
}
