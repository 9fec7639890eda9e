package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/pkg/client"
)

// The bootstrap token ends after its TTL, and a delegated admin with a
// subject prefix names only subjects under it, end to end.
func TestEndToEndBootstrapLifetimeAndSubjectPrefix(t *testing.T) {
	s := startDev(t, filepath.Join(t.TempDir(), "data"))
	if s.adm == "" {
		t.Fatalf("no bootstrap token printed:\n%s", s.stdout.String())
	}
	var boot client.Token
	s.mustJSON(t, s.adm, &boot, "token", "self")
	if boot.MaxLifetime != "" || !boot.NotAfter.Equal(boot.ExpiresAt) {
		t.Fatalf("bootstrap token: max_lifetime %q, not_after %v, expires_at %v", boot.MaxLifetime, boot.NotAfter, boot.ExpiresAt)
	}
	if _, errs, code := s.cli(t, s.adm, "", "token", "rotate", "self", "--ttl", "12h"); code == 0 || !strings.Contains(errs, "rotation period") {
		t.Fatalf("the bootstrap token extended itself: %d %s", code, errs)
	}
	var rot client.IssuedToken
	s.mustJSON(t, s.adm, &rot, "token", "rotate", "self")
	if !rot.ExpiresAt.Equal(boot.ExpiresAt) {
		t.Fatalf("the bootstrap token's rotation moved its expiry: %v, was %v", rot.ExpiresAt, boot.ExpiresAt)
	}
	s.adm = rot.Secret

	var d client.IssuedToken
	s.mustJSON(t, s.adm, &d, "token", "create", "--subject", "team-a-admin", "--scope", "admin:tokens", "--scope", "billing:read",
		"--ttl", "10m", "--max-lifetime", "720h", "--subject-prefix", "team-a/")
	if d.SubjectPrefix != "team-a/" || d.NotAfter.After(boot.NotAfter) {
		t.Fatalf("delegated admin: subject_prefix %q, not_after %v (bootstrap's %v)", d.SubjectPrefix, d.NotAfter, boot.NotAfter)
	}
	out, _, code := s.cli(t, s.adm, "", "token", "show", d.ID)
	if code != 0 || !strings.Contains(out, "not_after:") || !strings.Contains(out, "subject_prefix:") {
		t.Fatalf("token show: %d\n%s", code, out)
	}
	if _, errs, code := s.cli(t, d.Secret, "", "token", "create", "--subject", "team-b/app", "--scope", "billing:read"); code == 0 || !strings.Contains(errs, "attenuation") {
		t.Fatalf("a subject outside the prefix: %d %s", code, errs)
	}
	var c client.IssuedToken
	s.mustJSON(t, d.Secret, &c, "token", "create", "--subject", "team-a/app", "--scope", "billing:read", "--ttl", "5m")
	if c.SubjectPrefix != "team-a/" {
		t.Fatalf("inherited prefix %q", c.SubjectPrefix)
	}
	if _, errs, code := s.cli(t, d.Secret, "", "token", "update", c.ID, "--subject-prefix", "team-"); code == 0 || !strings.Contains(errs, "subject_prefix") {
		t.Fatalf("widening the prefix: %d %s", code, errs)
	}
}
