package authority

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// Rotation chains and idempotent rotation. See the package doc.

// Errors of rotation.
var (
	// ErrAlreadyRotated: the caller presented a secret that a rotation has
	// already replaced, and asked for another rotation (without the
	// idempotency key of the one that replaced it). A superseded secret
	// never starts a rotation. Wraps ErrInvalidState.
	ErrAlreadyRotated = fmt.Errorf("%w: this secret has already been rotated; use the secret the rotation returned", ErrInvalidState)
	// ErrIdempotencyKeyReused: the idempotency key was used before, by
	// another caller or for another request.
	ErrIdempotencyKeyReused = errors.New("authority: the idempotency key was used for another request")
	// ErrIdempotencyUnavailable: a rotation asked for idempotency but the
	// authority has no ReplaySealer to keep the answer with.
	ErrIdempotencyUnavailable = errors.New("authority: idempotent rotation is not available")
)

// MaxIdempotencyKey is the longest idempotency key.
const MaxIdempotencyKey = 128

// ValidIdempotencyKey reports whether k is 1 to MaxIdempotencyKey
// printable ASCII characters (0x21..0x7e and space inside).
func ValidIdempotencyKey(k string) bool {
	if k == "" || len(k) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return k[0] != ' ' && k[len(k)-1] != ' '
}

// RotateRequest is what a rotation asks for (see RotateWith).
type RotateRequest struct {
	// Grace, when set, is the previous secret's grace for this rotation;
	// it may only be shorter than the token's own (Record.Grace), which
	// is the default.
	Grace *time.Duration
	// TTL, when not zero, is the new secret's lifetime; it may only be
	// shorter than the token's rotation period, which is the default.
	TTL time.Duration
	// IdempotencyKey, when set, makes the rotation idempotent: a retry
	// with the same key by the same caller, asking the same (Request),
	// within the grace period, gets the same answer and rotates nothing.
	IdempotencyKey string
	// Request identifies what was asked (for instance a hash of the
	// request's path and body); a retry must ask the same.
	Request [32]byte
}

// Rotation is the result of a rotation.
type Rotation struct {
	Secret           string        `json:"secret"`
	Token            *token.Record `json:"token"`
	PreviousNotAfter time.Time     `json:"previous_not_after"`
	// Replayed: the answer of an earlier rotation with the same
	// idempotency key; this call changed nothing.
	Replayed bool `json:"-"`
}

// checkGrace validates a grace period against the rotation period and the
// server's maximum.
func (a *Authority) checkGrace(grace, period time.Duration) error {
	switch {
	case grace < 0:
		return fieldErr("grace", "must not be negative")
	case grace > period:
		return fieldErr("grace", "%s is longer than the token's ttl (its rotation period) %s", grace, period)
	case grace > a.cfg.MaxGrace:
		return fieldErr("grace", "%s exceeds the server's maximum of %s", grace, a.cfg.MaxGrace)
	}
	return nil
}

// Rotate is RotateWith with an explicit grace (at most the token's own)
// and ttl (0: the token's rotation period).
func (a *Authority) Rotate(ctx context.Context, ac Actor, id string, grace, ttl time.Duration) (*Rotation, error) {
	return a.RotateWith(ctx, ac, id, RotateRequest{Grace: &grace, TTL: ttl})
}

// RotateWith gives token id a new secret: a link of its rotation chain.
// The new secret expires after the token's rotation period (its TTL, or
// req.TTL if shorter), never past the token's not_after nor any issuer's
// up its chain (see extensionLimit), and, when the caller is another
// token, never past the caller's expiry. The previous secret keeps
// working for the token's grace (or req.Grace if shorter). Scopes and
// constraints are the token's: rotation never widens anything. A token may
// rotate itself, but not with a superseded secret (ErrAlreadyRotated).
// Rotation fails with ErrIssuerRevoked when an issuer up the chain is
// revoked, and with ErrLifetimeEnded once the token's not_after has
// passed: a person must issue a new token.
//
// With req.IdempotencyKey the answer is kept, sealed (Config.ReplaySealer),
// until the previous secret's grace ends; a retry by the same caller with
// the same key and request gets it again (Replayed) without a second
// rotation and is audited as ActionRetried; the same key with another
// request is ErrIdempotencyKeyReused. With no grace nothing is kept.
func (a *Authority) RotateWith(ctx context.Context, ac Actor, id string, req RotateRequest) (*Rotation, error) {
	rec, err := a.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	self := ac.Token != nil && ac.Token.ID == id
	if !self {
		if err := a.manageable(ctx, ac, rec); err != nil {
			return nil, a.recordDenied(ctx, ActionRotated, &ac, id, err)
		}
	}
	if rec.Status != token.StatusActive {
		return nil, fmt.Errorf("%w: the token is %s", ErrInvalidState, rec.Status)
	}
	now := a.cfg.Now().UTC()
	var key [32]byte
	if req.IdempotencyKey != "" {
		if !ValidIdempotencyKey(req.IdempotencyKey) {
			return nil, fieldErr("idempotency_key", "want 1 to %d printable ASCII characters", MaxIdempotencyKey)
		}
		if a.cfg.ReplaySealer == nil {
			return nil, ErrIdempotencyUnavailable
		}
		key = sha256.Sum256([]byte(req.IdempotencyKey))
		if rot, err := a.replay(ctx, ac, id, key, req.Request, now); rot != nil || err != nil {
			return rot, err
		}
	}
	if self && ac.Superseded {
		return nil, a.recordDenied(ctx, ActionRotated, &ac, id, ErrAlreadyRotated)
	}
	limit, err := a.extensionLimit(ctx, rec, now)
	if errors.Is(err, ErrInvalidState) { // a renewal refused: on the record
		return nil, a.recordDenied(ctx, ActionRotated, &ac, id, err)
	}
	if err != nil {
		return nil, err
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, fmt.Errorf("%w: the token has expired", ErrInvalidState)
	}
	grace := rec.Grace
	if req.Grace != nil {
		if *req.Grace < 0 || *req.Grace > rec.Grace {
			return nil, fieldErr("grace", "%s: a rotation's grace can only be shorter than the token's own (%s); change the token's grace first", *req.Grace, rec.Grace)
		}
		grace = *req.Grace
	}
	period := rec.Period()
	ttl := period
	if req.TTL != 0 {
		if req.TTL < 0 || req.TTL > period {
			return nil, fieldErr("ttl", "%s: a rotation's ttl can only be shorter than the token's rotation period (%s)", req.TTL, period)
		}
		ttl = req.TTL
	}
	newExp := now.Add(ttl)
	if newExp.After(limit) {
		newExp = limit
	}
	if !self && newExp.After(ac.Token.ExpiresAt) {
		if req.TTL != 0 {
			return nil, a.recordDenied(ctx, ActionRotated, &ac, id, &AttenuationError{Field: "ttl", Msg: "the new expiry would be after the caller's own"})
		}
		// never beyond the caller's own expiry, and never shortened by it
		newExp = ac.Token.ExpiresAt
		if newExp.Before(rec.ExpiresAt) {
			newExp = rec.ExpiresAt
		}
	}
	oldNotAfter := now.Add(grace)
	if oldNotAfter.After(newExp) {
		oldNotAfter = newExp
	}
	secs, err := a.st.Secrets(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("authority: rotate: %w", err)
	}
	var from string
	for _, s := range secs {
		if s.NotAfter.IsZero() { // the current one
			from = token.Fingerprint(s.Hash)
			break
		}
	}
	secret, err := token.Generate(a.cfg.Rand)
	if err != nil {
		return nil, err
	}
	after := a.overlay(rec.Clone())
	after.ExpiresAt, after.UpdatedAt, after.Revision = newExp, now, rec.Revision+1
	after.Rotations, after.RotatedAt, after.RotatedFrom = rec.Rotations+1, now, from
	// As in create: the pepper stays current until the secret is stored.
	a.pepperMu.RLock()
	defer a.pepperMu.RUnlock()
	hs := a.hashers.Load()
	sec := token.Secret{Hash: hs.current.Sum(secret), PepperVersion: hs.current.Version(), TokenID: id, CreatedAt: now}
	rot := &Rotation{Secret: secret, Token: after, PreviousNotAfter: oldNotAfter}
	srot := store.Rotation{Secret: sec, OldNotAfter: oldNotAfter, NewExpiresAt: newExp, RotatedFrom: from, Revision: rec.Revision}
	if req.IdempotencyKey != "" && oldNotAfter.After(now) {
		sealed, err := a.sealReplay(ctx, id, key, rot)
		if err != nil {
			return nil, err
		}
		srot.Replay = &store.Replay{TokenID: id, Key: key, CallerID: ac.Token.ID, Request: req.Request,
			Sealed: sealed, CreatedAt: now, ExpiresAt: oldNotAfter}
	}
	if err := a.record(ctx, &Change{Action: ActionRotated, Actor: ac.Token, TargetID: id, Before: rec, After: after, Outcome: OutcomeSuccess,
		Reason: fmt.Sprintf("rotation %d: secret %s replaced by %s; the previous one is valid until %s",
			after.Rotations, from, token.Fingerprint(sec.Hash), oldNotAfter.Format(time.RFC3339))}); err != nil {
		return nil, err
	}
	err = a.st.RotateSecretWith(ctx, id, srot)
	if err != nil {
		a.recordFailed(ctx, ActionRotated, ac.Token, id, err)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNotFound
		}
		if errors.Is(err, store.ErrConflict) && srot.Replay != nil {
			// a retry racing with the rotation it repeats: answer with it
			if rot, rerr := a.replay(ctx, ac, id, key, req.Request, now); rot != nil || rerr != nil {
				return rot, rerr
			}
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrConflict
		}
		return nil, fmt.Errorf("authority: rotate: %w", err)
	}
	a.Invalidate(id)
	return rot, nil
}

// replayField is the field a replay is sealed under: bound to the key.
func replayField(key [32]byte) string { return "rotation-replay:" + hex.EncodeToString(key[:]) }

func (a *Authority) sealReplay(ctx context.Context, id string, key [32]byte, rot *Rotation) ([]byte, error) {
	plain, err := json.Marshal(rot)
	if err != nil {
		return nil, fmt.Errorf("authority: encode rotation answer: %w", err)
	}
	defer clear(plain)
	ct, err := a.cfg.ReplaySealer.Seal(ctx, id, replayField(key), plain)
	if err != nil {
		return nil, fmt.Errorf("authority: token %s: sealing the rotation answer: %w", id, err)
	}
	return ct, nil
}

// replay answers a retry from the replay kept under key, if there is one:
// (nil, nil) when there is none.
func (a *Authority) replay(ctx context.Context, ac Actor, id string, key, request [32]byte, now time.Time) (*Rotation, error) {
	rp, err := a.st.Replay(ctx, id, key, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authority: rotation replay: %w", err)
	}
	if rp.CallerID != ac.Token.ID || rp.Request != request {
		return nil, a.recordDenied(ctx, ActionRetried, &ac, id, ErrIdempotencyKeyReused)
	}
	plain, err := a.cfg.ReplaySealer.Open(ctx, id, replayField(key), rp.Sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: token %s: rotation answer: %w", ErrSealed, id, err)
	}
	defer clear(plain)
	var rot Rotation
	if err := json.Unmarshal(plain, &rot); err != nil || rot.Token == nil || rot.Token.ID != id {
		return nil, fmt.Errorf("%w: token %s: rotation answer does not decode", ErrSealed, id)
	}
	if err := a.record(ctx, &Change{Action: ActionRetried, Actor: ac.Token, TargetID: id, Outcome: OutcomeSuccess,
		Reason: fmt.Sprintf("retry of rotation %d (same idempotency key): answered again, nothing rotated", rp.Rotation)}); err != nil {
		return nil, err
	}
	rot.Replayed = true
	return &rot, nil
}
