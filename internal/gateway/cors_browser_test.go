package gateway

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/browsertest"
	"github.com/phigate/phigate/internal/config"
)

// TestBrowserCORS: in headless Chromium, a page served over HTTPS from an
// allowed origin fetches a FHIR search through the gateway with a token
// and reads the Bundle; the same fetch from a page of another origin is
// blocked by the browser itself (fetch rejects), though the gateway
// answered it.
func TestBrowserCORS(t *testing.T) {
	browsertest.Require(t)
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>app</title><p>a browser app</p>`))
	})
	app, other := httptest.NewTLSServer(page), httptest.NewTLSServer(page)
	defer app.Close()
	defer other.Close()
	fx := newFixture(t, fixtureOpts{mutate: func(g *config.Gateway) {
		g.Upstreams[0].CORS = config.CORS{Origins: []string{app.URL}}
	}})
	const bundle = `{"resourceType":"Bundle","type":"searchset","total":1,"entry":[{"resource":{"resourceType":"Observation","id":"obs-1"}}]}`
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(bundle))
	})
	tok, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	certPEM, err := os.ReadFile(fx.certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	gwCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	port := fx.addr[strings.LastIndexByte(fx.addr, ':')+1:]
	res := browsertest.Run(t, "testdata/cors_fetch.mjs", map[string]any{
		"pages": []string{app.URL + "/", other.URL + "/"},
		"url":   "https://localhost:" + port + "/fhir/Observation?code=x",
		"token": tok,
	}, browsertest.Options{SPKIPins: []string{browsertest.SPKIPin(gwCert), browsertest.SPKIPin(app.Certificate()), browsertest.SPKIPin(other.Certificate())}})
	var got []struct {
		OK     bool   `json:"ok"`
		Status int    `json:"status"`
		Body   string `json:"body"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(res.Value, &got); err != nil || len(got) != 2 {
		t.Fatalf("result %s: %v", res.Value, err)
	}
	if a := got[0]; !a.OK || a.Status != 200 || !strings.Contains(a.Body, `"id":"obs-1"`) {
		t.Fatalf("the allowed origin's fetch: %+v; console %+v", a, res.Console)
	}
	if o := got[1]; o.OK || !strings.Contains(o.Error, "Failed to fetch") {
		t.Fatalf("the other origin's fetch was not blocked by the browser: %+v", o)
	}
	blocked := false
	for _, m := range res.Errors() {
		if m.Page == "page2" && strings.Contains(m.Text, "CORS") {
			blocked = true
		}
	}
	if !blocked {
		t.Errorf("the browser reported no CORS block for the other origin; console %+v", res.Console)
	}
}
