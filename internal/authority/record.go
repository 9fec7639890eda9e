package authority

import (
	"context"
	"fmt"

	"github.com/phigate/phigate/internal/token"
)

// Actions the authority records.
const (
	ActionCreated = "token.created"
	ActionUpdated = "token.updated"
	ActionRotated = "token.rotated"
	// ActionRetried: a retry of an idempotent rotation was answered with
	// the rotation it repeats; nothing changed.
	ActionRetried    = "token.rotation_retried"
	ActionRevoked    = "token.revoked"
	ActionSuspended  = "token.suspended"
	ActionReinstated = "token.reinstated"
)

// Outcomes of a recorded change.
const (
	// OutcomeSuccess: the change was authorised and is being applied; it is
	// recorded before the store is written.
	OutcomeSuccess = "success"
	// OutcomeDenied: the caller may not make this change (with Reason).
	OutcomeDenied = "denied"
	// OutcomeError: the change was recorded as authorised but the store
	// then failed to apply it.
	OutcomeError = "error"
)

// Change is one change to one or more tokens, as the audit trail sees it.
// It never holds a secret.
type Change struct {
	Action string
	// Actor is the token that asked (nil for bootstrap and automatic
	// changes such as the monitor's suspensions).
	Actor *token.Record
	// TargetID is the token changed (the root of a cascade).
	TargetID string
	// Before and After are the record before and after the change, where
	// they are known (After of a creation, both of an update).
	Before, After *token.Record
	// IDs lists every token a cascading revocation touches.
	IDs     []string
	Outcome string
	Reason  string
	// Where is where a leaked secret was found (a revocation with
	// Reason ReasonLeaked), as the reporter said; never the secret.
	Where string
}

// Recorder receives every change before the authority makes it (for a
// creation: concurrently with the store write, and before the secret is
// returned, see Create), and every refused change. RecordChange MUST NOT return nil until the record is
// durable; an error refuses the change (fail closed).
type Recorder interface {
	RecordChange(ctx context.Context, c *Change) error
}

// ErrAuditUnavailable wraps a Recorder failure: the change was refused
// because it could not be recorded.
var ErrAuditUnavailable = fmt.Errorf("authority: the audit log cannot be written; change refused")

// record hands c to the recorder, if any. For a success it returns the
// recorder's error wrapped in ErrAuditUnavailable (the change must not
// happen); for denials and errors it returns nothing, since the caller is
// already failing.
func (a *Authority) record(ctx context.Context, c *Change) error {
	if a.cfg.Recorder == nil {
		return nil
	}
	err := a.cfg.Recorder.RecordChange(ctx, c)
	if err == nil {
		return nil
	}
	a.log.Error("audit record failed", "action", c.Action, "token_id", c.TargetID, "outcome", c.Outcome, "err", err)
	if c.Outcome == OutcomeSuccess {
		return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
	}
	return nil
}

// recordDenied records a refused change and returns err unchanged.
func (a *Authority) recordDenied(ctx context.Context, action string, ac *Actor, target string, err error) error {
	var actor *token.Record
	if ac != nil {
		actor = ac.Token
	}
	a.record(ctx, &Change{Action: action, Actor: actor, TargetID: target, Outcome: OutcomeDenied, Reason: err.Error()})
	return err
}

// recordFailed records that an authorised change then failed in the store.
func (a *Authority) recordFailed(ctx context.Context, action string, actor *token.Record, target string, err error) {
	a.record(ctx, &Change{Action: action, Actor: actor, TargetID: target, Outcome: OutcomeError, Reason: err.Error()})
}
