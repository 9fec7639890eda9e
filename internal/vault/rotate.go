package vault

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
)

// RotateKEK re-wraps every data key under the master key of next and
// stores them in one transaction; from then on next is the master key
// (restart with its spec). Each new wrap is unwrapped again before
// anything is stored, so a provider that cannot read back its own wraps
// changes nothing. Data keys stay the same, so nothing sealed needs
// re-encrypting, and readers (which use the cached data keys) never wait.
// The event (EventKEKRotated, Count = data keys) is recorded first. A nil
// next re-wraps under the current master key (for AWS KMS: under its
// newest backing key).
func (v *Vault) RotateKEK(ctx context.Context, next Provider) (Event, error) {
	if v.closed.Load() {
		return Event{}, ErrClosed
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	ks := v.keys.Load()
	if next == nil {
		next = ks.provider
	}
	var list []WrappedKey
	for _, purpose := range slices.Sorted(maps.Keys(ks.byPurpose)) {
		pk := ks.byPurpose[purpose]
		for _, ver := range slices.Sorted(maps.Keys(pk.versions)) {
			k := pk.versions[ver]
			label := dekLabel(purpose, ver)
			w, err := next.WrapKey(ctx, k.key, label)
			if err != nil {
				return Event{}, fmt.Errorf("vault: rotate master key: wrapping %s v%d: %w", purpose, ver, err)
			}
			back, err := next.UnwrapKey(ctx, w, label)
			if err != nil || !bytes.Equal(back, k.key) {
				return Event{}, fmt.Errorf("vault: rotate master key: the new master key does not read back its own wrap of %s v%d (%v); nothing changed", purpose, ver, err)
			}
			list = append(list, WrappedKey{Purpose: purpose, Version: ver, Wrapped: w})
		}
	}
	to := describe(next)
	ev := Event{Kind: EventKEKRotated, From: ks.kek, To: to, Count: len(list)}
	if err := v.emit(ctx, ev); err != nil {
		return Event{}, err
	}
	if err := v.st.RewrapDataKeys(ctx, list, to); err != nil {
		v.emitFailed(ctx, ev, err)
		return Event{}, fmt.Errorf("vault: rotate master key: %w; nothing changed", err)
	}
	v.keys.Store(&keySet{provider: next, kek: to, byPurpose: ks.byPurpose})
	return v.stamp(ctx, ev), nil
}

// RotateDEK adds a new data key version for purpose, wrapped by the
// current master key: new data is sealed with it from now on, and data
// sealed with older versions stays readable (every version is kept). Use
// Reencrypt to move the vault's own items to it. The event
// (EventDEKRotated) is recorded first. ErrNotFound for a purpose the vault
// has no key for.
func (v *Vault) RotateDEK(ctx context.Context, purpose string) (Event, error) {
	if !validPurpose(purpose) {
		return Event{}, &InputError{Field: "purpose", Msg: "want [a-z][a-z0-9-]{0,31}"}
	}
	if v.closed.Load() {
		return Event{}, ErrClosed
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	ks := v.keys.Load()
	pk := ks.byPurpose[purpose]
	if pk == nil {
		return Event{}, fmt.Errorf("%w: no data key for purpose %q", ErrNotFound, purpose)
	}
	next := pk.active.version + 1
	ev := Event{Kind: EventDEKRotated, Purpose: purpose, Version: int(next), To: ks.kek}
	if err := v.emit(ctx, ev); err != nil {
		return Event{}, err
	}
	if _, err := v.addDataKeyLocked(ctx, ks, purpose, next); err != nil {
		v.emitFailed(ctx, ev, err)
		return Event{}, err
	}
	return v.stamp(ctx, ev), nil
}

// reencryptBatch is how many items one transaction of Reencrypt rewrites.
const reencryptBatch = 1000

// Reencrypt re-seals every item of purpose stored in the vault (secrets,
// key blobs, peppers) that an older data key sealed, under the active
// one, in transactions of reencryptBatch items, and returns how many it
// rewrote. Readers keep working throughout (an item is readable under its
// old and its new key alike, and its plaintext never changes). An item
// changed meanwhile is skipped, since its new version already uses the
// active key. Ciphertexts kept outside the vault (audit fields) are their
// owner's to re-encrypt.
func (v *Vault) Reencrypt(ctx context.Context, purpose string) (int, error) {
	if v.closed.Load() {
		return 0, ErrClosed
	}
	v.rmu.Lock()
	defer v.rmu.Unlock()
	pk := v.keys.Load().byPurpose[purpose]
	if pk == nil {
		return 0, fmt.Errorf("%w: no data key for purpose %q", ErrNotFound, purpose)
	}
	active := pk.active
	ev := Event{Kind: EventReencrypted, Purpose: purpose, Version: int(active.version)}
	v.wmu.Lock()
	err := v.emit(ctx, ev)
	v.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	total := 0
	afterName, afterVersion := "", 0
	for {
		its, err := v.st.StaleItems(ctx, purpose, active.version, afterName, afterVersion, reencryptBatch)
		if err != nil {
			return total, err
		}
		if len(its) == 0 {
			return total, nil
		}
		rs := make([]Replacement, 0, len(its))
		for _, it := range its {
			aad := itemAAD(it.Purpose, it.Name, it.Version)
			pt, err := v.open(ctx, purpose, aad, it.Ciphertext)
			if err != nil {
				return total, fmt.Errorf("vault: re-encrypt %s %q v%d: %w", purpose, it.Name, it.Version, err)
			}
			ct, err := active.seal(v.opts.Rand, aad, pt)
			if err != nil {
				return total, err
			}
			rs = append(rs, Replacement{Purpose: purpose, Name: it.Name, Version: it.Version, Old: it.Ciphertext, New: ct, DEKVersion: active.version})
		}
		n, err := v.st.ReplaceCiphertexts(ctx, rs)
		total += n
		if err != nil {
			return total, err
		}
		last := its[len(its)-1]
		afterName, afterVersion = last.Name, last.Version
	}
}
