package authority

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// countingStore counts lookups so tests can assert what touched the store.
type countingStore struct {
	store.Store
	lookups atomic.Int64
}

func (c *countingStore) TokenBySecret(ctx context.Context, h token.Hash) (*token.Record, token.Secret, error) {
	c.lookups.Add(1)
	return c.Store.TokenBySecret(ctx, h)
}

type fixture struct {
	auth  *Authority
	st    *countingStore
	clk   *testclock.Clock
	root  Actor
	rootS string
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, Config{}) }

// newFixtureWith is newFixture with cfg (its clock and MaxTTL set here).
// With cfg.Peppers, the first hasher is the ring's newest pepper and
// ReloadPeppers runs before the bootstrap.
func newFixtureWith(t testing.TB, cfg Config) *fixture {
	t.Helper()
	ctx := context.Background()
	// One clock for everything the fixture builds: the store drops rotated
	// secrets whose grace has ended by its own clock.
	clk := testclock.New() // a Monday, noon UTC
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	version, key := 1, make([]byte, 32)
	rand.Read(key)
	if cfg.Peppers != nil {
		ps, err := cfg.Peppers.Peppers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		version, key = ps[0].Version, ps[0].Key
	}
	h, err := token.NewHasherKey(version, key)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: s}
	cfg.Now, cfg.MaxTTL = clk.Now, 24*time.Hour
	a := New(cs, h, cfg)
	if cfg.Peppers != nil {
		if err := a.ReloadPeppers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	secret, rec, err := a.Bootstrap(ctx, "root", 12*time.Hour, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.Verify(ctx, secret, Request{})
	if err != nil || !d.Allowed() {
		t.Fatalf("bootstrap token not usable: %v %v", d.Reason, err)
	}
	if d.Token.ID != rec.ID {
		t.Fatal("wrong token")
	}
	return &fixture{auth: a, st: cs, clk: clk, root: ActorOf(d), rootS: secret}
}

func (f *fixture) create(t testing.TB, spec Spec) (string, *token.Record) {
	t.Helper()
	if spec.Subject == "" {
		spec.Subject = "app"
	}
	if spec.Scopes == nil {
		spec.Scopes = []string{"patient/Observation.rs"}
	}
	s, rec, err := f.auth.Create(context.Background(), f.root, spec)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

func (f *fixture) verify(t testing.TB, secret string, req Request) policy.Reason {
	t.Helper()
	d, err := f.auth.Verify(context.Background(), secret, req)
	if err != nil {
		t.Fatal(err)
	}
	return d.Reason
}

// otherLast returns a base62 character other than s's last one.
func otherLast(s string) string {
	if s[len(s)-1] == 'x' {
		return "y"
	}
	return "x"
}

func TestMalformedTokenNeverTouchesStore(t *testing.T) {
	f := newFixture(t)
	before := f.st.lookups.Load()
	for _, s := range []string{"", "phi_", "Bearer x", f.rootS[:len(f.rootS)-1] + otherLast(f.rootS), f.rootS + "0"} {
		if r := f.verify(t, s, Request{}); r != policy.Malformed {
			t.Fatalf("%d-byte input: got %v", len(s), r)
		}
	}
	if f.st.lookups.Load() != before {
		t.Fatal("a malformed token caused a store lookup")
	}
}

func TestUnknownWellFormedToken(t *testing.T) {
	f := newFixture(t)
	s, _ := token.Generate(nil)
	if r := f.verify(t, s, Request{}); r != policy.Unknown {
		t.Fatalf("got %v", r)
	}
}

func TestVerifyHitsCacheAfterFirstUse(t *testing.T) {
	f := newFixture(t)
	s, _ := f.create(t, Spec{})
	f.verify(t, s, Request{})
	before := f.st.lookups.Load()
	for i := 0; i < 10; i++ {
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Fatal(r)
		}
	}
	if f.st.lookups.Load() != before {
		t.Fatal("cached token looked up again")
	}
}

func TestRevokedTokenFailsOnVeryNextRequest(t *testing.T) {
	f := newFixture(t)
	s, rec := f.create(t, Spec{})
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatal(r)
	}
	if _, err := f.auth.Revoke(context.Background(), f.root, rec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	if r := f.verify(t, s, Request{}); r != policy.Revoked {
		t.Fatalf("got %v after revoke", r)
	}
	// revocation is final
	if _, err := f.auth.SetStatus(context.Background(), f.root, rec.ID, token.StatusActive, ""); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("reinstating a revoked token: %v", err)
	}
}

func TestSuspendAndReinstate(t *testing.T) {
	f := newFixture(t)
	s, rec := f.create(t, Spec{})
	f.verify(t, s, Request{})
	if _, err := f.auth.SetStatus(context.Background(), f.root, rec.ID, token.StatusSuspended, "odd use"); err != nil {
		t.Fatal(err)
	}
	if r := f.verify(t, s, Request{}); r != policy.Suspended {
		t.Fatal(r)
	}
	if _, err := f.auth.SetStatus(context.Background(), f.root, rec.ID, token.StatusActive, ""); err != nil {
		t.Fatal(err)
	}
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatal(r)
	}
}

func TestConstraintsDenyWithReason(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	inside := netip.MustParseAddr("10.1.2.3")
	outside := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		name string
		spec Spec
		req  Request
		step func()
		want policy.Reason
	}{
		{"expired", Spec{TTL: time.Minute}, Request{}, func() { f.clk.Add(time.Minute) }, policy.Expired},
		{"network_outside", Spec{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Request{Addr: outside}, nil, policy.Network},
		{"network_unknown_addr", Spec{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Request{}, nil, policy.Network},
		{"network_inside", Spec{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Request{Addr: inside}, nil, policy.OK},
		{"hours_outside", Spec{Hours: &token.Hours{Start: "07:00", End: "11:00", TZ: "UTC"}}, Request{}, nil, policy.Hours},
		{"hours_inside", Spec{Hours: &token.Hours{Start: "11:00", End: "13:00", TZ: "UTC"}}, Request{}, nil, policy.OK},
		{"hours_wrong_day", Spec{Hours: &token.Hours{Start: "00:00", End: "24:00", TZ: "UTC", Days: []string{"Sat", "Sun"}}}, Request{}, nil, policy.Hours},
		{"hours_other_zone", Spec{Hours: &token.Hours{Start: "06:00", End: "08:00", TZ: "America/New_York"}}, Request{}, nil, policy.OK},
		{"purpose_missing", Spec{Purposes: []string{"TREAT"}, PurposeRequired: true}, Request{}, nil, policy.Purpose},
		{"purpose_wrong", Spec{Purposes: []string{"TREAT"}}, Request{Purpose: "HPAYMT"}, nil, policy.Purpose},
		{"purpose_right", Spec{Purposes: []string{"TREAT"}, PurposeRequired: true}, Request{Purpose: "TREAT"}, nil, policy.OK},
		{"scope_missing", Spec{}, Request{Scope: "admin:tokens"}, nil, policy.Scope},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _, err := f.auth.Create(ctx, f.root, withDefaults(c.spec))
			if err != nil {
				t.Fatal(err)
			}
			if c.step != nil {
				c.step()
			}
			if r := f.verify(t, s, c.req); r != c.want {
				t.Fatalf("got %v want %v", r, c.want)
			}
		})
	}
}

func withDefaults(s Spec) Spec {
	if s.Subject == "" {
		s.Subject = "app"
	}
	if s.Scopes == nil {
		s.Scopes = []string{"patient/Observation.rs"}
	}
	return s
}

func TestIdleTimeoutLogsOff(t *testing.T) {
	f := newFixture(t)
	s, _ := f.create(t, Spec{IdleTimeout: 10 * time.Minute, TTL: time.Hour})
	f.clk.Add(9 * time.Minute)
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatal(r)
	}
	f.clk.Add(9 * time.Minute) // used 9 minutes ago: still fine
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatal(r)
	}
	f.clk.Add(11 * time.Minute)
	if r := f.verify(t, s, Request{}); r != policy.Idle {
		t.Fatalf("got %v", r)
	}
	// and it stays logged off
	if r := f.verify(t, s, Request{}); r != policy.Idle {
		t.Fatalf("got %v", r)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	s, _ := f.create(t, Spec{Rate: &token.Rate{PerSecond: 1, Burst: 3}})
	for i := 0; i < 3; i++ {
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	d, _ := f.auth.Verify(context.Background(), s, Request{})
	if d.Reason != policy.RateLimited || d.RetryAfter <= 0 {
		t.Fatalf("got %v retry %v", d.Reason, d.RetryAfter)
	}
	f.clk.Add(time.Second)
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatalf("after refill: %v", r)
	}
}

func TestRemainingUsesNeverExceededUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	const max = 37
	n := int64(max)
	s, rec := f.create(t, Spec{MaxUses: &n})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				d, err := f.auth.Verify(context.Background(), s, Request{})
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed() {
					ok.Add(1)
				} else if d.Reason != policy.UsesExhausted {
					t.Errorf("unexpected %v", d.Reason)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != max {
		t.Fatalf("%d uses allowed, want exactly %d", ok.Load(), max)
	}
	// a second node (fresh authority on the same store) gets none either
	other := New(f.st, f.auth.hashers.Load().current, Config{Now: f.clk.Now})
	if d, _ := other.Verify(context.Background(), s, Request{}); d.Reason != policy.UsesExhausted {
		t.Fatalf("second node: %v", d.Reason)
	}
	_ = rec
}

func TestUnspentLeaseReturnedAtClose(t *testing.T) {
	f := newFixture(t)
	n := int64(100)
	s, rec := f.create(t, Spec{MaxUses: &n})
	f.verify(t, s, Request{})
	if err := f.auth.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := f.st.Token(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *got.RemainingUses != 99 {
		t.Fatalf("remaining %d after one use and close, want 99", *got.RemainingUses)
	}
}

func TestLastUsedIsBatched(t *testing.T) {
	f := newFixture(t)
	s, rec := f.create(t, Spec{})
	f.clk.Add(time.Minute)
	f.verify(t, s, Request{})
	stored, _ := f.st.Token(context.Background(), rec.ID)
	if !stored.LastUsedAt.IsZero() {
		t.Fatal("last use written on the hot path")
	}
	if err := f.auth.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored, _ = f.st.Token(context.Background(), rec.ID)
	if !stored.LastUsedAt.Equal(f.clk.Now()) {
		t.Fatalf("last used %v, want %v", stored.LastUsedAt, f.clk.Now())
	}
}

func TestRotationGracePeriod(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, rec := f.create(t, Spec{TTL: time.Hour, Grace: 5 * time.Minute})
	f.verify(t, old, Request{})
	rot, err := f.auth.Rotate(ctx, f.root, rec.ID, 5*time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Secret == old || token.Check(rot.Secret) != nil {
		t.Fatal("bad new secret")
	}
	if r := f.verify(t, old, Request{}); r != policy.OK {
		t.Fatalf("old secret inside grace: %v", r)
	}
	if r := f.verify(t, rot.Secret, Request{}); r != policy.OK {
		t.Fatalf("new secret: %v", r)
	}
	f.clk.Add(5 * time.Minute)
	if r := f.verify(t, old, Request{}); r != policy.Rotated {
		t.Fatalf("old secret after grace: %v", r)
	}
	if r := f.verify(t, rot.Secret, Request{}); r != policy.OK {
		t.Fatalf("new secret after grace: %v", r)
	}
	// without grace the old secret stops at once
	rot2, err := f.auth.Rotate(ctx, f.root, rec.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The store may delete a secret whose grace has ended (the SQLite store
	// does, at once): the old secret is then unknown rather than rotated.
	if r := f.verify(t, rot.Secret, Request{}); r != policy.Rotated && r != policy.Unknown {
		t.Fatalf("zero grace: %v", r)
	}
	if r := f.verify(t, rot2.Secret, Request{}); r != policy.OK {
		t.Fatal(r)
	}
}

func TestSelfRotateExtendsOnlyWithinMaxLifetime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// max_lifetime = ttl: the chain has one link, rotation cannot extend it
	s, rec := f.create(t, Spec{TTL: time.Hour, MaxLifetime: time.Hour})
	f.clk.Add(10 * time.Minute)
	rot, err := f.auth.Rotate(ctx, f.actor(t, s), rec.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Token.ExpiresAt.Equal(rec.ExpiresAt) {
		t.Fatalf("expires %v, want unchanged %v (max_lifetime = ttl)", rot.Token.ExpiresAt, rec.ExpiresAt)
	}
	// a token with max lifetime 3h can be pushed to creation+3h, not further
	s2, rec2 := f.create(t, Spec{TTL: time.Hour, MaxLifetime: 3 * time.Hour})
	if _, err := f.auth.Rotate(ctx, f.actor(t, s2), rec2.ID, 0, 2*time.Hour); err == nil {
		t.Fatal("a rotation asked for a ttl longer than the rotation period")
	}
	for range 3 {
		f.clk.Add(50 * time.Minute)
		rot, err = f.auth.Rotate(ctx, f.actor(t, s2), rec2.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		s2 = rot.Secret
	}
	if want := rec2.CreatedAt.Add(3 * time.Hour); !rot.Token.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want capped at %v", rot.Token.ExpiresAt, want)
	}
}

func TestAttenuation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// an issuer with narrow powers
	ps, _ := f.create(t, Spec{
		Scopes: []string{"admin:tokens", "patient/Observation.rs", "billing:*"}, TTL: time.Hour,
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Rate: &token.Rate{PerSecond: 10, Burst: 10},
		Hours: &token.Hours{Start: "08:00", End: "18:00", TZ: "UTC"},
	})
	d, _ := f.auth.Verify(ctx, ps, Request{Addr: netip.MustParseAddr("10.0.0.1")})
	if !d.Allowed() {
		t.Fatal(d.Reason)
	}
	issuer := ActorOf(d)
	ok := Spec{Subject: "c", Scopes: []string{"patient/Observation.r", "billing:read"}, TTL: 30 * time.Minute,
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Rate: &token.Rate{PerSecond: 5, Burst: 5},
		Hours: &token.Hours{Start: "09:00", End: "17:00", TZ: "UTC"}}
	if _, _, err := f.auth.Create(ctx, issuer, ok); err != nil {
		t.Fatalf("a narrower token was refused: %v", err)
	}
	mut := map[string]func(*Spec){
		"wider_scope":          func(s *Spec) { s.Scopes = []string{"patient/Observation.rus"} },
		"other_resource":       func(s *Spec) { s.Scopes = []string{"patient/Patient.r"} },
		"wider_context":        func(s *Spec) { s.Scopes = []string{"user/Observation.r"} },
		"admin_scope":          func(s *Spec) { s.Scopes = []string{"admin:audit"} },
		"longer_ttl":           func(s *Spec) { s.TTL = 2 * time.Hour },
		"no_cidr":              func(s *Spec) { s.CIDRs = nil },
		"wider_cidr":           func(s *Spec) { s.CIDRs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} },
		"no_rate":              func(s *Spec) { s.Rate = nil },
		"faster_rate":          func(s *Spec) { s.Rate = &token.Rate{PerSecond: 20, Burst: 5} },
		"no_hours":             func(s *Spec) { s.Hours = nil },
		"longer_hours":         func(s *Spec) { s.Hours = &token.Hours{Start: "07:00", End: "17:00", TZ: "UTC"} },
		"hours_other_zone":     func(s *Spec) { s.Hours = &token.Hours{Start: "09:00", End: "10:00", TZ: "Europe/Paris"} },
		"break_glass":          func(s *Spec) { s.BreakGlass = true },
		"admin_kind":           func(s *Spec) { s.Kind = token.KindAdmin },
		"hours_cross_midnight": func(s *Spec) { s.Hours = &token.Hours{Start: "17:00", End: "09:00", TZ: "UTC"} },
	}
	for name, m := range mut {
		t.Run(name, func(t *testing.T) {
			s := ok
			m(&s)
			_, _, err := f.auth.Create(ctx, issuer, s)
			var ae *AttenuationError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an AttenuationError", err)
			}
		})
	}
	// a token without admin:tokens cannot issue at all
	plain, _ := f.create(t, Spec{})
	pd, _ := f.auth.Verify(ctx, plain, Request{})
	if _, _, err := f.auth.Create(ctx, ActorOf(pd), Spec{Subject: "x", Scopes: []string{"patient/Observation.r"}}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("got %v", err)
	}
}

func TestUpdateCannotWidenBeyondCaller(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ps, _ := f.create(t, Spec{Scopes: []string{"admin:tokens", "patient/Observation.rs"}, TTL: time.Hour})
	d, _ := f.auth.Verify(ctx, ps, Request{})
	issuer := ActorOf(d)
	cs, child, err := f.auth.Create(ctx, issuer, Spec{Subject: "c", Scopes: []string{"patient/Observation.r"}, TTL: time.Minute * 10})
	if err != nil {
		t.Fatal(err)
	}
	_, after, err := f.auth.Update(ctx, issuer, child.ID, 0, func(r *token.Record) error {
		r.Scopes = []string{"patient/Observation.rs"}
		return nil
	})
	if err != nil || after.Revision != child.Revision+1 {
		t.Fatalf("widening within the caller: %v", err)
	}
	_, _, err = f.auth.Update(ctx, issuer, child.ID, 0, func(r *token.Record) error {
		r.Scopes = []string{"patient/*.cruds"}
		return nil
	})
	var ae *AttenuationError
	if !errors.As(err, &ae) {
		t.Fatalf("widening beyond the caller: %v", err)
	}
	// stale revision
	if _, _, err := f.auth.Update(ctx, issuer, child.ID, child.Revision, func(*token.Record) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale revision: %v", err)
	}
	// the update takes effect on the next request
	if r := f.verify(t, cs, Request{}); r != policy.OK {
		t.Fatal(r)
	}
	_, _, err = f.auth.Update(ctx, issuer, child.ID, 0, func(r *token.Record) error {
		r.CIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.verify(t, cs, Request{Addr: netip.MustParseAddr("192.0.2.1")}); r != policy.Network {
		t.Fatalf("after narrowing to a network: %v", r)
	}
}

func TestCascadeRevoke(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ps, parent := f.create(t, Spec{Scopes: []string{"admin:tokens", "patient/*.rs"}, TTL: time.Hour})
	d, _ := f.auth.Verify(ctx, ps, Request{})
	cs, child, err := f.auth.Create(ctx, ActorOf(d), Spec{Subject: "c", Scopes: []string{"admin:tokens", "patient/*.r"}, TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := f.auth.Verify(ctx, cs, Request{})
	gs, _, err := f.auth.Create(ctx, ActorOf(cd), Spec{Subject: "g", Scopes: []string{"patient/Patient.r"}, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := f.auth.Revoke(ctx, f.root, parent.ID, true, "leaked")
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 3 {
		t.Fatalf("revoked %v, want 3 tokens", revoked)
	}
	for _, s := range []string{ps, cs, gs} {
		if r := f.verify(t, s, Request{}); r != policy.Revoked {
			t.Fatalf("got %v", r)
		}
	}
	_ = child
}

func TestNonRootAdminSeesOnlyItsTree(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	as, _ := f.create(t, Spec{Scopes: []string{"admin:tokens", "patient/*.rs"}, TTL: time.Hour})
	_, other := f.create(t, Spec{})
	ad, _ := f.auth.Verify(ctx, as, Request{})
	a := ActorOf(ad)
	if _, err := f.auth.Get(ctx, a, other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if _, err := f.auth.Revoke(ctx, a, other.ID, false, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	_, mine, err := f.auth.Create(ctx, a, Spec{Subject: "m", Scopes: []string{"patient/Observation.r"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := f.auth.List(ctx, a, store.TokenFilter{})
	if err != nil || len(recs) != 1 || recs[0].ID != mine.ID {
		t.Fatalf("list: %v %d", err, len(recs))
	}
}

func TestRevokeSecretByHolder(t *testing.T) {
	f := newFixture(t)
	s, _ := f.create(t, Spec{})
	rec, err := f.auth.RevokeSecret(context.Background(), f.root, s, "found in a log")
	if err != nil || rec == nil {
		t.Fatalf("%v %v", rec, err)
	}
	if r := f.verify(t, s, Request{}); r != policy.Revoked {
		t.Fatal(r)
	}
	if rec, err := f.auth.RevokeSecret(context.Background(), f.root, "phi_garbage", ""); rec != nil || err != nil {
		t.Fatal("garbage revoked something")
	}
}

func TestIntrospect(t *testing.T) {
	f := newFixture(t)
	s, rec := f.create(t, Spec{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	got, set, active, err := f.auth.Introspect(context.Background(), s)
	if err != nil || !active || got.ID != rec.ID || set.String() != "patient/Observation.rs" {
		t.Fatalf("%v %v %v", active, err, set)
	}
	f.auth.Revoke(context.Background(), f.root, rec.ID, false, "")
	if _, _, active, _ := f.auth.Introspect(context.Background(), s); active {
		t.Fatal("revoked token active")
	}
}

func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := New(f.st, f.auth.hashers.Load().current, Config{Now: f.clk.Now, CacheSize: 8})
	for i := 0; i < 20; i++ {
		s, _ := f.create(t, Spec{})
		if d, err := a.Verify(ctx, s, Request{}); err != nil || !d.Allowed() {
			t.Fatal(d.Reason, err)
		}
	}
	if n := a.CacheLen(); n > 8 {
		t.Fatalf("cache holds %d tokens, bound is 8", n)
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b)
	s, _ := f.create(b, Spec{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	req := Request{Addr: netip.MustParseAddr("10.2.3.4"), Now: f.clk.Now()}
	ctx := context.Background()
	f.auth.Verify(ctx, s, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, err := f.auth.Verify(ctx, s, req)
		if err != nil || !d.Allowed() {
			b.Fatal(d.Reason, err)
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	f := newFixture(b)
	s, _ := f.create(b, Spec{})
	ctx := context.Background()
	f.auth.Verify(ctx, s, Request{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, _ := f.auth.Verify(ctx, s, Request{Now: f.clk.Now()}); !d.Allowed() {
				b.Error(d.Reason)
				return
			}
		}
	})
}

func BenchmarkVerifyBadChecksum(b *testing.B) {
	f := newFixture(b)
	bad := []byte(f.rootS)
	bad[len(bad)-1] = bad[len(bad)-1] ^ 1
	if token.Check(string(bad)) == nil {
		bad[len(bad)-1] = '0'
	}
	s := string(bad)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := f.auth.Verify(ctx, s, Request{}); d.Reason != policy.Malformed {
			b.Fatal(d.Reason)
		}
	}
}

func TestOnlyRootIssuesBreakGlassTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, _, err := f.auth.Create(ctx, f.root, withDefaults(Spec{BreakGlass: true, Purposes: []string{"ETREAT"}})); err != nil {
		t.Fatalf("root issuing a break-glass token: %v", err)
	}
	ps, _ := f.create(t, Spec{Scopes: []string{"admin:tokens", "patient/*.rs"}, TTL: time.Hour})
	d, _ := f.auth.Verify(ctx, ps, Request{})
	_, _, err := f.auth.Create(ctx, ActorOf(d), withDefaults(Spec{BreakGlass: true}))
	var ae *AttenuationError
	if !errors.As(err, &ae) || ae.Field != "break_glass" {
		t.Fatalf("non-root issuing break-glass: %v", err)
	}
}

// A change to a token must not refill its rate-limit bucket: a token may
// rotate itself (POST /v1/tokens/self/rotate), and every rotation
// invalidates its cached state. On a clock that does not move, a token
// with burst 3 gets 3 requests, rotations included.
func TestRotationKeepsTheRateLimit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, _ := f.create(t, Spec{Rate: &token.Rate{PerSecond: 1, Burst: 3}})
	admitted := 0
	for round := 0; round < 5; round++ {
		d, err := f.auth.Verify(ctx, s, Request{})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Allowed() {
			if d.Reason != policy.RateLimited {
				t.Fatalf("round %d: %v", round, d.Reason)
			}
			continue
		}
		admitted++
		rot, err := f.auth.Rotate(ctx, ActorOf(d), d.Token.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		s = rot.Secret
	}
	if admitted != 3 {
		t.Errorf("%d requests admitted at one instant with burst 3", admitted)
	}
}

// Refund gives back the use Admit took: to the lease while the token's
// state is cached, to the store once it was dropped.
func TestRefundGivesTheUseBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	one := int64(1)
	s, rec := f.create(t, Spec{MaxUses: &one})
	admit := func() (Handle, policy.Reason) {
		h, d, err := f.auth.Authenticate(ctx, s, Request{})
		if err != nil || d.Reason != policy.ReasonNone {
			t.Fatalf("authenticate: %v %v", d.Reason, err)
		}
		d, err = f.auth.Admit(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		return h, d.Reason
	}
	h, r := admit()
	if r != policy.OK {
		t.Fatalf("first use: %v", r)
	}
	f.auth.Refund(h) // while cached
	h, r = admit()
	if r != policy.OK {
		t.Fatalf("after a refund to the lease: %v", r)
	}
	f.auth.Invalidate(rec.ID) // the state is dropped, its lease settled
	f.auth.Refund(h)
	if err := f.auth.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, r = admit(); r != policy.OK {
		t.Fatalf("after a refund to the store: %v", r)
	}
	if _, r = admit(); r != policy.UsesExhausted {
		t.Fatalf("a second use of one: %v", r)
	}
}
