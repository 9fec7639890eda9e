package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/scan/scantest"
	"github.com/phigate/phigate/pkg/client"
)

// TestScanReportRevokesTheLeakedTokenAndItsNextUseIs401 runs the binary
// against a real `phigate server --dev`: a token left in a config file is
// found by `phigate scan --report`, the server revokes it, and its next use
// is refused with token_revoked.
func TestScanReportRevokesTheLeakedTokenAndItsNextUseIs401(t *testing.T) {
	s := startDev(t, t.TempDir())
	var leaked, kept client.IssuedToken
	s.mustJSON(t, s.adm, &leaked, "token", "create", "--subject", "lab-app", "--scope", "patient/Observation.rs", "--ttl", "10m")
	s.mustJSON(t, s.adm, &kept, "token", "create", "--subject", "lab-app", "--scope", "patient/Observation.rs", "--ttl", "10m")
	dir := t.TempDir()
	scantest.Write(t, dir, "deploy/config.yaml", "service:\n  token: "+leaked.Secret+"\n  # lookalike "+scantest.Lookalike(t)+"\n")

	out, errs, code := s.cli(t, s.adm, "", "scan", "--report", dir)
	if code != scanFound {
		t.Fatalf("scan --report: exit %d: %s", code, errs)
	}
	if strings.Contains(out+errs, leaked.Secret) {
		t.Fatal("scan --report printed the secret")
	}
	where := filepath.Join(dir, "deploy", "config.yaml") + ":2"
	if !strings.Contains(out, where) || !strings.Contains(out, "revoked "+leaked.ID) {
		t.Fatalf("scan --report output does not name the place and the revoked token:\n%s", out)
	}
	if _, errs, code := s.cli(t, leaked.Secret, "", "token", "self"); code == 0 || !strings.Contains(errs, "token_revoked") {
		t.Fatalf("the reported token still works or is refused otherwise: exit %d: %s", code, errs)
	}
	if _, errs, code := s.cli(t, kept.Secret, "", "token", "self"); code != 0 {
		t.Fatalf("a token that was not reported stopped working: %s", errs)
	}
	// reported again: already revoked
	out, _, _ = s.cli(t, s.adm, "", "scan", "--report", dir)
	if !strings.Contains(out, "already_revoked") {
		t.Fatalf("second report:\n%s", out)
	}
}
