package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/phigate/phigate/internal/fsync"
	"github.com/phigate/phigate/internal/token"
)

// Pepper is one version of the token pepper (the HMAC key of token
// hashes).
type Pepper struct {
	Version int
	Key     []byte
}

// Pepper returns the current (newest) pepper version. It implements
// token.Keyring; the key MUST NOT be modified.
func (v *Vault) Pepper(context.Context) (int, []byte, error) {
	ps := *v.peppers.Load()
	if len(ps) == 0 {
		return 0, nil, errors.New("vault: no token pepper (the vault was created without one)")
	}
	return ps[0].Version, ps[0].Key, nil
}

// Peppers returns every live pepper version, newest first, so that tokens
// hashed under an older pepper still verify until it is retired. The keys
// MUST NOT be modified.
func (v *Vault) Peppers(context.Context) ([]Pepper, error) {
	return slices.Clone(*v.peppers.Load()), nil
}

func (v *Vault) loadPeppers(ctx context.Context) error {
	its, err := v.st.Items(ctx, PurposePepper, pepperName)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vault: peppers: %w", err)
	}
	ps := make([]Pepper, 0, len(its))
	for i := len(its) - 1; i >= 0; i-- {
		k, err := v.openItem(ctx, its[i])
		if err != nil {
			return fmt.Errorf("vault: pepper v%d: %w", its[i].Version, err)
		}
		ps = append(ps, Pepper{Version: its[i].Version, Key: k})
	}
	v.peppers.Store(&ps)
	return nil
}

// addPepper stores a new random pepper as version (caller holds wmu or
// owns v).
func (v *Vault) addPepper(ctx context.Context, version int) error {
	key := make([]byte, 32)
	if _, err := io.ReadFull(v.opts.Rand, key); err != nil {
		return fmt.Errorf("vault: randomness: %w", err)
	}
	return v.storePepper(ctx, version, key)
}

func (v *Vault) storePepper(ctx context.Context, version int, key []byte) error {
	if err := v.putItem(ctx, PurposePepper, pepperName, version, key, false); err != nil {
		return err
	}
	ps := append([]Pepper{{Version: version, Key: key}}, *v.peppers.Load()...)
	v.peppers.Store(&ps)
	return nil
}

// RotatePepper adds a new pepper version, which new token hashes use from
// now on (the caller builds a new token.Hasher). Older versions stay
// until RetirePepper.
func (v *Vault) RotatePepper(ctx context.Context) (Event, error) {
	if v.closed.Load() {
		return Event{}, ErrClosed
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	next := 1
	if ps := *v.peppers.Load(); len(ps) > 0 {
		next = ps[0].Version + 1
	}
	ev := Event{Kind: EventPepperRotated, Purpose: PurposePepper, Version: next}
	if err := v.emit(ctx, ev); err != nil {
		return Event{}, err
	}
	if err := v.addPepper(ctx, next); err != nil {
		v.emitFailed(ctx, ev, err)
		return Event{}, err
	}
	return v.stamp(ctx, ev), nil
}

// RetirePepper deletes an old pepper version once no live token is hashed
// with it. The newest version cannot be retired.
func (v *Vault) RetirePepper(ctx context.Context, version int) (Event, error) {
	if v.closed.Load() {
		return Event{}, ErrClosed
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	ps := *v.peppers.Load()
	i := slices.IndexFunc(ps, func(p Pepper) bool { return p.Version == version })
	switch {
	case i < 0:
		return Event{}, fmt.Errorf("%w: pepper v%d", ErrNotFound, version)
	case i == 0:
		return Event{}, &InputError{Field: "version", Msg: "the current pepper cannot be retired; rotate first"}
	}
	ev := Event{Kind: EventPepperRetired, Purpose: PurposePepper, Version: version}
	if err := v.emit(ctx, ev); err != nil {
		return Event{}, err
	}
	if err := v.st.DeleteItem(ctx, PurposePepper, pepperName, version); err != nil {
		v.emitFailed(ctx, ev, err)
		return Event{}, err
	}
	ps = slices.Delete(slices.Clone(ps), i, i+1)
	v.peppers.Store(&ps)
	return v.stamp(ctx, ev), nil
}

// importLegacyPepper moves DIR/keys/pepper-v1.key into the vault as
// pepper version 1 (tokens hashed with it keep verifying), then
// overwrites and removes the file. When the vault already holds version 1
// the file must be identical to it: a different one is an error, never
// guessed at.
func (v *Vault) importLegacyPepper(ctx context.Context, dir string) error {
	p := pepperPath(dir)
	key, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vault: legacy pepper: %w", err)
	}
	if len(key) != PepperLen {
		return fmt.Errorf("vault: legacy pepper %s: want %d bytes, found %d", p, PepperLen, len(key))
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	ps := *v.peppers.Load()
	i := slices.IndexFunc(ps, func(p Pepper) bool { return p.Version == 1 })
	switch {
	case i >= 0 && !bytes.Equal(ps[i].Key, key):
		return fmt.Errorf("vault: %s differs from the vault's pepper version 1; refusing to guess which is right", p)
	case i < 0 && len(ps) > 0:
		return fmt.Errorf("vault: %s is left over but the vault's peppers start after version 1; move it away", p)
	case i < 0:
		ev := Event{Kind: EventPepperImported, Purpose: PurposePepper, Version: 1}
		if err := v.emit(ctx, ev); err != nil {
			return err
		}
		if err := v.storePepper(ctx, 1, key); err != nil {
			v.emitFailed(ctx, ev, err)
			return err
		}
	}
	return shred(p)
}

// shred overwrites a small file with zeros, syncs it and removes it (and
// its directory, when that is then empty).
func shred(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		_, err = f.WriteAt(make([]byte, st.Size()), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("vault: overwriting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	dir := filepath.Dir(path)
	os.Remove(dir)               // only succeeds when empty
	fsync.Dir(filepath.Dir(dir)) // best effort
	return nil
}

// PepperRing is v's token peppers as the authority's pepper keyring
// (authority.PepperRing). The vault records each rotation and retirement
// through its OnEvent, with the actor the caller put in the context.
type PepperRing struct{ V *Vault }

func (r PepperRing) Peppers(ctx context.Context) ([]token.Pepper, error) {
	vps, err := r.V.Peppers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]token.Pepper, len(vps))
	for i, vp := range vps {
		out[i] = token.Pepper{Version: vp.Version, Key: vp.Key}
	}
	return out, nil
}

func (r PepperRing) RotatePepper(ctx context.Context) error {
	_, err := r.V.RotatePepper(ctx)
	return err
}

func (r PepperRing) RetirePepper(ctx context.Context, version int) error {
	_, err := r.V.RetirePepper(ctx, version)
	return err
}
