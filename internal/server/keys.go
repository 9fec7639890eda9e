package server

import (
	"context"

	"github.com/phigate/phigate/internal/vault"
)

// This file gives the authority the sealing of a token's PHI fields
// (authority.FieldSealer); its peppers are vault.PepperRing.

// vaultSealer seals token fields with the vault's field encryption under
// vault.PurposeTokenFields, bound to AAD("tokens", token id, field): a
// ciphertext moved to another token's row or field fails to open
// (vault.ErrTampered, which the vault reports to the audit log).
type vaultSealer struct{ v *vault.Vault }

func (s vaultSealer) Seal(ctx context.Context, tokenID, field string, plain []byte) ([]byte, error) {
	return s.v.EncryptField(ctx, vault.PurposeTokenFields, vault.AAD("tokens", tokenID, field), plain)
}

func (s vaultSealer) Open(ctx context.Context, tokenID, field string, sealed []byte) ([]byte, error) {
	return s.v.DecryptField(ctx, vault.PurposeTokenFields, vault.AAD("tokens", tokenID, field), sealed)
}
