package vault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SecretInfo describes a stored secret or key blob, never its value.
type SecretInfo struct {
	Name      string
	Version   int
	UpdatedAt time.Time
}

// ValidName reports whether s can name a secret: 1 to 128 of
// [A-Za-z0-9._-], starting with a letter or digit. (Config files refer to
// it as secret:NAME.)
func ValidName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

type cacheKey struct{ purpose, name string }

// putItem seals value for (purpose, name, version) and stores it. When
// prune is set, older versions are deleted with the same write.
func (v *Vault) putItem(ctx context.Context, purpose, name string, version int, value []byte, prune bool) error {
	k, err := v.activeKey(ctx, purpose)
	if err != nil {
		return err
	}
	ct, err := k.seal(v.opts.Rand, itemAAD(purpose, name, version), value)
	if err != nil {
		return err
	}
	return v.st.PutItem(ctx, Item{Purpose: purpose, Name: name, Version: version, DEKVersion: k.version, Ciphertext: ct, CreatedAt: v.opts.Now()}, prune)
}

// openItem decrypts a stored item, checking it belongs where it is.
func (v *Vault) openItem(ctx context.Context, it Item) ([]byte, error) {
	return v.open(ctx, it.Purpose, itemAAD(it.Purpose, it.Name, it.Version), it.Ciphertext)
}

// getItem reads and decrypts the latest version of an item (no cache).
func (v *Vault) getItem(ctx context.Context, purpose, name string) ([]byte, int, error) {
	it, err := v.st.Item(ctx, purpose, name, 0)
	if err != nil {
		return nil, 0, err
	}
	pt, err := v.openItem(ctx, it)
	if err != nil {
		return nil, 0, err
	}
	return pt, it.Version, nil
}

// Put stores value as a new version of the secret (purpose, name) and
// returns its description; earlier versions are deleted. The event
// EventSecretSet is recorded first. The reserved purposes "pepper" and
// "blind-index" are refused.
func (v *Vault) Put(ctx context.Context, purpose, name string, value []byte) (SecretInfo, error) {
	switch {
	case !validPurpose(purpose) || reserved(purpose):
		return SecretInfo{}, &InputError{Field: "purpose", Msg: "not a purpose secrets can be stored under"}
	case !ValidName(name):
		return SecretInfo{}, &InputError{Field: "name", Msg: "want 1 to 128 of [A-Za-z0-9._-], starting with a letter or digit"}
	case len(value) == 0:
		return SecretInfo{}, &InputError{Field: "value", Msg: "empty"}
	case len(value) > MaxValue:
		return SecretInfo{}, &InputError{Field: "value", Msg: fmt.Sprintf("longer than %d bytes", MaxValue)}
	}
	if v.closed.Load() {
		return SecretInfo{}, ErrClosed
	}
	if _, err := v.activeKey(ctx, purpose); err != nil { // before wmu: it may create the key
		return SecretInfo{}, err
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	for attempt := 0; ; attempt++ {
		version := 1
		if it, err := v.st.Item(ctx, purpose, name, 0); err == nil {
			version = it.Version + 1
		} else if !errors.Is(err, ErrNotFound) {
			return SecretInfo{}, err
		}
		ev := Event{Kind: EventSecretSet, Purpose: purpose, Name: name, Version: version}
		if err := v.emit(ctx, ev); err != nil {
			return SecretInfo{}, err
		}
		now := v.opts.Now()
		err := v.putItem(ctx, purpose, name, version, value, true)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue // another node took the version
		}
		if err != nil {
			v.emitFailed(ctx, ev, err)
			return SecretInfo{}, err
		}
		v.invalidate(purpose, name)
		return SecretInfo{Name: name, Version: version, UpdatedAt: now.UTC()}, nil
	}
}

// Get returns the latest value and version of the secret (purpose, name).
// Values are decrypted once and then served from memory: a cached Get does
// no storage read and no AES work, and does not allocate. The returned
// slice MUST NOT be modified. ErrNotFound when there is no such secret.
func (v *Vault) Get(ctx context.Context, purpose, name string) ([]byte, int, error) {
	ck := cacheKey{purpose, name}
	v.cmu.RLock()
	c, ok := v.cache[ck]
	gen := v.cgen
	v.cmu.RUnlock()
	if ok {
		return c.value, c.version, nil
	}
	if v.closed.Load() {
		return nil, 0, ErrClosed
	}
	val, ver, err := v.getItem(ctx, purpose, name)
	if err != nil {
		return nil, 0, err
	}
	v.cmu.Lock()
	if v.cgen == gen { // no Put since the read began
		v.cache[ck] = cachedItem{value: val, version: ver}
	}
	v.cmu.Unlock()
	return val, ver, nil
}

// Invalidate drops a cached secret, so the next Get reads it again (for a
// change made by another node).
func (v *Vault) Invalidate(purpose, name string) { v.invalidate(purpose, name) }

func (v *Vault) invalidate(purpose, name string) {
	v.cmu.Lock()
	delete(v.cache, cacheKey{purpose, name})
	v.cgen++
	v.cmu.Unlock()
}

// List describes every secret of purpose, by name, without values.
func (v *Vault) List(ctx context.Context, purpose string) ([]SecretInfo, error) {
	if !validPurpose(purpose) || reserved(purpose) {
		return nil, &InputError{Field: "purpose", Msg: "not a purpose secrets are stored under"}
	}
	its, err := v.st.ListItems(ctx, purpose)
	if err != nil {
		return nil, err
	}
	out := make([]SecretInfo, 0, len(its))
	for _, it := range its {
		out = append(out, SecretInfo{Name: it.Name, Version: it.Version, UpdatedAt: it.CreatedAt})
	}
	return out, nil
}

// SetSecret stores an upstream credential (purpose upstream-credentials).
func (v *Vault) SetSecret(ctx context.Context, name string, value []byte) (SecretInfo, error) {
	return v.Put(ctx, PurposeCredentials, name, value)
}

// Secret returns an upstream credential, cached after its first read (see
// Get).
func (v *Vault) Secret(ctx context.Context, name string) ([]byte, int, error) {
	return v.Get(ctx, PurposeCredentials, name)
}

// ListSecrets describes the upstream credentials.
func (v *Vault) ListSecrets(ctx context.Context) ([]SecretInfo, error) {
	return v.List(ctx, PurposeCredentials)
}

// PutKey stores a key blob (the audit checkpoint signing key, ...) under
// purpose audit-signing and returns its version.
func (v *Vault) PutKey(ctx context.Context, name string, blob []byte) (int, error) {
	info, err := v.Put(ctx, PurposeSigning, name, blob)
	return info.Version, err
}

// GetKey returns a key blob stored by PutKey.
func (v *Vault) GetKey(ctx context.Context, name string) ([]byte, int, error) {
	return v.Get(ctx, PurposeSigning, name)
}
