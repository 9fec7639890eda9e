package vault_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/internal/vault/storagetest"
)

func TestSQLiteStorageConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) vault.Storage {
		s, err := vault.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), vault.FileName), true)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The vault is the token keyring.
var _ token.Keyring = (*vault.Vault)(nil)

func TestVaultKeysTokenHashes(t *testing.T) {
	ctx := context.Background()
	p, _ := vault.NewKeyProvider(make([]byte, 32), "zero key", nil)
	v, err := vault.Create(ctx, t.TempDir(), p, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	h, err := token.NewHasher(ctx, v)
	if err != nil || h.Version() != 1 {
		t.Fatalf("hasher: %v", err)
	}
}
