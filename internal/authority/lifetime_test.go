package authority

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/token"
)

// issuer creates, under the root, a token that may issue tokens, and
// returns it as an Actor.
func (f *fixture) issuer(t *testing.T, spec Spec) Actor {
	t.Helper()
	spec.Scopes = append([]string{"admin:tokens", "patient/Observation.rs"}, spec.Scopes...)
	s, _ := f.create(t, spec)
	return f.actor(t, s)
}

// actor verifies secret and returns its Actor.
func (f *fixture) actor(t *testing.T, secret string) Actor {
	t.Helper()
	d, err := f.auth.Verify(context.Background(), secret, Request{})
	if err != nil || !d.Allowed() {
		t.Fatalf("token not usable: %v %v", d.Reason, err)
	}
	return ActorOf(d)
}

func TestNotAfterIsFixedAtIssueAndBoundedByTheIssuer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if want := f.root.Token.CreatedAt.Add(30 * 24 * time.Hour); !f.root.Token.NotAfter.Equal(want) {
		t.Fatalf("bootstrap not_after %v, want created_at + max_lifetime %v", f.root.Token.NotAfter, want)
	}
	_, plain := f.create(t, Spec{TTL: time.Hour, MaxLifetime: time.Hour})
	if !plain.NotAfter.Equal(plain.ExpiresAt) {
		t.Errorf("with max_lifetime = ttl: not_after %v, want the expiry %v", plain.NotAfter, plain.ExpiresAt)
	}
	_, long := f.create(t, Spec{TTL: time.Hour, MaxLifetime: 20 * time.Hour})
	if want := long.CreatedAt.Add(20 * time.Hour); !long.NotAfter.Equal(want) {
		t.Errorf("with max_lifetime: not_after %v, want %v", long.NotAfter, want)
	}
	// An issuer that ends in 2h; 50 minutes later it issues a token asking
	// for the same max lifetime: the child ends with the issuer, not 50
	// minutes after it (max_lifetime is not compared as a duration).
	p := f.issuer(t, Spec{TTL: time.Hour, MaxLifetime: 2 * time.Hour})
	f.clk.Add(50 * time.Minute)
	_, c, err := f.auth.Create(ctx, p, Spec{Subject: "c", Scopes: []string{"patient/Observation.rs"}, TTL: 5 * time.Minute, MaxLifetime: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(p.Token.NotAfter) {
		t.Errorf("child not_after %v, want its issuer's %v", c.NotAfter, p.Token.NotAfter)
	}
	got, err := f.auth.Get(ctx, f.root, c.ID)
	if err != nil || !got.NotAfter.Equal(c.NotAfter) {
		t.Errorf("stored not_after %v (%v), want %v", got.NotAfter, err, c.NotAfter)
	}
}

// TestSelfRotationNeverOutlivesTheIssuer is the attack of issue 13: a child
// that keeps rotating itself with {"ttl":"3m"} must end when its issuer
// ends, and its rotation then fails with ErrLifetimeEnded.
func TestSelfRotationNeverOutlivesTheIssuer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.issuer(t, Spec{TTL: time.Hour, MaxLifetime: 2 * time.Hour})
	f.clk.Add(50 * time.Minute)
	cs, c, err := f.auth.Create(ctx, p, Spec{Subject: "c", Scopes: []string{"patient/Observation.rs"}, TTL: 3 * time.Minute, MaxLifetime: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	self := f.actor(t, cs)
	end := p.Token.NotAfter
	var last time.Time
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("the child kept renewing itself")
		}
		f.clk.Add(2 * time.Minute)
		rot, err := f.auth.Rotate(ctx, self, c.ID, 0, 3*time.Minute)
		if err != nil {
			if !errors.Is(err, ErrLifetimeEnded) || !errors.Is(err, ErrInvalidState) {
				t.Fatalf("rotation after the end: %v, want ErrLifetimeEnded", err)
			}
			break
		}
		if rot.Token.ExpiresAt.After(end) {
			t.Fatalf("rotation %d: expiry %v is after the issuer's not_after %v", i, rot.Token.ExpiresAt, end)
		}
		last = rot.Token.ExpiresAt
		self = f.actor(t, rot.Secret)
	}
	if !last.Equal(end) {
		t.Errorf("last expiry %v, want the issuer's not_after %v", last, end)
	}
	if f.clk.Now().Before(end) {
		t.Errorf("rotation refused at %v, before the end %v", f.clk.Now(), end)
	}
}

func TestRotationOfATokenWhoseIssuerIsRevokedFails(t *testing.T) {
	for _, revoked := range []string{"parent", "grandparent"} {
		t.Run(revoked, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			gp := f.issuer(t, Spec{TTL: time.Hour, MaxLifetime: 5 * time.Hour})
			ps, p, err := f.auth.Create(ctx, gp, Spec{Subject: "p", Scopes: []string{"admin:tokens", "patient/Observation.rs"}, TTL: time.Hour, MaxLifetime: 5 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			cs, c, err := f.auth.Create(ctx, f.actor(t, ps), Spec{Subject: "c", Scopes: []string{"patient/Observation.rs"}, TTL: 10 * time.Minute, MaxLifetime: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			id := p.ID
			if revoked == "grandparent" {
				id = gp.Token.ID
			}
			if _, err := f.auth.Revoke(ctx, f.root, id, false, "test"); err != nil {
				t.Fatal(err)
			}
			self := f.actor(t, cs) // the child itself still works until it expires
			rec := &memRecorder{}
			f.auth.cfg.Recorder = rec
			for name, ac := range map[string]Actor{"self": self, "root": f.root} {
				for _, ttl := range []time.Duration{0, 5 * time.Minute} {
					_, err := f.auth.Rotate(ctx, ac, c.ID, 0, ttl)
					if !errors.Is(err, ErrIssuerRevoked) {
						t.Errorf("%s rotating with ttl %s: %v, want ErrIssuerRevoked", name, ttl, err)
					}
					if l := rec.last(); l.Action != ActionRotated || l.Outcome != OutcomeDenied || l.TargetID != c.ID || l.Actor.ID != ac.Token.ID {
						t.Errorf("%s: refusal recorded as %+v", name, l)
					}
				}
			}
			if r := f.verify(t, cs, Request{}); r != policy.OK {
				t.Errorf("a refused rotation changed the token: %v", r)
			}
		})
	}
}

func TestUpdateCannotMoveExpiryPastNotAfter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	setExpiry := func(at time.Time) func(*token.Record) error {
		return func(r *token.Record) error { r.ExpiresAt = at; return nil }
	}
	now := f.clk.Now()
	_, fixed := f.create(t, Spec{TTL: 10 * time.Minute, MaxLifetime: 10 * time.Minute})
	_, ext := f.create(t, Spec{TTL: 10 * time.Minute, MaxLifetime: time.Hour})
	for _, tc := range []struct {
		name string
		id   string
		at   time.Time
		ok   bool
	}{
		{"no_max_lifetime_later", fixed.ID, now.Add(time.Hour), false},
		{"no_max_lifetime_earlier", fixed.ID, now.Add(5 * time.Minute), true},
		{"within_max_lifetime", ext.ID, now.Add(50 * time.Minute), true},
		{"at_not_after", ext.ID, now.Add(time.Hour), true},
		{"past_not_after", ext.ID, now.Add(time.Hour + time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, after, err := f.auth.Update(ctx, f.root, tc.id, 0, setExpiry(tc.at))
			if tc.ok {
				if err != nil || !after.ExpiresAt.Equal(tc.at) {
					t.Fatalf("got %v, %v; want the expiry moved to %v", after, err, tc.at)
				}
				return
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) || fe.Field != "expires_at" {
				t.Fatalf("got %v, want a FieldError on expires_at", err)
			}
		})
	}
	// nor can a change move not_after itself
	_, after, err := f.auth.Update(ctx, f.root, ext.ID, 0, func(r *token.Record) error {
		r.NotAfter, r.MaxLifetime = now.Add(20*time.Hour), 20*time.Hour
		return nil
	})
	if err != nil || !after.NotAfter.Equal(ext.NotAfter) || after.MaxLifetime != ext.MaxLifetime {
		t.Fatalf("update moved the lifetime: %v, %v", after, err)
	}
}

// A token issued under an earlier root can be narrowed by a later one (a
// new bootstrap token) that ends before it: not_after cannot change in an
// update, so it is not held against the caller.
func TestLaterRootNarrowsATokenThatOutlivesIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, long := f.create(t, Spec{TTL: time.Hour, MaxLifetime: 20 * time.Hour})
	secret, _, err := f.auth.Bootstrap(ctx, "root-2", 2*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	root2 := f.actor(t, secret)
	if !root2.Token.End().Before(long.NotAfter) {
		t.Fatal("test setup: the new root should end first")
	}
	_, after, err := f.auth.Update(ctx, root2, long.ID, 0, func(r *token.Record) error {
		r.Scopes = []string{"patient/Observation.r"}
		return nil
	})
	if err != nil || !after.NotAfter.Equal(long.NotAfter) {
		t.Fatalf("narrowing by a later root: %v, %v", after, err)
	}
}
