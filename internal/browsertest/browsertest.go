// Package browsertest drives a real headless Chromium (Debian's
// /usr/bin/chromium) for the tests of what a browser does with phigate's
// answers: the console's pages under their Content-Security-Policy, CORS
// on the gateway. It has two ways in:
//
//   - NewBrowser (Go, github.com/chromedp/chromedp): a Browser for one
//     test, with the flags and the SPKI pins set, every console message,
//     exception, log entry and CSP violation collected, screenshots
//     saved under $TMPDIR, and the process gone at the test's end. It
//     needs only Chromium (RequireChromium). The console's test uses it.
//   - Run (Node, the npm package playwright-core in node/): a scenario
//     written as an ES module, described below.
//
// A scenario is an ES module whose default export is an async function
// that receives { browser, context, newPage, input } and returns a JSON
// value:
//
//	export default async ({ newPage, input }) => {
//		const page = await newPage();
//		await page.goto(input.url);
//		return await page.title();
//	};
//
// Run hands the scenario the test's input, waits for it (bounded by
// Options.Timeout) and returns its result with every console message,
// page error and CSP violation the pages reported. The browser trusts
// exactly the certificates whose keys Options.SPKIPins names (Chromium's
// --ignore-certificate-errors-spki-list): tests pin their own server.
//
// Without Node, Chromium or playwright-core a test is skipped, except
// under CI=true, where it fails: .ci/run installs them.
package browsertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Chromium is where Debian's chromium package puts the browser.
const Chromium = "/usr/bin/chromium"

// Options tune one Run.
type Options struct {
	// SPKIPins are base64 SHA-256 digests of the SubjectPublicKeyInfo of
	// the certificates the browser accepts (see SPKIPin).
	SPKIPins []string
	// Timeout bounds the whole scenario, browser start included. 0: 90s.
	Timeout time.Duration
}

// Message is one console message, page error or CSP violation.
type Message struct {
	Page string `json:"page"`
	Type string `json:"type"`
	Text string `json:"text"`
}

// Result is what a scenario returned and what its pages reported.
type Result struct {
	Value   json.RawMessage
	Console []Message
}

// Errors returns the console messages of type error and the page errors
// (a CSP violation is reported as an error).
func (r Result) Errors() []Message {
	var out []Message
	for _, m := range r.Console {
		if m.Type == "error" || m.Type == "pageerror" {
			out = append(out, m)
		}
	}
	return out
}

// SPKIPin is the pin Chromium's --ignore-certificate-errors-spki-list
// takes for cert.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// nodeDir is the directory of run.mjs and its node_modules.
func nodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "node")
}

// Available reports why the browser cannot run here ("" when it can).
func Available() string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node is not on PATH"
	}
	if _, err := os.Stat(Chromium); err != nil {
		return Chromium + " is missing (Debian package chromium)"
	}
	if _, err := os.Stat(filepath.Join(nodeDir(), "node_modules", "playwright-core", "package.json")); err != nil {
		return "the npm package playwright-core is not installed in internal/browsertest/node"
	}
	return ""
}

// Require skips t (or fails it under CI=true) when the browser cannot run.
func Require(t testing.TB) {
	t.Helper()
	missing := Available()
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s: .ci/run installs it", missing)
	}
	t.Skipf("skipped: this runs headless Chromium, and %s; CI installs it (.ci/run), locally "+
		"`apt-get install chromium` and `npm ci --ignore-scripts` in internal/browsertest/node", missing)
}

// Run runs the scenario module at path (relative to the test's working
// directory, or absolute) with input, and returns what it returned. A
// scenario that throws, or times out, fails t with its error and the
// pages' console.
func Run(t testing.TB, scenario string, input any, opts Options) Result {
	t.Helper()
	Require(t)
	abs, err := filepath.Abs(scenario)
	if err != nil {
		t.Fatal(err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	req, err := json.Marshal(map[string]any{
		"scenario":   abs,
		"input":      input,
		"spkiPins":   opts.SPKIPins,
		"executable": Chromium,
		"timeoutMs":  timeout.Milliseconds(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "run.mjs")
	cmd.Dir = nodeDir()
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=")
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out struct {
		OK      bool            `json:"ok"`
		Result  json.RawMessage `json:"result"`
		Error   string          `json:"error"`
		Console []Message       `json:"console"`
	}
	line := lastLine(stdout.Bytes())
	if err := json.Unmarshal(line, &out); err != nil {
		t.Fatalf("browser scenario %s: no result (%v; run: %v)\nstdout: %s\nstderr: %s", scenario, err, runErr, stdout.Bytes(), stderr.Bytes())
	}
	if !out.OK {
		t.Fatalf("browser scenario %s failed: %s\nconsole: %s\nstderr: %s", scenario, out.Error, formatConsole(out.Console), stderr.Bytes())
	}
	return Result{Value: out.Result, Console: out.Console}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func formatConsole(ms []Message) string {
	var sb strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&sb, "\n  [%s %s] %s", m.Page, m.Type, m.Text)
	}
	return sb.String()
}
