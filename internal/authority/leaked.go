package authority

import (
	"context"
	"errors"
	"fmt"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// ReasonLeaked is the reason recorded on a token revoked because its
// secret was found where it must not be (POST /v1/tokens/leaked).
const ReasonLeaked = "leaked"

// LeakStatus is what RevokeLeaked did with one reported secret.
type LeakStatus string

// The outcomes of RevokeLeaked.
const (
	LeakRevoked         LeakStatus = "revoked"          // it was not revoked; now it is
	LeakAlreadyRevoked  LeakStatus = "already_revoked"  // it was revoked before
	LeakUnknown         LeakStatus = "unknown"          // a well-formed secret no token has under any live pepper
	LeakInvalidChecksum LeakStatus = "invalid_checksum" // not a phigate token (the store is not asked)
)

// Leak is the outcome of RevokeLeaked for one secret. It never holds the
// secret.
type Leak struct {
	Status LeakStatus
	// Fingerprint is token.Fingerprint of the secret's keyed hash: the
	// stored hash for a known token (the one rotation records), the hash
	// under the current pepper for an unknown one; empty for a checksum
	// failure.
	Fingerprint string
	// Record is the token, as it was before the revocation (nil unless
	// the status is LeakRevoked or LeakAlreadyRevoked).
	Record *token.Record
	// Revoked lists the ids whose status changed (more than one with
	// cascade).
	Revoked []string
}

// RevokeLeaked revokes the token whose secret was found at where (a path
// and line, a chat export: recorded in the audit entry, Change.Where).
// Holding the secret is proof enough, as for RevokeSecret: no attenuation
// check, a caller's own token is revoked too. The secret is looked up by
// its keyed hash under every live pepper. With cascade, the tokens issued
// under it are revoked as well. A malformed or unknown secret is an
// outcome, not an error; an error means the store or the audit log failed
// (ErrAuditUnavailable: nothing was revoked).
func (a *Authority) RevokeLeaked(ctx context.Context, ac Actor, secret, where string, cascade bool) (Leak, error) {
	if token.Check(secret) != nil {
		return Leak{Status: LeakInvalidChecksum}, nil
	}
	hs := a.hashers.Load()
	cur := hs.current.Sum(secret)
	rec, sec, _, err := a.bySecret(ctx, hs, cur, secret)
	if errors.Is(err, store.ErrNotFound) {
		return Leak{Status: LeakUnknown, Fingerprint: token.Fingerprint(cur)}, nil
	}
	if err != nil {
		return Leak{}, fmt.Errorf("authority: %w", err)
	}
	out := Leak{Fingerprint: token.Fingerprint(sec.Hash), Record: rec}
	if err := a.openRecord(ctx, rec); err != nil {
		return Leak{}, err
	}
	if rec.Status == token.StatusRevoked && !cascade {
		out.Status = LeakAlreadyRevoked
		return out, nil
	}
	ids := []string{rec.ID}
	if cascade {
		d, err := a.st.Descendants(ctx, rec.ID)
		if err != nil {
			return Leak{}, fmt.Errorf("authority: descendants: %w", err)
		}
		ids = append(ids, d...)
	}
	if err := a.record(ctx, &Change{Action: ActionRevoked, Actor: ac.Token, TargetID: rec.ID, IDs: ids,
		Outcome: OutcomeSuccess, Reason: ReasonLeaked, Where: where}); err != nil {
		return Leak{}, err
	}
	changed, err := a.st.SetStatus(ctx, ids, token.StatusRevoked, ReasonLeaked, a.cfg.Now().UTC())
	if err != nil {
		a.recordFailed(ctx, ActionRevoked, ac.Token, rec.ID, err)
		return Leak{}, fmt.Errorf("authority: revoke: %w", err)
	}
	for _, x := range ids {
		a.Invalidate(x)
	}
	out.Revoked = changed
	out.Status = LeakRevoked
	if rec.Status == token.StatusRevoked {
		out.Status = LeakAlreadyRevoked
	}
	return out, nil
}
