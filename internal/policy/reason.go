package policy

// Reason says why a request was allowed or denied. The zero value is
// Unknown-deny, never an allow.
type Reason uint8

// Reasons. Their codes (Code) are part of the external contract.
const (
	ReasonNone    Reason = iota // zero value: no decision, treated as deny
	OK                          // allowed
	Malformed                   // not a well-formed token (no store lookup)
	Unknown                     // well formed, but no such token
	Rotated                     // a rotated-out secret past its grace period
	Expired                     // past expires_at
	Revoked                     // revoked
	Suspended                   // suspended
	Idle                        // unused for longer than its idle timeout
	Network                     // source address outside the allowed CIDRs
	Hours                       // outside the allowed hours
	Purpose                     // purpose of use missing or not allowed
	RateLimited                 // over its rate limit
	UsesExhausted               // no remaining uses
	Scope                       // scope does not cover the request
	Unavailable                 // a technical failure (fail closed)
)

var codes = [...]string{
	ReasonNone:    "denied",
	OK:            "ok",
	Malformed:     "invalid_token",
	Unknown:       "invalid_token",
	Rotated:       "token_rotated",
	Expired:       "token_expired",
	Revoked:       "token_revoked",
	Suspended:     "token_suspended",
	Idle:          "token_idle",
	Network:       "network_denied",
	Hours:         "outside_hours",
	Purpose:       "purpose_denied",
	RateLimited:   "rate_limited",
	UsesExhausted: "uses_exhausted",
	Scope:         "insufficient_scope",
	Unavailable:   "unavailable",
}

var messages = [...]string{
	ReasonNone:    "request denied",
	OK:            "allowed",
	Malformed:     "the access token is malformed or unknown",
	Unknown:       "the access token is malformed or unknown",
	Rotated:       "the access token was rotated and its grace period is over",
	Expired:       "the access token has expired",
	Revoked:       "the access token has been revoked",
	Suspended:     "the access token is suspended",
	Idle:          "the access token was idle for longer than its idle timeout",
	Network:       "the request comes from a network the token may not be used from",
	Hours:         "the token may not be used at this time",
	Purpose:       "the purpose of use is missing or not allowed for this token",
	RateLimited:   "the token's rate limit is exceeded",
	UsesExhausted: "the token has no remaining uses",
	Scope:         "the token's scopes do not cover this request",
	Unavailable:   "the service cannot decide right now",
}

// Code is the reason code clients see (stable).
func (r Reason) Code() string {
	if int(r) < len(codes) {
		return codes[r]
	}
	return codes[ReasonNone]
}

// Message is a human sentence for clients; it never contains a secret.
func (r Reason) Message() string {
	if int(r) < len(messages) {
		return messages[r]
	}
	return messages[ReasonNone]
}

// String is Code.
func (r Reason) String() string { return r.Code() }

// Allowed reports whether r is OK.
func (r Reason) Allowed() bool { return r == OK }

// Unauthenticated reports whether r means the credential itself is not
// (or no longer) valid, as opposed to valid but not allowed here and now.
// HTTP layers map the first to 401 and the second to 403 (or 429).
func (r Reason) Unauthenticated() bool {
	switch r {
	case Malformed, Unknown, Rotated, Expired, Revoked, Suspended, Idle:
		return true
	}
	return false
}
