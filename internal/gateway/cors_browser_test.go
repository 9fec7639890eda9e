package gateway

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	browsertest.RequireChromium(t)
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
	b := browsertest.NewBrowser(t, browsertest.Options{SPKIPins: []string{browsertest.SPKIPin(gwCert), browsertest.SPKIPin(app.Certificate()), browsertest.SPKIPin(other.Certificate())}})
	url := "https://localhost:" + port + "/fhir/Observation?code=x"
	type fetched struct {
		OK     bool   `json:"ok"`
		Status int    `json:"status"`
		Body   string `json:"body"`
		Error  string `json:"error"`
	}
	// Each page (a browser app's origin) fetches the search through the
	// gateway with the bearer token, as a SMART app in a patient portal
	// would; the result is whether the fetch resolved, its status and
	// body, or the error the browser gave.
	fetchFrom := func(name, pageURL string) fetched {
		t.Helper()
		b.SetPage(name)
		if _, err := chromedp.Run(b.Ctx(), chromedp.NavigateResponse(pageURL)); err != nil {
			t.Fatalf("%s: %v", pageURL, err)
		}
		js := `(async () => {
			try {
				const r = await fetch(` + strconv.Quote(url) + `, {headers: {Authorization: 'Bearer ' + ` + strconv.Quote(tok) + `, Accept: 'application/fhir+json'}});
				return JSON.stringify({ok: true, status: r.status, body: await r.text()});
			} catch (e) {
				return JSON.stringify({ok: false, error: String(e && e.message || e)});
			}
		})()`
		out, err := chromedp.Run(b.Ctx(), chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetch from %s: %v", pageURL, err)
		}
		var f fetched
		if err := json.Unmarshal([]byte(out), &f); err != nil {
			t.Fatalf("fetch from %s: %s: %v", pageURL, out, err)
		}
		return f
	}
	if a := fetchFrom("page1", app.URL+"/"); !a.OK || a.Status != 200 || !strings.Contains(a.Body, `"id":"obs-1"`) {
		t.Fatalf("the allowed origin's fetch: %+v; console %+v", a, b.Messages())
	}
	if o := fetchFrom("page2", other.URL+"/"); o.OK || !strings.Contains(o.Error, "Failed to fetch") {
		t.Fatalf("the other origin's fetch was not blocked by the browser: %+v", o)
	}
	// The browser's report of the block is an event of the DevTools
	// protocol, which may arrive after the fetch rejected: wait for it
	// (bounded), rather than reading the messages once.
	blocked := func() bool {
		for _, m := range b.Errors() {
			if m.Page == "page2" && strings.Contains(m.Text, "CORS") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(5 * time.Second); !blocked() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !blocked() {
		t.Errorf("the browser reported no CORS block for the other origin; console %+v", b.Messages())
	}
}
