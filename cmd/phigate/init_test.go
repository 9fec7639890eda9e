package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/server"
)

// init on a directory that server --dev made finds the development master
// key by itself, and says the directory was already initialised.
func TestInitOnADevDirectoryFindsItsMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, _, err := server.Init(context.Background(), server.InitOptions{Config: config.Dev(dir), Dev: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args      []string
		token     bool
		want      string
		forbidden string
	}{
		{[]string{"init", "--data", dir}, false, "is already initialised; use --new-admin-token", "Initialised"},
		{[]string{"init", "--data", dir, "--new-admin-token"}, true, "is already initialised: issued another bootstrap admin token", "Initialised"},
	} {
		r := runCLI(t, nil, "", c.args...)
		if r.code != 0 {
			t.Fatalf("phigate %v: exit %d: %s", c.args, r.code, r.stderr)
		}
		if got := reToken.MatchString(r.stdout); got != c.token {
			t.Errorf("phigate %v: token printed %v, want %v:\n%s", c.args, got, c.token, r.stdout)
		}
		if !strings.Contains(r.stdout, c.want) || strings.Contains(r.stdout, c.forbidden) {
			t.Errorf("phigate %v: want %q, not %q:\n%s", c.args, c.want, c.forbidden, r.stdout)
		}
	}
	// a directory without a development key still needs one named
	other := filepath.Join(t.TempDir(), "prod")
	if r := runCLI(t, nil, "", "init", "--data", other); r.code == 0 || !strings.Contains(r.stderr, "master key") {
		t.Fatalf("init of a new directory without a master key: %d %s", r.code, r.stderr)
	}
}

// server --help says that the server runs the gateway too, where, and how
// to get another admin token.
func TestServerHelpMentionsTheGateway(t *testing.T) {
	r := runCLI(t, nil, "", "server", "--help")
	for _, want := range []string{"gateway", "https://127.0.0.1:9443", "--new-admin-token", "SIGHUP"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("server --help does not say %q:\n%s", want, r.stdout)
		}
	}
}

// init --new-admin-token --ttl --max-lifetime mints a root admin token
// that lasts, and says until when it and what it issues can live.
func TestInitMintsARootTokenWithALifetime(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, _, err := server.Init(context.Background(), server.InitOptions{Config: config.Dev(dir), Dev: true}); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "", "init", "--data", dir, "--new-admin-token", "--ttl", "8h", "--max-lifetime", "2160h")
	if r.code != 0 || !reToken.MatchString(r.stdout) {
		t.Fatalf("init: exit %d: %s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`expires (\S+); it and everything it issues end by (\S+)\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no expiry and end in:\n%s", reToken.ReplaceAllString(r.stdout, "phi_…"))
	}
	exp, err1 := time.Parse(time.RFC3339, m[1])
	end, err2 := time.Parse(time.RFC3339, m[2])
	if err1 != nil || err2 != nil || end.Sub(exp) != 2160*time.Hour-8*time.Hour {
		t.Fatalf("expires %s, ends %s: want the end 2152h after the expiry (%v %v)", m[1], m[2], err1, err2)
	}
	for _, bad := range [][]string{
		{"--ttl", "2h", "--max-lifetime", "1h"},
		{"--ttl", "-1h"},
		{"--ttl", "1d"},
	} {
		args := append([]string{"init", "--data", dir, "--new-admin-token"}, bad...)
		if r := runCLI(t, nil, "", args...); r.code == 0 || reToken.MatchString(r.stdout) {
			t.Errorf("phigate %v: exit %d, want a refusal without a token", bad, r.code)
		}
	}
}
