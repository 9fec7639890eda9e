package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

const (
	appOrigin   = "https://app.example.org"
	otherOrigin = "https://evil.example.org"
)

func corsFixture(t *testing.T) *fixture {
	return newFixture(t, fixtureOpts{
		mutate: func(g *config.Gateway) {
			g.Upstreams[0].CORS = config.CORS{Origins: []string{appOrigin}, MaxAge: config.Duration(5 * 60e9)}
			g.Upstreams[1].CORS = config.CORS{Origins: []string{appOrigin}}
		},
		options: func(_ *fixture, o *Options) { o.SMARTConfiguration = []byte(testSMARTDoc) },
	})
}

func preflight(origin, method string) call {
	return call{method: "OPTIONS", path: "/fhir/Observation", header: map[string]string{
		"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "authorization, x-purpose-of-use"}}
}

func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

// TestCORSPreflight: a preflight from a listed origin is answered 204 by
// the gateway without a token and without reaching the upstream, with the
// one origin echoed, the methods, the headers phigate reads, max-age and
// Vary: Origin, never Allow-Credentials; recorded once, as public. Each
// mutation (another origin, a method not allowed, an upstream without
// cors, a second Origin) is refused 403 without any CORS header.
func TestCORSPreflight(t *testing.T) {
	fx := corsFixture(t)
	r := fx.do(t, preflight(appOrigin, "GET"))
	h := r.header
	if r.status != 204 || h.Get("Access-Control-Allow-Origin") != appOrigin || h.Get("Access-Control-Max-Age") != "300" ||
		h.Get("Access-Control-Allow-Methods") != "GET, HEAD, POST, PUT, PATCH, DELETE" || h.Get("Vary") != "Origin" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Purpose-Of-Use") {
		t.Fatalf("preflight: %d %v", r.status, h)
	}
	if _, ok := h["Access-Control-Allow-Credentials"]; ok {
		t.Fatal("Access-Control-Allow-Credentials sent")
	}
	evs := fx.rec.byRequest(t, h.Get("X-Request-Id"), 1)
	if len(evs) != 1 || !evs[0].Public || evs[0].Kind != KindGrant || evs[0].TokenID != "" || evs[0].Interaction != "cors-preflight" {
		t.Fatalf("recorded %+v", evs)
	}
	// billing: only its routes' methods (GET /invoices/*, POST /invoices/, * /upload)
	b := preflight(appOrigin, "DELETE")
	b.path = "/billing/upload"
	if r := fx.do(t, b); r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != appOrigin {
		t.Fatalf("billing preflight: %d %v", r.status, r.header)
	}

	mutations := map[string]call{
		"other_origin":       preflight(otherOrigin, "GET"),
		"origin_with_slash":  preflight(appOrigin+"/", "GET"),
		"origin_upper_case":  preflight(strings.ToUpper(appOrigin), "GET"),
		"method_not_allowed": preflight(appOrigin, "TRACEX"),
		"upstream_without_cors": func() call {
			c := preflight(appOrigin, "GET")
			c.path = "/records/r/1"
			return c
		}(),
	}
	for name, c := range mutations {
		t.Run(name, func(t *testing.T) {
			r := fx.do(t, c)
			if r.status != 403 || len(corsHeaders(r.header)) != 0 {
				t.Fatalf("%d, CORS headers %v", r.status, corsHeaders(r.header))
			}
			evs := fx.rec.byRequest(t, r.header.Get("X-Request-Id"), 1)
			if len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Reason != CodeCORSRefused || evs[0].TokenID != "" {
				t.Fatalf("recorded %+v", evs)
			}
		})
	}
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("%d preflights forwarded", n)
	}
}

// TestCORSActualResponses: answers to a listed origin carry
// Allow-Origin and Expose-Headers, the 401 and 403 refusals too, and the
// SMART configuration; other origins get no CORS header; an upstream's own
// Access-Control-* headers never reach the client.
func TestCORSActualResponses(t *testing.T) {
	fx := corsFixture(t)
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[]}`))
	})
	tok, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	other, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	cases := []struct {
		name   string
		c      call
		status int
		cors   bool
	}{
		{"search_from_app", call{path: "/fhir/Observation?code=x", secret: tok, header: map[string]string{"Origin": appOrigin}}, 200, true},
		{"no_token_from_app", call{path: "/fhir/Observation?code=x", header: map[string]string{"Origin": appOrigin}}, 401, true},
		{"wrong_scope_from_app", call{path: "/fhir/Observation?code=x", secret: other, header: map[string]string{"Origin": appOrigin}}, 403, true},
		{"smart_configuration_from_app", call{path: "/fhir/.well-known/smart-configuration", header: map[string]string{"Origin": appOrigin}}, 200, true},
		{"search_from_other_origin", call{path: "/fhir/Observation?code=x", secret: tok, header: map[string]string{"Origin": otherOrigin}}, 200, false},
		{"search_without_origin", call{path: "/fhir/Observation?code=x", secret: tok}, 200, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := fx.do(t, c.c)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			h := r.header
			if _, ok := h["Access-Control-Allow-Credentials"]; ok {
				t.Fatal("Access-Control-Allow-Credentials reached the client")
			}
			if !c.cors {
				if got := corsHeaders(h); len(got) != 0 {
					t.Fatalf("CORS headers for an origin not listed: %v", got)
				}
				return
			}
			if h.Values("Access-Control-Allow-Origin")[0] != appOrigin || len(h.Values("Access-Control-Allow-Origin")) != 1 ||
				!strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Request-Id") || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Fatalf("CORS headers: %v", h)
			}
		})
	}
}

// BenchmarkPreflight measures the gateway's answer to a CORS preflight,
// over TLS on loopback, with the in-memory recorder.
func BenchmarkPreflight(b *testing.B) {
	fx := newFixture(b, fixtureOpts{mutate: func(g *config.Gateway) {
		g.Upstreams[0].CORS = config.CORS{Origins: []string{appOrigin}}
	}})
	c := preflight(appOrigin, "GET")
	b.Run("HTTPS", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := fx.do(b, c); r.status != 204 {
				b.Fatalf("%d", r.status)
			}
		}
	})
	b.Run("Handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest("OPTIONS", "https://gw/fhir/Observation", nil)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			fx.gw.ServeHTTP(w, req)
			if w.Code != 204 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
