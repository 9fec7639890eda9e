// Package browsertest runs a test's pages in a real headless Chromium
// (Debian's /usr/bin/chromium), driven from Go by chromedp, for the tests
// of what a browser does with phigate's answers: the console's pages
// under their Content-Security-Policy, CORS on the gateway.
//
// NewBrowser starts the browser for one test with one tab; the test drives
// it with chromedp through Browser.Ctx, and reads every console message,
// page error and CSP violation the pages reported (Browser.Messages,
// Browser.Errors). The browser trusts exactly the certificates whose keys
// Options.SPKIPins names (Chromium's --ignore-certificate-errors-spki-list):
// tests pin their own servers.
//
// Without Chromium a test is skipped, except under CI=true, where it
// fails: .ci/run installs it.
package browsertest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"time"
)

// Chromium is where Debian's chromium package puts the browser.
const Chromium = "/usr/bin/chromium"

// Options tune one browser.
type Options struct {
	// SPKIPins are base64 SHA-256 digests of the SubjectPublicKeyInfo of
	// the certificates the browser accepts (see SPKIPin).
	SPKIPins []string
	// Timeout bounds the browser's whole life in the test. 0: 90s.
	Timeout time.Duration
}

// Message is one console message, page error or CSP violation.
type Message struct {
	Page string `json:"page"`
	Type string `json:"type"`
	Text string `json:"text"`
}

// SPKIPin is the pin Chromium's --ignore-certificate-errors-spki-list
// takes for cert.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
