package authority

import (
	"context"
	"errors"
	"testing"

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
