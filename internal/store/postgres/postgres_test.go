package postgres_test

import (
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/store/postgres/pgtest"
	"github.com/phigate/phigate/internal/store/storetest"
	"github.com/phigate/phigate/internal/vault"
	vaultstoragetest "github.com/phigate/phigate/internal/vault/storagetest"
)

// open returns a store in a fresh schema.
func open(t testing.TB, now func() time.Time) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), pgtest.Schema(t), postgres.Options{Now: now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store { return open(t, now) })
}

func pgtestSchema(t *testing.T) string { return pgtest.Schema(t) }

func TestVaultStorageConformance(t *testing.T) {
	vaultstoragetest.Run(t, func(t *testing.T) vault.Storage { return open(t, nil).VaultStorage() })
}
