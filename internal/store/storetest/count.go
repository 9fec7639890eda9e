package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// TokenCounter is the optional capability of a store that counts its
// tokens by status (the metrics' phigate_tokens).
type TokenCounter interface {
	CountTokens(ctx context.Context, at time.Time) (map[string]int64, error)
}

// RunCountTokens holds a TokenCounter to its contract: at time at,
// "active", "suspended" and "revoked" tokens by their status, except
// that an active token whose expiry is not after at counts as
// "expired"; a zero time is an error. open is as for Run; a store without
// the capability skips.
func RunCountTokens(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) {
	ctx := t.Context()
	clk := testclock.At(base)
	s := open(t, clk.Now)
	t.Cleanup(func() { _ = s.Close() })
	c, ok := s.(TokenCounter)
	if !ok {
		t.Skip("the store does not count tokens")
	}
	now := clk.Now()
	mk := func(i int, status token.Status, expires time.Time) {
		id, err := token.NewID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var h token.Hash
		rand.Read(h[:])
		rec := &token.Record{ID: id, Subject: fmt.Sprintf("count-%d", i), Kind: token.KindService, Status: status,
			CreatedAt: now, UpdatedAt: now, ExpiresAt: expires, Scopes: []string{"x:read"}}
		if err := s.CreateToken(ctx, rec, token.Secret{TokenID: id, Hash: h, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		mk(i, token.StatusActive, now.Add(time.Hour))
	}
	mk(3, token.StatusActive, now.Add(-time.Second)) // expired
	mk(4, token.StatusActive, now)                   // expires at now: expired
	mk(5, token.StatusSuspended, now.Add(time.Hour))
	mk(6, token.StatusRevoked, now.Add(-time.Hour))
	got, err := c.CountTokens(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"active": 3, "expired": 2, "suspended": 1, "revoked": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if _, err := c.CountTokens(ctx, time.Time{}); err == nil {
		t.Error("a zero time is accepted")
	}
}
