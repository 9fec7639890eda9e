package browsertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A page whose script is its own file runs under a strict CSP; a page
// whose script is inline is blocked by the same CSP, and the violation is
// reported: the browser really enforces what the console's tests rely on.
func TestChromiumEnforcesCSPAndReportsViolations(t *testing.T) {
	Require(t)
	const csp = "default-src 'none'; script-src 'self'"
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>ok</title><p id="out">static</p><script src="/app.js"></script>`))
	})
	mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(`document.getElementById('out').textContent = 'ran';`))
	})
	mux.HandleFunc("/inline", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>inline</title><p id="out">static</p><script>document.getElementById('out').textContent = 'ran';</script>`))
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	res := Run(t, "testdata/title.mjs", map[string]any{"urls": []string{srv.URL + "/ok", srv.URL + "/inline"}},
		Options{SPKIPins: []string{SPKIPin(srv.Certificate())}})
	var pages []struct{ Title, Text string }
	if err := json.Unmarshal(res.Value, &pages); err != nil {
		t.Fatalf("result %s: %v", res.Value, err)
	}
	if len(pages) != 2 || pages[0].Title != "ok" || pages[0].Text != "ran" {
		t.Fatalf("the page with its own script file: %+v", pages)
	}
	if pages[1].Text != "static" {
		t.Fatalf("the inline script ran under script-src 'self': %+v", pages[1])
	}
	var violations int
	for _, m := range res.Errors() {
		if m.Page == "page1" {
			t.Errorf("the compliant page reported an error: %+v", m)
		}
		if m.Page == "page2" && strings.Contains(m.Text, "script-src") {
			violations++
		}
	}
	if violations == 0 {
		t.Fatalf("no CSP violation reported for the inline script; console: %+v", res.Console)
	}
}

// Without the server's pin the browser refuses the self-signed
// certificate: the pin is what makes the test server trusted.
func TestChromiumRefusesAnUnpinnedCertificate(t *testing.T) {
	Require(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`<title>x</title><p id="out">x</p>`))
	}))
	defer srv.Close()
	res := Run(t, "testdata/goto.mjs", map[string]any{"url": srv.URL}, Options{})
	var got struct {
		Loaded bool   `json:"loaded"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal(res.Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.Loaded || !strings.Contains(got.Error, "ERR_CERT") {
		t.Fatalf("an unpinned self-signed certificate was not refused: %+v", got)
	}
}
