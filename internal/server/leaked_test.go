package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// syncBuffer is a log destination the server's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLiveReportedLeakIsRevokedAlertedAndAudited reports, through the SDK,
// a live token, an admin token, an unknown token and a string whose
// checksum fails to the real server: the live ones are revoked and their
// next use is 401 token_revoked, each raises a leak alert (high; critical
// for the admin token) naming the token, subject and where, the
// revocation is audited with reason leaked and where, the others are
// answered per entry, and no secret is in any log line, alert or audit
// entry.
func TestLiveReportedLeakIsRevokedAlertedAndAudited(t *testing.T) {
	logs := &syncBuffer{}
	ls := startLiveLogged(t, nil, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	svc := ls.token(client.CreateTokenRequest{Subject: "svc:billing", Scopes: []string{"user/Patient.r"}})
	adm := ls.token(client.CreateTokenRequest{Subject: "ops:jo", Kind: "admin", Scopes: []string{"admin:tokens"}})
	unknown, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := unknown[:len(unknown)-1] + otherLast(unknown)
	if ls.gateway(patientPath, svc.Secret, nil).status != http.StatusOK {
		t.Fatal("the service token does not work before the report")
	}

	c, err := client.New("https://"+ls.admin, client.WithToken(ls.adminToken), client.WithHTTPClient(ls.hc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.ReportLeaked(context.Background(), []client.Leak{
		{Token: svc.Secret, Where: "deploy/billing.yaml:12"},
		{Token: unknown, Where: "chat export"},
		{Token: bad, Where: "notes.txt:3"},
		{Token: adm.Secret, Where: "scripts/ops.sh:4"},
		{Token: svc.Secret, Where: "deploy/billing.yaml:40"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ id, status string }{
		{svc.ID, client.LeakRevoked}, {"", client.LeakUnknown}, {"", client.LeakInvalidChecksum},
		{adm.ID, client.LeakRevoked}, {svc.ID, client.LeakAlreadyRevoked},
	}
	if len(res.Results) != len(want) {
		t.Fatalf("results %+v", res.Results)
	}
	for i, w := range want {
		r := res.Results[i]
		if r.TokenID != w.id || r.Status != w.status {
			t.Errorf("result %d = %+v, want token %q status %s", i, r, w.id, w.status)
		}
		if w.status != client.LeakInvalidChecksum && !strings.HasPrefix(r.Fingerprint, token.FingerprintPrefix) {
			t.Errorf("result %d: fingerprint %q", i, r.Fingerprint)
		}
	}
	if res.Results[0].Fingerprint != res.Results[4].Fingerprint || res.Results[0].Fingerprint == res.Results[3].Fingerprint {
		t.Error("the fingerprints do not name the secrets")
	}

	// the next use is refused, on both listeners
	if a := ls.gateway(patientPath, svc.Secret, nil); a.status != http.StatusUnauthorized || a.code != "token_revoked" {
		t.Errorf("gateway after the report: %d %s, want 401 token_revoked", a.status, a.code)
	}
	if a := ls.call("GET", "https://"+ls.admin+"/v1/tokens/self", adm.Secret, nil, nil); a.status != http.StatusUnauthorized || a.code != "token_revoked" {
		t.Errorf("admin API after the report: %d %s, want 401 token_revoked", a.status, a.code)
	}

	// the alerts
	for _, w := range []struct{ id, subject, where, severity string }{
		{svc.ID, "svc:billing", "deploy/billing.yaml:12", "high"},
		{adm.ID, "ops:jo", "scripts/ops.sh:4", "critical"},
	} {
		al := ls.alerts(w.id, 1)
		if len(al) != 1 {
			t.Fatalf("alerts about %s: %+v, want one", w.id, al)
		}
		a := al[0]
		if a.Detector != "leak" || a.Severity != w.severity || a.TokenID != w.id || a.Subject != w.subject || a.Action != "revoked" ||
			!strings.Contains(a.Summary, w.where) || !strings.Contains(string(a.Evidence), w.where) {
			t.Errorf("alert %+v, want a %s leak alert naming %s, %s and %s", a, w.severity, w.id, w.subject, w.where)
		}
	}

	// the audit entries
	var leaked int
	for _, e := range ls.audit("action=token.revoked") {
		if e["reason"] != "leaked" {
			continue
		}
		leaked++
		after, _ := json.Marshal(e["after"])
		switch e["target"] {
		case svc.ID:
			if !strings.Contains(string(after), "deploy/billing.yaml:12") {
				t.Errorf("the revocation of %s does not say where: %s", svc.ID, after)
			}
		case adm.ID:
			if !strings.Contains(string(after), "scripts/ops.sh:4") {
				t.Errorf("the revocation of %s does not say where: %s", adm.ID, after)
			}
		default:
			t.Errorf("a leaked revocation of %v", e["target"])
		}
	}
	if leaked != 2 {
		t.Errorf("%d token.revoked entries with reason leaked, want 2", leaked)
	}

	// no secret anywhere
	everything := ls.admin_("GET", "/v1/audit?limit=1000", nil).body
	everything = append(everything, ls.admin_("GET", "/v1/alerts", nil).body...)
	everything = append(everything, logs.String()...)
	if !strings.Contains(logs.String(), "leaked token revoked") {
		t.Error("the revocation is not logged")
	}
	for _, sec := range []string{svc.Secret, adm.Secret, unknown, bad} {
		if bytes.Contains(everything, []byte(sec)) {
			t.Fatal("a reported secret is in a log line, an alert or an audit entry")
		}
	}
}

// TestLiveLeakReportNeedsAdminTokens: the report is an admin:tokens call;
// a token without that scope is refused and nothing is revoked.
func TestLiveLeakReportNeedsAdminTokens(t *testing.T) {
	ls := startLive(t, nil)
	svc := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}})
	a := ls.call("POST", "https://"+ls.admin+"/v1/tokens/leaked", svc.Secret, nil, []string{svc.Secret})
	if a.status != http.StatusForbidden || a.code != "insufficient_scope" {
		t.Fatalf("report with a user/Patient.r token: %d %s, want 403 insufficient_scope", a.status, a.code)
	}
	if ls.gateway(patientPath, svc.Secret, nil).status != http.StatusOK {
		t.Fatal("a refused report revoked the token")
	}
}

func otherLast(s string) string {
	if s[len(s)-1] == 'A' {
		return "B"
	}
	return "A"
}

// TestLiveLeakedTokenHashedUnderAnOlderPepperIsRevoked: the report finds a
// secret under every live pepper, not only the current one.
func TestLiveLeakedTokenHashedUnderAnOlderPepperIsRevoked(t *testing.T) {
	ls := startLive(t, nil)
	old := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}})
	if a := ls.admin_("POST", "/v1/keys/rotate-pepper", nil); a.status != http.StatusOK {
		t.Fatalf("rotate-pepper: %d %s", a.status, a.body)
	}
	a := ls.admin_("POST", "/v1/tokens/leaked", []string{old.Secret})
	var out client.LeakResults
	json.Unmarshal(a.body, &out)
	if a.status != http.StatusOK || len(out.Results) != 1 || out.Results[0].Status != client.LeakRevoked || out.Results[0].TokenID != old.ID {
		t.Fatalf("report: %d %s", a.status, a.body)
	}
	if g := ls.gateway(patientPath, old.Secret, nil); g.status != http.StatusUnauthorized || g.code != "token_revoked" {
		t.Fatalf("after the report: %d %s", g.status, g.code)
	}
}
