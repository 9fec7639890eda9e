package authority

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// Errors of the management operations; the HTTP layer maps them to 404,
// 409, 403 and 400. Validation failures are *policy.FieldError;
// attenuation failures are *AttenuationError.
var (
	ErrNotFound     = errors.New("authority: no such token")
	ErrConflict     = errors.New("authority: the token changed meanwhile")
	ErrInvalidState = errors.New("authority: not possible in the token's current status")
	ErrForbidden    = errors.New("authority: the caller may not do this")
)

// AttenuationError says that a requested token would be wider than the
// token asking for it.
type AttenuationError struct {
	Field string
	Msg   string
}

func (e *AttenuationError) Error() string { return "attenuation: " + e.Field + ": " + e.Msg }

// Actor is the authenticated caller of a management operation.
type Actor struct {
	Token  *token.Record
	Scopes scope.Set
	// Superseded: the caller presented a secret that a rotation has
	// replaced (see Decision.Superseded); it may not rotate its token.
	Superseded bool

	// client, when set, makes the actor a registered OAuth client (see
	// IssueToClient): Token is then the client's registration as a bound.
	client *clientLineage
}

// ActorOf returns the Actor for an allowed Decision.
func ActorOf(d Decision) Actor {
	return Actor{Token: d.Token, Scopes: d.Scopes, Superseded: d.Superseded}
}

func (ac Actor) root() bool {
	for sc := range ac.Scopes.All() {
		if sc.IsRoot() {
			return true
		}
	}
	return false
}

// Spec describes a token to create.
type Spec struct {
	Subject string
	Kind    token.Kind // default user
	Scopes  []string
	TTL     time.Duration // default Config.DefaultTTL; the rotation period
	// MaxLifetime bounds the rotation chain, from creation (default
	// Config.DefaultMaxLifetime, never less than TTL).
	MaxLifetime time.Duration
	// Grace is how long the previous secret keeps working after a
	// rotation (0..TTL, default 0).
	Grace           time.Duration
	IdleTimeout     time.Duration
	MaxUses         *int64
	CIDRs           []netip.Prefix
	Hours           *token.Hours
	Rate            *token.Rate
	Purposes        []string
	PurposeRequired bool
	PatientID       string
	BreakGlass      bool
	// SubjectPrefix restricts the subjects of the tokens the new token may
	// issue. Empty: the issuer's, if it has one (inherited).
	SubjectPrefix string
	Metadata      map[string]string
}

func fieldErr(field, format string, a ...any) error {
	return &policy.FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// checkTTL validates a TTL against the server's maximum.
func (a *Authority) checkTTL(field string, ttl time.Duration) error {
	if ttl <= 0 {
		return fieldErr(field, "must be positive")
	}
	if ttl > a.cfg.MaxTTL {
		return fieldErr(field, "%s exceeds the server's maximum of %s", ttl, a.cfg.MaxTTL)
	}
	return nil
}

// normaliseScopes parses and canonicalises scopes.
func normaliseScopes(ss []string) (scope.Set, error) {
	if len(ss) == 0 {
		return scope.Set{}, fieldErr("scopes", "at least one scope is required")
	}
	set, err := scope.ParseSet(ss)
	if err != nil {
		return scope.Set{}, fieldErr("scopes", "%v", err)
	}
	return set, nil
}

// attenuate checks that rec (with parsed scopes set) is within the actor.
// The root (admin:*) may also issue break-glass-capable tokens.
func attenuate(ac Actor, rec *token.Record, set scope.Set) error {
	if missing := ac.Scopes.Uncovered(set); len(missing) > 0 {
		return &AttenuationError{Field: "scopes", Msg: fmt.Sprintf("%q is not within the caller's scopes", missing[0].String())}
	}
	within := rec
	if rec.BreakGlass && ac.root() {
		// the root may make break-glass tokens (someone must); every other
		// constraint still binds
		c := *rec
		c.BreakGlass = false
		within = &c
	}
	if err := policy.Within(within, ac.Token); err != nil {
		var fe *policy.FieldError
		if errors.As(err, &fe) {
			return &AttenuationError{Field: fe.Field, Msg: fe.Msg}
		}
		return err
	}
	return nil
}

// Create issues a token described by spec on behalf of ac, which must hold
// admin:tokens and cover everything spec asks for. It returns the secret
// (its only plaintext appearance) and the stored record.
func (a *Authority) Create(ctx context.Context, ac Actor, spec Spec) (string, *token.Record, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminTokens) {
		return "", nil, a.recordDenied(ctx, ActionCreated, &ac, "", ErrForbidden)
	}
	return a.create(ctx, &ac, spec)
}

// Bootstrap issues a root admin token (scope admin:*) without an issuing
// token. Only the server's initialisation calls it.
func (a *Authority) Bootstrap(ctx context.Context, subject string, ttl, maxLifetime time.Duration) (string, *token.Record, error) {
	return a.create(ctx, nil, Spec{
		Subject: subject, Kind: token.KindAdmin, Scopes: []string{scope.Root},
		TTL: ttl, MaxLifetime: maxLifetime, Metadata: map[string]string{"bootstrap": "true"},
	})
}

func (a *Authority) create(ctx context.Context, ac *Actor, spec Spec) (string, *token.Record, error) {
	now := a.cfg.Now().UTC()
	if ac != nil && ac.client != nil {
		now = ac.client.at // the instant the client's bound was made for
	}
	ttl := spec.TTL
	if ttl == 0 {
		ttl = a.cfg.DefaultTTL
	}
	if err := a.checkTTL("ttl", ttl); err != nil {
		return "", nil, err
	}
	set, err := normaliseScopes(spec.Scopes)
	if err != nil {
		return "", nil, err
	}
	if err := a.cfg.ResourceTypes.Check(set); err != nil {
		return "", nil, fieldErr("scopes", "%v", err)
	}
	kind := spec.Kind
	if kind == "" {
		kind = token.KindUser
	}
	id, err := token.NewIDAt(a.cfg.Rand, now)
	if err != nil {
		return "", nil, err
	}
	maxLife := spec.MaxLifetime
	if maxLife == 0 && ac != nil { // the bootstrap token's is explicit
		maxLife = max(a.cfg.DefaultMaxLifetime, ttl)
	}
	if err := a.checkGrace(spec.Grace, ttl); err != nil {
		return "", nil, err
	}
	rec := &token.Record{
		ID: id, Subject: spec.Subject, Kind: kind, Scopes: set.Strings(),
		CreatedAt: now, ExpiresAt: now.Add(ttl), MaxLifetime: maxLife, TTL: ttl, Grace: spec.Grace,
		IdleTimeout: spec.IdleTimeout, CIDRs: spec.CIDRs, Hours: spec.Hours, Rate: spec.Rate,
		Purposes: spec.Purposes, PurposeRequired: spec.PurposeRequired, PatientID: spec.PatientID,
		BreakGlass: spec.BreakGlass, SubjectPrefix: spec.SubjectPrefix, Metadata: spec.Metadata, Status: token.StatusActive,
		StatusChangedAt: now, UpdatedAt: now, Revision: 1,
	}
	if spec.MaxUses != nil {
		v := *spec.MaxUses
		rec.RemainingUses = &v
	}
	if rec.MaxLifetime > 0 && rec.MaxLifetime < ttl {
		return "", nil, fieldErr("max_lifetime", "%s is shorter than the ttl %s", rec.MaxLifetime, ttl)
	}
	var actor *token.Record
	if ac != nil {
		actor = ac.Token
		if rec.SubjectPrefix == "" {
			rec.SubjectPrefix = actor.SubjectPrefix // attenuation: a child is never less bound
		}
	}
	// The token's absolute end, fixed now (see lifetime.go). When the
	// expiry asked for is past it, attenuation below refuses the token.
	rec.NotAfter = notAfterAt(now, rec.ExpiresAt, rec.MaxLifetime, actor)
	if rec.NotAfter.Before(rec.ExpiresAt) {
		rec.NotAfter = rec.ExpiresAt
	}
	if err := policy.Validate(rec); err != nil {
		return "", nil, err
	}
	if ac != nil {
		rec.CreatedBy, rec.ParentID = ac.Token.ID, ac.Token.ID
		if cl := ac.client; cl != nil {
			// the lineage names the client; the token that registered it
			// vouched for it (and revoking that token cascades here)
			rec.ClientID, rec.CreatedBy, rec.ParentID = cl.clientID, cl.registrar, cl.registrar
		}
		if err := attenuate(*ac, rec, set); err != nil {
			return "", nil, a.recordDenied(ctx, ActionCreated, ac, id, err)
		}
	}
	stored, err := a.sealRecord(ctx, rec)
	if err != nil {
		return "", nil, err
	}
	secret, err := token.Generate(a.cfg.Rand)
	if err != nil {
		return "", nil, err
	}
	// From hashing until the secret is stored, the pepper it was hashed
	// with stays the current one (see ReloadPeppers).
	a.pepperMu.RLock()
	defer a.pepperMu.RUnlock()
	hs := a.hashers.Load()
	sec := token.Secret{Hash: hs.current.Sum(secret), PepperVersion: hs.current.Version(), TokenID: id, CreatedAt: now}
	// The record and the store write run concurrently: a new token can be
	// used only by whoever holds its secret, and the secret is returned
	// only when both are durable. If the record fails, the stored token
	// (whose secret nobody will ever see) is revoked and the creation
	// refused; so no usable token exists without its audit record, and a
	// creation costs one commit's latency instead of two.
	// The store write waits on its own goroutine (a shallow stack); the
	// record, which encodes and compacts the snapshot, runs on the
	// caller's, whose stack has already grown (on a fresh goroutine the
	// stack copies cost ~7 µs per creation).
	stCh := make(chan error, 1)
	go func() { stCh <- a.st.CreateToken(ctx, stored, sec) }()
	recErr := a.record(ctx, &Change{Action: ActionCreated, Actor: actor, TargetID: id, After: rec, Outcome: OutcomeSuccess})
	stErr := <-stCh
	if err := recErr; err != nil {
		if stErr == nil {
			if _, rerr := a.st.SetStatus(context.WithoutCancel(ctx), []string{id}, token.StatusRevoked, "its creation could not be audited", now); rerr != nil {
				a.log.Error("revoking an unaudited new token failed; its secret was never shown", "token_id", id, "err", rerr)
			}
		}
		return "", nil, err
	}
	if stErr != nil {
		a.recordFailed(ctx, ActionCreated, actor, id, stErr)
		return "", nil, fmt.Errorf("authority: create token: %w", stErr)
	}
	return secret, rec, nil
}

// manageable checks that ac may manage target: a root actor may manage
// every token; an actor holding admin:tokens may manage the tokens it issued
// and their descendants. Anything else is ErrNotFound, so that tokens
// outside the caller's tree cannot be discovered.
func (a *Authority) manageable(ctx context.Context, ac Actor, target *token.Record) error {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminTokens) {
		return ErrForbidden
	}
	if ac.root() {
		return nil
	}
	cur := target
	for depth := 0; depth < 64 && cur.ParentID != ""; depth++ {
		if cur.ParentID == ac.Token.ID {
			return nil
		}
		next, err := a.st.Token(ctx, cur.ParentID)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("authority: %w", err)
		}
		cur = next
	}
	return ErrNotFound
}

func (a *Authority) fetch(ctx context.Context, id string) (*token.Record, error) {
	if !token.ValidID(id) {
		return nil, ErrNotFound
	}
	rec, err := a.st.Token(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := a.openRecord(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// overlay adds what only this node knows (unspent lease, unflushed last use).
func (a *Authority) overlay(rec *token.Record) *token.Record {
	if st := a.cache.lookupID(rec.ID); st != nil {
		if lu := time.Unix(0, st.lastUsed.Load()).UTC(); lu.After(rec.LastUsedAt) && lu.After(rec.CreatedAt) {
			rec.LastUsedAt = lu
		}
		if rec.RemainingUses != nil {
			st.usesMu.Lock()
			v := *rec.RemainingUses + st.leased
			st.usesMu.Unlock()
			rec.RemainingUses = &v
		}
	}
	return rec
}

// Get returns the token id if ac may manage it (or it is ac's own).
func (a *Authority) Get(ctx context.Context, ac Actor, id string) (*token.Record, error) {
	rec, err := a.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	if ac.Token == nil || ac.Token.ID != id {
		if err := a.manageable(ctx, ac, rec); err != nil {
			return nil, err
		}
	}
	return a.overlay(rec), nil
}

// List returns a page of the tokens ac may see: every token for a root
// actor, otherwise the tokens it issued (or, with filter.ParentID, those
// issued by a token it manages).
func (a *Authority) List(ctx context.Context, ac Actor, f store.TokenFilter) ([]*token.Record, string, error) {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminTokens) {
		return nil, "", ErrForbidden
	}
	if !ac.root() {
		if f.ParentID == "" {
			f.ParentID = ac.Token.ID
		} else if f.ParentID != ac.Token.ID {
			p, err := a.fetch(ctx, f.ParentID)
			if err != nil {
				return nil, "", err
			}
			if err := a.manageable(ctx, ac, p); err != nil {
				return nil, "", err
			}
		}
	}
	recs, next, err := a.st.ListTokens(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("authority: list: %w", err)
	}
	if err := a.openRecords(ctx, recs); err != nil {
		return nil, "", err
	}
	for _, r := range recs {
		a.overlay(r)
	}
	return recs, next, nil
}

// Update applies change to a copy of token id and stores it, provided the
// result is valid and within ac (a permission change can narrow freely but
// widen only within the caller). If revision is not zero the stored
// revision must equal it. It returns the old and the new record.
func (a *Authority) Update(ctx context.Context, ac Actor, id string, revision int64, change func(*token.Record) error) (before, after *token.Record, err error) {
	old, err := a.fetch(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if err := a.manageable(ctx, ac, old); err != nil {
		return nil, nil, a.recordDenied(ctx, ActionUpdated, &ac, id, err)
	}
	if old.Status == token.StatusRevoked {
		return nil, nil, fmt.Errorf("%w: the token is revoked", ErrInvalidState)
	}
	if revision != 0 && revision != old.Revision {
		return nil, nil, ErrConflict
	}
	rec := old.Clone()
	if err := change(rec); err != nil {
		return nil, nil, err
	}
	// identity and lifecycle fields are not the caller's to change here
	rec.ID, rec.Subject, rec.Kind, rec.CreatedAt, rec.CreatedBy, rec.ParentID = old.ID, old.Subject, old.Kind, old.CreatedAt, old.CreatedBy, old.ParentID
	rec.Status, rec.StatusReason, rec.StatusChangedAt, rec.Revision = old.Status, old.StatusReason, old.StatusChangedAt, old.Revision
	// the lifetime was fixed at issue; the chain is the rotations' own
	rec.MaxLifetime, rec.NotAfter = old.MaxLifetime, old.NotAfter
	rec.Rotations, rec.RotatedAt, rec.RotatedFrom = old.Rotations, old.RotatedAt, old.RotatedFrom
	if rec.TTL < 0 {
		return nil, nil, fieldErr("ttl", "must be positive")
	}
	if rec.TTL != old.TTL && rec.TTL > 0 {
		if err := a.checkTTL("ttl", rec.TTL); err != nil {
			return nil, nil, err
		}
	}
	if err := a.checkGrace(rec.Grace, rec.Period()); err != nil {
		return nil, nil, err
	}
	if p := old.SubjectPrefix; p != "" && !strings.HasPrefix(rec.SubjectPrefix, p) {
		return nil, nil, fieldErr("subject_prefix", "can only be narrowed: the new prefix must start with %q", p)
	}
	if (rec.RemainingUses == nil) != (old.RemainingUses == nil) || (rec.RemainingUses != nil && *rec.RemainingUses != *old.RemainingUses) {
		return nil, nil, fieldErr("max_uses", "cannot be changed after creation; issue a new token")
	}
	set, err := normaliseScopes(rec.Scopes)
	if err != nil {
		return nil, nil, err
	}
	// Only the scopes the change adds must name known resource types: a
	// token issued before a type left the configuration can still be
	// changed (narrowed, say) without naming the type again.
	for sc := range set.All() {
		if slices.Contains(old.Scopes, sc.String()) {
			continue
		}
		if err := a.cfg.ResourceTypes.CheckScope(sc); err != nil {
			return nil, nil, fieldErr("scopes", "%v", err)
		}
	}
	rec.Scopes = set.Strings()
	now := a.cfg.Now().UTC()
	if rec.ExpiresAt != old.ExpiresAt {
		if !rec.ExpiresAt.After(now) {
			return nil, nil, fieldErr("expires_at", "must be in the future")
		}
		if err := a.checkTTL("ttl", rec.ExpiresAt.Sub(now)); err != nil {
			return nil, nil, err
		}
		if rec.ExpiresAt.After(old.ExpiresAt) {
			limit, err := a.extensionLimit(ctx, old, now)
			if err != nil {
				return nil, nil, err
			}
			if rec.ExpiresAt.After(limit) {
				return nil, nil, fieldErr("expires_at", "%s is after %s, the latest this token can live (its not_after, or an issuer's)", rec.ExpiresAt.UTC().Format(time.RFC3339), limit.UTC().Format(time.RFC3339))
			}
		}
	}
	if err := policy.Validate(rec); err != nil {
		return nil, nil, err
	}
	// not_after was fixed at issue and cannot change here, so it is not
	// compared again (the expiry is): a later root, such as a new bootstrap
	// token, can still narrow a token issued under an earlier one.
	chk := *rec
	chk.NotAfter = time.Time{}
	if err := attenuate(ac, &chk, set); err != nil {
		return nil, nil, a.recordDenied(ctx, ActionUpdated, &ac, id, err)
	}
	rec.UpdatedAt = now
	stored, err := a.sealRecord(ctx, rec) // sealed afresh, changed or not
	if err != nil {
		return nil, nil, err
	}
	if err := a.record(ctx, &Change{Action: ActionUpdated, Actor: ac.Token, TargetID: id, Before: old, After: rec, Outcome: OutcomeSuccess}); err != nil {
		return nil, nil, err
	}
	if err := a.st.UpdateToken(ctx, stored); err != nil {
		a.recordFailed(ctx, ActionUpdated, ac.Token, id, err)
		if errors.Is(err, store.ErrConflict) {
			return nil, nil, ErrConflict
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, ErrNotFound
		}
		return nil, nil, fmt.Errorf("authority: update: %w", err)
	}
	rec.Revision = stored.Revision // UpdateToken wrote the new revision into stored
	a.Invalidate(id)
	return old, rec, nil
}

// Revoke revokes token id and, with cascade, every token issued under it,
// recursively. Revocation is final. It returns the ids whose status changed.
func (a *Authority) Revoke(ctx context.Context, ac Actor, id string, cascade bool, reason string) ([]string, error) {
	rec, err := a.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	if ac.Token == nil || ac.Token.ID != id {
		if err := a.manageable(ctx, ac, rec); err != nil {
			return nil, a.recordDenied(ctx, ActionRevoked, &ac, id, err)
		}
	}
	return a.revoke(ctx, ac.Token, id, cascade, reason)
}

func (a *Authority) revoke(ctx context.Context, actor *token.Record, id string, cascade bool, reason string) ([]string, error) {
	ids := []string{id}
	if cascade {
		d, err := a.st.Descendants(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("authority: descendants: %w", err)
		}
		ids = append(ids, d...)
	}
	if err := a.record(ctx, &Change{Action: ActionRevoked, Actor: actor, TargetID: id, IDs: ids, Outcome: OutcomeSuccess, Reason: reason}); err != nil {
		return nil, err
	}
	changed, err := a.st.SetStatus(ctx, ids, token.StatusRevoked, reason, a.cfg.Now().UTC())
	if err != nil {
		a.recordFailed(ctx, ActionRevoked, actor, id, err)
		return nil, fmt.Errorf("authority: revoke: %w", err)
	}
	for _, x := range ids {
		a.Invalidate(x)
	}
	return changed, nil
}

// RevokeSecret revokes the token a secret belongs to (RFC 7009). Holding
// the secret is proof enough: anyone who can use a token may revoke it, so
// a leaked token found anywhere can be killed at once. It reports the
// revoked record, or nil when the secret is malformed, unknown or already
// revoked (RFC 7009 answers 200 in every such case).
func (a *Authority) RevokeSecret(ctx context.Context, ac Actor, secret, reason string) (*token.Record, error) {
	if token.Check(secret) != nil {
		return nil, nil
	}
	hs := a.hashers.Load()
	rec, _, _, err := a.bySecret(ctx, hs, hs.current.Sum(secret), secret)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := a.openRecord(ctx, rec); err != nil {
		return nil, err
	}
	changed, err := a.revoke(ctx, ac.Token, rec.ID, false, reason)
	if err != nil || len(changed) == 0 {
		return nil, err
	}
	return rec, nil
}

// SetStatus suspends (status suspended) or reinstates (status active)
// token id. A revoked token cannot be reinstated.
func (a *Authority) SetStatus(ctx context.Context, ac Actor, id string, status token.Status, reason string) (*token.Record, error) {
	if status != token.StatusActive && status != token.StatusSuspended {
		return nil, fmt.Errorf("%w: status %q", ErrInvalidState, status)
	}
	rec, err := a.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	action := ActionSuspended
	if status == token.StatusActive {
		action = ActionReinstated
	}
	if err := a.manageable(ctx, ac, rec); err != nil {
		return nil, a.recordDenied(ctx, action, &ac, id, err)
	}
	if rec.Status == token.StatusRevoked {
		return nil, fmt.Errorf("%w: the token is revoked", ErrInvalidState)
	}
	if err := a.record(ctx, &Change{Action: action, Actor: ac.Token, TargetID: id, Before: rec, Outcome: OutcomeSuccess, Reason: reason}); err != nil {
		return nil, err
	}
	if _, err := a.st.SetStatus(ctx, []string{id}, status, reason, a.cfg.Now().UTC()); err != nil {
		a.recordFailed(ctx, action, ac.Token, id, err)
		return nil, fmt.Errorf("authority: set status: %w", err)
	}
	a.Invalidate(id)
	return a.fetch(ctx, id)
}

// Suspend is SetStatus without an actor check, for automatic suspension by
// the monitor.
func (a *Authority) Suspend(ctx context.Context, id, reason string) error {
	if err := a.record(ctx, &Change{Action: ActionSuspended, TargetID: id, Outcome: OutcomeSuccess, Reason: reason}); err != nil {
		return err
	}
	if _, err := a.st.SetStatus(ctx, []string{id}, token.StatusSuspended, reason, a.cfg.Now().UTC()); err != nil {
		return fmt.Errorf("authority: suspend: %w", err)
	}
	a.Invalidate(id)
	return nil
}

// Introspect reports whether secret is an active token (RFC 7662): valid
// secret, active status, not expired, not idle. Request-context constraints
// (network, hours, purpose, rate, uses) are not evaluated and nothing is
// consumed. The record is returned only when active.
func (a *Authority) Introspect(ctx context.Context, secret string) (*token.Record, scope.Set, bool, error) {
	ref, reason, err := a.find(ctx, secret, a.cfg.Now(), false)
	if err != nil {
		return nil, scope.Set{}, false, err
	}
	if reason != policy.ReasonNone {
		return nil, scope.Set{}, false, nil
	}
	return ref.st.rec, ref.st.scopes, true, nil
}
