package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/obs"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/reqctx"
	"github.com/phigate/phigate/internal/scope"
)

// Options configure the admin API.
type Options struct {
	// MaxBody bounds request bodies (default 1 MiB).
	MaxBody int64
	// Ready reports readiness for /readyz (nil: always ready).
	Ready func(ctx context.Context) error
	// Audit is the audit log the audit endpoints read (nil: not wired).
	Audit *audit.Log
	// AuditSearch, when set, answers GET /v1/audit instead of Audit's
	// Search: a cluster node's merged view of every node's log
	// (auditcluster.Cluster). The read is still recorded in Audit.
	AuditSearch AuditSearcher
	// Record, when set, durably records the admin API's denials (bad or
	// unknown tokens, insufficient scope, constraints) in the audit log.
	Record func(ctx context.Context, e *audit.Entry) error
	// Vault serves the secret and key endpoints (nil: they answer 503).
	Vault KeyVault
	// Issuer is the "iss" of introspection answers: the authorization
	// server's issuer identifier (RFC 8414), as published in its metadata.
	Issuer string
	// Audiences, when set, names the upstreams a token with these scopes
	// can reach (the "aud" of introspection answers); the server computes
	// it from the gateway's config. Nil: no "aud".
	Audiences func(scopes scope.Set) []string
	// Metadata, when set, is served at GET
	// /.well-known/oauth-authorization-server (RFC 8414) without a token:
	// the JSON document, built once by the server (internal/oauth).
	Metadata []byte
	Logger   *slog.Logger
	// Throttle, when set, slows and refuses sources that keep sending
	// invalid tokens (429 too_many_failures).
	Throttle Throttle
	// Storage, when set, refuses every request but /healthz and /readyz
	// with 503 storage_low while the disk is below its watermark; /readyz
	// then says why.
	Storage Storage
	// Alerts serves the alert endpoints (nil: they answer 503).
	Alerts Alerts
	// AlertSink raises the alerts of POST /v1/tokens/leaked (the
	// monitor's sinks: audit, store, webhook, log). Nil: a leaked token is
	// still revoked and audited, no alert is raised.
	AlertSink monitor.Sink
	// Console, when set, serves /console/ (internal/console) behind this
	// server's request ids, low-space refusal and panic guard.
	Console http.Handler
	// Metrics serves GET /metrics to a token with admin:metrics (nil: 404
	// not_found, as if the route did not exist).
	Metrics http.Handler
	// Observer, when set, is told every answer's route class, outcome,
	// reason and latency (see Observer).
	Observer Observer
	// OAuth serves the client registry and the token endpoint (nil: they
	// answer 503).
	OAuth OAuth
}

// Observer is told the outcome of every admin API request
// (internal/metrics counts them). It MUST NOT block.
type Observer interface {
	ObserveRequest(obs.Request)
}

// Server is the admin API handler.
type Server struct {
	auth *authority.Authority
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	ridPrefix string
	ridSeq    atomic.Uint64

	// the OpenAPI document as JSON (openapi.go), or why it is not
	openapi    []byte
	openapiErr error
}

type ctxKey int

const ridKey ctxKey = 0

// New returns the admin API over auth.
func New(auth *authority.Authority, opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Issuer == "" {
		opts.Issuer = "phigate"
	}
	var b [6]byte
	rand.Read(b[:])
	s := &Server{auth: auth, opts: opts, log: opts.Logger, mux: http.NewServeMux(), ridPrefix: "req_" + hex.EncodeToString(b[:])}
	s.openapi, s.openapiErr = OpenAPI()
	s.routes()
	return s
}

// routes registers every route. Requests that match none are answered by
// ServeHTTP with a JSON 404 or 405.
func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)

	m.HandleFunc("POST /v1/tokens", s.authed(scope.AdminTokens, s.createToken))
	m.HandleFunc("GET /v1/tokens", s.authed(scope.AdminTokens, s.listTokens))
	m.HandleFunc("POST /v1/tokens/leaked", s.authed(scope.AdminTokens, s.reportLeaked))
	m.HandleFunc("GET /v1/tokens/self", s.authed("", s.self))
	m.HandleFunc("POST /v1/tokens/self/rotate", s.authed("", s.rotateSelf))
	m.HandleFunc("GET /v1/tokens/{id}", s.authed(scope.AdminTokens, s.getToken))
	m.HandleFunc("PATCH /v1/tokens/{id}", s.authed(scope.AdminTokens, s.updateToken))
	m.HandleFunc("DELETE /v1/tokens/{id}", s.authed(scope.AdminTokens, s.revokeToken))
	m.HandleFunc("POST /v1/tokens/{id}/rotate", s.authed(scope.AdminTokens, s.rotateToken))
	m.HandleFunc("POST /v1/tokens/{id}/suspend", s.authed(scope.AdminTokens, s.suspendToken))
	m.HandleFunc("POST /v1/tokens/{id}/reinstate", s.authed(scope.AdminTokens, s.reinstateToken))
	m.HandleFunc("POST /v1/introspect", s.clientAuthed(scope.Introspect, s.introspect))
	m.HandleFunc("POST /v1/revoke", s.clientAuthed("", s.revoke))
	m.HandleFunc("GET /.well-known/oauth-authorization-server", s.serverMetadata)
	s.auditRoutes()
	s.secretRoutes()
	s.alertRoutes()
	if s.opts.Console != nil {
		m.Handle("/console/", s.opts.Console)
		m.Handle("/console", s.opts.Console)
	}
	m.HandleFunc("GET /metrics", s.authed(scope.AdminMetrics, s.metrics))
	m.HandleFunc("GET /v1/openapi.json", s.openAPI)
	s.clientRoutes()
}

// metrics serves the Prometheus registry (Options.Metrics).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ authority.Actor) {
	if s.opts.Metrics == nil {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, code: "not_found", msg: "metrics are not enabled on this server"})
		return
	}
	s.opts.Metrics.ServeHTTP(w, r)
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: r.Method + " is not allowed on " + r.URL.Path})
}

// ServeHTTP assigns a request id and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := r.Header.Get("X-Request-Id")
	if !validRequestID(rid) {
		rid = s.ridPrefix + strconv.FormatUint(s.ridSeq.Add(1), 36)
	}
	w.Header().Set("X-Request-Id", rid)
	ctx := context.WithValue(r.Context(), ridKey, rid)
	ctx = reqctx.With(ctx, reqctx.Info{RequestID: rid, Source: clientAddr(r), UserAgent: truncate(r.UserAgent(), 256), Purpose: r.Header.Get("X-Purpose-Of-Use")})
	r = r.WithContext(ctx)
	if s.opts.Observer != nil {
		ow := &observed{ResponseWriter: w, start: s.auth.Config().Now()}
		w = ow
		defer s.observe(ow, r)
	}
	defer func() {
		// defence in depth: a bug must not take the connection down
		// without an answer, nor print a request's data in a stack trace
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "request_id", rid, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			s.writeError(w, r, errors.New("panic"))
		}
	}()
	if e := s.lowSpace(r); e != nil {
		s.writeError(w, r, e) // before anything is recorded or changed
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// no route: ask the mux whether the path exists with another
		// method (405 with Allow) or not at all (404), answer in JSON
		probe := &statusProbe{h: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.h.Get("Allow"))
			s.methodNotAllowed(w, r)
			return
		}
		s.writeError(w, r, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such endpoint"})
		return
	}
	s.mux.ServeHTTP(w, r) // (Handler does not set path values; ServeHTTP does)
}

// statusProbe records what the mux's own fallback handler would answer.
type statusProbe struct {
	h      http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.h }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func requestID(r *http.Request) string {
	v, _ := r.Context().Value(ridKey).(string)
	return v
}

// bearer extracts the token from "Authorization: Bearer <token>". ok is
// false when the header is absent; a present but malformed header yields
// an empty token (which then fails as malformed).
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if v == "" {
		return "", false
	}
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", true
	}
	return strings.TrimSpace(v[7:]), true
}

// clientAddr is the address of the peer (the admin API trusts no
// forwarding headers).
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

type authedHandler func(w http.ResponseWriter, r *http.Request, ac authority.Actor)

// authed authenticates the bearer token and, when need is set, requires
// that plain scope. It fails closed on any technical error.
func (s *Server) authed(need string, h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret, present := bearer(r)
		if !present {
			s.refuse(w, r, authority.Decision{Reason: policy.Malformed}, "missing_token",
				&apiError{status: http.StatusUnauthorized, code: "missing_token", msg: "an Authorization: Bearer phigate token is required"})
			return
		}
		if e := s.throttle(r); e != nil {
			s.refuse(w, r, authority.Decision{}, e.code, e)
			return
		}
		d, err := s.auth.Verify(r.Context(), secret, authority.Request{
			Addr: clientAddr(r), Purpose: r.Header.Get("X-Purpose-Of-Use"), Scope: need,
		})
		if err != nil {
			s.log.Error("token verification failed", "request_id", requestID(r), "err", err)
			s.writeError(w, r, fromReason(authority.Decision{Reason: policy.Unavailable}, ""))
			return
		}
		if !d.Allowed() {
			s.failed(r, d.Reason)
			if err := s.recordDenied(r, d, ""); err != nil {
				s.writeError(w, r, errAuditDenial)
				return
			}
			if d.Token != nil {
				s.log.Info("request denied", "request_id", requestID(r), "token_id", d.Token.ID, "reason", d.Reason.Code(), "path", r.URL.Path)
			} else {
				// anyone can cause this one: not a line each (see the gateway's refuse)
				s.log.Debug("request denied", "request_id", requestID(r), "reason", d.Reason.Code(), "path", r.URL.Path, "remote", r.RemoteAddr)
			}
			s.writeError(w, r, fromReason(d, need))
			return
		}
		h(w, r, authority.ActorOf(d))
	}
}

// refuse records the denial d (reason code: its code, unless set) and
// answers e, or 503 audit_unavailable when it cannot be recorded.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, d authority.Decision, code string, e *apiError) {
	if err := s.recordDenied(r, d, code); err != nil {
		e = errAuditDenial
	}
	s.writeError(w, r, e)
}

// recordDenied writes an auth.failed (no valid token) or access.denied
// entry for a refused admin request (code, when set, replaces the
// decision's reason code). An error means the denial is not recorded:
// the caller answers 503 rather than the denial (fail closed).
func (s *Server) recordDenied(r *http.Request, d authority.Decision, code string) error {
	if s.opts.Record == nil {
		return nil
	}
	if code == "" {
		code = d.Reason.Code()
	}
	e := &audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied, Reason: code,
		RequestID: requestID(r), Method: r.Method, Upstream: "admin", Path: r.URL.Path,
		Source: audit.Source{UserAgent: truncate(r.UserAgent(), 256)}}
	if a := clientAddr(r); a.IsValid() {
		e.Source.IP = a.String()
	}
	if d.Token == nil || d.Reason == policy.Malformed || d.Reason == policy.Unknown {
		e.Action = audit.ActionAuthFailed
	} else {
		e.Actor = audit.ActorOf(d.Token)
	}
	if err := s.opts.Record(r.Context(), e); err != nil {
		s.log.Error("cannot record a denial in the audit log; answering 503 (fail closed)", "request_id", e.RequestID, "err", err)
		return err
	}
	return nil
}

// serverMetadata serves the RFC 8414 document (public: discovery comes
// before any credential); 404 when the server configured none.
func (s *Server) serverMetadata(w http.ResponseWriter, r *http.Request) {
	if len(s.opts.Metadata) == 0 {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such endpoint"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(s.opts.Metadata)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(s.opts.Metadata)
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Storage != nil {
		if err := s.opts.Storage.Low(); err != nil {
			s.log.Warn("not ready", "err", err)
			// the reason names a directory and sizes, nothing secret
			s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "storage_low", msg: "not ready: " + err.Error(), retry: 5 * time.Second})
			return
		}
	}
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.opts.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			msg := "not ready"
			var p interface{ Public() string } // a reason fit for clients (a cluster node's staleness)
			if errors.As(err, &p) {
				msg += ": " + p.Public()
			}
			s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: "not_ready", msg: msg, retry: time.Second})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
