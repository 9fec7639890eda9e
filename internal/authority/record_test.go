package authority

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

type memRecorder struct {
	mu      sync.Mutex
	changes []Change
	fail    bool
}

func (m *memRecorder) RecordChange(_ context.Context, c *Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.changes = append(m.changes, *c)
	return nil
}

func (m *memRecorder) last() Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes[len(m.changes)-1]
}

func TestEveryChangeIsRecordedBeforeItIsMade(t *testing.T) {
	f := newFixture(t)
	rec := &memRecorder{}
	f.auth.cfg.Recorder = rec
	ctx := context.Background()
	s, tok := f.create(t, Spec{TTL: time.Hour, Grace: time.Minute})
	if c := rec.last(); c.Action != ActionCreated || c.TargetID != tok.ID || c.Outcome != OutcomeSuccess || c.Actor.ID != f.root.Token.ID || c.After == nil {
		t.Fatalf("create recorded as %+v", c)
	}
	if _, _, err := f.auth.Update(ctx, f.root, tok.ID, 0, func(r *token.Record) error { r.Scopes = []string{"patient/Observation.r"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); c.Action != ActionUpdated || c.Before.Scopes[0] != "patient/Observation.rs" || c.After.Scopes[0] != "patient/Observation.r" {
		t.Fatalf("update recorded as %+v", c)
	}
	if _, err := f.auth.Rotate(ctx, f.root, tok.ID, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); c.Action != ActionRotated {
		t.Fatalf("rotate recorded as %+v", c)
	}
	if _, err := f.auth.SetStatus(ctx, f.root, tok.ID, token.StatusSuspended, "why"); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); c.Action != ActionSuspended || c.Reason != "why" {
		t.Fatalf("suspend recorded as %+v", c)
	}
	if _, err := f.auth.Revoke(ctx, f.root, tok.ID, true, "done"); err != nil {
		t.Fatal(err)
	}
	if c := rec.last(); c.Action != ActionRevoked || len(c.IDs) != 1 {
		t.Fatalf("revoke recorded as %+v", c)
	}
	// a refused change is recorded as denied
	plain, _ := f.create(t, Spec{})
	pd, _ := f.auth.Verify(ctx, plain, Request{})
	f.auth.Create(ctx, ActorOf(pd), Spec{Subject: "x", Scopes: []string{"billing:read"}})
	if c := rec.last(); c.Action != ActionCreated || c.Outcome != OutcomeDenied {
		t.Fatalf("denial recorded as %+v", c)
	}
	// no secret in any recorded change
	for _, c := range rec.changes {
		if strings.Contains(c.Reason, s) {
			t.Fatal("secret in a change")
		}
	}
}

func TestRecorderFailureRefusesTheChange(t *testing.T) {
	f := newFixture(t)
	rec := &memRecorder{}
	f.auth.cfg.Recorder = rec
	ctx := context.Background()
	s, tok := f.create(t, Spec{TTL: time.Hour})
	rec.fail = true
	if _, _, err := f.auth.Create(ctx, f.root, withDefaults(Spec{})); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("create with a failing audit log: %v", err)
	}
	if _, err := f.auth.Revoke(ctx, f.root, tok.ID, false, ""); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("revoke with a failing audit log: %v", err)
	}
	got, err := f.st.Token(ctx, tok.ID)
	if err != nil || got.Status != token.StatusActive {
		t.Fatalf("the refused revocation happened: %v %v", got.Status, err)
	}
	// the refused creation left no usable token: whatever was stored
	// concurrently is revoked (and its secret was never returned)
	recs, _, _ := f.st.ListTokens(ctx, store.TokenFilter{Status: token.StatusActive, Limit: 1000})
	if len(recs) != 2 { // root + the first token
		t.Fatalf("%d active tokens stored, want 2", len(recs))
	}
	if r := f.verify(t, s, Request{}); !r.Allowed() {
		t.Fatal(r)
	}
}
