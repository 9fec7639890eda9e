package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/tlsutil"
)

// Options are what a Gateway needs besides its configuration.
type Options struct {
	// Auth authenticates tokens and admits requests. Required.
	Auth Authority
	// Recorder records every decision durably. Required.
	Recorder Recorder
	// Signer signs the identity asserted to upstreams. Required.
	Signer *Signer
	// Secrets resolves credential references (default EnvFileSecrets{}).
	Secrets SecretSource
	// TLS is the server TLS configuration (certificate); required by
	// Serve. Its NextProtos are replaced by http/1.1.
	TLS *tls.Config
	// Limits are the HTTP limits of Serve's server (zero: the defaults of
	// the config package).
	Limits config.Limits
	// Logger receives operational messages, never a secret (default:
	// discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Throttle, when set, slows and refuses sources that keep sending
	// invalid tokens.
	Throttle Throttle
	// Storage, when set, refuses every request (503 storage_low) while
	// the disk is below its low-space watermark.
	Storage Storage
	// Continuations seals the continuation handles of search pages
	// (default: a key of the gateway's own, made at New).
	Continuations Continuations
	// Monitor, when set, is the monitor stage (see Monitor).
	Monitor Monitor
	// Observer, when set, is told every request's outcome and latencies
	// (see Observer).
	Observer Observer
	// SMARTConfiguration, when set, is the SMART App Launch configuration
	// (JSON, see internal/oauth) served without a token at
	// {prefix}.well-known/smart-configuration of every fhir upstream.
	// Nil: that path answers 404.
	SMARTConfiguration []byte
}

// recordTimeout bounds the wait for a durable record.
const recordTimeout = 5 * time.Second

// Gateway is the enforcing reverse proxy and forward-auth endpoint. It is
// an http.Handler; Serve runs it on a TLS listener with the framing guard.
type Gateway struct {
	auth    Authority
	rec     Recorder
	signer  *Signer
	secrets SecretSource
	opts    Options
	log     *slog.Logger
	now     func() time.Time

	table    atomic.Pointer[table]
	reloadMu sync.Mutex
	// metaLimit limits the public capability statements per source; it is
	// replaced on Reload only when its limits change
	metaLimit atomic.Pointer[sourceLimiter]

	srv *http.Server
	// counters rather than WaitGroups: after a cut, a connection that had
	// read a head may still start a handler (and a handler a record) while
	// Shutdown waits, which a WaitGroup does not allow
	pending  atomic.Int64 // completion records in flight
	inflight atomic.Int64 // ServeHTTP calls (Shutdown waits for those it cut)

	ridPrefix string
	ridSeq    atomic.Uint64

	bufs bufferPool // copy buffers of the proxies
	// answers recycles the buffers of FHIR answers read whole (*[]byte)
	answers sync.Pool

	conts Continuations

	policies policyCache // the monitor policies of tokens (monitor.go)
	obsPool  obsPool     // Observations handed to the monitor (monitor.go)
}

// copyBufferSize is the size of the buffers that carry bodies between the
// client and an upstream (httputil.ReverseProxy's own default).
const copyBufferSize = 32 << 10

// bufferPool recycles the copy buffers of the proxies: without one,
// httputil.ReverseProxy allocates (and clears) 32 KiB per request, most of
// the garbage a request makes.
type bufferPool struct{ p sync.Pool }

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return a[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put implements httputil.BufferPool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
	}
}

// New compiles cfg and returns a Gateway. It fails when cfg names a
// credential it cannot resolve or a CA file it cannot read.
func New(ctx context.Context, cfg *config.Gateway, opts Options) (*Gateway, error) {
	if opts.Auth == nil || opts.Recorder == nil || opts.Signer == nil {
		return nil, errors.New("gateway: Auth, Recorder and Signer are required")
	}
	if opts.Secrets == nil {
		opts.Secrets = EnvFileSecrets{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Limits == (config.Limits{}) {
		opts.Limits = config.Default().Limits
	}
	if opts.Continuations == nil {
		ls, err := newLocalSealer()
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		opts.Continuations = ls
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{
		auth: opts.Auth, rec: opts.Recorder, signer: opts.Signer, secrets: opts.Secrets, opts: opts,
		log: opts.Logger, now: opts.Now, conts: opts.Continuations, ridPrefix: gatewayRIDPrefix + hex.EncodeToString(b[:]) + "-",
	}
	if opts.Monitor != nil {
		g.rec = observe(g, opts.Recorder)
	}
	if err := g.Reload(ctx, cfg); err != nil {
		return nil, err
	}
	l := opts.Limits
	g.srv = &http.Server{
		Handler:                      g,
		ReadHeaderTimeout:            l.ReadHeaderTimeout.Duration(),
		ReadTimeout:                  l.ReadTimeout.Duration(),
		WriteTimeout:                 l.WriteTimeout.Duration(),
		IdleTimeout:                  l.IdleTimeout.Duration(),
		MaxHeaderBytes:               l.MaxHeaderBytes,
		ConnContext:                  connContext,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	return g, nil
}

// Reload compiles cfg and swaps it in atomically: requests in flight finish
// with the configuration they started with, new ones get cfg. An invalid
// cfg (a credential that does not resolve, say) changes nothing.
func (g *Gateway) Reload(ctx context.Context, cfg *config.Gateway) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	t, err := compile(ctx, cfg, g.secrets, g.signer)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	for _, u := range t.upstreams {
		if u.target != nil {
			u.proxy = &httputil.ReverseProxy{
				Rewrite:        g.rewrite,
				Transport:      u.transport,
				ErrorHandler:   g.upstreamError,
				ModifyResponse: g.modifyResponse,
				BufferPool:     &g.bufs,
				ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
			}
		}
	}
	if !g.metaLimit.Load().sameLimits(cfg.Metadata) {
		g.metaLimit.Store(newSourceLimiter(cfg.Metadata))
	}
	if old := g.table.Swap(t); old != nil {
		old.close()
	}
	return nil
}

// Serve accepts TLS connections on ln and serves the gateway until
// Shutdown. It speaks HTTP/1.1 only (see the framing guard in the package
// doc).
func (g *Gateway) Serve(ln net.Listener) error {
	if g.opts.TLS == nil {
		return errors.New("gateway: Serve needs Options.TLS")
	}
	return g.srv.Serve(newTLSListener(ln, g.opts.TLS, g.opts.Limits.MaxHeaderBytes))
}

// Shutdown stops accepting (a later Serve returns http.ErrServerClosed),
// waits until ctx ends for requests in flight, then cuts those left (each
// records its completion as aborted), waits for the completion records,
// and drops idle upstream connections.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if err != nil {
		// requests still in flight when ctx ended: cut them (closing their
		// connections ends their exchanges, each recording its completion
		// as aborted) and give their handlers a moment to get there, so
		// that no grant is left without its completion in the log
		g.srv.Close()
		if !waitZero(context.Background(), &g.inflight, cutGrace) {
			err = errors.Join(err, errors.New("gateway: requests cut at shutdown did not end in time"))
		}
	}
	// the completion records: until ctx ends, or for cutGrace more when
	// requests had to be cut (their completions are the newest)
	wait, limit := ctx, time.Duration(0)
	if ctx.Err() != nil {
		wait, limit = context.Background(), cutGrace
	}
	if !waitZero(wait, &g.pending, limit) {
		err = errors.Join(err, errors.New("gateway: completion records still pending"))
	}
	if t := g.table.Load(); t != nil {
		t.close()
	}
	return err
}

// waitZero polls n until it is zero (true), ctx ends or, when limit > 0,
// limit has passed (false).
func waitZero(ctx context.Context, n *atomic.Int64, limit time.Duration) bool {
	var deadline <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n.Load() > 0 {
		select {
		case <-ctx.Done():
			return n.Load() == 0
		case <-deadline:
			return n.Load() == 0
		case <-tick.C:
		}
	}
	return true
}

// cutGrace is how long Shutdown waits for the handlers of requests it cut.
const cutGrace = 5 * time.Second

const authzPath = "/v1/authz"

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.inflight.Add(1)
	defer g.inflight.Add(-1)
	start := g.now()
	rid := g.requestID(r)
	x := &exchange{start: start}
	x.ridHeader[0] = rid
	w.Header()["X-Request-Id"] = x.ridHeader[:1:1]
	if g.opts.Observer != nil {
		defer g.observe(x) // after the recovery below: it sees the answer given
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			g.log.Error("panic in the gateway", "request_id", rid, "panic", fmt.Sprint(v))
			x.fail = deny(http.StatusInternalServerError, "internal", "internal error; the request id identifies it in the server log")
			g.writeRefusal(w, r, rid, x.fail)
		}
	}()
	ev := &x.ev
	*ev = Event{Kind: KindDeny, Time: start, RequestID: rid, Via: "proxy", Method: r.Method,
		Path: redact(r.URL.EscapedPath()), Query: redact(r.URL.RawQuery)}
	// the refusals below come before the paths that work out the client
	// address themselves: a probe is recorded with where it came from
	framing := checkFraming(r)
	if dn := g.lowSpace(); dn != nil && !answersItself(r.URL.EscapedPath()) {
		// before anything is recorded (the framing followed all the same)
		if framing != nil {
			dn = &denial{status: dn.status, code: dn.code, msg: dn.msg, retry: dn.retry, close: true}
		}
		ev.Reason, ev.Status = dn.code, dn.status // not recorded: for the observer
		g.writeRefusal(w, r, rid, dn)
		return
	}
	if dn := framing; dn != nil {
		g.noteSource(r, ev)
		g.refuse(w, r, ev, dn)
		return
	}
	path := r.URL.EscapedPath()
	authz := path == authzPath || strings.HasPrefix(path, authzPath+"/")
	if authz {
		ev.Via = "authz"
	}
	if dn := checkMethod(r.Method); dn != nil {
		g.noteSource(r, ev)
		g.refuse(w, r, ev, dn)
		return
	}
	// before anything is authenticated: a repeated single-valued header,
	// or a body on a GET, costs the client a 400 and the gateway nothing
	if dn := checkHeaders(r); dn != nil {
		g.noteSource(r, ev)
		g.refuse(w, r, ev, dn)
		return
	}
	switch {
	case path == "/healthz":
		x.unobserved = true
		g.serveStatic(w, r, rid, []byte(`{"status":"ok"}`+"\n"))
	case path == IdentityKeyPath:
		x.unobserved = true
		g.serveStatic(w, r, rid, g.signer.JWKS())
	case authz:
		g.serveAuthz(w, r, x)
	case strings.HasPrefix(path, "/.well-known/"):
		x.fail = deny(http.StatusNotFound, CodeNotFound, "no such endpoint")
		writeError(w, rid, x.fail)
	default:
		g.serveProxy(w, r, x)
	}
}

func (g *Gateway) serveStatic(w http.ResponseWriter, r *http.Request, rid string, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, rid, deny(http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed here"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// checkFraming refuses a request whose head frameConn found ambiguous, or
// whose head it could not follow.
func checkFraming(r *http.Request) *denial {
	fc, ok := r.Context().Value(connKey{}).(*frameConn)
	if !ok {
		return nil // not served by Serve (an embedding handler chain)
	}
	h, ok := fc.next()
	switch {
	case !ok || h.method != r.Method || h.target != r.RequestURI:
		return &denial{status: http.StatusBadRequest, code: CodeAmbiguousFraming, msg: "the request's framing could not be verified", close: true}
	case h.ambiguous:
		return &denial{status: http.StatusBadRequest, code: CodeAmbiguousFraming, msg: "a request must not carry both Content-Length and Transfer-Encoding", close: true}
	case h.repeatedLength:
		// net/http merged equal lines into one; an upstream behind
		// another parser might not
		return &denial{status: http.StatusBadRequest, code: CodeInvalidRequest, msg: "send Content-Length once: the request carries it more than once", close: true}
	}
	return nil
}

// noteSource sets ev's source address as the proxy path works it out: the
// peer, or the client a trusted proxy reports.
func (g *Gateway) noteSource(r *http.Request, ev *Event) {
	if a := clientAddr(peerAddr(r), r.Header.Values("X-Forwarded-For"), g.table.Load().trusted); a.IsValid() {
		ev.SourceIP = a.String()
	}
}

// checkMethod refuses TRACE, which an upstream answers by echoing the
// request, the injected credential included, and CONNECT, whatever a
// route allows.
func checkMethod(m string) *denial {
	if m == http.MethodTrace || m == http.MethodConnect {
		return deny(http.StatusMethodNotAllowed, CodeMethodNotAllowed, m+" is never forwarded")
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// checkForwardable refuses requests that would reach the upstream as
// another request than the one decided:
//
//   - an upgrade (Upgrade: websocket, h2c): after a 101 the connection
//     would be a tunnel to the upstream, nothing on it decided, recorded
//     or counted;
//   - a Connection header naming anything but close, keep-alive or TE:
//     the proxy removes the headers it names, so "Connection:
//     Content-Type" would strip the form type of a POST _search the
//     gateway decided on its body's parameters;
//   - a method override (X-HTTP-Method-Override, X-Method-Override,
//     X-HTTP-Method, or such a query parameter, or _method): servers and
//     frameworks that honour one would run a DELETE decided as a GET.
func checkForwardable(r *http.Request) *denial {
	if r.Header.Get("Upgrade") != "" {
		return badRequest("protocol upgrades (WebSocket, h2c) are not forwarded")
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = strings.TrimSpace(tok); {
			case tok == "", strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"), strings.EqualFold(tok, "te"):
			default:
				return badRequest("the Connection header may name only close, keep-alive or TE (the headers it names would not reach the upstream)")
			}
		}
	}
	return checkMethodOverride(r.Header, r.URL.RawQuery)
}

// checkMethodOverride refuses a method override in the headers or the query
// of a request (forward auth: of the original request, whose headers the
// proxy passes on to the app).
func checkMethodOverride(h http.Header, rawQuery string) *denial {
	for _, k := range methodOverrides {
		if _, ok := h[k]; ok {
			return badRequest(k + " is not forwarded: send the method itself")
		}
	}
	if rawQuery != "" {
		// some servers also split a query on ";"
		for pair := range strings.FieldsFuncSeq(rawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
			k, _, _ := strings.Cut(pair, "=")
			if k, err := url.QueryUnescape(k); err == nil && isMethodOverrideParam(k) {
				return badRequest("a method override parameter is not forwarded: send the method itself")
			}
		}
	}
	return nil
}

// methodOverrides are the method-override headers (canonical names).
var methodOverrides = []string{"X-Http-Method-Override", "X-Method-Override", "X-Http-Method"}

func isMethodOverrideParam(k string) bool {
	return strings.EqualFold(k, "_method") || strings.EqualFold(k, "x-http-method-override") ||
		strings.EqualFold(k, "x-method-override") || strings.EqualFold(k, "x-http-method")
}

// gatewayRIDPrefix starts every request id the gateway makes.
const gatewayRIDPrefix = "gw-"

// requestID keeps a valid client X-Request-Id (1 to 64 of A-Z a-z 0-9 - _ .)
// and makes one otherwise. A client id that starts like the gateway's own
// ("gw-") is replaced too: it could claim the id the gateway hands out
// next, and share it with another client's request in the audit log.
func (g *Gateway) requestID(r *http.Request) string {
	if vs := r.Header.Values("X-Request-Id"); len(vs) == 1 && validRequestID(vs[0]) && !strings.HasPrefix(vs[0], gatewayRIDPrefix) {
		return vs[0]
	}
	return g.ridPrefix + strconv.FormatUint(g.ridSeq.Add(1), 36)
}

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

// refuse records the denial ev and answers dn; when the denial cannot be
// recorded it answers 503 audit_unavailable instead (fail closed: no
// answer goes out unrecorded, a refusal no more than a grant).
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, ev *Event, dn *denial) {
	ev.Kind, ev.Reason, ev.Status = KindDeny, dn.code, dn.status
	if ev.Scope == "" {
		ev.Scope = dn.scope
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), recordTimeout)
	err := g.rec.Record(ctx, ev)
	cancel()
	if err != nil {
		g.log.Error("recording a denial failed; answering 503 (fail closed)", "request_id", ev.RequestID, "status", dn.status, "reason", dn.code, "err", err)
		fail := errAudit
		if dn.close {
			fail = &denial{status: errAudit.status, code: errAudit.code, msg: errAudit.msg, retry: errAudit.retry, close: true}
		}
		ev.Reason, ev.Status = fail.code, fail.status // the answer given, for the observer (ev is not recorded again)
		g.writeRefusal(w, r, ev.RequestID, fail)
		return
	}
	if dn.status >= 500 || dn.code == CodeAmbiguousFraming {
		g.log.Warn("request refused", "request_id", ev.RequestID, "status", dn.status, "reason", dn.code, "token_id", ev.TokenID, "upstream", ev.Upstream)
	} else if ev.TokenID == "" {
		// Before authentication anyone can cause a denial: one line each
		// would let an anonymous flood fill the log's disk. The audit log
		// has them (aggregated), and its summaries are logged.
		g.log.Debug("request denied", "request_id", ev.RequestID, "status", dn.status, "reason", dn.code, "upstream", ev.Upstream)
	} else {
		g.log.Info("request denied", "request_id", ev.RequestID, "status", dn.status, "reason", dn.code, "token_id", ev.TokenID, "upstream", ev.Upstream)
	}
	g.writeRefusal(w, r, ev.RequestID, dn)
}

// grant records ev as a grant, durably; false means it could not be
// recorded and the request must be refused.
func (g *Gateway) grant(r *http.Request, ev *Event) bool {
	ev.Kind = KindGrant
	ctx, cancel := context.WithTimeout(r.Context(), recordTimeout)
	defer cancel()
	if err := g.rec.Record(ctx, ev); err != nil {
		if r.Context().Err() != nil {
			// the client went away while its grant was being committed:
			// not a recording failure (the entry may be in the log)
			g.log.Info("the client went away before its grant was confirmed; nothing forwarded", "request_id", ev.RequestID)
			return false
		}
		g.log.Error("recording a grant failed; refusing the request (fail closed)", "request_id", ev.RequestID, "err", err)
		return false
	}
	return true
}

// bearer extracts the token of "Authorization: Bearer <token>". ok is
// false when there is no Authorization header; a malformed one (or several)
// gives an empty secret, which fails as malformed.
func bearer(r *http.Request) (string, bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 || len(vs[0]) < 7 || !strings.EqualFold(vs[0][:7], "bearer ") {
		return "", true
	}
	return strings.TrimSpace(vs[0][7:]), true
}

// callerHeaders reads X-Purpose-Of-Use and X-Break-Glass.
// caller reads what both the proxy and forward auth need from the caller:
// the bearer token, the purpose of use and a break-glass justification. It
// fills ev and, when they are missing or malformed, refuses the request
// itself and reports ok false.
func (g *Gateway) caller(w http.ResponseWriter, r *http.Request, ev *Event) (secret, purpose, justification string, breakGlass, ok bool) {
	if bs := r.Header.Values("X-Break-Glass"); len(bs) > 0 {
		// a break-glass attempt is recorded as one even when it is refused
		// before its token or its headers are accepted
		ev.BreakGlass = true
		ev.Justification = redact(truncateString(strings.Join(bs, " | "), MaxJustification))
	}
	secret, present := bearer(r)
	if !present {
		g.refuse(w, r, ev, errMissingToken)
		return "", "", "", false, false
	}
	purpose, justification, breakGlass, dn := callerHeaders(r)
	if dn != nil {
		g.refuse(w, r, ev, dn)
		return "", "", "", false, false
	}
	ev.Purpose, ev.BreakGlass = purpose, breakGlass
	if breakGlass {
		ev.Justification = redact(truncateString(justification, MaxJustification))
	}
	return secret, purpose, justification, breakGlass, true
}

func callerHeaders(r *http.Request) (purpose, justification string, breakGlass bool, dn *denial) {
	ps := r.Header.Values("X-Purpose-Of-Use")
	switch {
	case len(ps) > 1:
		return "", "", false, deny(http.StatusBadRequest, CodeInvalidPurpose, "send X-Purpose-Of-Use once")
	case len(ps) == 1:
		purpose = strings.TrimSpace(ps[0])
		if !policy.PurposeCodes[purpose] {
			return "", "", false, deny(http.StatusBadRequest, CodeInvalidPurpose, "X-Purpose-Of-Use must be an HL7 v3 PurposeOfUse code such as TREAT, HPAYMT, HOPERAT or ETREAT")
		}
	}
	bs := r.Header.Values("X-Break-Glass")
	switch {
	case len(bs) > 1:
		return "", "", false, badRequest("send X-Break-Glass once")
	case len(bs) == 1:
		justification, breakGlass = bs[0], true
	}
	return purpose, justification, breakGlass, nil
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// canonicalPath reports whether the escaped path p is one the gateway
// routes: absolute, without empty segments (except a final one), without
// "." or ".." segments (also percent-encoded), and without an encoded "/",
// a "\" or a control character in any segment.
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	rest := p[1:]
	for rest != "" {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" {
			return false // "//"
		}
		if strings.IndexByte(seg, '%') >= 0 {
			d, err := url.PathUnescape(seg)
			if err != nil {
				return false
			}
			seg = d
		}
		if seg == "." || seg == ".." || strings.ContainsAny(seg, "/\\") {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if seg[i] < 0x20 || seg[i] == 0x7f {
				return false
			}
		}
		if !more {
			break
		}
		rest = after
	}
	return true
}

// exchange is the state of one request, allocated once: its event, what
// rewrite needs to know about a granted request, and the wrappers of its
// body and answer.
type exchange struct {
	ev    Event
	start time.Time

	// for rewrite
	up       *upstream
	path     string // escaped upstream path
	xff      string
	identity string
	subject  string
	tokenID  string
	purpose  string
	bg       bool
	host     string // the Host the client asked for (Location rewriting)
	query    string // the raw query sent upstream
	ctx      context.Context

	// the answer: pages, the page links of a search become continuations
	// of searchPath?searchQuery (below the prefix); check, the
	// compartment check it needs (fr the request, pid the token's
	// patient); what the rewriting and the check did, for the completion
	pages                   bool
	searchPath, searchQuery string
	check                   checkKind
	typ, id, pid            string
	set                     scope.Set
	foreign, removed        int
	unrewritten             bool
	isPage                  bool     // a continuation: query is the page's
	bufs                    [][]byte // answer buffers lent by the gateway's pool
	gwBase                  string   // gatewayBase, once made

	counted countingReader
	sw      statusWriter

	// the body read for the decision (inspected reports it was)
	inspected bool
	buffered  []byte
	bodyDn    *denial
	bodyLimit int64
	declared  int64
	// encoded: the request has a Content-Encoding other than identity
	encoded bool

	// backing arrays of the header values the gateway sets: slices of
	// them (capacity 1, so that an append copies) spare one allocation
	// per header
	ridHeader [1]string
	outHeader [10]string

	// public: a capability statement served without a token; metaMax
	// bounds the upstream's (secureMetadata)
	public  bool
	metaMax int64

	// for the Observer: how long the decision and the upstream took
	// (upStart: when the upstream was called); fail, the refusal answered
	// when it is not ev's (after a grant, or never recorded); unobserved:
	// /healthz and the identity key
	decision, upstream time.Duration
	decided, forwarded bool
	upStart            time.Time
	fail               *denial
	unobserved         bool
}

// decideObserved is decide, timed for the Observer when there is one.
func (g *Gateway) decideObserved(ctx context.Context, q *request, x *exchange) verdict {
	if g.opts.Observer == nil {
		return g.decide(ctx, q)
	}
	t0 := g.now()
	v := g.decide(ctx, q)
	x.decision, x.decided = g.now().Sub(t0), true
	return v
}

// body reads the request body for the decision, once.
func (x *exchange) body() ([]byte, *denial) {
	if x.encoded {
		// the gateway would check the encoded bytes while the upstream
		// acts on the decoded ones
		return nil, deny(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "the gateway reads this body to decide and does not decode Content-Encoding: send it unencoded")
	}
	if !x.inspected {
		x.inspected = true
		x.buffered, x.bodyDn = readInspected(&x.counted, x.declared, x.bodyLimit)
	}
	return x.buffered, x.bodyDn
}

type fwdKey struct{}

// serveProxy decides a request for an upstream and forwards it when
// allowed, after the durable record of the grant.
func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request, x *exchange) {
	ev, start := &x.ev, x.start
	t := g.table.Load()
	peer := peerAddr(r)
	xff := r.Header.Values("X-Forwarded-For")
	client := clientAddr(peer, xff, t.trusted)
	if client.IsValid() {
		ev.SourceIP = client.String()
	}
	path := r.URL.EscapedPath()
	if !canonicalPath(path) {
		g.refuse(w, r, ev, badRequest("the path must be canonical: no empty, . or .. segments, no encoded / or \\"))
		return
	}
	up, rest := t.match(path)
	if up == nil {
		g.refuse(w, r, ev, deny(http.StatusNotFound, CodeNotFound, "no upstream is configured for this path"))
		return
	}
	ev.Upstream = up.name
	if isPreflight(r) {
		g.servePreflight(w, r, ev, up) // before any token: browsers send none
		return
	}
	if origin, ok := up.cors.allowed(r.Header); ok {
		corsAnswer(w.Header(), origin) // every answer from here on, denials too
	}
	if up.target == nil {
		g.refuse(w, r, ev, deny(http.StatusNotFound, CodeNotFound, "this upstream is reached only through forward auth (/v1/authz)"))
		return
	}
	if dn := checkForwardable(r); dn != nil {
		g.refuse(w, r, ev, dn)
		return
	}
	var handle string
	var isPage bool
	if up.fhir {
		var dn *denial
		if handle, isPage, dn = continuationRequest(r.Method, rest, r.URL.RawQuery); dn != nil {
			ev.Path = redact(up.prefix + "_page/…") // the handle is the token's, not the log's
			g.refuse(w, r, ev, dn)
			return
		}
		if isPage {
			ev.Path = redact(up.prefix + "_page/…")
		} else if g.servePublic(w, r, x, t, up, rest, peer, client, xff) {
			return // the capability statement, or the SMART configuration: no token
		}
	}
	secret, purpose, justification, bg, ok := g.caller(w, r, ev)
	if !ok {
		return
	}
	lim := t.limits
	if r.ContentLength > lim.MaxBodyBytes {
		g.refuse(w, r, ev, deny(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the body is larger than %d bytes", lim.MaxBodyBytes)))
		return
	}
	x.counted.r = r.Body
	if r.Body != http.NoBody { // net/http's body of a request without one
		x.counted.r = http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
	}
	x.declared, x.bodyLimit = r.ContentLength, lim.MaxInspectBytes
	for _, ce := range r.Header.Values("Content-Encoding") {
		for v := range strings.SplitSeq(ce, ",") {
			if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, "identity") {
				x.encoded = true
			}
		}
	}
	q := &request{
		secret: secret, addr: client, purpose: purpose, justification: justification, breakGlass: bg,
		method: r.Method, path: rest, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type"),
		up: up, maxEntries: lim.MaxBundleEntries, now: start, body: x.body,
		page: handle, isPage: isPage,
	}
	q.setIfNoneExist(r.Header)
	v := g.decideObserved(r.Context(), q, x)
	fillEvent(ev, &v)
	if v.cont != nil {
		// the grant names the search it continues, and the page fetched
		ev.Path, ev.Query, ev.Page = redact(strings.TrimSuffix(up.prefix, "/")+v.cont.path), redact(v.cont.query), redact(v.cont.page)
	}
	if v.deny != nil {
		g.refuse(w, r, ev, v.deny)
		return
	}
	if !g.grant(r, ev) {
		g.auth.Refund(v.admitted) // nothing was forwarded: the use and the rate token are the token's again
		x.fail = errAudit
		g.writeRefusal(w, r, ev.RequestID, errAudit)
		return
	}

	x.subject, x.tokenID, x.purpose, x.bg = v.rec.Subject, v.rec.ID, purpose, bg
	x.check, x.typ, x.id, x.pid, x.set = v.check, v.resource, v.id, v.rec.PatientID, v.set
	x.pages = up.fhir && continuesSearch(ev.Interaction)
	x.searchPath, x.searchQuery = rest, r.URL.RawQuery
	if r.Method == http.MethodPost && x.inspected && strings.HasPrefix(ev.Interaction, "search-") && len(x.buffered) > 0 {
		// a POST _search continues as the GET of its URL and form
		// parameters together
		x.searchQuery = joinQuery(r.URL.RawQuery, string(x.buffered))
	}
	if c := v.cont; c != nil {
		// forwarded to the upstream's page, below its base
		var pq string
		rest, pq, _ = strings.Cut(c.page, "?")
		x.query, x.isPage = pq, true
		x.searchPath, x.searchQuery = c.path, c.query
	}
	g.forward(w, r, x, t, up, rest, peer, client, xff)
}

// forward sends a granted request to up (rest: its path below the
// prefix; for a continuation, the page's below the upstream's base), with
// x's subject, token id, purpose and break-glass flag asserted, and
// records the completion.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, x *exchange, t *table, up *upstream, rest string, peer, client netip.Addr, xff []string) {
	ev, start := &x.ev, x.start
	x.up, x.path, x.ctx = up, up.basePath+rest, r.Context()
	if x.path == "" {
		x.path = "/" // a continuation on the base of an upstream at its host's root
	}
	if !x.isPage {
		x.query = r.URL.RawQuery
	}
	if client == peer && ev.SourceIP != "" && !t.trusted.contains(peer) {
		x.xff = ev.SourceIP // the usual case: the peer alone
	} else {
		x.xff = appendForwardedFor(peer, xff, t.trusted)
	}
	x.host = r.Host
	x.identity = up.ident.sign(&Identity{
		Subject: x.subject, TokenID: x.tokenID, Purpose: x.purpose, Method: r.Method, Path: x.path, QueryHash: QueryHash(x.query),
		RequestID: ev.RequestID, Audience: up.name, BreakGlass: x.bg, IssuedAt: start.Unix(), Expires: start.Add(IdentityTTL).Unix(),
	})
	out := r.WithContext(context.WithValue(r.Context(), fwdKey{}, x))
	if x.inspected {
		out.Body = io.NopCloser(bytes.NewReader(x.buffered))
		out.ContentLength = int64(len(x.buffered))
		out.TransferEncoding = nil
	} else {
		out.Body = &x.counted
	}
	x.sw.ResponseWriter, x.sw.rid = w, x.ridHeader[:1:1]
	g.bodyDeadlines(w, x)
	if g.opts.Observer != nil {
		x.upStart, x.forwarded = g.now(), true
	}
	defer func() {
		// an exchange cut short (the client went away or stalled, the
		// upstream broke off its answer) ends in a panic that makes
		// net/http drop the connection: it is recorded as a completion
		// too, with what got through, before the panic goes on
		if v := recover(); v != nil {
			g.finish(r, x, start, true)
			panic(v)
		}
		g.finish(r, x, start, false)
	}()
	up.proxy.ServeHTTP(&x.sw, out)
}

// CodeAborted is the Reason of a completion whose exchange was cut short.
const CodeAborted = "aborted"

// finish records the completion of a forwarded exchange: the grant's event
// becomes the completion's (Record kept nothing). aborted: the exchange
// was cut short; its status is then 499 when the client went away, else
// 502, unless an error answer was already given.
func (g *Gateway) finish(r *http.Request, x *exchange, start time.Time, aborted bool) {
	ev := &x.ev
	x.counted.ended.Store(true)
	if g.opts.Observer != nil {
		x.upstream = g.now().Sub(x.upStart)
	}
	ev.Kind, ev.Status, ev.BytesIn, ev.BytesOut = KindComplete, x.sw.status, x.counted.n.Load(), x.sw.n
	ev.Duration = g.now().Sub(start)
	switch {
	case aborted:
		ev.Reason = CodeAborted
		if r.Context().Err() != nil {
			ev.Status = 499
		} else if ev.Status < 400 {
			ev.Status = http.StatusBadGateway
		}
	case ev.Status == 0:
		ev.Status = http.StatusOK
	}
	ev.Notes = x.notes()
	if !aborted {
		// the answer is written: its buffers are free (after a cut the
		// transport may still hold them; they go to the garbage collector)
		g.releaseAnswers(x)
	}
	g.complete(ev)
}

// complete records a completion without delaying the answer: queued when
// the recorder can (AsyncRecorder), else from a goroutine that Shutdown
// waits for.
func (g *Gateway) complete(ev *Event) {
	if ar, ok := g.rec.(AsyncRecorder); ok {
		ar.RecordAsync(ev)
		return
	}
	g.pending.Add(1)
	go func() {
		defer g.pending.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		defer cancel()
		if err := g.rec.Record(ctx, ev); err != nil {
			g.log.Error("recording a completion failed", "request_id", ev.RequestID, "err", err)
		}
	}()
}

// readInspected reads a body the gateway must look at, up to limit bytes.
func readInspected(body io.Reader, declared, limit int64) ([]byte, *denial) {
	if declared > limit {
		return nil, errBodyTooLarge(limit)
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, errBodyTooLarge(limit)
	case err != nil:
		return nil, badRequest("reading the request body failed")
	case int64(len(b)) > limit:
		return nil, errBodyTooLarge(limit)
	}
	return b, nil
}

func fillEvent(ev *Event, v *verdict) {
	if v.rec != nil {
		ev.TokenID, ev.Subject, ev.Patient = v.rec.ID, v.rec.Subject, v.rec.PatientID
	}
	if ev.Patient == "" {
		ev.Patient = v.patient // the patient a user/ or system/ token's request names
	}
	ev.Scope, ev.Interaction, ev.Resource = v.scope, v.interaction, v.resource
}

// rewrite builds the upstream request: the target URL, no client
// credential or identity headers, the upstream's credential, X-Request-Id,
// X-Forwarded-*, and the signed identity.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	x := pr.In.Context().Value(fwdKey{}).(*exchange)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = x.up.target.Scheme, x.up.target.Host
	out.URL.RawPath = x.path
	out.URL.Path, _ = url.PathUnescape(x.path) // canonicalPath decoded every segment
	out.URL.RawQuery = x.query
	out.Host = ""
	h := out.Header
	for k := range h {
		// a name with "_" is dropped whatever it says: CGI, WSGI, Rack and
		// PHP read X_Phigate_Subject as X-Phigate-Subject (nginx drops
		// them too, by default)
		if hasPrefixFold(k, "X-Phigate-") || hasPrefixFold(k, "X-Forwarded-") || strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
	// X-Original-Url and X-Rewrite-Url make some servers (IIS, Symfony,
	// Zend) route to another path than the one decided
	// Expect: net/http has answered the client's 100-continue itself
	for _, k := range []string{"Authorization", "Proxy-Authorization", "X-Purpose-Of-Use", "X-Break-Glass", "Forwarded", "X-Real-Ip", "X-Request-Id", "X-Original-Url", "X-Rewrite-Url", "Expect"} {
		delete(h, k)
	}
	vals := x.outHeader[:0]
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if x.up.credName != "" {
		set(x.up.credName, x.up.credValue)
	}
	set("X-Request-Id", x.ev.RequestID)
	set("X-Forwarded-For", x.xff)
	set("X-Forwarded-Proto", "https")
	if pr.In.Host != "" {
		set("X-Forwarded-Host", pr.In.Host)
	}
	set(HeaderSubject, x.subject)
	set(HeaderTokenID, x.tokenID)
	if x.purpose != "" {
		set(HeaderPurpose, x.purpose)
	}
	if x.bg {
		set(HeaderBreakGlass, "true")
	}
	set(HeaderIdentity, x.identity)
	if x.public {
		publicHeaders(h)
	}
	// not for $operations: some servers want Prefer: respond-async alone
	// there (bulk $export, $import), and their parameters are not a search
	if x.up.fhir && x.ev.Interaction != Operation.String() && x.ev.Interaction != Capabilities.String() {
		h["Prefer"] = []string{strictPrefer(h["Prefer"])}
	}
	if x.up.fhir {
		// the answer's links are rewritten and some answers checked: the
		// gateway must read it as sent, not compressed
		delete(h, "Accept-Encoding")
	}
}

// strictPrefer is the Prefer header sent to a FHIR upstream: the client's
// preferences with handling=strict in place of any handling. In lenient
// mode a server ignores a search parameter it does not know, and a search
// the gateway let through because of that parameter (patient=, a granular
// scope's category=) would run without it.
func strictPrefer(vals []string) string {
	var b strings.Builder
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			name, _, _ := strings.Cut(p, "=")
			name, _, _ = strings.Cut(name, ";")
			if p == "" || strings.EqualFold(strings.TrimSpace(name), "handling") {
				continue
			}
			b.WriteString(p)
			b.WriteString(", ")
		}
	}
	b.WriteString("handling=strict")
	return b.String()
}

// errUpstreamAuth: the upstream refused the gateway's credential.
var errUpstreamAuth = errors.New("the upstream answered 401 or 407: it refused the gateway's credential")

// modifyResponse filters what of the upstream's answer reaches the client:
//
//   - an upstream 401 or 407 is about the credential the gateway injected,
//     not the client's: it becomes a 502 (upstreamError), its body and its
//     challenge dropped;
//   - Set-Cookie (a session the upstream ties to the gateway's credential,
//     on the gateway's origin for every upstream), WWW-Authenticate and
//     Proxy-Authenticate are dropped;
//   - Location and Content-Location naming the upstream's own URL are
//     rewritten to the gateway's (the client never learns the internal
//     address);
//   - X-Request-Id: the gateway's own is already set.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusProxyAuthRequired {
		return errUpstreamAuth
	}
	h := resp.Header
	for _, k := range []string{"X-Request-Id", "Set-Cookie", "Www-Authenticate", "Proxy-Authenticate"} {
		delete(h, k)
	}
	stripCORS(h) // only the gateway's cors section grants an origin
	x, _ := resp.Request.Context().Value(fwdKey{}).(*exchange)
	if x == nil {
		return nil
	}
	for _, k := range []string{"Location", "Content-Location"} {
		if vs := h[k]; len(vs) == 1 {
			h[k] = []string{x.gatewayURL(vs[0])}
		}
	}
	if x.public {
		if err := secureMetadata(resp, x.metaMax); err != nil {
			return err
		}
	}
	if x.up.fhir {
		return g.fhirAnswer(x, resp)
	}
	return nil
}

// gatewayURL maps u, a URL in the upstream's answer, to the gateway's: the
// upstream's base (absolute, or its path alone) becomes the gateway's
// prefix on the host the client asked for. Other URLs are left as they are.
func (x *exchange) gatewayURL(u string) string {
	rest, ok := x.upstreamRest(u)
	if !ok {
		return u
	}
	return x.gatewayBase() + restPath(rest)
}

// upstreamRest returns what of u, a URL in the upstream's answer, follows
// the upstream's base ("" , "/…" or "?…"), when u is below it (absolute
// on the upstream's scheme and host, or its path alone).
func (x *exchange) upstreamRest(u string) (string, bool) {
	base := x.up.target.Scheme + "://" + x.up.target.Host
	var rest string
	switch {
	case hasPrefixFold(u, base) && strings.HasPrefix(u[len(base):], x.up.basePath):
		rest = u[len(base)+len(x.up.basePath):]
	case x.up.basePath != "" && strings.HasPrefix(u, x.up.basePath):
		rest = u[len(x.up.basePath):]
	case x.up.basePath == "" && strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		rest = u // an upstream at its host's root: every path-absolute URL is its
	default:
		return "", false
	}
	if rest != "" && rest[0] != '/' && rest[0] != '?' {
		return "", false // /fhir/R4x is not below /fhir/R4
	}
	return rest, true
}

// gatewayBase is the gateway's URL of x's upstream: the Host the client
// asked for and the prefix, without a final "/".
func (x *exchange) gatewayBase() string {
	if x.gwBase == "" {
		x.gwBase = "https://" + x.host + strings.TrimSuffix(x.up.prefix, "/")
	}
	return x.gwBase
}

// restPath makes what follows a base a path: "/" for "" or a bare query.
func restPath(rest string) string {
	if rest == "" || rest[0] == '?' {
		return "/" + rest
	}
	return rest
}

// upstreamError answers a failed exchange with the upstream: 504 for a
// timeout, 413 for a body over the limit, 502 otherwise.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x, _ := r.Context().Value(fwdKey{}).(*exchange)
	rid, name := "", ""
	if x != nil {
		rid, name = x.ev.RequestID, x.up.name
	}
	if r.Context().Err() != nil {
		if sw, ok := w.(*statusWriter); ok {
			sw.status = 499 // the client went away
		}
		// no answer at all (an empty 200 otherwise): drop the connection;
		// serveProxy records the completion on the way
		panic(http.ErrAbortHandler)
	}
	var mbe *http.MaxBytesError
	var ne net.Error
	var pm *tlsutil.PinMismatchError
	var rr *responseRefusal
	var dn *denial
	var bodyErr error
	if x != nil {
		bodyErr = x.counted.readErr()
	}
	switch {
	case errors.As(err, &rr):
		dn = rr.dn // the answer was read and refused (secureMetadata, the compartment checks)
	case errors.Is(err, errUncheckable):
		dn = deny(http.StatusBadGateway, CodeUpstreamFailed, "the upstream's answer could not be checked or rewritten (not FHIR JSON, or compressed)")
	case errors.As(err, &mbe):
		dn = deny(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the body is larger than %d bytes", mbe.Limit))
	case bodyErr != nil && !errors.Is(bodyErr, io.EOF):
		// the client's body could not be read (a malformed chunk; a
		// stalled or cut connection ended the request context above):
		// not the upstream's doing
		dn = badRequest("the request body could not be read (malformed)")
		dn.close = true
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		dn = deny(http.StatusGatewayTimeout, CodeUpstreamTimeout, "the upstream did not answer in time")
	case errors.As(err, &pm):
		// the upstream presented a key that is not pinned: nothing was
		// sent; the log names the key seen, so a planned rollover can be
		// told from an impostor and the config's pins fixed
		dn = deny(http.StatusBadGateway, CodeUpstreamFailed, "the upstream's TLS certificate was refused")
		want := make([]string, len(pm.Want))
		for i, p := range pm.Want {
			want[i] = p.WithPrefix()
		}
		g.log.Error("upstream TLS key is not pinned: refused", "request_id", rid, "upstream", name,
			"pin_seen", pm.Got.WithPrefix(), "pins", strings.Join(want, ","))
		if x != nil {
			x.ev.Reason = dn.code
		}
		g.writeUpstreamRefusal(w, r, x, rid, dn)
		return
	case errors.Is(err, errUpstreamAuth):
		dn = deny(http.StatusBadGateway, CodeUpstreamFailed, "the upstream refused the gateway's credential for it (check the upstream's credential in the configuration)")
	default:
		dn = deny(http.StatusBadGateway, CodeUpstreamFailed, "the upstream could not be reached or answered badly")
	}
	g.log.Warn("upstream exchange failed", "request_id", rid, "upstream", name, "status", dn.status, "err", err)
	if x != nil {
		x.ev.Reason = dn.code // the completion says why (upstream_timeout, ...)
	}
	g.writeUpstreamRefusal(w, r, x, rid, dn)
}

// writeUpstreamRefusal answers the failed exchange x with dn: an
// OperationOutcome for a fhir upstream.
func (g *Gateway) writeUpstreamRefusal(w http.ResponseWriter, r *http.Request, x *exchange, rid string, dn *denial) {
	if x != nil && x.up.fhir {
		writeOutcome(w, rid, dn)
		return
	}
	g.writeRefusal(w, r, rid, dn)
}

// deadliner is the connection deadlines of net/http's ResponseWriter.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// bodyDeadlines makes the limits' read and write timeouts bound each read
// of the request body and each write of the answer, rather than the whole
// exchange: a large upload or download that keeps moving is not cut at
// 30 s, a client that stalls still is. The write deadline first leaves
// room for the upstream's response timeout, so that a 504 can still be
// written when the upstream takes all of it.
func (g *Gateway) bodyDeadlines(w http.ResponseWriter, x *exchange) {
	d, ok := w.(deadliner)
	if !ok {
		return
	}
	l := &g.opts.Limits
	if wt := l.WriteTimeout.Duration(); wt > 0 {
		x.sw.dl, x.sw.timeout = d, wt
		// the wall clock (connection deadlines), not g.now
		d.SetWriteDeadline(time.Now().Add(x.up.respTimeout + wt))
	}
	if rt := l.ReadTimeout.Duration(); rt > 0 && !x.inspected {
		x.counted.dl, x.counted.timeout = d, rt
	}
}

// statusWriter records the status and the bytes of the answer, and moves
// the write deadline before each write (bodyDeadlines).
type statusWriter struct {
	http.ResponseWriter
	status  int
	n       int64
	dl      deadliner
	timeout time.Duration
	rid     []string // the X-Request-Id value, set again on the final answer
}

// WriteHeader passes the final answer on, with the gateway's request id
// (the proxy clears the header map after an informational answer), and
// drops informational ones (1xx): their headers would reach the client
// unfiltered (modifyResponse sees only the final answer). net/http answers
// a client's Expect: 100-continue itself.
func (w *statusWriter) WriteHeader(code int) {
	if code < 200 {
		return
	}
	if w.status == 0 {
		w.status = code
	}
	if w.rid != nil {
		w.Header()["X-Request-Id"] = w.rid
	}
	if w.dl != nil {
		// an answer without a body (204, 201 with return=minimal) is
		// written only by this, after a long upload perhaps
		w.dl.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.dl != nil {
		w.dl.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingReader counts the request body as the proxy reads it. The
// transport may still read it from its own goroutine after the handler
// returned (an upstream that answered early): n and err are atomic, and
// once ended is set no read touches the connection's deadline, which
// belongs to the next request on it by then.
type countingReader struct {
	r io.ReadCloser
	n atomic.Int64
	// dl, when set (before the exchange starts), gets a read deadline
	// timeout ahead before each read (bodyDeadlines)
	dl      deadliner
	timeout time.Duration
	ended   atomic.Bool
	err     atomic.Pointer[error] // the first error a Read returned (io.EOF at the end)
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.dl != nil && !c.ended.Load() {
		c.dl.SetReadDeadline(time.Now().Add(c.timeout))
	}
	n, err := c.r.Read(p)
	if err != nil {
		c.err.CompareAndSwap(nil, &err)
	}
	c.n.Add(int64(n))
	return n, err
}

// readErr is the first error a Read returned, nil if none.
func (c *countingReader) readErr() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *countingReader) Close() error { return c.r.Close() }
