package main

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/phigate/phigate/internal/tlsutil/tlstest"
)

// The CLI refuses a server whose certificate has the right name but
// another key than PHIGATE_PIN's, printing the pin it saw; with a current
// and a backup pin, it follows the server to the backup key.
func TestCLIRefusesTheRightNameWithAnotherKeyAndFollowsTheBackupPin(t *testing.T) {
	ca := tlstest.NewCA(t)
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, tokenJSON)
	})
	good, evil, backup := ca.Serve(t, h), ca.Serve(t, h), ca.Serve(t, h)
	for name, env := range map[string]map[string]string{
		"pin":    {"PHIGATE_ADDR": evil.URL, "PHIGATE_TOKEN": adminToken, "PHIGATE_PIN": good.Pin},
		"pin+CA": {"PHIGATE_ADDR": evil.URL, "PHIGATE_TOKEN": adminToken, "PHIGATE_PIN": good.Pin, "PHIGATE_CACERT": ca.File},
	} {
		r := runCLI(t, env, "", "token", "self")
		if r.code != exitError || !strings.Contains(r.stderr, evil.Pin) || !strings.Contains(r.stderr, "PHIGATE_PIN") {
			t.Errorf("%s: exit %d, stderr %q: want a failure naming the presented pin %s", name, r.code, r.stderr, evil.Pin)
		}
	}
	if n.Load() != 0 {
		t.Fatal("a request reached the server with the wrong key")
	}
	for _, s := range []*tlstest.Server{good, backup} {
		env := map[string]string{"PHIGATE_ADDR": s.URL, "PHIGATE_TOKEN": adminToken, "PHIGATE_PIN": good.Pin + "," + backup.Pin}
		if r := runCLI(t, env, "", "token", "self"); r.code != exitOK {
			t.Errorf("server with pin %s: exit %d: %s", s.Pin, r.code, r.stderr)
		}
	}
}

func TestAgentCommandLineMistakesAreUsageErrors(t *testing.T) {
	env := map[string]string{"PHIGATE_PIN": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no sink":          {[]string{"agent", "--token-file", "t"}, "--sink"},
		"unknown flag":     {[]string{"agent", "--bogus"}, "bogus"},
		"argument":         {[]string{"agent", "--token-file", "t", "--sink", "s", "extra"}, "no arguments"},
		"config and flags": {[]string{"agent", "--config", "c.yaml", "--sink", "s"}, "exclusive"},
		"remote health":    {[]string{"agent", "--token-file", "t", "--sink", "s", "--health", "0.0.0.0:8479"}, "loopback"},
		"no pin":           {[]string{"agent", "--token-file", "t", "--sink", "s"}, "PHIGATE_PIN"},
	} {
		e := env
		if name == "no pin" {
			e = map[string]string{}
		}
		r := runCLI(t, e, "", c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q, want 2 and %q", name, r.code, r.stderr, c.want)
		}
	}
}
