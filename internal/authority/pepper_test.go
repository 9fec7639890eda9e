package authority

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
)

// memRing is a PepperRing in memory, with random keys.
type memRing struct {
	mu sync.Mutex
	ps []token.Pepper // newest first
}

func newMemRing(t testing.TB) *memRing {
	r := &memRing{}
	if err := r.RotatePepper(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *memRing) Peppers(context.Context) ([]token.Pepper, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ps), nil
}

func (r *memRing) RotatePepper(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := make([]byte, 32)
	rand.Read(key)
	next := 1
	if len(r.ps) > 0 {
		next = r.ps[0].Version + 1
	}
	r.ps = append([]token.Pepper{{Version: next, Key: key}}, r.ps...)
	return nil
}

func (r *memRing) RetirePepper(_ context.Context, version int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.ps, func(p token.Pepper) bool { return p.Version == version })
	if i <= 0 {
		return fmt.Errorf("memRing: cannot retire version %d", version)
	}
	r.ps = slices.Delete(r.ps, i, i+1)
	return nil
}

func (r *memRing) versions() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []int
	for _, p := range r.ps {
		vs = append(vs, p.Version)
	}
	return vs
}

// pepperOf returns the pepper version of the token's current secret.
func (f *fixture) pepperOf(t *testing.T, id string) int {
	t.Helper()
	secs, err := f.st.Secrets(context.Background(), id)
	if err != nil || len(secs) == 0 {
		t.Fatalf("Secrets(%s): %v %v", id, secs, err)
	}
	return secs[0].PepperVersion
}

func TestTokenHashedBeforePepperRotationStillVerifies(t *testing.T) {
	ctx := context.Background()
	ring := newMemRing(t)
	f := newFixtureWith(t, Config{Peppers: ring})
	oldS, oldRec := f.create(t, Spec{TTL: time.Hour})
	if r := f.verify(t, oldS, Request{}); r != policy.OK {
		t.Fatalf("before rotation: %v", r)
	}
	v, err := f.auth.RotatePepper(ctx, f.root)
	if err != nil || v != 2 {
		t.Fatalf("RotatePepper = %d, %v; want 2", v, err)
	}
	// Cached before the rotation, it is found in the cache after it.
	before := f.st.lookups.Load()
	if r := f.verify(t, oldS, Request{}); r != policy.OK {
		t.Fatalf("old token after rotation: %v", r)
	}
	if n := f.st.lookups.Load() - before; n != 0 {
		t.Fatalf("%d store lookups for an old-pepper token cached before the rotation", n)
	}
	newS, newRec := f.create(t, Spec{TTL: time.Hour})
	if got := f.pepperOf(t, newRec.ID); got != 2 {
		t.Fatalf("a token created after the rotation is hashed with pepper %d, want 2", got)
	}
	if got := f.pepperOf(t, oldRec.ID); got != 1 {
		t.Fatalf("the older token's secret moved to pepper %d", got)
	}
	for name, s := range map[string]string{"old": oldS, "new": newS, "root (old)": f.rootS} {
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Errorf("%s token after rotation: %v", name, r)
		}
	}
	// Once found through the older pepper, the token is cached under its
	// current-pepper hash: further uses touch the store no more.
	before = f.st.lookups.Load()
	for range 5 {
		f.verify(t, f.rootS, Request{})
	}
	if n := f.st.lookups.Load() - before; n != 0 {
		t.Fatalf("%d store lookups for a cached old-pepper token", n)
	}
	// Every lookup by secret knows the older pepper: introspection, RFC
	// 7009 revocation, and a fresh node (nothing cached).
	if rec, _, active, err := f.auth.Introspect(ctx, oldS); err != nil || !active || rec.ID != oldRec.ID {
		t.Fatalf("Introspect(old token) = %v, %v", active, err)
	}
	fresh := New(f.st, f.auth.hashers.Load().current, Config{Now: f.clk.Now, Peppers: ring})
	if err := fresh.ReloadPeppers(ctx); err != nil {
		t.Fatal(err)
	}
	before = f.st.lookups.Load()
	for range 3 {
		if d, err := fresh.Verify(ctx, oldS, Request{}); err != nil || !d.Allowed() {
			t.Fatalf("old token on a fresh node: %v %v", d.Reason, err)
		}
	}
	if n := f.st.lookups.Load() - before; n != 2 {
		t.Fatalf("%d store lookups for three uses of an old-pepper token on a fresh node, want 2 (current pepper, then the old one)", n)
	}
	if rec, err := f.auth.RevokeSecret(ctx, Actor{}, oldS, "test"); err != nil || rec == nil || rec.ID != oldRec.ID {
		t.Fatalf("RevokeSecret(old token) = %v, %v", rec, err)
	}
	if r := f.verify(t, oldS, Request{}); r != policy.Revoked {
		t.Fatalf("old token after RevokeSecret: %v", r)
	}
}

func TestPepperRotationHashesRotatedSecretsWithTheNewPepper(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Peppers: newMemRing(t)})
	s, rec := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	if _, err := f.auth.RotatePepper(ctx, f.root); err != nil {
		t.Fatal(err)
	}
	rot, err := f.auth.Rotate(ctx, f.root, rec.ID, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.pepperOf(t, rec.ID); got != 2 {
		t.Fatalf("rotated secret hashed with pepper %d, want 2", got)
	}
	for name, sec := range map[string]string{"previous (pepper 1, in its grace)": s, "rotated (pepper 2)": rot.Secret} {
		if r := f.verify(t, sec, Request{}); r != policy.OK {
			t.Errorf("%s: %v", name, r)
		}
	}
}

func TestUnknownSecretCostsOneLookupPerLivePepper(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Peppers: newMemRing(t)})
	for range 2 {
		if _, err := f.auth.RotatePepper(ctx, f.root); err != nil {
			t.Fatal(err)
		}
	}
	unknown, _ := token.Generate(nil)
	before := f.st.lookups.Load()
	if r := f.verify(t, unknown, Request{}); r != policy.Unknown {
		t.Fatalf("unknown token: %v", r)
	}
	if n := f.st.lookups.Load() - before; n != 3 {
		t.Fatalf("%d lookups for an unknown token with 3 live peppers, want 3", n)
	}
	// and a malformed one still costs none
	before = f.st.lookups.Load()
	if r := f.verify(t, unknown[:len(unknown)-1]+otherLast(unknown), Request{}); r != policy.Malformed {
		t.Fatalf("bad checksum: %v", r)
	}
	if n := f.st.lookups.Load() - before; n != 0 {
		t.Fatalf("%d lookups for a malformed token", n)
	}
}

func TestRetirePepperRefusedWhileALiveTokenUsesIt(t *testing.T) {
	ctx := context.Background()
	ring := newMemRing(t)
	f := newFixtureWith(t, Config{Peppers: ring})
	revokedLater, rv := f.create(t, Spec{TTL: time.Hour})
	expiresIn2h, _ := f.create(t, Spec{TTL: 2 * time.Hour})
	expiresIn3h, _ := f.create(t, Spec{TTL: 3 * time.Hour})
	if _, err := f.auth.RotatePepper(ctx, f.root); err != nil {
		t.Fatal(err)
	}
	// the root moves to pepper 2 by rotating itself (no grace, a period more)
	rot, err := f.auth.Rotate(ctx, f.root, f.root.Token.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.auth.Verify(ctx, rot.Secret, Request{})
	if err != nil || !d.Allowed() {
		t.Fatalf("rotated root: %v %v", d.Reason, err)
	}
	root := ActorOf(d)
	current, _, err := f.auth.Create(ctx, root, Spec{Subject: "app", Scopes: []string{"patient/Observation.rs"}, TTL: 10 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.verify(t, revokedLater, Request{}) // cached, found through pepper 1

	var inUse *PepperInUseError
	if err := f.auth.RetirePepper(ctx, root, 1); !errors.As(err, &inUse) || inUse.Version != 1 || inUse.Live != 3 {
		t.Fatalf("RetirePepper(1) with 3 live tokens = %v, want PepperInUseError{1, 3}", err)
	}
	if _, err := f.auth.Revoke(ctx, root, rv.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	if err := f.auth.RetirePepper(ctx, root, 1); !errors.As(err, &inUse) || inUse.Live != 2 {
		t.Fatalf("RetirePepper(1) after a revocation = %v, want 2 live", err)
	}
	f.clk.Add(2*time.Hour + time.Second)
	if err := f.auth.RetirePepper(ctx, root, 1); !errors.As(err, &inUse) || inUse.Live != 1 {
		t.Fatalf("RetirePepper(1) after an expiry = %v, want 1 live", err)
	}
	pv, err := f.auth.Peppers(ctx, root)
	want := []PepperVersion{{Version: 2, Current: true, LiveSecrets: 2}, {Version: 1, LiveSecrets: 1}}
	if err != nil || !slices.Equal(pv, want) {
		t.Fatalf("Peppers = %+v, %v; want %+v", pv, err, want)
	}
	f.clk.Add(time.Hour) // the last pepper-1 token expires
	if err := f.auth.RetirePepper(ctx, root, 1); err != nil {
		t.Fatalf("RetirePepper(1) with no live token = %v", err)
	}
	if vs := ring.versions(); !slices.Equal(vs, []int{2}) {
		t.Fatalf("ring after retiring 1: %v", vs)
	}
	// The retired pepper no longer finds anything, cached or not.
	for name, s := range map[string]string{"revoked": revokedLater, "expired": expiresIn2h, "expired later": expiresIn3h, "root's previous": f.rootS} {
		if r := f.verify(t, s, Request{}); r != policy.Unknown {
			t.Errorf("%s token after retiring its pepper: %v, want unknown", name, r)
		}
	}
	for name, s := range map[string]string{"current": current, "root": rot.Secret} {
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Errorf("%s token after the retirement: %v", name, r)
		}
	}
}

func TestRetirePepperRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Peppers: newMemRing(t)})
	if _, err := f.auth.RotatePepper(ctx, f.root); err != nil {
		t.Fatal(err)
	}
	if err := f.auth.RetirePepper(ctx, f.root, 2); !errors.Is(err, ErrPepperCurrent) {
		t.Errorf("RetirePepper(current) = %v, want ErrPepperCurrent", err)
	}
	for _, v := range []int{0, -1, 3, 99} {
		if err := f.auth.RetirePepper(ctx, f.root, v); !errors.Is(err, ErrPepperNotFound) {
			t.Errorf("RetirePepper(%d) = %v, want ErrPepperNotFound", v, err)
		}
	}
	// admin:keys is needed (admin:* covers it); admin:tokens is not enough
	_, rec := f.create(t, Spec{Kind: token.KindAdmin, Scopes: []string{scope.AdminTokens}})
	tokensOnly := Actor{Token: rec, Scopes: mustScopes(t, scope.AdminTokens)}
	if _, err := f.auth.RotatePepper(ctx, tokensOnly); !errors.Is(err, ErrForbidden) {
		t.Errorf("RotatePepper(admin:tokens) = %v, want ErrForbidden", err)
	}
	if err := f.auth.RetirePepper(ctx, tokensOnly, 1); !errors.Is(err, ErrForbidden) {
		t.Errorf("RetirePepper(admin:tokens) = %v, want ErrForbidden", err)
	}
	if _, err := f.auth.Peppers(ctx, Actor{}); !errors.Is(err, ErrForbidden) {
		t.Errorf("Peppers(no actor) = %v, want ErrForbidden", err)
	}
	_, krec := f.create(t, Spec{Kind: token.KindAdmin, Scopes: []string{scope.AdminKeys}})
	keys := Actor{Token: krec, Scopes: mustScopes(t, scope.AdminKeys)}
	if _, err := f.auth.Peppers(ctx, keys); err != nil {
		t.Errorf("Peppers(admin:keys) = %v", err)
	}
	// without a keyring there is nothing to rotate
	g := newFixture(t)
	if _, err := g.auth.RotatePepper(ctx, g.root); !errors.Is(err, ErrNoPepperRing) {
		t.Errorf("RotatePepper without a ring = %v, want ErrNoPepperRing", err)
	}
}

func mustScopes(t *testing.T, ss ...string) scope.Set {
	t.Helper()
	set, err := scope.ParseSet(ss)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestCreationsDuringPepperRotationAllVerify holds the rotation's promise:
// a secret hashed with the previous pepper while the rotation runs is
// stored before it returns, and verifies afterwards.
func TestCreationsDuringPepperRotationAllVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Peppers: newMemRing(t)})
	var wg sync.WaitGroup
	secrets := make(chan string, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				s, _, err := f.auth.Create(ctx, f.root, Spec{Subject: "app", Scopes: []string{"patient/Observation.rs"}})
				if err != nil {
					t.Error(err)
					return
				}
				secrets <- s
			}
		}()
	}
	for range 3 {
		if _, err := f.auth.RotatePepper(ctx, f.root); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(secrets)
	n := 0
	for s := range secrets {
		n++
		if r := f.verify(t, s, Request{}); r != policy.OK {
			t.Errorf("token created during the rotations: %v", r)
		}
	}
	if n != 64 {
		t.Fatalf("%d tokens created, want 64", n)
	}
}
