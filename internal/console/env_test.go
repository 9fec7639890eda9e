package console

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/bruteforce"
	"github.com/phigate/phigate/internal/reqctx"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
)

// env is the console mounted in the real admin API, over a real SQLite
// store, a real audit log and a real brute-force guard, served over TLS on
// loopback, on the fixtures' clock.
type env struct {
	t      testing.TB
	clock  *testclock.Clock
	st     *sqlite.Store
	auth   *authority.Authority
	log    *audit.Log
	con    *Console
	srv    *httptest.Server
	root   string // the root token's secret
	key    []byte // the hasher's key
	master []byte // the vault's master key (envOpts.seal)
	guard  *bruteforce.Guard
}

type envOpts struct {
	alerts bool // the monitor is enabled (alerts from the store)
	// dir, when set, is a data directory kept between envs (the
	// benchmarks' big fixture): the store, the log and its keys are
	// opened there, made when missing; key is the hasher's key and root
	// the root's secret of an existing one (Bootstrap runs when root is
	// empty, for rootTTL, default 3h).
	dir     string
	key     []byte
	root    string
	rootTTL time.Duration
	at      time.Time // the clock's start (zero: testclock's)
	// seal: the log seals PHI fields and blind-indexes patients, as the
	// server's does, with a vault in dir/vault under master (made when
	// the vault is).
	seal   bool
	master []byte
}

// recorder records the authority's changes in the audit log as the
// server's wiring does (action, actor, target).
type recorder struct{ log *audit.Log }

var actions = map[string]audit.Action{
	authority.ActionCreated: audit.ActionTokenCreated, authority.ActionUpdated: audit.ActionTokenUpdated,
	authority.ActionRotated: audit.ActionTokenRotated, authority.ActionRevoked: audit.ActionTokenRevoked,
	authority.ActionSuspended: audit.ActionTokenSuspended, authority.ActionReinstated: audit.ActionTokenReinstated,
	authority.ActionRetried: audit.ActionTokenRotationRetried,
}

func (r recorder) RecordChange(ctx context.Context, c *authority.Change) error {
	info := reqctx.From(ctx)
	out := audit.OutcomeSuccess
	if c.Outcome != authority.OutcomeSuccess {
		out = audit.OutcomeDenied
	}
	_, err := r.log.Append(ctx, &audit.Entry{Action: actions[c.Action], Outcome: out, Actor: audit.ActorOf(c.Actor),
		Target: c.TargetID, Reason: c.Reason, RequestID: info.RequestID})
	return err
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, clock: testclock.New()}
	if !o.at.IsZero() {
		e.clock = testclock.At(o.at)
	}
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	var err error
	if e.st, err = sqlite.Open(ctx, filepath.Join(dir, "store.db"), sqlite.Options{Now: e.clock.Now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	if o.root == "" {
		if _, _, err := audit.InitKeys(dir, "console-test", nil); err != nil {
			t.Fatal(err)
		}
	}
	aopts := audit.Options{Now: e.clock.Now}
	if o.seal {
		aopts.Sealer = e.sealer(dir, o.master)
	}
	if e.log, err = audit.Open(ctx, dir, aopts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	key := o.key
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	}
	e.key = key
	h, _ := token.NewHasherKey(1, key)
	e.auth = authority.New(e.st, h, authority.Config{Now: e.clock.Now, Recorder: recorder{e.log}, MaxTTL: max(o.rootTTL, 24*time.Hour)})
	if e.root = o.root; e.root == "" {
		ttl := o.rootTTL
		if ttl == 0 {
			ttl = 3 * time.Hour
		}
		if e.root, _, err = e.auth.Bootstrap(ctx, "root", ttl, 0); err != nil {
			t.Fatal(err)
		}
	}
	cfg := bruteforce.DefaultConfig()
	cfg.SlowAfter, cfg.BlockAfter = 0, 5
	if e.guard, err = bruteforce.New(cfg, e.clock.Now); err != nil {
		t.Fatal(err)
	}
	record := func(ctx context.Context, en *audit.Entry) error { _, err := e.log.Append(ctx, en); return err }
	copts := Options{Audit: e.log, Record: record, Throttle: e.guard, Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if o.alerts {
		copts.Alerts = e.st
	}
	if e.con, err = New(e.auth, copts); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(api.New(e.auth, api.Options{Audit: e.log, Record: record, Throttle: e.guard, Console: e.con}))
	t.Cleanup(e.srv.Close)
	return e
}

// sealer opens (or creates) the vault of dir under master and returns
// its audit sealer, as the server's wiring does.
func (e *env) sealer(dir string, master []byte) audit.Sealer {
	e.t.Helper()
	ctx := context.Background()
	if master == nil {
		master = make([]byte, 32)
		rand.Read(master)
	}
	e.master = master
	p, err := vault.NewKeyProvider(master, "console-test", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	vdir := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	var v *vault.Vault
	if _, serr := os.Stat(filepath.Join(vdir, "vault.db")); serr == nil {
		v, err = vault.Open(ctx, vdir, p, vault.Options{})
	} else {
		v, err = vault.Create(ctx, vdir, p, vault.Options{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { v.Close() })
	if err := v.EnsureDataKey(ctx, vault.PurposeAuditFields); err != nil {
		e.t.Fatal(err)
	}
	return audit.VaultSealer(v)
}

// token issues a token under the root with these scopes.
func (e *env) token(subject string, scopes ...string) (string, *token.Record) {
	e.t.Helper()
	d, err := e.auth.Verify(context.Background(), e.root, authority.Request{})
	if err != nil || !d.Allowed() {
		e.t.Fatalf("root: %v %v", d.Reason, err)
	}
	secret, rec, err := e.auth.Create(context.Background(), authority.ActorOf(d), authority.Spec{Subject: subject, Scopes: scopes, TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret, rec
}

// rootActor is the root token as an actor.
func (e *env) rootActor() authority.Actor {
	d, err := e.auth.Verify(context.Background(), e.root, authority.Request{})
	if err != nil || !d.Allowed() {
		e.t.Fatalf("root: %v %v", d.Reason, err)
	}
	return authority.ActorOf(d)
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, as a browser session.
type browser struct {
	e  *env
	hc *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	hc := e.srv.Client()
	c := *hc
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, hc: &c}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) answer {
	b.e.t.Helper()
	r, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	return answer{r.StatusCode, r.Header, string(body)}
}

func (b *browser) get(path string) answer {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) answer {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var reCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the forms of a page.
func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := reCSRF.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

// login logs in with secret and returns the session's CSRF token.
func (b *browser) login(secret string) string {
	b.e.t.Helper()
	lp := b.get("/console/login")
	r := b.post("/console/login", url.Values{"csrf": {csrfOf(b.e.t, lp.body)}, "token": {secret}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/" {
		b.e.t.Fatalf("login: %d %s", r.status, r.body)
	}
	home := b.get("/console/")
	if home.status != 200 {
		b.e.t.Fatalf("overview after login: %d %s", home.status, home.body)
	}
	return csrfOf(b.e.t, home.body)
}

// status is the stored status of token id.
func (e *env) status(id string) token.Status {
	e.t.Helper()
	rec, err := e.st.Token(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return rec.Status
}

// entries returns the audit entries of action.
func (e *env) entries(action audit.Action) []*audit.Entry {
	e.t.Helper()
	pg, err := e.log.Search(context.Background(), &audit.Query{Actions: []audit.Action{action}, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return pg.Entries
}

// tWriter sends log lines to the test's log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
