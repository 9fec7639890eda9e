package authority

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/token"
)

// currentFingerprint is the fingerprint of the token's current secret.
func (f *fixture) currentFingerprint(t *testing.T, id string) string {
	t.Helper()
	secs, err := f.st.Secrets(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.NotAfter.IsZero() {
			return token.Fingerprint(s.Hash)
		}
	}
	t.Fatal("no current secret")
	return ""
}

func TestRotationGivesAFreshTTLOfTheSameLengthAndKeepsEverythingElse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, rec := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute, IdleTimeout: 2 * time.Hour,
		Rate: &token.Rate{PerSecond: 5, Burst: 5}, Purposes: []string{"TREAT"}})
	if rec.TTL != time.Hour || rec.Grace != time.Minute || rec.Rotations != 0 {
		t.Fatalf("created with ttl %v grace %v rotations %d", rec.TTL, rec.Grace, rec.Rotations)
	}
	for i := int64(1); i <= 3; i++ {
		f.clk.Add(40 * time.Minute)
		from := f.currentFingerprint(t, rec.ID)
		rot, err := f.auth.RotateWith(ctx, f.actor(t, s), rec.ID, RotateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := rot.Token
		if want := f.clk.Now().Add(time.Hour); !got.ExpiresAt.Equal(want) {
			t.Errorf("rotation %d: expires %v, want now+ttl %v", i, got.ExpiresAt, want)
		}
		if want := f.clk.Now().Add(time.Minute); !rot.PreviousNotAfter.Equal(want) {
			t.Errorf("rotation %d: previous secret ends %v, want now+grace %v", i, rot.PreviousNotAfter, want)
		}
		if got.Rotations != i || got.RotatedFrom != from || !got.RotatedAt.Equal(f.clk.Now()) || got.ID != rec.ID {
			t.Errorf("rotation %d: id %s rotations %d from %q at %v; want %s %d %q %v", i, got.ID, got.Rotations, got.RotatedFrom, got.RotatedAt, rec.ID, i, from, f.clk.Now())
		}
		stored, err := f.auth.Get(ctx, f.root, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Rotations != i || stored.RotatedFrom != from || !stored.ExpiresAt.Equal(got.ExpiresAt) || stored.Revision != got.Revision {
			t.Errorf("rotation %d: stored %+v, answered %+v", i, stored, got)
		}
		// rotation never widens anything
		if !slices.Equal(stored.Scopes, rec.Scopes) || stored.IdleTimeout != rec.IdleTimeout || *stored.Rate != *rec.Rate ||
			!slices.Equal(stored.Purposes, rec.Purposes) || stored.TTL != rec.TTL || stored.Grace != rec.Grace || !stored.NotAfter.Equal(rec.NotAfter) {
			t.Errorf("rotation %d changed the token's powers: %+v, was %+v", i, stored, rec)
		}
		s = rot.Secret
	}
}

func TestRotationGraceIsTheTokensAndMayOnlyBeShorter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, rec := f.create(t, Spec{TTL: time.Hour, Grace: 5 * time.Minute})
	for _, tc := range []struct {
		name  string
		grace *time.Duration
		want  time.Duration // -1: refused
	}{
		{"default", nil, 5 * time.Minute},
		{"shorter", new(time.Minute), time.Minute},
		{"none", new(time.Duration(0)), 0},
		{"equal", new(5 * time.Minute), 5 * time.Minute},
		{"longer", new(5*time.Minute + 1), -1},
		{"negative", new(-time.Second), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.clk.Add(time.Second)
			rot, err := f.auth.RotateWith(ctx, f.root, rec.ID, RotateRequest{Grace: tc.grace})
			if tc.want < 0 {
				var fe *policy.FieldError
				if !errors.As(err, &fe) || fe.Field != "grace" {
					t.Fatalf("got %v, want a FieldError on grace", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := f.clk.Now().Add(tc.want); !rot.PreviousNotAfter.Equal(want) {
				t.Fatalf("previous secret ends %v, want %v", rot.PreviousNotAfter, want)
			}
		})
	}
}

func TestGraceIsAtMostTheTTL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	spec := Spec{Subject: "app", Scopes: []string{"patient/Observation.rs"}, TTL: time.Hour, Grace: time.Hour + 1}
	var fe *policy.FieldError
	if _, _, err := f.auth.Create(ctx, f.root, spec); !errors.As(err, &fe) || fe.Field != "grace" {
		t.Fatalf("Create(grace > ttl) = %v, want a FieldError on grace", err)
	}
	if _, _, err := f.auth.Create(ctx, f.root, Spec{Subject: "app", Scopes: spec.Scopes, TTL: time.Hour, Grace: -1}); !errors.As(err, &fe) || fe.Field != "grace" {
		t.Fatalf("Create(negative grace) = %v, want a FieldError on grace", err)
	}
	_, rec := f.create(t, Spec{TTL: time.Hour, Grace: time.Hour})
	if _, _, err := f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error { r.Grace = 2 * time.Hour; return nil }); !errors.As(err, &fe) || fe.Field != "grace" {
		t.Fatalf("Update(grace > ttl) = %v, want a FieldError on grace", err)
	}
	_, after, err := f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error { r.Grace = time.Minute; return nil })
	if err != nil || after.Grace != time.Minute {
		t.Fatalf("Update(grace 1m) = %v, %v", after, err)
	}
	// nor can an update forge the chain
	_, after, err = f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error {
		r.Rotations, r.RotatedFrom, r.RotatedAt = 99, "fp_0000000000000000", f.clk.Now()
		return nil
	})
	if err != nil || after.Rotations != 0 || after.RotatedFrom != "" || !after.RotatedAt.IsZero() {
		t.Fatalf("Update changed the chain: %+v, %v", after, err)
	}
}

func TestRotationChainEndsAtTheDefaultMaxLifetime(t *testing.T) {
	f := newFixtureWith(t, Config{DefaultMaxLifetime: 3 * time.Hour})
	ctx := context.Background()
	s, rec := f.create(t, Spec{TTL: time.Hour})
	if want := rec.CreatedAt.Add(3 * time.Hour); rec.MaxLifetime != 3*time.Hour || !rec.NotAfter.Equal(want) {
		t.Fatalf("max_lifetime %v not_after %v, want the default 3h, %v", rec.MaxLifetime, rec.NotAfter, want)
	}
	for range 3 {
		f.clk.Add(45 * time.Minute)
		rot, err := f.auth.RotateWith(ctx, f.actor(t, s), rec.ID, RotateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rot.Token.ExpiresAt.After(rec.NotAfter) {
			t.Fatalf("expiry %v past not_after %v", rot.Token.ExpiresAt, rec.NotAfter)
		}
		s = rot.Secret
	}
	// 3h: at not_after, nobody can rotate it any more
	f.clk.Add(45 * time.Minute)
	if r := f.verify(t, s, Request{}); r != policy.Expired {
		t.Fatalf("after max_lifetime: %v, want expired", r)
	}
	if _, err := f.auth.RotateWith(ctx, f.root, rec.ID, RotateRequest{}); !errors.Is(err, ErrLifetimeEnded) {
		t.Fatalf("rotation past max_lifetime = %v, want ErrLifetimeEnded", err)
	}
	// a default shorter than the ttl is raised to it
	_, short := f.create(t, Spec{TTL: 4 * time.Hour})
	if short.MaxLifetime != 4*time.Hour {
		t.Fatalf("max_lifetime %v, want the ttl 4h", short.MaxLifetime)
	}
}

func TestTokenThatNobodyRotatesExpires(t *testing.T) {
	f := newFixture(t)
	s, _ := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	f.clk.Add(time.Hour - time.Nanosecond)
	if r := f.verify(t, s, Request{}); r != policy.OK {
		t.Fatalf("before its ttl: %v", r)
	}
	f.clk.Add(time.Nanosecond)
	if r := f.verify(t, s, Request{}); r != policy.Expired {
		t.Fatalf("at its ttl: %v, want expired", r)
	}
}

func TestSupersededSecretCannotRotateAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, rec := f.create(t, Spec{TTL: time.Hour, Grace: 10 * time.Minute})
	rot, err := f.auth.RotateWith(ctx, f.actor(t, old), rec.ID, RotateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ac := f.actor(t, old) // still valid: inside its grace
	if !ac.Superseded {
		t.Fatal("the old secret is not marked superseded")
	}
	if f.actor(t, rot.Secret).Superseded {
		t.Fatal("the new secret is marked superseded")
	}
	if _, err := f.auth.RotateWith(ctx, ac, rec.ID, RotateRequest{}); !errors.Is(err, ErrAlreadyRotated) {
		t.Fatalf("rotation by a superseded secret = %v, want ErrAlreadyRotated", err)
	}
	if got, _ := f.auth.Get(ctx, f.root, rec.ID); got.Rotations != 1 {
		t.Fatalf("rotations %d, want 1", got.Rotations)
	}
}

// idemFixture is a fixture with a replay sealer and a recorder.
func idemFixture(t *testing.T) (*fixture, *memRecorder) {
	f := newFixtureWith(t, Config{ReplaySealer: newGCMSealer(t)})
	rec := &memRecorder{}
	f.auth.cfg.Recorder = rec
	return f, rec
}

func (m *memRecorder) count(action string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.changes {
		if c.Action == action && c.Outcome == OutcomeSuccess {
			n++
		}
	}
	return n
}

func TestIdempotentRotationRetryGetsTheSameAnswer(t *testing.T) {
	f, rec := idemFixture(t)
	ctx := context.Background()
	old, tok := f.create(t, Spec{TTL: time.Hour, Grace: 10 * time.Minute})
	req := RotateRequest{IdempotencyKey: "retry-1", Request: [32]byte{1}}
	first, err := f.auth.RotateWith(ctx, f.actor(t, old), tok.ID, req)
	if err != nil || first.Replayed {
		t.Fatalf("first rotation: %v, replayed %v", err, first != nil && first.Replayed)
	}
	// the client lost the answer; it retries with the old secret, in its grace
	f.clk.Add(3 * time.Minute)
	again, err := f.auth.RotateWith(ctx, f.actor(t, old), tok.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || again.Secret != first.Secret || !again.PreviousNotAfter.Equal(first.PreviousNotAfter) ||
		again.Token.Revision != first.Token.Revision || !again.Token.ExpiresAt.Equal(first.Token.ExpiresAt) || again.Token.Rotations != 1 {
		t.Fatalf("retry answered %+v, want the first answer %+v", again, first)
	}
	if got, _ := f.auth.Get(ctx, f.root, tok.ID); got.Rotations != 1 {
		t.Fatalf("rotations after a retry: %d, want 1", got.Rotations)
	}
	if n := rec.count(ActionRotated); n != 1 {
		t.Fatalf("%d rotation entries, want 1", n)
	}
	if n := rec.count(ActionRetried); n != 1 {
		t.Fatalf("%d retry entries, want 1", n)
	}
	if r := f.verify(t, first.Secret, Request{}); r != policy.OK {
		t.Fatalf("the replayed secret: %v", r)
	}
}

func TestIdempotencyKeyRules(t *testing.T) {
	f, _ := idemFixture(t)
	ctx := context.Background()
	old, tok := f.create(t, Spec{TTL: time.Hour, Grace: 10 * time.Minute})
	req := RotateRequest{IdempotencyKey: "k", Request: [32]byte{1}}
	first, err := f.auth.RotateWith(ctx, f.actor(t, old), tok.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	ac := f.actor(t, old)
	other := req
	other.Request[0] = 2
	if _, err := f.auth.RotateWith(ctx, ac, tok.ID, other); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Errorf("same key, another request = %v, want ErrIdempotencyKeyReused", err)
	}
	if _, err := f.auth.RotateWith(ctx, f.root, tok.ID, req); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Errorf("same key, another caller = %v, want ErrIdempotencyKeyReused", err)
	}
	if _, err := f.auth.RotateWith(ctx, ac, tok.ID, RotateRequest{IdempotencyKey: "k2", Request: [32]byte{1}}); !errors.Is(err, ErrAlreadyRotated) {
		t.Errorf("old secret, another key = %v, want ErrAlreadyRotated", err)
	}
	for _, bad := range []string{" lead", "trail ", "tab\t", "é", string(make([]byte, MaxIdempotencyKey+1))} {
		var fe *policy.FieldError
		if _, err := f.auth.RotateWith(ctx, f.actor(t, first.Secret), tok.ID, RotateRequest{IdempotencyKey: bad}); !errors.As(err, &fe) {
			t.Errorf("key %q = %v, want a FieldError", bad, err)
		}
	}
	// the record expires with the grace: afterwards the key starts afresh
	f.clk.Add(10 * time.Minute)
	if r := f.verify(t, old, Request{}); r == policy.OK {
		t.Fatal("old secret after its grace")
	}
	adm := RotateRequest{IdempotencyKey: "k", Request: [32]byte{1}}
	a1, err := f.auth.RotateWith(ctx, f.root, tok.ID, adm)
	if err != nil || a1.Replayed || a1.Token.Rotations != 2 {
		t.Fatalf("admin rotation with an expired key: %v, %+v", err, a1)
	}
	a2, err := f.auth.RotateWith(ctx, f.root, tok.ID, adm)
	if err != nil || !a2.Replayed || a2.Secret != a1.Secret {
		t.Fatalf("admin retry: %v, %+v", err, a2)
	}
}

func TestIdempotentRotationKeepsNoPlaintextSecret(t *testing.T) {
	f, _ := idemFixture(t)
	ctx := context.Background()
	_, tok := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	rot, err := f.auth.RotateWith(ctx, f.root, tok.ID, RotateRequest{IdempotencyKey: "k", Request: [32]byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	copy(key[:], sha256Sum("k"))
	rp, err := f.st.Replay(ctx, tok.ID, key, f.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if bytesContains(rp.Sealed, rot.Secret) || !rp.ExpiresAt.Equal(rot.PreviousNotAfter) {
		t.Fatalf("replay holds the secret in the clear, or outlives the grace (%v vs %v)", rp.ExpiresAt, rot.PreviousNotAfter)
	}
	// without grace nothing is kept
	_, tok2 := f.create(t, Spec{TTL: time.Hour})
	if _, err := f.auth.RotateWith(ctx, f.root, tok2.ID, RotateRequest{IdempotencyKey: "k", Request: [32]byte{9}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Replay(ctx, tok2.ID, key, f.clk.Now()); err == nil {
		t.Fatal("a replay kept for a rotation without grace")
	}
	// without a sealer, idempotency is refused rather than faked
	g := newFixture(t)
	_, tok3 := g.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	if _, err := g.auth.RotateWith(ctx, g.root, tok3.ID, RotateRequest{IdempotencyKey: "k"}); !errors.Is(err, ErrIdempotencyUnavailable) {
		t.Fatalf("without a replay sealer: %v, want ErrIdempotencyUnavailable", err)
	}
}

func sha256Sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func bytesContains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

// FuzzIdempotencyKey checks ValidIdempotencyKey against its definition
// (1 to 128 bytes, each printable ASCII, no space at either end) and that
// a rotation with any key it accepts is never a technical failure.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "a", " a", "a ", "a b", "é", "\x00", "\x7f", "retry-1", strings.Repeat("k", 128), strings.Repeat("k", 129)} {
		f.Add(s)
	}
	fx := newFixtureWith(f, Config{ReplaySealer: newGCMSealer(f)})
	_, tok := fx.create(f, Spec{TTL: time.Hour, Grace: time.Hour})
	f.Fuzz(func(t *testing.T, k string) {
		want := len(k) >= 1 && len(k) <= MaxIdempotencyKey && k[0] != ' ' && k[len(k)-1] != ' '
		for i := 0; want && i < len(k); i++ {
			want = k[i] >= 0x20 && k[i] <= 0x7e
		}
		if got := ValidIdempotencyKey(k); got != want {
			t.Fatalf("ValidIdempotencyKey(%q) = %v, want %v", k, got, want)
		}
		_, err := fx.auth.RotateWith(context.Background(), fx.root, tok.ID, RotateRequest{IdempotencyKey: k, Grace: new(time.Duration(0))})
		var fe *policy.FieldError
		if k != "" && !want && !errors.As(err, &fe) {
			t.Fatalf("key %q: %v, want a FieldError", k, err)
		}
		if want && err != nil {
			t.Fatalf("key %q: %v", k, err)
		}
	})
}

func TestRotationIsAuditedWithItsLinkAndNoSecret(t *testing.T) {
	f, rec := idemFixture(t)
	ctx := context.Background()
	old, tok := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	from := f.currentFingerprint(t, tok.ID)
	rot, err := f.auth.RotateWith(ctx, f.actor(t, old), tok.ID, RotateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	to := f.currentFingerprint(t, tok.ID)
	c := rec.last()
	if c.Action != ActionRotated || c.Outcome != OutcomeSuccess || c.After == nil || c.After.Rotations != 1 || c.After.RotatedFrom != from {
		t.Fatalf("recorded %+v", c)
	}
	for _, s := range []string{"rotation 1", from, to} {
		if !strings.Contains(c.Reason, s) {
			t.Errorf("reason %q does not name %q", c.Reason, s)
		}
	}
	for _, s := range []string{old, rot.Secret} {
		if strings.Contains(c.Reason, s) || strings.Contains(c.After.RotatedFrom, s) {
			t.Error("a secret in the audit record")
		}
	}
}
