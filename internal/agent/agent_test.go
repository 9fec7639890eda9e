package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/tlsutil/tlstest"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

func newSecret(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeAuthority is the server side of self-rotation, on the fixture's
// clock.
type fakeAuthority struct {
	t       *testing.T
	clock   *testclock.Clock
	mu      sync.Mutex
	current string
	updated time.Time
	secrets []string
	// down answers 503 to everything; loseNext rotates but answers 503,
	// as if the answer was lost. answered replays an answer per key.
	down     bool
	loseNext int
	keys     []string
	answered map[string][]byte
}

func (f *fakeAuthority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if f.down {
		w.WriteHeader(503)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"down"}}`))
		return
	}
	key := r.Header.Get(client.HeaderIdempotencyKey)
	if r.URL.Path == "/v1/tokens/self/rotate" {
		f.keys = append(f.keys, key)
		if b, ok := f.answered[r.Header.Get("Authorization")+" "+key]; ok {
			if f.loseNext > 0 {
				f.loseNext--
				w.WriteHeader(503)
				return
			}
			w.Write(b)
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+f.current {
		w.WriteHeader(401)
		w.Write([]byte(`{"error":{"code":"invalid_token","message":"no"}}`))
		return
	}
	now := f.clock.Now()
	if r.URL.Path == "/v1/tokens/self/rotate" {
		f.current, f.updated = newSecret(f.t), now
		f.secrets = append(f.secrets, f.current)
	}
	v := client.Token{ID: "tok_1", Status: "active", CreatedAt: f.updated, UpdatedAt: f.updated, ExpiresAt: f.updated.Add(time.Hour)}
	b, _ := json.Marshal(client.IssuedToken{Token: v, Secret: f.current, PreviousNotAfter: &now})
	if r.URL.Path == "/v1/tokens/self/rotate" {
		if f.answered == nil {
			f.answered = map[string][]byte{}
		}
		f.answered[r.Header.Get("Authorization")+" "+key] = b
		if f.loseNext > 0 {
			f.loseNext--
			w.WriteHeader(503)
			w.Write([]byte(`{"error":{"code":"unavailable","message":"answer lost"}}`))
			return
		}
	}
	w.Write(b)
}

func (f *fakeAuthority) secret() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.current
}

type fixture struct {
	clock  *testclock.Clock
	auth   *fakeAuthority
	dir    string
	cfg    *Config
	getenv func(string) string
	logger *slog.Logger
}

func newFixture(t *testing.T, srv func(http.Handler) *httptest.Server, pins ...string) *fixture {
	clock := testclock.New()
	fa := &fakeAuthority{t: t, clock: clock, current: newSecret(t), updated: clock.Now()}
	s := srv(fa)
	dir := t.TempDir()
	tf := filepath.Join(dir, "token")
	if err := os.WriteFile(tf, []byte(fa.current+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &fixture{clock: clock, auth: fa, dir: dir, getenv: func(string) string { return "" }, cfg: &Config{Addr: s.URL, Pins: pins,
		Tokens: []Token{{TokenFile: tf, Sink: filepath.Join(dir, "sink")}}}}
}

// run runs the agent until until returns true (checked after every sleep)
// or Run returns.
func (f *fixture) run(t *testing.T, until func() bool) (*Agent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sleep := func(ctx context.Context, d time.Duration) error {
		if until() {
			cancel()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f.clock.Add(d)
		return nil
	}
	a, err := New(f.cfg, Options{Now: f.clock.Now, Sleep: sleep, Getenv: f.getenv, Logger: f.logger})
	if err != nil {
		t.Fatal(err)
	}
	return a, a.Run(ctx)
}

func fileHolds(path, secret string) bool {
	b, err := os.ReadFile(path)
	return err == nil && string(b) == secret+"\n"
}

func TestAgentRefusesTheRightNameWithAnotherKey(t *testing.T) {
	ca := tlstest.NewCA(t)
	var good *tlstest.Server
	f := newFixture(t, func(h http.Handler) *httptest.Server {
		good = ca.Serve(t, h)
		return ca.Serve(t, h).Server // the evil twin: same name, same CA, another key
	}, "")
	f.cfg.Pins = []string{good.Pin}
	f.cfg.CAFile = ca.File
	_, err := f.run(t, func() bool { return false })
	var pe *client.PinMismatchError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), pe.Presented) || pe.Presented == good.Pin {
		t.Fatalf("Run = %v, want a pin mismatch naming the presented pin", err)
	}
	if _, err := os.Stat(f.cfg.Tokens[0].Sink); !os.IsNotExist(err) {
		t.Error("the sink was written though the server failed its pin")
	}
}

func TestAgentFollowsTheServerToItsBackupPin(t *testing.T) {
	ca := tlstest.NewCA(t)
	var backup *tlstest.Server
	f := newFixture(t, func(h http.Handler) *httptest.Server { backup = ca.Serve(t, h); return backup.Server })
	f.cfg.Pins = []string{ca.Serve(t, http.NotFoundHandler()).Pin, backup.Pin}
	sink := f.cfg.Tokens[0].Sink
	start := f.auth.secret()
	if _, err := f.run(t, func() bool { return fileHolds(sink, start) }); err != nil {
		t.Fatal(err)
	}
}

func TestEveryRotationIsWrittenToTheTokenFileAndTheSinkThenTheHookRuns(t *testing.T) {
	ca := tlstest.NewCA(t)
	var srv *tlstest.Server
	f := newFixture(t, func(h http.Handler) *httptest.Server { srv = ca.Serve(t, h); return srv.Server })
	f.cfg.Pins = []string{srv.Pin}
	tk := &f.cfg.Tokens[0]
	out := filepath.Join(f.dir, "hook.out")
	t.Setenv("PHIGATE_TOKEN", "phi_must-not-reach-the-hook")
	tk.Exec = []string{"/bin/sh", "-c", `echo "$PHIGATE_SINK ${PHIGATE_TOKEN:-unset}" >> "$0"`, out}
	a, err := f.run(t, func() bool {
		f.auth.mu.Lock()
		defer f.auth.mu.Unlock()
		return len(f.auth.secrets) >= 3
	})
	if err != nil {
		t.Fatal(err)
	}
	cur := f.auth.secret()
	for _, p := range []string{tk.TokenFile, tk.Sink} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 || !fileHolds(p, cur) {
			t.Errorf("%s does not hold the newest secret with mode 0600 (%v)", p, err)
		}
	}
	b, _ := os.ReadFile(out)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) < 3 || lines[0] != tk.Sink+" unset" {
		t.Errorf("hook runs: %q", b)
	}
	h, _ := json.Marshal(a.Health())
	for _, s := range f.auth.secrets {
		if strings.Contains(string(h), s) {
			t.Fatal("the health report holds a secret")
		}
	}
	if rep := a.Health(); rep.Status != "ok" || rep.Tokens[0].Rotations < 3 {
		t.Errorf("health %s", h)
	}
	left, _ := filepath.Glob(filepath.Join(f.dir, ".*tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestWrittenSecretReplacesAWorldReadableFileWithMode0600(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sink")
	os.WriteFile(p, []byte("old\n"), 0o644)
	s := newSecret(t)
	if err := writeSecret(p, s); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 || !fileHolds(p, s) {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestTokenFileWithoutOneTokenIsRefusedWithoutEchoingIt(t *testing.T) {
	dir := t.TempDir()
	s := newSecret(t)
	for name, content := range map[string]string{
		"empty": "", "two tokens": s + "\n" + s, "bad checksum": s[:len(s)-1] + "x", "long": strings.Repeat("a", 2000),
	} {
		p := filepath.Join(dir, "t")
		os.WriteFile(p, []byte(content), 0o600)
		_, err := readSecret(p)
		if !errors.Is(err, ErrBadTokenFile) || (content != "" && strings.Contains(err.Error(), content[:10])) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHealthEndpointAnswersJSONAndOnlyGET(t *testing.T) {
	ca := tlstest.NewCA(t)
	var srv *tlstest.Server
	f := newFixture(t, func(h http.Handler) *httptest.Server { srv = ca.Serve(t, h); return srv.Server })
	f.cfg.Pins = []string{srv.Pin}
	a, err := New(f.cfg, Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		code         int
	}{{"GET", "/healthz", 503}, {"POST", "/healthz", 405}, {"GET", "/x", 404}} {
		w := httptest.NewRecorder()
		a.HealthHandler().ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		var v map[string]any
		if w.Code != c.code || json.Unmarshal(w.Body.Bytes(), &v) != nil {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
}

func pinnedFixture(t *testing.T) *fixture {
	ca := tlstest.NewCA(t)
	var srv *tlstest.Server
	f := newFixture(t, func(h http.Handler) *httptest.Server { srv = ca.Serve(t, h); return srv.Server })
	f.cfg.Pins = []string{srv.Pin}
	return f
}

func (f *fixture) rotations() int {
	f.auth.mu.Lock()
	defer f.auth.mu.Unlock()
	return len(f.auth.secrets)
}

// The agent sends one key on every retry of a rotation whose answer was
// lost, and takes the secret the replayed answer carries.
func TestAgentRetriesALostRotationWithTheSameKey(t *testing.T) {
	f := pinnedFixture(t)
	f.auth.loseNext = 2
	if _, err := f.run(t, func() bool { return f.rotations() >= 1 && fileHolds(f.cfg.Tokens[0].Sink, f.auth.secret()) }); err != nil {
		t.Fatal(err)
	}
	f.auth.mu.Lock()
	defer f.auth.mu.Unlock()
	if len(f.auth.keys) < 3 || f.auth.keys[0] != f.auth.keys[1] || f.auth.keys[1] != f.auth.keys[2] || len(f.auth.secrets) != 1 {
		t.Fatalf("keys %q for %d rotations: want one key for the attempt and its two retries", f.auth.keys, len(f.auth.secrets))
	}
}

// A restarted agent starts from the newest secret: the token file's (or,
// with token_env, the state file's), never the superseded one.
func TestRestartedAgentContinuesFromTheNewestSecret(t *testing.T) {
	for _, env := range []bool{false, true} {
		f := pinnedFixture(t)
		first := f.auth.secret()
		tk := &f.cfg.Tokens[0]
		if env {
			tk.TokenFile, tk.TokenEnv, tk.State = "", "APP_TOKEN", filepath.Join(f.dir, "state")
			f.getenv = func(k string) string { return map[string]string{"APP_TOKEN": first}[k] }
		}
		if _, err := f.run(t, func() bool { return f.rotations() >= 2 }); err != nil {
			t.Fatal(err)
		}
		newest := f.auth.secret()
		a, err := New(f.cfg, Options{Now: f.clock.Now, Getenv: f.getenv})
		if err != nil {
			t.Fatal(err)
		}
		if a.tokens[0].start != newest || newest == first {
			t.Errorf("env=%t: the restarted agent starts from an older secret", env)
		}
	}
}

// While the server is down the agent retries, and once the token is in the
// last sixth of its period it says so at error level; no log line holds a
// secret.
func TestOutageIsRetriedAndWarnedAboutLoudlyWithoutSecrets(t *testing.T) {
	f := pinnedFixture(t)
	var logs bytes.Buffer
	f.logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_, err := f.run(t, func() bool {
		if f.rotations() >= 1 {
			f.auth.mu.Lock()
			f.auth.down = true
			f.auth.mu.Unlock()
		}
		return false
	})
	if !errors.Is(err, client.ErrRotationEnded) {
		t.Fatalf("Run = %v, want the chain to end when the token expires", err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "TOKEN ABOUT TO STOP WORKING") {
		t.Errorf("no loud warning before the token expired:\n%s", out)
	}
	if strings.Count(out, "rotation attempt failed; retrying") < 3 {
		t.Errorf("the outage was not retried:\n%s", out)
	}
	for _, s := range append(f.auth.secrets, f.auth.current) {
		if strings.Contains(out, s) {
			t.Fatal("a secret is in the log")
		}
	}
}

// A hook that fails is reported at error level with the moment the
// previous secret stops working.
func TestFailingHookIsReportedWithTheGraceDeadline(t *testing.T) {
	f := pinnedFixture(t)
	var logs bytes.Buffer
	f.logger = slog.New(slog.NewTextHandler(&logs, nil))
	f.cfg.Tokens[0].Exec = []string{"/bin/false"}
	a, err := f.run(t, func() bool { return f.rotations() >= 1 })
	if err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "ROTATION HOOK FAILED") || !strings.Contains(out, "previous_not_after=") {
		t.Errorf("log:\n%s", out)
	}
	if h := a.Health(); h.Tokens[0].HookError == "" {
		t.Error("the health report does not show the hook failure")
	}
}
