package gateway

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
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
	if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].Kind != KindDeny || evs[0].Reason != CodeMethodNotAllowed {
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
		conn, err := tls.Dial("tcp", fx.addr, fx.tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
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
