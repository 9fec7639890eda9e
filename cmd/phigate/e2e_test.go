package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// The end-to-end tests build the real phigate binary, start `phigate server
// --dev` on loopback and drive it over HTTPS with the CLI and net/http.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary the end-to-end tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func phigateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test (builds and runs the binary)")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "phigate-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "phigate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// devServer is a running `phigate server --dev`.
type devServer struct {
	cmd            *exec.Cmd
	dir            string
	addr, pin, adm string
	stdout, stderr *syncBuffer
	done           chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	reAddr  = regexp.MustCompile(`admin API:\s+https://(\S+)`)
	rePin   = regexp.MustCompile(`SPKI pin:\s+(\S+)`)
	reToken = regexp.MustCompile(`(?m)^\s+(phi_[0-9A-Za-z]{49})\s*$`)
)

func startDev(t *testing.T, dir string, extra ...string) *devServer {
	t.Helper()
	bin := phigateBinary(t)
	s := &devServer{dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	s.cmd = exec.Command(bin, append([]string{"server", "--dev", "--data", dir, "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"}, extra...)...)
	s.cmd.Stdout = io.MultiWriter(pw, s.stdout)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { s.stop(t) })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for s.addr == "" || s.pin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("server exited early; stderr:\n%s", s.stderr.String())
			}
			if m := reAddr.FindStringSubmatch(l); m != nil {
				s.addr = m[1]
			}
			if m := rePin.FindStringSubmatch(l); m != nil {
				s.pin = m[1]
			}
		case <-deadline:
			t.Fatalf("server did not start; stdout:\n%s\nstderr:\n%s", s.stdout.String(), s.stderr.String())
		}
	}
	// the bootstrap token follows the pin on a fresh directory
	time.Sleep(100 * time.Millisecond)
	if m := reToken.FindStringSubmatch(s.stdout.String()); m != nil {
		s.adm = m[1]
	}
	go func() {
		for range lines {
		}
	}()
	return s
}

func (s *devServer) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("server exited with %v; stderr:\n%s", err, s.stderr.String())
		}
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		t.Error("server did not stop on SIGTERM")
	}
}

// cli runs the phigate binary as a client of s.
func (s *devServer) cli(t *testing.T, tok string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(phigateBinary(t), args...)
	cmd.Env = append(os.Environ(), "PHIGATE_ADDR=https://"+s.addr, "PHIGATE_PIN="+s.pin, "PHIGATE_TOKEN="+tok)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (s *devServer) mustJSON(t *testing.T, tok string, v any, args ...string) {
	t.Helper()
	out, errs, code := s.cli(t, tok, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("phigate %v: exit %d: %s", args, code, errs)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("phigate %v: %v: %q", args, err, out)
	}
}

func (s *devServer) http(t *testing.T) *http.Client {
	t.Helper()
	c, err := client.New("https://"+s.addr, client.WithPins(s.pin))
	if err != nil {
		t.Fatal(err)
	}
	_ = c
	// a plain net/http client pinned like the SDK, for raw requests
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // the pin is checked below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := client.SPKIPin(cs.PeerCertificates[0]); got != s.pin {
				t.Errorf("pin %s != %s", got, s.pin)
			}
			return nil
		},
	}}}
}

func TestEndToEndWalkthrough(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startDev(t, dir)
	if s.adm == "" {
		t.Fatalf("no bootstrap token printed on a fresh directory:\n%s", s.stdout.String())
	}

	// create a scoped token with constraints
	var it client.IssuedToken
	s.mustJSON(t, s.adm, &it, "token", "create", "--subject", "lab-app", "--scope", "patient/Observation.rs",
		"--ttl", "6s", "--cidr", "127.0.0.0/8", "--meta", "team=lab")
	if it.Secret == "" || it.ID == "" || it.Scopes[0] != "patient/Observation.rs" {
		t.Fatalf("issued %+v", it.Token)
	}

	// use it: introspection via a resource-server token, and self lookup
	var rs client.IssuedToken
	s.mustJSON(t, s.adm, &rs, "token", "create", "--subject", "fhir-server", "--scope", "introspect", "--ttl", "10m")
	out, errs, code := s.cli(t, rs.Secret, it.Secret+"\n", "introspect", "--json")
	if code != 0 || !strings.Contains(out, `"active": true`) {
		t.Fatalf("introspect: %d %s %s", code, out, errs)
	}
	var self client.Token
	s.mustJSON(t, it.Secret, &self, "token", "self")
	if self.ID != it.ID {
		t.Fatal("self lookup returned another token")
	}

	// raw HTTPS: the admin API needs admin:tokens
	hc := s.http(t)
	req, _ := http.NewRequest("GET", "https://"+s.addr+"/v1/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+it.Secret)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("scoped token listing tokens: %d %s", resp.StatusCode, body)
	}

	// see it expire (the server runs on the wall clock: wait for the
	// expiry it gave, so a slow machine neither expires the token before
	// its uses above nor checks too early)
	time.Sleep(time.Until(it.ExpiresAt) + 200*time.Millisecond)
	_, errs, code = s.cli(t, it.Secret, "", "token", "self")
	if code == 0 || !strings.Contains(errs, "token_expired") {
		t.Fatalf("after expiry: %d %s", code, errs)
	}

	// and another one revoked
	var it2 client.IssuedToken
	s.mustJSON(t, s.adm, &it2, "token", "create", "--subject", "lab-app", "--scope", "patient/Observation.rs", "--ttl", "5m")
	if _, errs, code := s.cli(t, s.adm, "", "token", "revoke", it2.ID, "--reason", "walkthrough"); code != 0 {
		t.Fatalf("revoke: %s", errs)
	}
	_, errs, code = s.cli(t, it2.Secret, "", "token", "self")
	if code == 0 || !strings.Contains(errs, "token_revoked") {
		t.Fatalf("after revoke: %d %s", code, errs)
	}

	// rotate with a grace period: both secrets work, then list shows it
	var it3 client.IssuedToken
	s.mustJSON(t, s.adm, &it3, "token", "create", "--subject", "svc", "--scope", "billing:read", "--kind", "service", "--ttl", "5m", "--grace", "1m")
	var rot client.IssuedToken
	s.mustJSON(t, s.adm, &rot, "token", "rotate", it3.ID, "--grace", "1m")
	for _, sec := range []string{it3.Secret, rot.Secret} {
		if _, errs, code := s.cli(t, sec, "", "token", "self"); code != 0 {
			t.Fatalf("after rotation with grace: %s", errs)
		}
	}
	var list client.TokenList
	s.mustJSON(t, s.adm, &list, "token", "list", "--subject", "svc")
	if len(list.Tokens) != 1 || list.Tokens[0].ID != it3.ID {
		t.Fatalf("list: %+v", list)
	}

	// a wrong pin is a hard failure
	cmd := exec.Command(phigateBinary(t), "token", "self")
	cmd.Env = append(os.Environ(), "PHIGATE_ADDR=https://"+s.addr, "PHIGATE_PIN=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "PHIGATE_TOKEN="+rot.Secret)
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "PHIGATE_PIN") {
		t.Fatalf("pin mismatch: %v %s", err, b)
	}

	// TLS below 1.2 is refused
	c10 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if _, err := c10.Get("https://" + s.addr + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}

	// a second process may not write the data directory while the server runs
	c := exec.Command(phigateBinary(t), "init", "--data", dir, "--new-admin-token", "--master-key", "file:"+filepath.Join(dir, "dev-master.key"))
	if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "in use") {
		t.Fatalf("init on the running server's directory: %v %s", err, out)
	}

	secrets := []string{s.adm, it.Secret, it2.Secret, it3.Secret, rot.Secret, rs.Secret}
	s.stop(t)

	// no secret in the data directory (database, WAL, keys) nor in the log
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		for _, sec := range secrets {
			if bytes.Contains(data, []byte(sec)) {
				t.Errorf("a token secret is stored in plaintext in %s", p)
			}
		}
		return nil
	})
	for _, sec := range secrets {
		if strings.Contains(s.stderr.String(), sec) {
			t.Error("a token secret reached the server log")
		}
	}
	// the bootstrap token is printed once, on stdout only
	if strings.Count(s.stdout.String(), s.adm) != 1 {
		t.Error("bootstrap token not printed exactly once")
	}

	// the audit log holds what happened, and verifies with its public key
	vout, err := exec.Command(phigateBinary(t), "audit", "verify", "--data", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "OK") {
		t.Fatalf("audit verify after the walk-through: %v\n%s", err, vout)
	}
	xout, err := exec.Command(phigateBinary(t), "audit", "export", "--data", dir, "--format", "jsonl").CombinedOutput()
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, xout)
	}
	for _, want := range []string{`"token.created"`, `"token.rotated"`, `"token.revoked"`, `"access.denied"`, `"token_expired"`, `"server.started"`, `"server.stopped"`, it.ID} {
		if !strings.Contains(string(xout), want) {
			t.Errorf("the audit log has no %s", want)
		}
	}
	for _, sec := range secrets {
		if strings.Contains(string(xout), sec) {
			t.Error("a token secret is in the audit log")
		}
	}

	// a restart on the same directory prints no new admin token, keeps the pin
	s2 := startDev(t, dir)
	if s2.adm != "" {
		t.Error("bootstrap token printed again on restart")
	}
	if s2.pin != s.pin {
		t.Error("pin changed across restarts")
	}
	if _, errs, code := s2.cli(t, rot.Secret, "", "token", "self"); code != 0 {
		t.Fatalf("token not usable after restart: %s", errs)
	}
}

func TestEndToEndInitAndConfig(t *testing.T) {
	bin := phigateBinary(t)
	dir := filepath.Join(t.TempDir(), "prod")
	// a real deployment's master key, here from the environment
	mk := make([]byte, 32)
	rand.Read(mk)
	env := append(os.Environ(), "PHIGATE_E2E_MK="+base64.StdEncoding.EncodeToString(mk), "PHIGATE_MASTER_KEY=env:PHIGATE_E2E_MK")
	run := func(args ...string) ([]byte, error) {
		c := exec.Command(bin, args...)
		c.Env = env
		return c.CombinedOutput()
	}
	if out, err := exec.Command(bin, "init", "--data", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "master key") {
		t.Fatalf("init without a master key must fail naming it: %v %s", err, out)
	}
	out, err := run("init", "--data", dir)
	if err != nil || !reToken.Match(out) {
		t.Fatalf("init: %v %s", err, out)
	}
	for _, f := range []string{"phigate.db", "vault.db", "audit.db"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: %v %v", f, err, st)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "pepper-v1.key")); err == nil {
		t.Fatal("the pepper is in a plaintext file")
	}
	out, err = run("init", "--data", dir)
	if err != nil || reToken.Match(out) {
		t.Fatalf("second init must not issue a token: %v %s", err, out)
	}
	out, err = run("init", "--data", dir, "--new-admin-token")
	if err != nil || !reToken.Match(out) {
		t.Fatalf("init --new-admin-token: %v %s", err, out)
	}
	// the wrong master key is refused and changes nothing
	wrong := append(os.Environ(), "PHIGATE_E2E_MK="+base64.StdEncoding.EncodeToString(make([]byte, 32)), "PHIGATE_MASTER_KEY=env:PHIGATE_E2E_MK")
	c := exec.Command(bin, "init", "--data", dir, "--new-admin-token")
	c.Env = wrong
	if out, err := c.CombinedOutput(); err == nil || reToken.Match(out) {
		t.Fatalf("init with the wrong master key: %v %s", err, out)
	}
	// a config with a bad value names the line
	cfg := filepath.Join(t.TempDir(), "phigate.yaml")
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\ntokens:\n  default_ttl: 48h\n"), 0o600)
	out, err = exec.Command(bin, "server", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line ") {
		t.Fatalf("bad config: %v %s", err, out)
	}
	_ = context.Background
}
