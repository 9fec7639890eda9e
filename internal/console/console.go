package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/bruteforce"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/reqctx"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Cookie names.
const (
	sessionCookie = "phigate_console"
	loginCookie   = "phigate_console_login"
)

// The security headers of every answer.
const csp = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Throttle is the brute-force guard of the admin API (api.Throttle):
// Check before a pasted token is verified, Fail after one was malformed or
// unknown.
type Throttle interface {
	Check(src netip.Addr) bruteforce.Verdict
	Fail(src netip.Addr) bruteforce.Verdict
}

// Alerts is what the alerts page needs of the store (the admin API's
// api.Alerts).
type Alerts interface {
	Alert(ctx context.Context, id string) (*store.Alert, error)
	ListAlerts(ctx context.Context, f store.AlertFilter) ([]*store.Alert, string, error)
	AckAlert(ctx context.Context, id, by, note string, at time.Time) (*store.Alert, error)
}

// Options configure the console.
type Options struct {
	// Audit is the audit log the audit pages read (nil: they say so).
	Audit *audit.Log
	// Alerts serves the alerts page (nil: the monitor is not enabled, and
	// the page says so).
	Alerts Alerts
	// Record durably records refused logins and requests and alert
	// acknowledgements (the admin API's Options.Record). Nil: refusals
	// are not recorded and acknowledgements are refused.
	Record func(ctx context.Context, e *audit.Entry) error
	// Throttle, when set, slows and refuses sources that keep pasting
	// invalid tokens (the admin API's).
	Throttle Throttle
	// IdleTimeout ends a session unused for this long (default 15m).
	IdleTimeout time.Duration
	// MaxAge ends a session this long after login, whatever its use
	// (default 12h; the token's own expiry ends it earlier).
	MaxAge time.Duration
	// MaxSessions bounds the sessions held (default 1000; the oldest
	// makes room).
	MaxSessions int
	// MaxForm bounds a form's body (default 64 KiB).
	MaxForm int64
	// Now is the clock (default: the authority's).
	Now func() time.Time
	// Rand is the source of session ids, CSRF tokens and the sealing key
	// (default crypto/rand).
	Rand   io.Reader
	Logger *slog.Logger
}

// Console is the web console's handler.
type Console struct {
	auth     *authority.Authority
	opts     Options
	log      *slog.Logger
	sess     *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler
	overview *overviewCache
}

// New returns the console over auth.
func New(auth *authority.Authority, opts Options) (*Console, error) {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 15 * time.Minute
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 12 * time.Hour
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 1000
	}
	if opts.MaxForm <= 0 {
		opts.MaxForm = 64 << 10
	}
	if opts.Now == nil {
		opts.Now = auth.Config().Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ss, err := newSessions(opts.Rand, opts.IdleTimeout, opts.MaxAge, opts.MaxSessions)
	if err != nil {
		return nil, fmt.Errorf("console: sessions: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c := &Console{auth: auth, opts: opts, log: opts.Logger, sess: ss, pages: pages, mux: http.NewServeMux(),
		static: http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)), overview: newOverviewCache(10 * time.Second)}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET /console/static/", c.serveStatic)
	m.HandleFunc("GET /console/login", c.loginForm)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.authed("", c.logout))
	m.HandleFunc("GET /console/{$}", c.authed("", c.overviewPage))
	m.HandleFunc("GET /console/tokens", c.authed(scope.AdminTokens, c.tokensPage))
	m.HandleFunc("POST /console/tokens", c.authed(scope.AdminTokens, c.createToken))
	m.HandleFunc("GET /console/tokens/{id}", c.authed(scope.AdminTokens, c.tokenPage))
	m.HandleFunc("POST /console/tokens/{id}/{action}", c.authed(scope.AdminTokens, c.tokenAction))
	m.HandleFunc("GET /console/audit", c.authed(scope.AdminAudit, c.auditPage))
	m.HandleFunc("GET /console/audit/export", c.authed(scope.AdminAudit, c.auditExport))
	m.HandleFunc("GET /console/disclosures", c.authed(scope.AdminAudit, c.disclosuresPage))
	m.HandleFunc("GET /console/disclosures/proofs", c.authed(scope.AdminAudit, c.disclosureProofs))
	m.HandleFunc("GET /console/alerts", c.authed(scope.AdminAlerts, c.alertsPage))
	m.HandleFunc("POST /console/alerts/{id}/ack", c.authed(scope.AdminAlerts, c.ackAlert))
}

// ServeHTTP sets the security headers of every answer and dispatches.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.URL.Path == "/console" {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		c.fail(w, r, nil, http.StatusForbidden, "This form was sent from another site, so it is refused.")
		return
	}
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.fail(w, r, nil, http.StatusNotFound, "There is no such console page.")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// sameOrigin refuses a POST that a browser says came from elsewhere
// (defence in depth: the SameSite=Strict cookie and the CSRF token are
// the protection).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") { // files only, no listings
		c.fail(w, r, nil, http.StatusNotFound, "There is no such console page.")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	c.static.ServeHTTP(w, r)
}

// clientAddr is the peer's address (the admin listener trusts no
// forwarding headers).
func clientAddr(r *http.Request) netip.Addr {
	if info := reqctx.From(r.Context()); info.Source.IsValid() {
		return info.Source
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func requestID(r *http.Request) string { return reqctx.From(r.Context()).RequestID }

// viewer is the logged-in token as the pages see it.
type viewer struct {
	TokenID, Subject string
	Scopes           []string
	CSRF             string
	set              scope.Set
}

// Can reports whether the token holds scope name.
func (v *viewer) Can(name string) bool { return v != nil && v.set.Has(name) }

// call is one authenticated request: the actor the authority acts for,
// the session and its view.
type call struct {
	ac authority.Actor
	ss *session
	v  *viewer
}

type handler func(w http.ResponseWriter, r *http.Request, cl *call)

// authed finds the request's session, verifies its token through the
// authority on every request (a revoked, suspended, expired or idle token
// ends the session here), checks the CSRF token of a POST, and requires
// the scope need (when set): a token without it gets a page saying which
// scope is missing.
func (c *Console) authed(need string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		now := c.opts.Now()
		ck, err := r.Cookie(sessionCookie)
		var ss *session
		if err == nil {
			ss, err = c.sess.get(ck.Value, now)
		}
		if err != nil {
			c.toLogin(w, r, "")
			return
		}
		secret, err := c.sess.secret(ss)
		if err != nil {
			c.sess.end(ss)
			c.toLogin(w, r, "Your session ended. Log in again.")
			return
		}
		d, err := c.auth.Verify(r.Context(), secret, authority.Request{Addr: clientAddr(r), Purpose: r.Header.Get("X-Purpose-Of-Use"), Now: now})
		if err != nil {
			c.log.Error("console: token verification failed", "request_id", requestID(r), "err", err)
			c.fail(w, r, nil, http.StatusServiceUnavailable, "phigate cannot verify your token right now; try again shortly.")
			return
		}
		if !d.Allowed() {
			if d.Reason != policy.RateLimited {
				// the token no longer works: neither does its session
				c.sess.end(ss)
			}
			if err := c.recordDenied(r, d, ""); err != nil {
				c.fail(w, r, nil, http.StatusServiceUnavailable, "This request cannot be recorded in the audit log, so it is refused.")
				return
			}
			if d.Reason == policy.RateLimited {
				c.fail(w, r, nil, http.StatusTooManyRequests, "Your token's rate limit is reached; try again shortly.")
				return
			}
			c.clearSession(w)
			c.toLogin(w, r, "Your session ended: "+reasonText(d.Reason)+".")
			return
		}
		cl := &call{ac: authority.ActorOf(d), ss: ss, v: &viewer{TokenID: d.Token.ID, Subject: d.Token.Subject, Scopes: d.Scopes.Strings(), CSRF: ss.csrf, set: d.Scopes}}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, c.opts.MaxForm)
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, cl.v, http.StatusRequestEntityTooLarge, "The form is too large or malformed.")
				return
			}
			if !validCSRF(ss, r.PostForm.Get("csrf")) {
				_ = c.recordDenied(r, authority.Decision{Reason: policy.Scope, Token: d.Token}, "csrf")
				c.fail(w, r, cl.v, http.StatusForbidden, "This form's security token is missing or wrong (reload the page and try again).")
				return
			}
		}
		if need != "" && !cl.v.Can(need) {
			if r.Method == http.MethodPost {
				if err := c.recordDenied(r, authority.Decision{Reason: policy.Scope, Token: d.Token}, ""); err != nil {
					c.fail(w, r, cl.v, http.StatusServiceUnavailable, "This request cannot be recorded in the audit log, so it is refused.")
					return
				}
			}
			c.fail(w, r, cl.v, http.StatusForbidden, cannot(need))
			return
		}
		h(w, r, cl)
	}
}

// cannot says what a token without scope need cannot do.
func cannot(need string) string {
	what := map[string]string{
		scope.AdminTokens: "list or change tokens",
		scope.AdminAudit:  "read the audit log",
		scope.AdminAlerts: "see or acknowledge alerts",
		scope.AdminKeys:   "manage keys",
	}[need]
	if what == "" {
		what = "do this"
	}
	return "Your token cannot " + what + ": it needs scope " + need + "."
}

func reasonText(r policy.Reason) string {
	switch r {
	case policy.Revoked:
		return "your token was revoked"
	case policy.Suspended:
		return "your token is suspended"
	case policy.Expired:
		return "your token expired"
	case policy.Idle:
		return "your token was idle too long"
	case policy.Rotated:
		return "your token's secret was replaced by a rotation"
	case policy.Network:
		return "your token may not be used from this address"
	case policy.Hours:
		return "your token may not be used at this hour"
	case policy.Purpose:
		return "your token requires a purpose of use"
	case policy.UsesExhausted:
		return "your token has no uses left"
	}
	return "your token was refused (" + r.Code() + ")"
}

// recordDenied records a refused console request (as the admin API does
// its own): auth.failed without a known token, access.denied with one.
func (c *Console) recordDenied(r *http.Request, d authority.Decision, code string) error {
	if c.opts.Record == nil {
		return nil
	}
	if code == "" {
		code = d.Reason.Code()
	}
	e := &audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied, Reason: code,
		RequestID: requestID(r), Method: r.Method, Upstream: "console", Path: r.URL.Path,
		Source: audit.Source{UserAgent: cut(r.UserAgent(), 256)}}
	if a := clientAddr(r); a.IsValid() {
		e.Source.IP = a.String()
	}
	if d.Token == nil || d.Reason == policy.Malformed || d.Reason == policy.Unknown {
		e.Action = audit.ActionAuthFailed
	} else {
		e.Actor = audit.ActorOf(d.Token)
	}
	if err := c.opts.Record(r.Context(), e); err != nil {
		c.log.Error("console: cannot record a denial; refused (fail closed)", "request_id", e.RequestID, "err", err)
		return err
	}
	return nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// toLogin sends the browser to the login page (a page load) with a
// message, or answers 401 to anything else.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, msg string) {
	c.renderStatus(w, r, http.StatusUnauthorized, "login", page{Title: "Log in", Error: msg, Data: c.loginData(w)})
}

// loginData sets the login form's double-submit cookie and returns its
// CSRF value.
func (c *Console) loginData(w http.ResponseWriter) loginView {
	v, err := c.sess.random(24)
	if err != nil {
		return loginView{}
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: v, Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 900})
	return loginView{CSRF: v}
}

type loginView struct{ CSRF string }

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, r, "login", page{Title: "Log in", Data: c.loginData(w)})
}

// login exchanges a pasted token for a session: the token is verified
// through the authority (as the admin API verifies a bearer token), with
// the brute-force guard before it.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		c.renderStatus(w, r, http.StatusBadRequest, "login", page{Title: "Log in", Error: "The form is too large or malformed.", Data: c.loginData(w)})
		return
	}
	ck, err := r.Cookie(loginCookie)
	got := r.PostForm.Get("csrf")
	if err != nil || got == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(got)) != 1 {
		_ = c.recordDenied(r, authority.Decision{Reason: policy.Malformed}, "csrf")
		c.renderStatus(w, r, http.StatusForbidden, "login", page{Title: "Log in", Error: "This form's security token is missing or wrong; try again.", Data: c.loginData(w)})
		return
	}
	if c.opts.Throttle != nil {
		v := c.opts.Throttle.Check(clientAddr(r))
		if v.Blocked() {
			_ = c.recordDenied(r, authority.Decision{}, "too_many_failures")
			w.Header().Set("Retry-After", fmt.Sprint(int(v.RetryAfter.Seconds())+1))
			c.renderStatus(w, r, http.StatusTooManyRequests, "login", page{Title: "Log in", Error: "Too many invalid tokens from this address; try again later.", Data: c.loginData(w)})
			return
		}
		if v.Delay > 0 {
			t := time.NewTimer(v.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
	}
	secret := strings.TrimSpace(r.PostForm.Get("token"))
	d, err := c.auth.Verify(r.Context(), secret, authority.Request{Addr: clientAddr(r), Purpose: r.Header.Get("X-Purpose-Of-Use"), Now: c.opts.Now()})
	if err != nil {
		c.log.Error("console: token verification failed", "request_id", requestID(r), "err", err)
		c.renderStatus(w, r, http.StatusServiceUnavailable, "login", page{Title: "Log in", Error: "phigate cannot verify tokens right now; try again shortly.", Data: c.loginData(w)})
		return
	}
	if !d.Allowed() {
		if c.opts.Throttle != nil && (d.Reason == policy.Malformed || d.Reason == policy.Unknown) {
			c.opts.Throttle.Fail(clientAddr(r))
		}
		if err := c.recordDenied(r, d, ""); err != nil {
			c.renderStatus(w, r, http.StatusServiceUnavailable, "login", page{Title: "Log in", Error: "This login cannot be recorded in the audit log, so it is refused.", Data: c.loginData(w)})
			return
		}
		msg := "That is not a valid phigate token."
		if d.Token != nil {
			msg = "That token cannot log in: " + strings.TrimPrefix(reasonText(d.Reason), "your token ") + "."
		}
		c.renderStatus(w, r, http.StatusUnauthorized, "login", page{Title: "Log in", Error: msg, Data: c.loginData(w)})
		return
	}
	id, _, err := c.sess.create(d.Token.ID, secret, c.opts.Now())
	if err != nil {
		c.fail(w, r, nil, http.StatusInternalServerError, "The session could not be created.")
		return
	}
	c.log.Info("console login", "request_id", requestID(r), "token_id", d.Token.ID)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, cl *call) {
	c.sess.end(cl.ss)
	c.clearSession(w)
	c.log.Info("console logout", "request_id", requestID(r), "token_id", cl.v.TokenID)
	c.renderStatus(w, r, http.StatusOK, "login", page{Title: "Log in", Flash: "You are logged out.", Data: c.loginData(w)})
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	V      *viewer
	Flash  string
	Error  string
	Data   any
	Status int
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	c.renderStatus(w, r, http.StatusOK, name, p)
}

// renderStatus renders page name into a buffer first: a template error
// is a 500 page, never half a page.
func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := c.pages[name]
	if t == nil {
		t = c.pages["error"]
	}
	p.Status = status
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Error("console: rendering", "page", name, "request_id", requestID(r), "err", err)
		b.Reset()
		status = http.StatusInternalServerError
		_ = c.pages["error"].ExecuteTemplate(&b, "layout", page{Title: "Error", Error: "This page could not be shown.", Status: status})
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail renders an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *viewer, status int, msg string) {
	c.renderStatus(w, r, status, "error", page{Title: http.StatusText(status), V: v, Error: msg})
}

// failErr renders the page of an error of the authority or the store.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	status, msg := errorPage(err)
	if status >= 500 {
		c.log.Error("console: internal error", "request_id", requestID(r), "path", r.URL.Path, "err", err)
	}
	c.fail(w, r, v, status, msg)
}

// errorPage maps an error of the authority, the store or the audit log to
// a status and a message for people; internal errors say only that.
func errorPage(err error) (int, string) {
	var fe *policy.FieldError
	var at *authority.AttenuationError
	var qe *audit.QueryError
	switch {
	case errors.As(err, &qe):
		return http.StatusBadRequest, qe.Error()
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Error()
	case errors.As(err, &at):
		return http.StatusForbidden, "Your token cannot grant this: " + at.Error()
	case errors.Is(err, authority.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, audit.ErrNotFound):
		return http.StatusNotFound, "Not found."
	case errors.Is(err, authority.ErrForbidden):
		return http.StatusForbidden, "Your token may not manage this token (it manages only the tokens it issued)."
	case errors.Is(err, authority.ErrConflict), errors.Is(err, store.ErrConflict):
		return http.StatusConflict, "It changed meanwhile; reload and try again."
	case errors.Is(err, authority.ErrAlreadyRotated):
		return http.StatusConflict, "This secret was already replaced by a rotation."
	case errors.Is(err, authority.ErrLifetimeEnded):
		return http.StatusConflict, "The token's lifetime has ended; it cannot be rotated."
	case errors.Is(err, authority.ErrIssuerRevoked):
		return http.StatusConflict, "The token's issuer is revoked; it cannot be rotated."
	case errors.Is(err, authority.ErrInvalidState):
		return http.StatusConflict, "Not possible in the token's current status."
	case errors.Is(err, authority.ErrAuditUnavailable), errors.Is(err, audit.ErrUnavailable), errors.Is(err, audit.ErrPushback), errors.Is(err, audit.ErrClosed):
		return http.StatusServiceUnavailable, "The audit log cannot be written, so this is refused; try again later."
	}
	return http.StatusInternalServerError, "Internal error."
}

// recordRead appends the audit.read entry of a console page that shows
// audit entries, before the page is sent (as the admin API does).
func (c *Console) recordRead(r *http.Request, cl *call, target string) error {
	src := audit.Source{UserAgent: cut(r.UserAgent(), 256)}
	if a := clientAddr(r); a.IsValid() {
		src.IP = a.String()
	}
	_, err := c.opts.Audit.Append(r.Context(), &audit.Entry{Action: audit.ActionAuditRead, Outcome: audit.OutcomeSuccess,
		Actor: audit.ActorOf(cl.ac.Token), Source: src, RequestID: requestID(r), Target: target, Method: r.Method, Path: cut(r.URL.RequestURI(), 1024)})
	return err
}
