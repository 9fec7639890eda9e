package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
)

const wantCSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Every page, logged in or not, carries the security headers; pages with
// data are not cached.
func TestEveryPageCarriesTheSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOpts{alerts: true})
	b := e.browser()
	check := func(path string, a answer, data bool) {
		t.Helper()
		h := a.header
		if h.Get("Content-Security-Policy") != wantCSP || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, h)
		}
		if data && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, h.Get("Cache-Control"))
		}
		if strings.Contains(a.body, "<script>") || strings.Contains(a.body, " style=") || strings.Contains(a.body, "onclick") {
			t.Errorf("%s: inline script or style", path)
		}
	}
	check("/console/login", b.get("/console/login"), true)
	b.login(e.root)
	for _, p := range []string{"/console/", "/console/tokens", "/console/audit", "/console/disclosures?patient=p1", "/console/alerts", "/console/nope"} {
		a := b.get(p)
		if a.status != 200 && p != "/console/nope" {
			t.Errorf("%s: %d %s", p, a.status, a.body)
		}
		check(p, a, true)
	}
	check("/console/static/console.css", b.get("/console/static/console.css"), false)
}

// The session cookie is HttpOnly, Secure, SameSite=Strict, for
// /console/ only, and its value is a random id, not the token.
func TestLoginSetsAStrictCookieThatIsNotTheToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	lp := b.get("/console/login")
	r := b.post("/console/login", url.Values{"csrf": {csrfOf(t, lp.body)}, "token": {e.root}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	var set string
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, sessionCookie+"=") {
			set = c
		}
	}
	for _, want := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/console/"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	if strings.Contains(set, e.root) || strings.Contains(set, e.root[4:20]) || len(set) < len(sessionCookie)+40 {
		t.Fatalf("the cookie carries the token or is short: %q", set)
	}
	if strings.Contains(r.header.Get("Location"), "phi_") {
		t.Fatal("the token went into a URL")
	}
}

func TestLoginRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	cases := []struct {
		name   string
		form   func(csrf string) url.Values
		status int
	}{
		{"NoCSRF", func(string) url.Values { return url.Values{"token": {e.root}} }, http.StatusForbidden},
		{"WrongCSRF", func(c string) url.Values { return url.Values{"token": {e.root}, "csrf": {c + "x"}} }, http.StatusForbidden},
		{"NotAToken", func(c string) url.Values { return url.Values{"token": {"hello"}, "csrf": {c}} }, http.StatusUnauthorized},
		{"UnknownToken", func(c string) url.Values {
			return url.Values{"token": {strings.Repeat("x", 0) + fakeToken(t)}, "csrf": {c}}
		}, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			lp := b.get("/console/login")
			r := b.post("/console/login", tc.form(csrfOf(t, lp.body)))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if home := b.get("/console/"); home.status != http.StatusUnauthorized {
				t.Fatalf("logged in after a refused login: %d", home.status)
			}
		})
	}
	if n := len(e.entries(audit.ActionAuthFailed)); n < 3 {
		t.Fatalf("refused logins recorded: %d", n)
	}
}

// fakeToken is a well-formed token phigate never issued.
func fakeToken(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Pasting invalid tokens again and again is blocked by the brute-force
// guard the admin API uses: then even a valid token is refused from there.
func TestLoginGoesThroughTheBruteForceGuard(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	for i := 0; i < 5; i++ {
		lp := b.get("/console/login")
		b.post("/console/login", url.Values{"csrf": {csrfOf(t, lp.body)}, "token": {fakeToken(t)}})
	}
	lp := b.get("/console/login")
	r := b.post("/console/login", url.Values{"csrf": {csrfOf(t, lp.body)}, "token": {e.root}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 5 bad tokens: %d %s", r.status, r.body)
	}
}

// A revocation ends the session at the next click, whoever revoked it.
func TestSessionEndsWhenItsTokenIsRevoked(t *testing.T) {
	e := newEnv(t, envOpts{})
	secret, rec := e.token("officer", scope.AdminTokens)
	b := e.browser()
	b.login(secret)
	if a := b.get("/console/tokens"); a.status != 200 {
		t.Fatalf("tokens: %d", a.status)
	}
	if _, err := e.auth.Revoke(context.Background(), e.rootActor(), rec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}
	a := b.get("/console/tokens")
	if a.status != http.StatusUnauthorized || !strings.Contains(a.body, "revoked") {
		t.Fatalf("after revocation: %d %s", a.status, a.body)
	}
	if e.con.sess.len() != 0 {
		t.Fatal("the session outlived its token")
	}
}

func TestSessionEndsWhenItsTokenIsSuspended(t *testing.T) {
	e := newEnv(t, envOpts{})
	secret, rec := e.token("officer", scope.AdminTokens)
	b := e.browser()
	b.login(secret)
	if _, err := e.auth.SetStatus(context.Background(), e.rootActor(), rec.ID, token.StatusSuspended, ""); err != nil {
		t.Fatal(err)
	}
	if a := b.get("/console/"); a.status != http.StatusUnauthorized || !strings.Contains(a.body, "suspended") {
		t.Fatalf("after suspension: %d", a.status)
	}
}

func TestSessionEndsWhenIdleAndAtLogout(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	csrf := b.login(e.root)
	e.clock.Add(16 * time.Minute)
	if a := b.get("/console/"); a.status != http.StatusUnauthorized {
		t.Fatalf("after 16 idle minutes: %d", a.status)
	}
	csrf = b.login(e.root)
	if a := b.post("/console/logout", url.Values{"csrf": {csrf}}); a.status != 200 || !strings.Contains(a.body, "logged out") {
		t.Fatalf("logout: %d", a.status)
	}
	if a := b.get("/console/"); a.status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", a.status)
	}
}

// Every POST needs the session's CSRF token: without it, or with a wrong
// one, nothing changes.
func TestCSRFRefusedWithoutOrWithAWrongToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, victim := e.token("victim", "patient/Observation.rs")
	b := e.browser()
	csrf := b.login(e.root)
	for name, form := range map[string]url.Values{
		"Missing":     {},
		"Wrong":       {"csrf": {csrf[:len(csrf)-2] + "AA"}},
		"OtherLength": {"csrf": {csrf + "A"}},
	} {
		a := b.post("/console/tokens/"+victim.ID+"/revoke", form)
		if a.status != http.StatusForbidden {
			t.Errorf("%s: %d", name, a.status)
		}
		if e.status(victim.ID) != token.StatusActive {
			t.Fatalf("%s: revoked without the CSRF token", name)
		}
	}
	// another site's form is refused even with the token
	req, _ := http.NewRequest("POST", e.srv.URL+"/console/tokens/"+victim.ID+"/revoke", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if a := b.do(req); a.status != http.StatusForbidden || e.status(victim.ID) != token.StatusActive {
		t.Fatalf("cross-origin POST: %d", a.status)
	}
	if a := b.post("/console/tokens/"+victim.ID+"/revoke", url.Values{"csrf": {csrf}}); a.status != 200 || e.status(victim.ID) != token.StatusRevoked {
		t.Fatalf("with the CSRF token: %d %s", a.status, a.body)
	}
}

// A token that cannot manage tokens sees no form to revoke and is told
// which scope it lacks; posting anyway is refused and recorded.
func TestReadOnlyTokenSeesNoRevokeFormAndIsRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	ro, roRec := e.token("auditor", scope.AdminAudit)
	_, victim := e.token("victim", "patient/Observation.rs")
	b := e.browser()
	csrf := b.login(ro)
	for _, p := range []string{"/console/tokens", "/console/tokens/" + victim.ID} {
		a := b.get(p)
		if a.status != http.StatusForbidden || !strings.Contains(a.body, "needs scope admin:tokens") {
			t.Errorf("%s: %d %s", p, a.status, a.body)
		}
		if strings.Contains(a.body, "/revoke") {
			t.Errorf("%s shows a revoke form", p)
		}
	}
	home := b.get("/console/")
	if strings.Contains(home.body, "/revoke") || !strings.Contains(home.body, "needs scope admin:tokens") {
		t.Errorf("overview: %s", home.body)
	}
	if a := b.post("/console/tokens/"+victim.ID+"/revoke", url.Values{"csrf": {csrf}}); a.status != http.StatusForbidden {
		t.Fatalf("revoke by a read-only token: %d", a.status)
	}
	if e.status(victim.ID) != token.StatusActive {
		t.Fatal("a read-only token revoked a token")
	}
	var denied bool
	for _, en := range e.entries(audit.ActionAccessDenied) {
		if en.Actor.TokenID == roRec.ID && en.Upstream == "console" && en.Reason == "insufficient_scope" {
			denied = true
		}
	}
	if !denied {
		t.Fatal("the refused revoke is not in the audit log")
	}
	// and it can read the audit log
	if a := b.get("/console/audit"); a.status != 200 {
		t.Fatalf("audit page for admin:audit: %d", a.status)
	}
}

// A token without admin:audit sees no audit page, and its token pages say
// so instead of linking to one.
func TestTokenWithoutAuditScopeSeesNoAuditPage(t *testing.T) {
	e := newEnv(t, envOpts{})
	tm, rec := e.token("token-manager", scope.AdminTokens)
	b := e.browser()
	b.login(tm)
	for _, p := range []string{"/console/audit", "/console/disclosures?patient=p", "/console/audit/export?format=jsonl"} {
		if a := b.get(p); a.status != http.StatusForbidden || !strings.Contains(a.body, "needs scope admin:audit") {
			t.Errorf("%s: %d", p, a.status)
		}
	}
	a := b.get("/console/tokens/" + rec.ID)
	if a.status != 200 || strings.Contains(a.body, "/console/audit?") || !strings.Contains(a.body, "needs scope admin:audit") {
		t.Fatalf("token page: %d %s", a.status, a.body)
	}
}
