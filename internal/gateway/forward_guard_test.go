package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

// TRACE makes an upstream echo the request, the credential the gateway
// injects included; CONNECT is no request to an API. Neither is forwarded,
// whatever a route allows ("* /upload"), nor allowed through forward auth.
func TestTraceAndConnectNeverForwarded(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write", "records:read"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "message/http")
		r.Header.Write(w)
	})
	n := fx.api.count.Load()
	r := fx.do(t, call{method: http.MethodTrace, path: "/billing/upload", secret: s})
	if r.status != http.StatusMethodNotAllowed || r.code != CodeMethodNotAllowed {
		t.Errorf("TRACE: %d %s", r.status, r.body)
	}
	if fx.api.count.Load() != n {
		t.Error("TRACE reached the upstream")
	}
	if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].Kind != KindDeny || evs[0].Reason != CodeMethodNotAllowed || evs[0].SourceIP != "127.0.0.1" {
		t.Errorf("event %+v", evs[0])
	}
	r = fx.do(t, call{path: "/v1/authz", secret: s, header: map[string]string{"X-Original-Method": "TRACE", "X-Original-URI": "/billing/upload"}})
	if r.status != http.StatusMethodNotAllowed {
		t.Errorf("forward auth of TRACE: %d %s", r.status, r.body)
	}
	// the same route still serves other methods
	if r := fx.do(t, call{method: http.MethodPost, path: "/billing/upload", secret: s, body: "x"}); r.status != http.StatusOK {
		t.Errorf("POST: %d %s", r.status, r.body)
	}
}

// After a 101 the connection would be a raw tunnel to the upstream: no
// decision, no record, no rate limit or revocation for what follows. The
// gateway refuses a request that asks for a protocol upgrade.
func TestUpgradeRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	upgraded := make(chan string, 1)
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Write([]byte("plain"))
			return
		}
		select {
		case upgraded <- r.Header.Get("Upgrade"):
		default:
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		brw.Flush()
	})
	n := fx.api.count.Load()
	for _, up := range []string{"h2c", "websocket"} {
		conn := fx.dial(t)
		fmt.Fprintf(conn, "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", s, up)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Upgrade: %s: %d", up, resp.StatusCode)
		}
	}
	select {
	case up := <-upgraded:
		t.Errorf("the upstream was asked to upgrade to %s", up)
	default:
	}
	if fx.api.count.Load() != n {
		t.Error("an upgrade request reached the upstream")
	}
}

// Header names with "_" are not forwarded: CGI, WSGI, Rack and PHP read
// X_Phigate_Subject as X-Phigate-Subject, next to the one the gateway sets.
func TestUnderscoreHeadersNotForwarded(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	req, _ := http.NewRequest(http.MethodGet, "https://"+fx.addr+"/billing/invoices/1", nil)
	req.Header.Set("Authorization", "Bearer "+s)
	for _, k := range []string{"X_Phigate_Subject", "X_Purpose_Of_Use", "x_phigate_identity", "Proxy_Authorization"} {
		req.Header[k] = []string{"forged"}
	}
	req.Header.Set("X-Custom", "kept")
	resp, err := fx.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := fx.api.lastSeen().Header
	for k, v := range h {
		if strings.Contains(k, "_") || strings.Contains(strings.Join(v, ","), "forged") {
			t.Errorf("upstream got %s: %v", k, v)
		}
	}
	if h.Get("X-Custom") != "kept" {
		t.Error("an ordinary header was dropped")
	}
}

// Tomcat, Spring and others drop ";…" from a path segment, so
// /invoices/secret;x=1 would match the route GET /invoices/* here and be
// served as /invoices/secret, which needs another scope.
func TestPathParametersRefusedOnHTTPUpstreams(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	if r := fx.do(t, call{path: "/billing/invoices/secret", secret: s}); r.status != http.StatusForbidden {
		t.Fatalf("/invoices/secret: %d %s", r.status, r.body)
	}
	n := fx.api.count.Load()
	for _, p := range []string{"/billing/invoices/secret;x=1", "/billing/invoices/secret%3Bx=1", "/billing/invoices/secret%3bx", "/billing/invoices;a/secret"} {
		if r := fx.do(t, call{path: p, secret: s}); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if fx.api.count.Load() != n {
		t.Error("a path with ; reached the upstream")
	}
}

// The proxy removes the headers a client's Connection header names, after
// the decision: "Connection: Content-Type" would send a POST _search
// decided on its form body without its form type. Such a request is
// refused.
func TestConnectionMayNameOnlyHopByHopTokens(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	search := func(conn string) reply {
		return fx.do(t, call{method: "POST", path: "/fhir/Observation/_search", secret: pat, contentType: "application/x-www-form-urlencoded",
			body: "patient=p1", header: map[string]string{"Connection": conn}})
	}
	n := fx.fhir.count.Load()
	for _, conn := range []string{"Content-Type", "keep-alive, Content-Type", "X-Phigate-Identity", "Authorization"} {
		if r := search(conn); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("Connection: %s: %d %s", conn, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a request naming end-to-end headers in Connection reached the upstream")
	}
	for _, conn := range []string{"keep-alive", "Keep-Alive, TE"} {
		if r := search(conn); r.status != http.StatusOK || fx.fhir.lastSeen().Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("Connection: %s: %d %s", conn, r.status, r.body)
		}
	}
}

// Method overrides turn a request decided as a read into a delete at
// servers and frameworks that honour them; URL rewrite headers and the
// client's X-Forwarded-* make some route elsewhere. Overrides are refused,
// the others dropped.
func TestMethodOverridesAndRewriteHeaders(t *testing.T) {
	fx := newFixture(t)
	ro, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.r", "billing:read"}})
	n, m := fx.fhir.count.Load(), fx.api.count.Load()
	for name, c := range map[string]call{
		"X-HTTP-Method-Override":  {path: "/fhir/Observation/obs-1", header: map[string]string{"X-HTTP-Method-Override": "DELETE"}},
		"X-Method-Override":       {path: "/fhir/Observation/obs-1", header: map[string]string{"X-Method-Override": "DELETE"}},
		"X-HTTP-Method":           {path: "/billing/invoices/42", header: map[string]string{"X-HTTP-Method": "DELETE"}},
		"x-method-override param": {path: "/fhir/Observation/obs-1?x-method-override=DELETE"},
		"_method param":           {path: "/billing/invoices/42?_method=DELETE"},
		"encoded param name":      {path: "/billing/invoices/42?%5Fmethod=DELETE"},
		"after a semicolon":       {path: "/billing/invoices/42?a=1;X-HTTP-Method-Override=DELETE"},
	} {
		c.secret = ro
		if r := fx.do(t, c); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n || fx.api.count.Load() != m {
		t.Error("a method override reached an upstream")
	}
	// forward auth: nginx passes the client's headers on to the app
	rr, _ := fx.token(t, authority.Spec{Scopes: []string{"records:read"}})
	for name, c := range map[string]call{
		"header": {path: "/v1/authz/records/r/42", header: map[string]string{"X-HTTP-Method-Override": "DELETE"}},
		"param":  {path: "/v1/authz/records/r/42?_method=DELETE"},
		"nginx":  {path: "/v1/authz", header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/42?x-http-method-override=DELETE"}},
	} {
		c.secret = rr
		if r := fx.do(t, c); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("forward auth, %s: %d %s", name, r.status, r.body)
		}
	}
	r := fx.do(t, call{path: "/billing/invoices/42", secret: ro, header: map[string]string{
		"X-Original-URL": "/invoices/secret", "X-Rewrite-URL": "/invoices/secret", "X-Forwarded-Prefix": "/evil", "X-Forwarded-Port": "1", "X-Forwarded-Host": "evil"}})
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	h := fx.api.lastSeen().Header
	for _, k := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Prefix", "X-Forwarded-Port"} {
		if v := h.Get(k); v != "" {
			t.Errorf("upstream got the client's %s: %s", k, v)
		}
	}
	if got := h.Get("X-Forwarded-Host"); got == "evil" {
		t.Errorf("upstream got the client's X-Forwarded-Host")
	}
}

// Tomcat and HAPI read a form body only for the media type in lower case;
// a body the gateway took for a form, the server would not read, and the
// search would run without the parameters the gateway checked.
func TestFormMediaTypeMustBeExact(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	lab, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs?category=laboratory"}})
	n := fx.fhir.count.Load()
	for _, c := range []call{
		{method: "POST", path: "/fhir/Observation/_search", secret: pat, contentType: "Application/x-www-form-urlencoded", body: "patient=p1"},
		{method: "POST", path: "/fhir/Observation/_search", secret: lab, contentType: "APPLICATION/X-WWW-FORM-URLENCODED", body: "category=laboratory"},
	} {
		if r := fx.do(t, c); r.status != http.StatusUnsupportedMediaType {
			t.Errorf("%s: %d %s", c.contentType, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("forwarded")
	}
	if r := fx.do(t, call{method: "POST", path: "/fhir/Observation/_search", secret: pat, contentType: "application/x-www-form-urlencoded; charset=utf-8", body: "patient=p1"}); r.status != 200 {
		t.Errorf("with a charset: %d %s", r.status, r.body)
	}
}

// A client may keep its own request id, but not one shaped like the
// gateway's: it could claim the id the gateway hands out next.
func TestClientCannotClaimAGatewayRequestID(t *testing.T) {
	fx := newFixture(t)
	ro, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.r"}})
	a := fx.do(t, call{path: "/fhir/Observation/obs-1", secret: ro})
	i := strings.LastIndexByte(a.rid, '-')
	n, err := strconv.ParseUint(a.rid[i+1:], 36, 64)
	if !strings.HasPrefix(a.rid, "gw-") || err != nil {
		t.Fatalf("gateway request id %q", a.rid)
	}
	next := a.rid[:i+1] + strconv.FormatUint(n+1, 36)
	b := fx.do(t, call{path: "/fhir/Observation/obs-2", secret: ro, header: map[string]string{"X-Request-Id": next}})
	c := fx.do(t, call{path: "/fhir/Observation/obs-3", secret: ro})
	if b.rid == c.rid {
		t.Errorf("client claimed %s: two requests got %s", next, c.rid)
	}
	for _, e := range fx.rec.byRequest(t, c.rid, 2) {
		if e.Path != "/fhir/Observation/obs-3" {
			t.Errorf("request id %s also names %s", c.rid, e.Path)
		}
	}
	if d := fx.do(t, call{path: "/fhir/Observation/obs-4", secret: ro, header: map[string]string{"X-Request-Id": "client-trace-7"}}); d.rid != "client-trace-7" {
		t.Errorf("a client's own id was not kept: %s", d.rid)
	}
}

// What of the upstream's answer reaches the client: not its cookies, not
// its authentication challenges (an upstream 401 is about the gateway's
// credential: 502), and its own URLs rewritten to the gateway's.
func TestUpstreamAnswerIsFiltered(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.crs"}})
	internal := fx.fhir.srv.URL + "/fhir/R4/Observation/obs-1/_history/2"
	status := http.StatusCreated
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Location", internal)
		h.Set("Content-Location", "/fhir/R4/Observation/obs-1")
		h.Add("Set-Cookie", "JSESSIONID=upstream-session; Path=/")
		h.Set("WWW-Authenticate", `Basic realm="ehr-internal"`)
		h.Set("ETag", `W/"2"`)
		w.WriteHeader(status)
		w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"upstream credential rejected"}]}`))
	})
	r := fx.do(t, call{method: "POST", path: "/fhir/Observation", secret: s, contentType: fhirJSON, body: `{"resourceType":"Observation"}`})
	if r.status != http.StatusCreated {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got, want := r.header.Get("Location"), "https://"+fx.addr+"/fhir/Observation/obs-1/_history/2"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if got, want := r.header.Get("Content-Location"), "https://"+fx.addr+"/fhir/Observation/obs-1"; got != want {
		t.Errorf("Content-Location %q, want %q", got, want)
	}
	for _, k := range []string{"Set-Cookie", "Www-Authenticate"} {
		if v := r.header.Get(k); v != "" {
			t.Errorf("client got the upstream's %s: %s", k, v)
		}
	}
	// an upstream at its host's root: its path-absolute URLs are its own
	app, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/invoices/2")
		w.Header().Set("Content-Location", "//elsewhere.example/x")
		w.WriteHeader(http.StatusCreated)
	})
	rb := fx.do(t, call{method: "POST", path: "/billing/upload", secret: app, body: "x"})
	if got, want := rb.header.Get("Location"), "https://"+fx.addr+"/billing/invoices/2"; got != want {
		t.Errorf("root upstream Location %q, want %q", got, want)
	}
	if got := rb.header.Get("Content-Location"); got != "//elsewhere.example/x" {
		t.Errorf("a scheme-relative URL was rewritten: %q", got)
	}
	if r.header.Get("ETag") != `W/"2"` {
		t.Error("an ordinary header was dropped")
	}
	status = http.StatusUnauthorized
	r = fx.do(t, call{path: "/fhir/Observation/obs-1", secret: s})
	if r.status != http.StatusBadGateway || r.code != CodeUpstreamFailed || strings.Contains(r.body, "upstream credential") || r.header.Get("Www-Authenticate") != "" {
		t.Errorf("upstream 401: %d %v %s", r.status, r.header, r.body)
	}
	if evs := fx.rec.byRequest(t, r.rid, 2); evs[1].Kind != KindComplete || evs[1].Status != http.StatusBadGateway || evs[1].Reason != CodeUpstreamFailed {
		t.Errorf("completion %+v", evs[1])
	}
}

// The write and read timeouts bound each write and read of a body, not the
// whole exchange: an answer that keeps coming is not cut at write_timeout,
// and a 504 is still written when the upstream takes all of its response
// timeout.
func TestTimeoutsBoundStallsNotStreams(t *testing.T) {
	fx := newFixture(t, fixtureOpts{
		limits: func(l *config.Limits) { l.WriteTimeout = config.Duration(300 * time.Millisecond) },
		mutate: func(c *config.Gateway) { c.Upstreams[1].Timeouts.Response = config.Duration(400 * time.Millisecond) },
	})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/invoices/slow" {
			time.Sleep(600 * time.Millisecond) // past the response timeout and the write timeout
			return
		}
		for i := 0; i < 6; i++ { // 900 ms in all, 150 ms between writes
			w.Write([]byte("chunk\n"))
			http.NewResponseController(w).Flush()
			time.Sleep(150 * time.Millisecond)
		}
	})
	r := fx.do(t, call{path: "/billing/invoices/stream", secret: s})
	if r.status != http.StatusOK || r.body != strings.Repeat("chunk\n", 6) {
		t.Errorf("streamed answer: %d %q", r.status, r.body)
	}
	r = fx.do(t, call{path: "/billing/invoices/slow", secret: s})
	if r.status != http.StatusGatewayTimeout || r.code != CodeUpstreamTimeout {
		t.Errorf("slow upstream: %d %s", r.status, r.body)
	}
	// the completion says why
	if evs := fx.rec.byRequest(t, r.rid, 2); len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Reason != CodeUpstreamTimeout {
		t.Errorf("completion %+v", evs)
	}
}

// Route literals match as written; a path that an upstream routing
// case-insensitively would serve through a more specific route needing
// another scope is refused.
func TestRouteCaseCannotReachAnotherRoute(t *testing.T) {
	fx := newFixture(t)
	read, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	n := fx.api.count.Load()
	for _, p := range []string{"/billing/invoices/SECRET", "/billing/invoices/Secret", "/billing/invoices/%53ecret", "/billing/invoices/%C5%BFecret"} {
		if r := fx.do(t, call{path: p, secret: read}); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := fx.do(t, call{path: "/billing/INVOICES/1", secret: read}); r.status != http.StatusForbidden || r.code != CodeNoRoute {
		t.Errorf("/billing/INVOICES/1: %d %s", r.status, r.body)
	}
	if fx.api.count.Load() != n {
		t.Error("forwarded")
	}
	if r := fx.do(t, call{path: "/billing/invoices/Other", secret: read}); r.status != http.StatusOK {
		t.Errorf("an id in another case: %d %s", r.status, r.body)
	}
}

// A path that an upstream with suffix, trimmed-path or trailing-slash
// matching (Spring MVC, Rails) would serve through a more specific route
// needing another scope is refused: with GET /invoices/secret needing
// billing:admin and GET /invoices/* billing:read, /invoices/secret.json
// went upstream with billing:read.
func TestRouteSuffixCannotReachAnotherRoute(t *testing.T) {
	fx := newFixture(t)
	read, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	n := fx.api.count.Load()
	for p, want := range map[string]struct {
		status int
		code   string
	}{
		"/billing/invoices/secret.json":    {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret.tar.gz":  {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret.":        {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret%2Ejson":  {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret%20":      {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/%20secret":      {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret%C2%A0":   {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/secret%20.json": {http.StatusBadRequest, CodeInvalidRequest},
		"/billing/invoices/SECRET.JSON":    {http.StatusBadRequest, CodeInvalidRequest},
		// no route matches as written: refused as no_route, naming the lenient one
		"/billing/invoices/secret/":      {http.StatusForbidden, CodeNoRoute},
		"/billing/invoices/secret.json/": {http.StatusForbidden, CodeNoRoute},
	} {
		r := fx.do(t, call{path: p, secret: read})
		if r.status != want.status || r.code != want.code {
			t.Errorf("%s: %d %s, want %d %s", p, r.status, r.body, want.status, want.code)
		}
		if evs := fx.rec.byRequest(t, r.rid, 1); len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Reason != want.code {
			t.Errorf("%s: events %+v", p, evs)
		}
	}
	if fx.api.count.Load() != n {
		t.Error("forwarded")
	}
	// forward auth decides the same way
	if r := fx.do(t, call{path: "/v1/authz/billing/invoices/secret.json", secret: read}); r.status != http.StatusBadRequest || r.code != CodeInvalidRequest {
		t.Errorf("forward auth: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/billing/invoices/42.json", "/billing/invoices/other%20", "/billing/invoices/secretary", "/billing/invoices/x.secret"} {
		if r := fx.do(t, call{path: p, secret: read}); r.status != http.StatusOK {
			t.Errorf("%s (only one route reads it): %d %s", p, r.status, r.body)
		}
	}
}

// A client whose upload stalls past read_timeout is cut off (net/http
// ends the request with the connection), not answered with a 504 blamed
// on the upstream, and the exchange is completed in the audit as the
// client's (499, aborted).
func TestStalledUploadIsTheClients(t *testing.T) {
	fx := newFixture(t, fixtureOpts{limits: func(l *config.Limits) { l.ReadTimeout = config.Duration(300 * time.Millisecond) }})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			// hang up without an answer: a handler that just returned
			// would answer 200, and the transport may hand that answer
			// to the gateway before it sees its own write fail
			panic(http.ErrAbortHandler)
		}
		w.Write([]byte("{}"))
	})
	c := fx.dial(t)
	io.WriteString(c, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nX-Request-Id: stalled\r\nAuthorization: Bearer "+s+"\r\nContent-Length: 10\r\n\r\nhello")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		t.Errorf("answered %d", resp.StatusCode)
	}
	if evs := fx.rec.byRequest(t, "stalled", 2); len(evs) != 2 || evs[1].Status != 499 || evs[1].Reason != CodeAborted {
		t.Errorf("events %+v", evs)
	}
}

// An answer without a body (204) after an upload longer than the write
// timeout still reaches the client: the deadline moves when the answer's
// head is written, not only with body writes.
func TestBodylessAnswerAfterALongUpload(t *testing.T) {
	fx := newFixture(t, fixtureOpts{
		limits: func(l *config.Limits) { l.WriteTimeout = config.Duration(300 * time.Millisecond) },
		mutate: func(c *config.Gateway) { c.Upstreams[1].Timeouts.Response = config.Duration(300 * time.Millisecond) },
	})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	c := fx.dial(t)
	fmt.Fprintf(c, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nX-Request-Id: long-upload\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", s)
	for range 8 { // 1.2 s in all, 150 ms between chunks
		fmt.Fprintf(c, "6\r\nchunk\n\r\n")
		time.Sleep(150 * time.Millisecond)
	}
	fmt.Fprintf(c, "0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer after a 1.2 s upload: %v", err)
	}
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d", resp.StatusCode)
	}
	if evs := fx.rec.byRequest(t, "long-upload", 2); len(evs) != 2 || evs[1].BytesIn != 48 {
		t.Errorf("events %+v", evs)
	}
}
