package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/vault"
)

// This file gives the authority the sealing of a token's PHI fields
// (authority.FieldSealer); its peppers are vault.PepperRing.

// vaultSealer seals token fields with the vault's field encryption under
// vault.PurposeTokenFields, bound to AAD("tokens", token id, field): a
// ciphertext moved to another token's row or field fails to open
// (vault.ErrTampered, which the vault reports to the audit log).
type vaultSealer struct{ v *vault.Vault }

// replaySealer seals the answers of idempotent rotations with the vault's
// field encryption under vault.PurposeRotationReplay, a data key of their
// own, bound to AAD("rotation-replays", token id, field), the field naming
// the idempotency key's hash: an answer opens only for its token and key.
type replaySealer struct{ v *vault.Vault }

func (s replaySealer) Seal(ctx context.Context, tokenID, field string, plain []byte) ([]byte, error) {
	return s.v.EncryptField(ctx, vault.PurposeRotationReplay, vault.AAD("rotation-replays", tokenID, field), plain)
}

func (s replaySealer) Open(ctx context.Context, tokenID, field string, sealed []byte) ([]byte, error) {
	return s.v.DecryptField(ctx, vault.PurposeRotationReplay, vault.AAD("rotation-replays", tokenID, field), sealed)
}

func (s vaultSealer) Seal(ctx context.Context, tokenID, field string, plain []byte) ([]byte, error) {
	return s.v.EncryptField(ctx, vault.PurposeTokenFields, vault.AAD("tokens", tokenID, field), plain)
}

func (s vaultSealer) Open(ctx context.Context, tokenID, field string, sealed []byte) ([]byte, error) {
	return s.v.DecryptField(ctx, vault.PurposeTokenFields, vault.AAD("tokens", tokenID, field), sealed)
}

// keyVault is the vault the admin API's key endpoints use: the vault
// itself, or under the development master key a devKeyVault.
func (n *node) keyVault() api.KeyVault {
	if n.devKey == nil {
		return n.vault
	}
	return &devKeyVault{Vault: n.vault, dev: n.devKey, file: n.devKeyFile}
}

// devKeyVault refuses a master-key rotation that would keep the
// development key while the vault is under it (none named, or the same key
// under another name): it would report a rotation and change nothing. A
// rotation to another key goes through; the server must then be started
// with that key (PHIGATE_MASTER_KEY), since server --dev alone opens the
// vault with the development key, and a rotation back to the development
// key goes through too.
type devKeyVault struct {
	*vault.Vault
	dev  vault.Provider
	file string
	mu   sync.Mutex // orders rotations, so that away follows them
	away bool       // the vault was rotated to another key
}

// devProbeLabel labels the throwaway key that tells whether a new master
// key is the development key.
const devProbeLabel = "phigate:dev-key-probe"

func (d *devKeyVault) RotateKEK(ctx context.Context, next vault.Provider) (vault.Event, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	toDev := next != nil && d.sameKey(ctx, next)
	if !d.away && (next == nil || toDev) {
		return vault.Event{}, &vault.InputError{Field: "new_master_key", Msg: "this development server's master key is " + d.file +
			", and rotating to the same key would change nothing: give --new-master-key file:PATH (32 random bytes, mode 0600), " +
			"then start the server with PHIGATE_MASTER_KEY=file:PATH (or use a real master key: see phigate init --help)"}
	}
	ev, err := d.Vault.RotateKEK(ctx, next)
	if err == nil && next != nil {
		d.away = !toDev
	}
	return ev, err
}

// sameKey reports whether the development key opens what next wraps.
func (d *devKeyVault) sameKey(ctx context.Context, next vault.Provider) bool {
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return true // refuse rather than guess
	}
	w, err := next.WrapKey(ctx, probe, devProbeLabel)
	if err != nil {
		return false // the rotation will report it
	}
	back, err := d.dev.UnwrapKey(ctx, w, devProbeLabel)
	return err == nil && bytes.Equal(back, probe)
}
