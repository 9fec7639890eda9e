package authority

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/token"
)

// TestRefreshDropsOnlyAnOlderCachedRevision: a change made by another
// node (straight in the store, which this node's cache does not see)
// takes effect here once the change feed reports its revision, and a
// report of a revision already cached keeps the cache.
func TestRefreshDropsOnlyAnOlderCachedRevision(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret, rec := f.create(t, Spec{})
	if r := f.verify(t, secret, Request{}); r != policy.OK {
		t.Fatalf("first use: %v", r)
	}
	// another node revokes it
	changed, err := f.st.SetStatus(ctx, []string{rec.ID}, token.StatusRevoked, "other node", f.clk.Now())
	if err != nil || len(changed) != 1 {
		t.Fatalf("SetStatus = %v, %v", changed, err)
	}
	if r := f.verify(t, secret, Request{}); r != policy.OK {
		t.Fatalf("before the change feed reports it, the cached state serves: %v (the test proves nothing)", r)
	}
	f.auth.Refresh(rec.ID, rec.Revision) // a report of the revision cached
	lookups := f.st.lookups.Load()
	if r := f.verify(t, secret, Request{}); r != policy.OK || f.st.lookups.Load() != lookups {
		t.Fatalf("a report of the cached revision dropped the cache: %v, %d lookups", r, f.st.lookups.Load()-lookups)
	}
	f.auth.Refresh(rec.ID, rec.Revision+1)
	if r := f.verify(t, secret, Request{}); r != policy.Revoked {
		t.Fatalf("after the change feed reported the revocation: %v, want revoked", r)
	}
	// An unknown token, or one not cached, is harmless.
	f.auth.Refresh("tok_unknown", 7)
}

// TestStaleNodeRefusesEvenCachedTokens: with Fresh failing, every
// verification fails closed (an error, Unavailable), cache hits included.
func TestStaleNodeRefusesEvenCachedTokens(t *testing.T) {
	stale := errors.New("view of revocations too old")
	var fail bool
	f := newFixtureWith(t, Config{Fresh: func() error {
		if fail {
			return stale
		}
		return nil
	}})
	secret, _ := f.create(t, Spec{})
	if r := f.verify(t, secret, Request{}); r != policy.OK {
		t.Fatalf("fresh: %v", r)
	}
	fail = true
	d, err := f.auth.Verify(context.Background(), secret, Request{})
	if !errors.Is(err, stale) || d.Reason != policy.Unavailable || d.Allowed() {
		t.Fatalf("stale: %v, %v; want Unavailable and the staleness error", d.Reason, err)
	}
	fail = false
	if r := f.verify(t, secret, Request{}); r != policy.OK {
		t.Fatalf("fresh again: %v", r)
	}
}

// TestIdleTimeoutCountsUsesOnOtherNodes: in a cluster a token used on
// another node (its last use flushed to the store) is not idle here,
// though this node's cache has not seen it used; without SharedStore the
// node's own view decides (the mutation this test catches).
func TestIdleTimeoutCountsUsesOnOtherNodes(t *testing.T) {
	for _, shared := range []bool{true, false} {
		f := newFixtureWith(t, Config{SharedStore: shared})
		s, rec := f.create(t, Spec{IdleTimeout: 10 * time.Minute, TTL: time.Hour})
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Fatal(r)
		}
		f.clk.Add(8 * time.Minute)
		// another node used it now and flushed its last use
		if err := f.st.TouchLastUsed(context.Background(), map[string]time.Time{rec.ID: f.clk.Now()}); err != nil {
			t.Fatal(err)
		}
		f.clk.Add(8 * time.Minute) // 16 minutes since this node saw a use, 8 since the cluster did
		want := policy.OK
		if !shared {
			want = policy.Idle
		}
		if r := f.verify(t, s, Request{}); r != want {
			t.Fatalf("shared=%v: got %v, want %v", shared, r, want)
		}
		if shared { // unused anywhere for 11 minutes: idle, store or not
			f.clk.Add(11 * time.Minute)
			if r := f.verify(t, s, Request{}); r != policy.Idle {
				t.Fatalf("unused everywhere past the timeout: %v, want idle", r)
			}
		}
	}
}
