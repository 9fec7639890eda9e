package console

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/browsertest"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// chrome is the console open in a headless Chromium driven by chromedp.
type chrome struct {
	t    *testing.T
	e    *env
	b    *browsertest.Browser
	mu   sync.Mutex
	docs []*network.Response // every document the browser loaded
}

func newChrome(t *testing.T, e *env) *chrome {
	b := browsertest.NewBrowser(t, browsertest.Options{SPKIPins: []string{browsertest.SPKIPin(e.srv.Certificate())}, Timeout: 120 * time.Second})
	c := &chrome{t: t, e: e, b: b}
	docs := chromedp.Events(b.Ctx(), network.ResponseReceived)
	go func() {
		for ev, err := range docs {
			if err != nil {
				return
			}
			if ev.Type == network.ResourceTypeDocument && ev.Response != nil {
				c.mu.Lock()
				c.docs = append(c.docs, ev.Response)
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.b.Ctx(), steps...); err != nil {
		c.t.Fatal(err)
	}
}

func evalIn[T any](c *chrome, js string) T {
	c.t.Helper()
	v, err := chromedp.Run(c.b.Ctx(), chromedp.Evaluate[T](js))
	if err != nil {
		c.t.Fatalf("%s: %v", js, err)
	}
	return v
}

func (c *chrome) text(css string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.b.Ctx(), chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		c.t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

func (c *chrome) count(css string) int {
	c.t.Helper()
	return evalIn[int](c, `document.querySelectorAll(`+jsString(css)+`).length`)
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// open navigates to path and checks the page (see page).
func (c *chrome) open(name, path string) *network.Response {
	c.t.Helper()
	c.b.SetPage(name)
	resp, err := chromedp.Run(c.b.Ctx(), chromedp.NavigateResponse(c.e.srv.URL+path))
	if err != nil {
		c.t.Fatalf("%s: %v", path, err)
	}
	c.page(name, resp)
	return resp
}

// submit clicks sel (a form's submit button), waits for the answer
// and checks the page.
func (c *chrome) submit(name, sel string) *network.Response {
	c.t.Helper()
	c.b.SetPage(name)
	resp, err := chromedp.RunResponse(c.b.Ctx(), chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("submit %s: %v", sel, err)
	}
	c.page(name, resp)
	return resp
}

func header(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// page checks what every console page must be, as the browser got it:
// the CSP and frame headers, no inline script (no script element
// without src, no on* attribute), and saves a screenshot.
func (c *chrome) page(name string, resp *network.Response) {
	c.t.Helper()
	csp := header(resp, "Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		c.t.Errorf("%s: Content-Security-Policy %q", name, csp)
	}
	if xfo := header(resp, "X-Frame-Options"); xfo != "DENY" {
		c.t.Errorf("%s: X-Frame-Options %q", name, xfo)
	}
	inline := evalIn[int](c, `document.querySelectorAll('script:not([src])').length +
		[...document.querySelectorAll('*')].filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length`)
	if inline != 0 {
		c.t.Errorf("%s: %d inline scripts or handlers", name, inline)
	}
	c.b.Screenshot(name)
}

// The console in headless Chromium under its own CSP: every step the
// issue names works, the one script runs (the copy button), and no page
// reports a CSP violation, a console error or a page error.
func TestConsoleInChromium(t *testing.T) {
	browsertest.RequireChromium(t)
	e := newEnv(t, envOpts{alerts: true})
	_, victim := e.token("victim", "patient/Patient.rs")
	tokensOnly, _ := e.token("clerk", scope.AdminTokens)
	e.seedAccess(3, "pat-7")
	e.seedAccess(2, "pat-8")
	if err := e.st.CreateAlert(context.Background(), &store.Alert{ID: "alr_b1", Detector: "rate_spike", Severity: store.SeverityHigh,
		TokenID: victim.ID, Summary: "a spike", Action: "none", CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	c := newChrome(t, e)
	base := e.srv.URL
	for _, p := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(c.b.Ctx(), cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: p}, Setting: cdpbrowser.PermissionSettingGranted, Origin: base}); err != nil {
			t.Fatalf("grant %s: %v", p, err)
		}
	}

	// log in with a token
	c.open("login", "/console/login")
	c.do(chromedp.SetValue(chromedp.CSS("#token"), e.root))
	if r := c.submit("overview", "form.login button[type=submit]"); r.Status != 200 || !strings.HasSuffix(r.URL, "/console/") {
		t.Fatalf("login: %d %s", r.Status, r.URL)
	}
	if n := c.count("svg.chart"); n < 2 {
		t.Errorf("overview: %d charts", n)
	}

	// create a token and see its secret once, copied by the script
	c.open("tokens", "/console/tokens")
	if n := c.count("#tokens tbody tr"); n < 3 || !strings.Contains(evalIn[string](c, `document.body.innerHTML`), victim.ID) {
		t.Errorf("token list: %d rows, victim listed: %v", n, strings.Contains(evalIn[string](c, `document.body.innerHTML`), victim.ID))
	}
	c.do(chromedp.Click(chromedp.CSS("details.card summary")),
		chromedp.SetValue(chromedp.CSS("details form input[name=subject]"), "browser-app"),
		chromedp.SetValue(chromedp.CSS("details form input[name=scopes]"), "patient/Observation.rs"))
	c.b.Screenshot("tokens-issue-form")
	c.submit("token-issued", "details form button[type=submit]")
	secret, err := chromedp.Run(c.b.Ctx(), chromedp.Value(chromedp.CSS("#secret")))
	if err != nil || token.Check(secret) != nil {
		t.Fatalf("the new secret: %v", err)
	}
	newID := c.text("#token-id")
	if !evalIn[bool](c, `!document.querySelector('button.copy').hidden`) {
		t.Error("the copy button is hidden: the script did not run")
	}
	c.do(chromedp.Click(chromedp.CSS("button.copy")))
	time.Sleep(200 * time.Millisecond)
	if got := c.text("button.copy"); got != "Copied" {
		t.Errorf("copy button: %q", got)
	}
	clip, err := chromedp.Run(c.b.Ctx(), chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || clip != secret {
		t.Errorf("the clipboard does not hold the secret (%v)", err)
	}
	// not on reload, nor anywhere else
	for _, p := range []string{"/console/tokens/" + newID, "/console/tokens"} {
		c.open("token-again", p)
		if c.count("#secret") != 0 || strings.Contains(evalIn[string](c, `document.documentElement.outerHTML`), secret) {
			t.Errorf("%s shows the secret again", p)
		}
	}

	// revoke it and see the status change
	c.open("token", "/console/tokens/"+newID)
	if got := c.text("#status"); got != "active" {
		t.Errorf("status before: %q", got)
	}
	c.submit("token-revoked", "#revoke button[type=submit]")
	if got := c.text("#status"); !strings.HasPrefix(got, "revoked") || e.status(newID) != token.StatusRevoked {
		t.Errorf("revoke: %q", got)
	}

	// CSRF refused without the form token
	c.open("tokens-csrf", "/console/tokens/"+victim.ID)
	c.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#revoke input[name=csrf]').remove()`))
	if r := c.submit("csrf-refused", "#revoke button[type=submit]"); r.Status != http.StatusForbidden {
		t.Errorf("a POST without the form's CSRF token: %d", r.Status)
	}
	if e.status(victim.ID) != token.StatusActive {
		t.Error("the POST without a CSRF token revoked the token")
	}

	// search the audit log by patient: the entries and the badge
	c.open("audit", "/console/audit?patient=pat-7")
	if badge := c.text("#badge"); !strings.HasPrefix(badge, "✓ Verified") {
		t.Errorf("badge: %q", badge)
	}
	if n := c.count("#entries details"); n != 3 {
		t.Errorf("audit explorer: %d entries for pat-7", n)
	}
	c.do(chromedp.Click(chromedp.CSS("#entries details summary")))
	if n := c.count("#entries details[open]"); n != 1 {
		t.Errorf("expanded entries: %d", n)
	}
	c.b.Screenshot("audit-expanded")

	// the accounting of disclosures, printable
	c.open("disclosures", "/console/disclosures?patient=pat-7")
	if n := c.count("#disclosures tbody tr"); n != 3 {
		t.Errorf("disclosures: %d rows", n)
	}
	if _, err := chromedp.Call(c.b.Ctx(), emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatal(err)
	}
	if !evalIn[bool](c, `document.querySelector('header.top').getClientRects().length === 0`) {
		t.Error("the printed accounting shows the navigation")
	}
	c.b.Screenshot("disclosures-print")
	if _, err := chromedp.Call(c.b.Ctx(), emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: ""}); err != nil {
		t.Fatal(err)
	}

	c.open("alerts", "/console/alerts")
	if n := c.count("#alerts tbody tr"); n != 1 {
		t.Errorf("alerts: %d rows", n)
	}

	// a token without admin:audit sees no audit page
	c.submit("logged-out", "form.who button[type=submit]")
	c.do(chromedp.SetValue(chromedp.CSS("#token"), tokensOnly))
	if r := c.submit("overview-clerk", "form.login button[type=submit]"); r.Status != 200 {
		t.Fatalf("login as clerk: %d", r.Status)
	}
	for _, p := range []string{"/console/audit?patient=pat-7", "/console/disclosures?patient=pat-7"} {
		r := c.open("no-audit", p)
		body := evalIn[string](c, `document.body.innerText`)
		if r.Status != http.StatusForbidden || !strings.Contains(body, "admin:audit") || c.count("#entries, #disclosures") != 0 || strings.Contains(body, "pat-7") {
			t.Errorf("%s for a token without admin:audit: %d %q", p, r.Status, body)
		}
	}

	c.mu.Lock()
	docs := len(c.docs)
	for _, d := range c.docs {
		if !strings.Contains(header(d, "Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("document %s without the CSP", d.URL)
		}
	}
	c.mu.Unlock()
	if docs < 15 {
		t.Errorf("only %d documents seen", docs)
	}
	time.Sleep(200 * time.Millisecond) // the last events
	for _, m := range c.b.Errors() {
		if (m.Page == "csrf-refused" || m.Page == "no-audit") && strings.HasPrefix(m.Text, "[network] ") &&
			strings.Contains(m.Text, "status of 403") {
			continue // the browser logs the refusal it was meant to get as a failed load
		}
		t.Errorf("the browser reported %s on %s: %s", m.Type, m.Page, m.Text)
	}
	var revokedBySession bool
	for _, en := range e.entries(audit.ActionTokenRevoked) {
		revokedBySession = revokedBySession || (en.Target == newID && en.Actor.Subject == "root")
	}
	if !revokedBySession {
		t.Error("the revocation is not audited as the session's token")
	}
}
