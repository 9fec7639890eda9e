package vault

import (
	"context"
	"fmt"
	"time"
)

// Kinds of Event.
const (
	EventKEKRotated     = "vault.kek_rotated"     // every data key re-wrapped under a new master key
	EventDEKRotated     = "vault.dek_rotated"     // a new data key version for a purpose
	EventDEKCreated     = "vault.dek_created"     // the first data key of a new purpose
	EventReencrypted    = "vault.reencrypted"     // stored items re-sealed under the active data key
	EventPepperRotated  = "vault.pepper_rotated"  // a new token pepper version
	EventPepperRetired  = "vault.pepper_retired"  // an old pepper version deleted
	EventPepperImported = "vault.pepper_imported" // an older phigate's pepper file moved into the vault
	EventSecretSet      = "vault.secret_set"      // a secret or key blob stored (its value never travels)
	EventTampered       = "vault.tamper_detected" // a ciphertext failed authentication
)

// Outcomes of an Event.
const (
	OutcomeSuccess = "success" // authorised, about to be applied
	OutcomeError   = "error"   // the change failed after it was recorded, or tampering
)

// Event describes a change to the vault for the audit log. It never holds
// a key or a secret value.
type Event struct {
	Kind    string
	Outcome string
	// Actor is who asked (see WithActor), empty for the server itself.
	Actor string
	// Purpose and Version name the data key, pepper or item version
	// concerned; Name the secret or key blob.
	Purpose string
	Name    string
	Version int
	// From and To describe the old and new master key (KEK rotation).
	From, To string
	// Count is the number of data keys re-wrapped (KEK rotation) or items
	// re-encrypted (Reencrypt).
	Count int
	// Reason explains an error outcome.
	Reason string
	At     time.Time
}

func (e Event) String() string {
	s := e.Kind + " " + e.Outcome
	if e.Purpose != "" {
		s += fmt.Sprintf(" purpose=%s", e.Purpose)
	}
	if e.Name != "" {
		s += fmt.Sprintf(" name=%s", e.Name)
	}
	if e.Version != 0 {
		s += fmt.Sprintf(" version=%d", e.Version)
	}
	if e.From != "" || e.To != "" {
		s += fmt.Sprintf(" from=%q to=%q", e.From, e.To)
	}
	if e.Count != 0 {
		s += fmt.Sprintf(" count=%d", e.Count)
	}
	return s
}

type actorKey struct{}

// WithActor returns ctx naming who asks for the changes made with it
// (a token id, "cli:offline", ...); events carry it as Actor.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func (v *Vault) stamp(ctx context.Context, e Event) Event {
	if e.Outcome == "" {
		e.Outcome = OutcomeSuccess
	}
	if a, ok := ctx.Value(actorKey{}).(string); ok {
		e.Actor = a
	}
	e.At = v.opts.Now().UTC()
	return e
}

// emit records e before the change; an error refuses it.
func (v *Vault) emit(ctx context.Context, e Event) error {
	if v.opts.OnEvent == nil {
		return nil
	}
	if err := v.opts.OnEvent(ctx, v.stamp(ctx, e)); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// emitFailed records that a change recorded by emit then failed.
func (v *Vault) emitFailed(ctx context.Context, e Event, err error) {
	if v.opts.OnEvent == nil {
		return
	}
	e.Outcome, e.Reason = OutcomeError, err.Error()
	v.opts.OnEvent(ctx, v.stamp(ctx, e))
}
