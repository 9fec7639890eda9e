package server

import (
	"context"

	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
)

// This file gives the authority the vault's keys: the token peppers
// (authority.PepperRing) and the sealing of a token's PHI fields
// (authority.FieldSealer).

// vaultPeppers is the vault's token peppers as an authority.PepperRing.
// The vault records each rotation and retirement in the audit log (its
// OnEvent), with the actor the admin API put in the context.
type vaultPeppers struct{ v *vault.Vault }

func (p vaultPeppers) Peppers(ctx context.Context) ([]token.Pepper, error) {
	vps, err := p.v.Peppers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]token.Pepper, len(vps))
	for i, vp := range vps {
		out[i] = token.Pepper{Version: vp.Version, Key: vp.Key}
	}
	return out, nil
}

func (p vaultPeppers) RotatePepper(ctx context.Context) error {
	_, err := p.v.RotatePepper(ctx)
	return err
}

func (p vaultPeppers) RetirePepper(ctx context.Context, version int) error {
	_, err := p.v.RetirePepper(ctx, version)
	return err
}

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
