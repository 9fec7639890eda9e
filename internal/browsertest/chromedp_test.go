package browsertest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func cspServer() *httptest.Server {
	const csp = "default-src 'none'; script-src 'self'"
	mux := http.NewServeMux()
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(body))
		}
	}
	mux.HandleFunc("/ok", page(`<!doctype html><title>ok</title><p id="out">static</p><script src="/app.js"></script>`))
	mux.HandleFunc("/inline", page(`<!doctype html><title>inline</title><p id="out">static</p><script>document.getElementById('out').textContent = 'ran';</script>`))
	mux.HandleFunc("/throws", page(`<!doctype html><title>throws</title><script src="/throw.js"></script>`))
	mux.HandleFunc("/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(`document.getElementById('out').textContent = 'ran'; console.log('hello', 42);`))
	})
	mux.HandleFunc("/throw.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(`throw new Error('boom');`))
	})
	return httptest.NewTLSServer(mux)
}

// The Go browser: the page's own script runs under a strict CSP and its
// console.log is collected; an inline script is blocked and the
// violation is reported (by the probe and by the browser's log); an
// uncaught exception is reported; a screenshot is a PNG under $TMPDIR;
// and Close leaves no process behind.
func TestBrowserCollectsConsoleCSPAndExceptions(t *testing.T) {
	srv := cspServer()
	defer srv.Close()
	b := NewBrowser(t, Options{SPKIPins: []string{SPKIPin(srv.Certificate())}, Timeout: 60 * time.Second})
	read := func(path string) string {
		t.Helper()
		b.SetPage(path)
		if err := chromedp.Do(b.Ctx(), chromedp.Navigate(srv.URL+path)); err != nil {
			t.Fatal(err)
		}
		if path == "/throws" {
			return ""
		}
		out, err := chromedp.Run(b.Ctx(), chromedp.Text(chromedp.ID("out")))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := read("/ok"); got != "ran" {
		t.Fatalf("the page's own script did not run: %q", got)
	}
	shot := b.Screenshot("ok")
	if png, err := os.ReadFile(shot); err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if got := read("/inline"); got != "static" {
		t.Fatalf("the inline script ran under script-src 'self': %q", got)
	}
	read("/throws")
	var logged, probe, boom bool
	deadline := time.Now().Add(5 * time.Second)
	for !(logged && probe && boom) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		logged, probe, boom = false, false, false
		for _, m := range b.Messages() {
			logged = logged || (m.Page == "/ok" && m.Type == "log" && m.Text == "hello 42")
			probe = probe || (m.Page == "/inline" && m.Type == "error" && strings.Contains(m.Text, "CSP violation: script-src"))
			boom = boom || (m.Page == "/throws" && m.Type == "pageerror" && strings.Contains(m.Text, "boom"))
		}
	}
	if !logged || !probe || !boom {
		t.Fatalf("console.log %v, CSP violation %v, exception %v; collected %+v", logged, probe, boom, b.Messages())
	}
	for _, m := range b.Errors() {
		if m.Page == "/ok" {
			t.Errorf("the compliant page reported an error: %+v", m)
		}
	}
	dir := b.dir
	if dir == "" {
		t.Fatal("the browser's user-data-dir is unknown")
	}
	b.Close()
	if left := processesUsing(dir); len(left) > 0 {
		t.Fatalf("processes left after Close: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the user-data-dir %s is still there: %v", dir, err)
	}
}

// Without the server's pin the Go browser refuses the self-signed
// certificate too.
func TestBrowserRefusesAnUnpinnedCertificate(t *testing.T) {
	srv := cspServer()
	defer srv.Close()
	b := NewBrowser(t, Options{Timeout: 30 * time.Second})
	err := chromedp.Do(b.Ctx(), chromedp.Navigate(srv.URL+"/ok"))
	if err == nil || !strings.Contains(err.Error(), "ERR_CERT") {
		t.Fatalf("an unpinned self-signed certificate was not refused: %v", err)
	}
}
