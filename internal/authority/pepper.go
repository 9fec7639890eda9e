package authority

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// PepperRing is the keyring of token peppers (the vault's): every live
// version and the changes to them. The authority hashes new secrets with
// the newest version and verifies secrets hashed with any live one.
// Errors are technical failures or the ring's own refusals (such as an
// audit log that cannot record the change); the authority returns them
// wrapped.
type PepperRing interface {
	// Peppers returns every live version, newest first; at least one.
	// The keys MUST NOT be modified by the caller.
	Peppers(ctx context.Context) ([]token.Pepper, error)
	// RotatePepper adds a new newest version.
	RotatePepper(ctx context.Context) error
	// RetirePepper deletes version, which is not the newest.
	RetirePepper(ctx context.Context, version int) error
}

// Errors of pepper rotation; the HTTP layer maps ErrPepperNotFound to 404,
// ErrPepperCurrent and *PepperInUseError to 409, ErrNoPepperRing to 503.
var (
	ErrPepperNotFound = errors.New("authority: no such pepper version")
	ErrPepperCurrent  = errors.New("authority: the current pepper cannot be retired; rotate the pepper first")
	ErrNoPepperRing   = errors.New("authority: pepper rotation is not available (no pepper keyring)")
)

// PepperInUseError refuses to retire a pepper version that still hashes
// secrets of tokens that are neither expired nor revoked: retiring it
// would make them unusable. It is never about the current version.
type PepperInUseError struct {
	Version int
	// Live is the number of such secrets.
	Live int64
}

func (e *PepperInUseError) Error() string {
	return fmt.Sprintf("pepper version %d still hashes %d live token secret(s); retire it once they have expired or been revoked", e.Version, e.Live)
}

// PepperVersion describes one live pepper version.
type PepperVersion struct {
	Version int
	// Current is the version new secrets are hashed with.
	Current bool
	// LiveSecrets counts the secrets hashed with it whose token is neither
	// expired nor revoked (see store.Store.LiveSecretsByPepper).
	LiveSecrets int64
}

// hasherSet is the hashers of every live pepper version: current hashes
// new secrets and is tried first; older are tried, newest first, when the
// store has no secret under current's hash. Published whole, never
// changed.
type hasherSet struct {
	current *token.Hasher
	older   []*token.Hasher
}

// ReloadPeppers reads the live pepper versions from Config.Peppers and
// uses them from now on: the newest hashes new secrets, every one
// verifies. RotatePepper and RetirePepper call it; call it after New, and
// when another node reports a pepper change. Secrets being hashed with the
// previous current version are durable in the store before it returns.
func (a *Authority) ReloadPeppers(ctx context.Context) error {
	ring := a.cfg.Peppers
	if ring == nil {
		return ErrNoPepperRing
	}
	ps, err := ring.Peppers(ctx)
	if err != nil {
		return fmt.Errorf("authority: peppers: %w", err)
	}
	if len(ps) == 0 {
		return errors.New("authority: the pepper keyring has no pepper")
	}
	hs := &hasherSet{}
	for i, p := range ps {
		h, err := token.NewHasherKey(p.Version, p.Key)
		if err != nil {
			return fmt.Errorf("authority: pepper version %d: %w", p.Version, err)
		}
		if i == 0 {
			hs.current = h
		} else {
			hs.older = append(hs.older, h)
		}
	}
	// Creations and rotations hold pepperMu for reading from hashing to
	// storing, so once this lock is taken no secret hashed with the old
	// set is still on its way to the store.
	a.pepperMu.Lock()
	a.hashers.Store(hs)
	a.pepperMu.Unlock()
	return nil
}

// mayManageKeys checks that ac holds admin:keys and that the authority has
// a pepper keyring.
func (a *Authority) mayManageKeys(ac Actor) error {
	if ac.Token == nil || !ac.Scopes.Has(scope.AdminKeys) {
		return ErrForbidden
	}
	if a.cfg.Peppers == nil {
		return ErrNoPepperRing
	}
	return nil
}

// Peppers lists the live pepper versions, newest first, with the number
// of live secrets each hashes. ac must hold admin:keys.
func (a *Authority) Peppers(ctx context.Context, ac Actor) ([]PepperVersion, error) {
	if err := a.mayManageKeys(ac); err != nil {
		return nil, err
	}
	ps, err := a.cfg.Peppers.Peppers(ctx)
	if err != nil {
		return nil, fmt.Errorf("authority: peppers: %w", err)
	}
	live, err := a.st.LiveSecretsByPepper(ctx, a.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("authority: counting secrets by pepper: %w", err)
	}
	out := make([]PepperVersion, len(ps))
	for i, p := range ps {
		out[i] = PepperVersion{Version: p.Version, Current: i == 0, LiveSecrets: live[p.Version]}
	}
	return out, nil
}

// RotatePepper adds a new pepper version and hashes new secrets with it
// from the moment it returns; secrets hashed with older versions keep
// verifying until those are retired. It returns the new version. ac must
// hold admin:keys. The keyring records the rotation (the vault's audit
// event); a keyring that refuses it changes nothing.
func (a *Authority) RotatePepper(ctx context.Context, ac Actor) (int, error) {
	if err := a.mayManageKeys(ac); err != nil {
		return 0, err
	}
	a.keysMu.Lock()
	defer a.keysMu.Unlock()
	if err := a.cfg.Peppers.RotatePepper(ctx); err != nil {
		return 0, fmt.Errorf("authority: rotate pepper: %w", err)
	}
	if err := a.ReloadPeppers(ctx); err != nil {
		return 0, err
	}
	return a.hashers.Load().current.Version(), nil
}

// RetirePepper deletes pepper version, after which secrets hashed with it
// no longer verify. It refuses (*PepperInUseError) while any secret hashed
// with it belongs to a token that is neither expired nor revoked, and
// refuses the current version (ErrPepperCurrent); an unknown version is
// ErrPepperNotFound. ac must hold admin:keys.
func (a *Authority) RetirePepper(ctx context.Context, ac Actor, version int) error {
	if err := a.mayManageKeys(ac); err != nil {
		return err
	}
	a.keysMu.Lock()
	defer a.keysMu.Unlock()
	ps, err := a.cfg.Peppers.Peppers(ctx)
	if err != nil {
		return fmt.Errorf("authority: peppers: %w", err)
	}
	i := slices.IndexFunc(ps, func(p token.Pepper) bool { return p.Version == version })
	switch {
	case i < 0:
		return fmt.Errorf("%w: %d", ErrPepperNotFound, version)
	case i == 0 || a.hashers.Load().current.Version() == version:
		return fmt.Errorf("%w (version %d)", ErrPepperCurrent, version)
	}
	live, err := a.st.LiveSecretsByPepper(ctx, a.cfg.Now())
	if err != nil {
		return fmt.Errorf("authority: counting secrets by pepper: %w", err)
	}
	if n := live[version]; n > 0 {
		return &PepperInUseError{Version: version, Live: n}
	}
	if err := a.cfg.Peppers.RetirePepper(ctx, version); err != nil {
		return fmt.Errorf("authority: retire pepper: %w", err)
	}
	if err := a.ReloadPeppers(ctx); err != nil {
		return err
	}
	// Tokens found through the retired version (expired or revoked ones,
	// or secrets past their grace) are forgotten, so that their next use
	// looks them up with the remaining versions only.
	for _, id := range a.cache.idsByPepper(version) {
		a.Invalidate(id)
	}
	return nil
}

// bySecret finds the token of secret: under the current pepper's hash h
// first, then under each older live pepper, newest first. A miss on a
// well-formed but unknown secret costs one store lookup per live version.
// It returns store.ErrNotFound when no version finds it, and the version
// that did.
func (a *Authority) bySecret(ctx context.Context, hs *hasherSet, h token.Hash, secret string) (*token.Record, token.Secret, int, error) {
	rec, sec, err := a.st.TokenBySecret(ctx, h)
	if err == nil && sec.Hash.Equal(h) {
		return rec, sec, hs.current.Version(), nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, token.Secret{}, 0, err
	}
	for _, o := range hs.older {
		oh := o.Sum(secret)
		rec, sec, err = a.st.TokenBySecret(ctx, oh)
		if err == nil && sec.Hash.Equal(oh) {
			return rec, sec, o.Version(), nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, token.Secret{}, 0, err
		}
	}
	return nil, token.Secret{}, 0, store.ErrNotFound
}
