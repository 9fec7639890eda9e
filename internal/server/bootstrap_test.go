package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/policy"
)

// The bootstrap token is printed as valid for tokens.bootstrap_ttl: it must
// not be able to renew itself past that, nor issue tokens that outlive it.
func TestBootstrapTokenEndsAfterItsTTL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	defer closeNode(t, n)
	cfg := config.Dev(dir)
	secret, rec, err := n.bootstrap(ctx, cfg, false, RootLifetime{}, slog.New(slog.DiscardHandler))
	if err != nil || secret == "" {
		t.Fatalf("bootstrap: %v", err)
	}
	ttl := cfg.Tokens.BootstrapTTL.Duration()
	if rec.MaxLifetime != 0 || !rec.NotAfter.Equal(rec.ExpiresAt) || rec.ExpiresAt.Sub(rec.CreatedAt) != ttl {
		t.Fatalf("max_lifetime %s, not_after %v, expires_at %v: want none, the expiry, created_at + %s", rec.MaxLifetime, rec.NotAfter, rec.ExpiresAt, ttl)
	}
	d, err := n.auth.Verify(ctx, secret, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal(d.Reason, err)
	}
	root := authority.ActorOf(d)
	var fe *policy.FieldError
	if _, err := n.auth.Rotate(ctx, root, rec.ID, 0, 24*time.Hour); !errors.As(err, &fe) || fe.Field != "ttl" {
		t.Fatalf("self-rotation with a ttl: %v, want a refusal on ttl", err)
	}
	_, child, err := n.auth.Create(ctx, root, authority.Spec{Subject: "admin", Scopes: []string{"admin:tokens"}, TTL: time.Minute, MaxLifetime: 720 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if child.NotAfter.After(rec.NotAfter) {
		t.Fatalf("child not_after %v is after the bootstrap token's %v", child.NotAfter, rec.NotAfter)
	}
}

// A root admin token minted with a lifetime (init --new-admin-token
// --max-lifetime) can issue tokens that live that long, and no longer.
func TestRootLifetimeBoundsWhatTheRootIssues(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	defer closeNode(t, n)
	cfg := config.Dev(dir)
	life := RootLifetime{TTL: 8 * time.Hour, MaxLifetime: 90 * 24 * time.Hour}
	secret, rec, err := n.bootstrap(ctx, cfg, true, life, slog.New(slog.DiscardHandler))
	if err != nil || secret == "" {
		t.Fatalf("bootstrap: %v", err)
	}
	if got := rec.ExpiresAt.Sub(rec.CreatedAt); got != life.TTL {
		t.Fatalf("ttl %s, want %s", got, life.TTL)
	}
	if got := rec.NotAfter.Sub(rec.CreatedAt); got != life.MaxLifetime {
		t.Fatalf("not_after is created_at + %s, want + %s", got, life.MaxLifetime)
	}
	d, err := n.auth.Verify(ctx, secret, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal(d.Reason, err)
	}
	root := authority.ActorOf(d)
	_, child, err := n.auth.Create(ctx, root, authority.Spec{Subject: "ops-admin", Kind: "admin", Scopes: []string{"admin:tokens"}, TTL: time.Hour, MaxLifetime: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := child.NotAfter.Sub(child.CreatedAt); got != 30*24*time.Hour {
		t.Fatalf("child not_after is created_at + %s, want its own 720h", got)
	}
	_, long, err := n.auth.Create(ctx, root, authority.Spec{Subject: "svc", Scopes: []string{"billing:read"}, TTL: time.Hour, MaxLifetime: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if long.NotAfter.After(rec.NotAfter) {
		t.Fatalf("a child's not_after %v is after its root's %v", long.NotAfter, rec.NotAfter)
	}
	// the root's TTL is bounded like any other
	if _, _, err := n.bootstrap(ctx, cfg, true, RootLifetime{TTL: 10 * cfg.Tokens.MaxTTL.Duration()}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a root TTL beyond tokens.max_ttl was accepted")
	}
}
