package console

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/browsertest"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The console in headless Chromium under its own CSP: every step works,
// the one script runs (the copy button), and no page reports a CSP
// violation, a console error or a page error.
func TestConsoleInChromium(t *testing.T) {
	browsertest.Require(t)
	e := newEnv(t, envOpts{alerts: true})
	_, victim := e.token("victim", "patient/Patient.rs")
	e.seedAccess(3, "pat-7")
	if err := e.st.CreateAlert(context.Background(), &store.Alert{ID: "alr_b1", Detector: "rate_spike", Severity: store.SeverityHigh,
		TokenID: victim.ID, Summary: "a spike", Action: "none", CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	shots, err := os.MkdirTemp("", "phigate-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	res := browsertest.Run(t, "testdata/console.mjs",
		map[string]any{"base": e.srv.URL, "token": e.root, "victim": victim.ID, "patient": "pat-7", "shots": shots},
		browsertest.Options{SPKIPins: []string{browsertest.SPKIPin(e.srv.Certificate())}})
	var got struct {
		AfterLogin    string `json:"afterLogin"`
		OverviewSVG   int    `json:"overviewSVG"`
		Listed        int    `json:"listed"`
		VictimListed  bool   `json:"victimListed"`
		Secret        string `json:"secret"`
		NewID         string `json:"newId"`
		CopyVisible   bool   `json:"copyVisible"`
		CopyText      string `json:"copyText"`
		Clipboard     string `json:"clipboard"`
		SecretAgain   int    `json:"secretAgain"`
		Status        string `json:"status"`
		Badge         string `json:"badge"`
		Entries       int    `json:"entries"`
		Expanded      int    `json:"expanded"`
		Disclosures   int    `json:"disclosures"`
		PrintHidesNav bool   `json:"printHidesNav"`
		Alerts        int    `json:"alerts"`
	}
	if err := json.Unmarshal(res.Value, &got); err != nil {
		t.Fatalf("%s: %v", res.Value, err)
	}
	if got.AfterLogin != "/console/" || got.OverviewSVG < 2 {
		t.Errorf("login: %+v", got)
	}
	if got.Listed < 2 || !got.VictimListed {
		t.Errorf("token list: %+v", got)
	}
	if token.Check(got.Secret) != nil || !got.CopyVisible || got.CopyText != "Copied" || got.Clipboard != got.Secret {
		t.Errorf("the secret shown once, copied by the script: %+v", got)
	}
	if got.SecretAgain != 0 {
		t.Error("the secret is shown again")
	}
	if got.Status != "revoked" || e.status(got.NewID) != token.StatusRevoked {
		t.Errorf("revoke: %q", got.Status)
	}
	if !strings.HasPrefix(got.Badge, "✓ Verified") || got.Entries != 3 || got.Expanded != 1 {
		t.Errorf("audit explorer: %+v", got)
	}
	if got.Disclosures != 3 || !got.PrintHidesNav {
		t.Errorf("disclosures: %+v", got)
	}
	if got.Alerts != 1 {
		t.Errorf("alerts: %+v", got)
	}
	for _, m := range res.Errors() {
		t.Errorf("the browser reported %s on %s: %s", m.Type, m.Page, m.Text)
	}
	var revokedBySession bool
	for _, en := range e.entries(audit.ActionTokenRevoked) {
		revokedBySession = revokedBySession || (en.Target == got.NewID && en.Actor.Subject == "root")
	}
	if !revokedBySession {
		t.Error("the revocation is not audited as the session's token")
	}
}
