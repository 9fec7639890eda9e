package postgres_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/testclock"
)

func TestAssertionReplayIsRefusedOnAnotherNode(t *testing.T) {
	a, b, _ := twoNodes(t)
	now := testclock.Start()
	exp := now.Add(5 * time.Minute)
	ctx := t.Context()
	if err := a.UseAssertion(ctx, "cli_a", "jti-1", exp, now); err != nil {
		t.Fatalf("first use on node A: %v", err)
	}
	if err := b.UseAssertion(ctx, "cli_a", "jti-1", exp, now.Add(time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replay on node B: %v, want ErrConflict", err)
	}
	// Past its exp, the jti is free again, on either node.
	if err := b.UseAssertion(ctx, "cli_a", "jti-1", exp.Add(time.Minute), exp); err != nil {
		t.Fatalf("use on node B after exp: %v", err)
	}
	if err := a.UseAssertion(ctx, "cli_a", "jti-1", exp.Add(time.Minute), exp.Add(time.Second)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replay of the renewed jti on node A: %v, want ErrConflict", err)
	}
}

func TestConcurrentUsesAcrossNodesHaveOneWinner(t *testing.T) {
	a, b, _ := twoNodes(t)
	now := testclock.Start()
	exp := now.Add(time.Minute)
	const per = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*per)
	for _, s := range []*postgres.Store{a, b} {
		for range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.UseAssertion(t.Context(), "cli_a", "jti-race", exp, now)
			}()
		}
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("UseAssertion: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d uses succeeded, want exactly 1", wins)
	}
}

func TestClientRevokedOnOneNodeIsRevokedOnTheOther(t *testing.T) {
	a, b, _ := twoNodes(t)
	ctx := t.Context()
	c := &store.Client{ID: "cli_x", Name: "x", Subject: "svc", JWKSURL: "https://keys.example/jwks",
		Status: store.ClientActive, CreatedAt: testclock.Start(), UpdatedAt: testclock.Start(), StatusChangedAt: testclock.Start()}
	if err := a.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RevokeClient(ctx, c.ID, "done", testclock.Start().Add(time.Hour)); err != nil {
		t.Fatalf("revoke on node B: %v", err)
	}
	got, err := a.Client(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.ClientRevoked {
		t.Fatalf("node A sees status %q, want revoked", got.Status)
	}
	if _, err := a.RevokeClient(ctx, c.ID, "again", testclock.Start().Add(2*time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second revoke on node A: %v, want ErrConflict", err)
	}
}

func TestUseAssertionPurgesExpiredRows(t *testing.T) {
	s := open(t, nil)
	ctx := t.Context()
	now := testclock.Start()
	for _, jti := range []string{"old-1", "old-2"} {
		if err := s.UseAssertion(ctx, "cli_a", jti, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(2 * time.Minute)
	if err := s.UseAssertion(ctx, "cli_b", "new", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM oauth_assertions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows in oauth_assertions after a use past the others' exp, want 1 (expired rows kept)", n)
	}
}
