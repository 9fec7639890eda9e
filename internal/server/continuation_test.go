package server

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/phigate/phigate/internal/vault"
)

// The server's continuation handles are sealed under the vault's data key
// of their own purpose: they open with the same aad only, and a handle
// altered or presented for another token (another aad) does not open.
func TestContinuationHandlesOpenOnlyAsSealed(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	p, err := vault.NewKeyProvider(key, "test key", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Create(ctx, t.TempDir(), p, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.EnsureDataKey(ctx, vault.PurposeContinuation); err != nil {
		t.Fatal(err)
	}
	c := vaultContinuations{v: v}
	ct, err := c.Seal(ctx, []byte("token-a"), []byte("page"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := c.Open(ctx, []byte("token-a"), ct); err != nil || string(pt) != "page" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := c.Open(ctx, []byte("token-b"), ct); err == nil {
		t.Error("opened for another token")
	}
	ct[len(ct)-1] ^= 1
	if _, err := c.Open(ctx, []byte("token-a"), ct); err == nil {
		t.Error("opened altered")
	}
}
