package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/tlsutil"
)

// The CLI, the admin API and the gateway's configuration refuse a
// misspelled resource type alike, and a custom type in
// scopes.custom_resource_types is accepted.
func TestEndToEndUnknownResourceTypeIsRefusedEverywhere(t *testing.T) {
	// a config file is validated as for a real deployment: data_dir and a
	// certificate
	dir := filepath.Join(t.TempDir(), "data")
	cert, key, err := tlsutil.GenerateSelfSigned(filepath.Join(t.TempDir(), "tls"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	head := "data_dir: " + dir + "\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n"
	cfg := filepath.Join(t.TempDir(), "phigate.yaml")
	if err := os.WriteFile(cfg, []byte(head+"scopes:\n  custom_resource_types: [Ledger]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDev(t, dir, "--config", cfg, "--gateway-listen", "127.0.0.1:0")
	if s.adm == "" {
		t.Fatalf("no bootstrap token:\n%s", s.stdout.String())
	}

	// CLI
	_, errs, code := s.cli(t, s.adm, "", "token", "create", "--subject", "lab-app", "--scope", "patient/Observaton.rs", "--ttl", "10m")
	if code == 0 || !strings.Contains(errs, `unknown resource type "Observaton"`) || !strings.Contains(errs, "did you mean Observation?") {
		t.Fatalf("CLI with a misspelled type: exit %d: %s", code, errs)
	}
	var ok struct {
		Scopes []string `json:"scopes"`
	}
	s.mustJSON(t, s.adm, &ok, "token", "create", "--subject", "ledger-app", "--scope", "system/Ledger.r", "--ttl", "10m")
	if len(ok.Scopes) != 1 || ok.Scopes[0] != "system/Ledger.r" {
		t.Fatalf("custom type: scopes %q", ok.Scopes)
	}

	// API
	req, _ := http.NewRequest("POST", "https://"+s.addr+"/v1/tokens", strings.NewReader(`{"subject":"x","scopes":["user/Patinet.r"],"ttl":"10m"}`))
	req.Header.Set("Authorization", "Bearer "+s.adm)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Code, Message, Field string } `json:"error"`
	}
	if resp.StatusCode != 400 || json.Unmarshal(body, &e) != nil || e.Error.Code != "invalid_request" ||
		e.Error.Field != "scopes" || !strings.Contains(e.Error.Message, "did you mean Patient?") {
		t.Fatalf("API with a misspelled type: %d %s", resp.StatusCode, body)
	}

	// gateway configuration: a route needing a misspelled type
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(head+`gateway:
  upstreams:
    - name: billing
      url: https://billing.internal/
      prefix: /billing/
      kind: http
      routes:
        - match: GET /ledger/*
          scope: user/Ledgr.r
scopes:
  custom_resource_types: [Ledger]
`), 0o600)
	out, err := exec.Command(phigateBinary(t), "server", "--dev", "--config", bad, "--data", filepath.Join(t.TempDir(), "d2")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line 11") || !strings.Contains(string(out), "did you mean Ledger?") {
		t.Fatalf("server with a misspelled route scope: %v %s", err, out)
	}
}
