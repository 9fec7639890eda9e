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
	secret, rec, err := n.bootstrap(ctx, cfg, false, slog.New(slog.DiscardHandler))
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
