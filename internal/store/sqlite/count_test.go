package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

func TestCountTokensByStatus(t *testing.T) {
	ctx := context.Background()
	clk := testclock.New()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"), Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := clk.Now()
	mk := func(i int, status token.Status, expires time.Time) {
		id := fmt.Sprintf("tok_count%03d", i)
		var h token.Hash
		rand.Read(h[:])
		rec := &token.Record{ID: id, Subject: "s", Kind: token.KindService, Status: status, CreatedAt: now, UpdatedAt: now, ExpiresAt: expires, Scopes: []string{"x:read"}}
		if err := st.CreateToken(ctx, rec, token.Secret{TokenID: id, Hash: h, CreatedAt: now}); err != nil {
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
	got, err := st.CountTokens(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"active": 3, "expired": 2, "suspended": 1, "revoked": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if _, err := st.CountTokens(ctx, time.Time{}); err == nil {
		t.Error("a zero time is accepted")
	}
}
