package console

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

var reSecret = regexp.MustCompile(`id="secret" class="secret-value" readonly value="(phi_[0-9A-Za-z]+)"`)

// A token issued in the console shows its secret once, the secret works,
// and the issue is audited as the session's token.
func TestIssueShowsTheSecretOnceAndIsAuditedAsTheSessionToken(t *testing.T) {
	e := newEnv(t, envOpts{})
	mgr, mgrRec := e.token("manager", scope.AdminTokens, "patient/Observation.rs")
	b := e.browser()
	csrf := b.login(mgr)
	a := b.post("/console/tokens", url.Values{"csrf": {csrf}, "subject": {"lab-app"}, "scopes": {"patient/Observation.rs"}, "ttl": {"10m"}})
	m := reSecret.FindStringSubmatch(a.body)
	if a.status != 200 || m == nil {
		t.Fatalf("issue: %d %s", a.status, a.body)
	}
	d, err := e.auth.Verify(context.Background(), m[1], authority.Request{})
	if err != nil || !d.Allowed() || d.Token.Subject != "lab-app" || d.Token.ParentID != mgrRec.ID {
		t.Fatalf("the secret shown does not work: %v %v", d.Reason, err)
	}
	if again := b.get("/console/tokens/" + d.Token.ID); again.status != 200 || strings.Contains(again.body, m[1]) || strings.Contains(again.body, `id="secret"`) {
		t.Fatal("the secret is shown again")
	}
	var audited bool
	for _, en := range e.entries(audit.ActionTokenCreated) {
		audited = audited || en.Actor.TokenID == mgrRec.ID
	}
	if !audited {
		t.Fatal("the issue is not audited as the session's token")
	}
	// attenuation is the authority's: wider than the session's token is refused
	if a := b.post("/console/tokens", url.Values{"csrf": {csrf}, "subject": {"x"}, "scopes": {"admin:keys"}}); a.status != http.StatusForbidden {
		t.Fatalf("escalation: %d", a.status)
	}
}

func TestTokenActions(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	csrf := b.login(e.root)
	_, parent := e.token("parent", scope.AdminTokens, "patient/Observation.rs", "patient/Patient.rs")
	mustSecret(t, e, parent) // rotation 1
	post := func(id, action string, extra url.Values) answer {
		t.Helper()
		f := url.Values{"csrf": {csrf}}
		for k, v := range extra {
			f[k] = v
		}
		return b.post("/console/tokens/"+id+"/"+action, f)
	}
	if a := post(parent.ID, "suspend", nil); a.status != 200 || e.status(parent.ID) != token.StatusSuspended || !strings.Contains(a.body, "/reinstate") {
		t.Fatalf("suspend: %d", a.status)
	}
	if a := post(parent.ID, "reinstate", nil); a.status != 200 || e.status(parent.ID) != token.StatusActive {
		t.Fatalf("reinstate: %d", a.status)
	}
	a := post(parent.ID, "rotate", nil)
	m := reSecret.FindStringSubmatch(a.body)
	if a.status != 200 || m == nil || !strings.Contains(a.body, "previous secret works until") {
		t.Fatalf("rotate: %d %s", a.status, a.body)
	}
	if d, _ := e.auth.Verify(context.Background(), m[1], authority.Request{}); !d.Allowed() || d.Token.ID != parent.ID || d.Token.Rotations != 2 {
		t.Fatal("the rotated secret does not work")
	}
	if a := post(parent.ID, "narrow", url.Values{"keep": {scope.AdminTokens, "patient/Patient.rs"}}); a.status != 200 {
		t.Fatalf("narrow: %d %s", a.status, a.body)
	}
	if rec, _ := e.st.Token(context.Background(), parent.ID); len(rec.Scopes) != 2 || slices.Contains(rec.Scopes, "patient/Observation.rs") {
		t.Fatalf("after narrowing: %v", rec.Scopes)
	}
	if a := post(parent.ID, "narrow", url.Values{"keep": {"patient/Patient.rs", "admin:keys"}}); a.status != http.StatusBadRequest {
		t.Fatalf("narrowing that adds a scope: %d", a.status)
	}
	if a := post(parent.ID, "narrow", nil); a.status != http.StatusBadRequest {
		t.Fatalf("narrowing to nothing: %d", a.status)
	}
	// lineage: a child of parent, listed on its page; cascade revokes both
	pd, err := e.auth.Verify(context.Background(), m[1], authority.Request{})
	if err != nil || !pd.Allowed() {
		t.Fatal(pd.Reason, err)
	}
	_, child, err := e.auth.Create(context.Background(), authority.ActorOf(pd), authority.Spec{Subject: "child", Scopes: []string{"patient/Patient.rs"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if a := b.get("/console/tokens/" + parent.ID); !strings.Contains(a.body, "/console/tokens/"+child.ID) {
		t.Fatal("the child is not on the parent's page")
	}
	if a := b.get("/console/tokens/" + child.ID); !strings.Contains(a.body, "/console/tokens/"+parent.ID) {
		t.Fatal("the parent is not on the child's page")
	}
	if a := post(parent.ID, "revoke", url.Values{"cascade": {"1"}, "reason": {"test"}}); a.status != 200 || !strings.Contains(a.body, "Revoked 2 tokens") {
		t.Fatalf("cascade: %d %s", a.status, a.body)
	}
	if e.status(child.ID) != token.StatusRevoked {
		t.Fatal("cascade left the child")
	}
	if a := post(parent.ID, "reinstate", nil); a.status != http.StatusConflict {
		t.Fatalf("reinstating a revoked token: %d", a.status)
	}
	if a := post(parent.ID, "explode", nil); a.status != http.StatusNotFound {
		t.Fatalf("unknown action: %d", a.status)
	}
}

// mustSecret rotates rec to learn a working secret of it (the test kept
// none).
func mustSecret(t *testing.T, e *env, rec *token.Record) string {
	t.Helper()
	rot, err := e.auth.RotateWith(context.Background(), e.rootActor(), rec.ID, authority.RotateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return rot.Secret
}

// Revoking its own token from the console ends the session.
func TestRevokingYourOwnTokenEndsTheSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	secret, rec := e.token("officer", scope.AdminTokens)
	b := e.browser()
	csrf := b.login(secret)
	if a := b.post("/console/tokens/"+rec.ID+"/revoke", url.Values{"csrf": {csrf}}); a.status != 200 || !strings.Contains(a.body, "session has ended") {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if a := b.get("/console/"); a.status != http.StatusUnauthorized {
		t.Fatalf("after revoking itself: %d", a.status)
	}
}

func TestTokenListFiltersAndPages(t *testing.T) {
	e := newEnv(t, envOpts{})
	for i := 0; i < listPage+5; i++ {
		e.token("bulk", "patient/Observation.rs")
	}
	_, special := e.token("special", "patient/Patient.rs")
	used, usedRec := e.token("used", "patient/Patient.rs")
	if d, _ := e.auth.Verify(context.Background(), used, authority.Request{}); !d.Allowed() {
		t.Fatal(d.Reason)
	}
	if err := e.auth.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.login(e.root)
	rows := func(a answer) int { return strings.Count(a.body, `<td><a href="/console/tokens/`) }

	a := b.get("/console/tokens?subject=bulk")
	if rows(a) != listPage || !strings.Contains(a.body, `rel="next"`) {
		t.Fatalf("first page: %d rows", rows(a))
	}
	next := regexp.MustCompile(`rel="next" href="/console/tokens\?([^"]+)"`).FindStringSubmatch(a.body)
	a2 := b.get("/console/tokens?" + html.UnescapeString(next[1]))
	if rows(a2) != 5 || strings.Contains(a2.body, `rel="next"`) {
		t.Fatalf("second page: %d rows", rows(a2))
	}
	a = b.get("/console/tokens?scope=patient/Patient.rs")
	if rows(a) != 2 || !strings.Contains(a.body, special.ID) {
		t.Fatalf("scope filter: %d rows", rows(a))
	}
	a = b.get("/console/tokens?scope=patient/Patient.rs&never_used=1")
	if rows(a) != 1 || strings.Contains(a.body, usedRec.ID) {
		t.Fatalf("never used: %d rows", rows(a))
	}
	a = b.get("/console/tokens?expiring=1&subject=special")
	if rows(a) != 1 {
		t.Fatalf("expiring (ttl 1h): %d rows", rows(a))
	}
	e.clock.Add(2 * time.Hour)
	b2 := e.browser()
	b2.login(e.root)
	if a := b2.get("/console/tokens?idle=1h&subject=used"); rows(a) != 1 {
		t.Fatalf("idle: %d rows", rows(a))
	}
	if a := b2.get("/console/tokens?status=bogus"); a.status != http.StatusBadRequest {
		t.Fatalf("bad status: %d", a.status)
	}
}

// seedAccess appends n grants of access to patient by a token.
func (e *env) seedAccess(n int, patient string) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		en := &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess, Patient: patient, Purpose: "TREAT",
			Actor: audit.Actor{TokenID: "tok_app", Subject: "lab-app", Kind: "service"}, Method: "GET", Upstream: "fhir", Path: "/fhir/Observation?patient=" + patient}
		if _, err := e.log.Append(context.Background(), en); err != nil {
			e.t.Fatal(err)
		}
	}
}

func TestAuditExplorerSearchesByPatientAndVerifies(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.seedAccess(3, "pat-1")
	e.seedAccess(2, "pat-2")
	b := e.browser()
	b.login(e.root)
	before := len(e.entries(audit.ActionAuditRead))
	a := b.get("/console/audit?patient=pat-1")
	if a.status != 200 || strings.Count(a.body, "<details>") != 3 {
		t.Fatalf("patient search: %d, %d entries", a.status, strings.Count(a.body, "<details>"))
	}
	if !strings.Contains(a.body, `class="badge verified"`) || !strings.Contains(a.body, "each of the 3 entries shown is included") {
		t.Fatalf("no verification badge: %s", a.body)
	}
	if strings.Contains(a.body, "pat-2") {
		t.Fatal("another patient's entry shown")
	}
	if !regexp.MustCompile(`signed checkpoint of \d+ entries \(\d{4}-\d\d-\d\d `).MatchString(a.body) {
		t.Fatal("the badge does not date its checkpoint")
	}
	if len(e.entries(audit.ActionAuditRead)) != before+1 {
		t.Fatal("the search is not recorded as an audit.read")
	}
	if a := b.get("/console/audit?action=nope"); a.status != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", a.status)
	}
	if a := b.get("/console/audit?patient=nobody"); !strings.Contains(a.body, "Not verified: no entries to verify") {
		t.Fatal("an empty page claims verification")
	}
}

// The badge fails when the entry shown is not the one the log proves.
func TestBadgeRefusesAnEntryThatIsNotTheOneProven(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.seedAccess(4, "pat-1")
	pg, err := e.log.Search(context.Background(), &audit.Query{Patient: "pat-1"})
	if err != nil {
		t.Fatal(err)
	}
	if b := e.con.verify(context.Background(), pg.Entries); !b.OK || b.Checked != 4 {
		t.Fatalf("intact: %+v", b)
	}
	for name, mutate := range map[string]func(*audit.Entry){
		"Action":  func(en *audit.Entry) { en.Action = audit.ActionAccessDenied },
		"Actor":   func(en *audit.Entry) { en.Actor.Subject = "someone-else" },
		"Time":    func(en *audit.Entry) { en.Time = en.Time.Add(time.Second) },
		"Outcome": func(en *audit.Entry) { en.Outcome = audit.OutcomeDenied },
	} {
		c := *pg.Entries[2]
		mutate(&c)
		shown := []*audit.Entry{pg.Entries[0], pg.Entries[1], &c}
		if b := e.con.verify(context.Background(), shown); b.OK || !strings.Contains(b.Problem, "not the entry proven") {
			t.Errorf("%s changed: %+v", name, b)
		}
	}
}

func TestAuditExportJSONLAndFHIR(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.seedAccess(5, "pat-1")
	b := e.browser()
	b.login(e.root)
	a := b.get("/console/audit/export?format=jsonl&patient=pat-1")
	lines := strings.Split(strings.TrimSpace(a.body), "\n")
	if a.status != 200 || len(lines) != 5 || !strings.Contains(a.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("jsonl: %d, %d lines", a.status, len(lines))
	}
	for _, l := range lines {
		var en audit.Entry
		if err := json.Unmarshal([]byte(l), &en); err != nil || en.Patient != "pat-1" {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	a = b.get("/console/audit/export?format=fhir&patient=pat-1")
	var bundle struct {
		ResourceType string
		Type         string
		Entry        []struct{ Resource audit.AuditEvent }
	}
	if err := json.Unmarshal([]byte(a.body), &bundle); err != nil || bundle.ResourceType != "Bundle" || len(bundle.Entry) != 5 || bundle.Entry[0].Resource.ResourceType != "AuditEvent" {
		t.Fatalf("fhir: %v %+v", err, bundle)
	}
	if a := b.get("/console/audit/export?format=csv"); a.status != http.StatusBadRequest {
		t.Fatalf("format csv: %d", a.status)
	}
}

func TestDisclosuresListsAccessesWithProofsAnAuditorCanCheck(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.seedAccess(3, "pat-1")
	e.seedAccess(1, "pat-2")
	b := e.browser()
	b.login(e.root)
	a := b.get("/console/disclosures?patient=pat-1")
	if a.status != 200 || strings.Count(a.body, "<td>#") != 3 || !strings.Contains(a.body, "TREAT") || !strings.Contains(a.body, `class="badge verified"`) {
		t.Fatalf("disclosures: %d %s", a.status, a.body)
	}
	if !strings.Contains(html.UnescapeString(a.body), e.log.PublicKey()) {
		t.Fatal("the page does not give the log's key")
	}
	p := b.get("/console/disclosures/proofs?patient=pat-1")
	var file struct {
		Format  string
		Key     string
		Bundles []json.RawMessage
	}
	if err := json.Unmarshal([]byte(p.body), &file); err != nil || file.Format != ProofFileFormat || len(file.Bundles) != 3 {
		t.Fatalf("proofs: %v %s", err, p.body)
	}
	v, err := audit.NewVerifier(file.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range file.Bundles {
		pb, err := audit.ParseBundle(raw)
		if err != nil {
			t.Fatal(err)
		}
		en, _, err := audit.VerifyBundle(pb, v)
		if err != nil || en.Action != audit.ActionAccessGranted {
			t.Fatalf("a proof does not verify offline: %v", err)
		}
	}
	if a := b.get("/console/disclosures?patient=pat-1&from=2026-13-01"); a.status != http.StatusBadRequest {
		t.Fatalf("bad from: %d", a.status)
	}
}

func TestAlertsPage(t *testing.T) {
	t.Run("MonitorNotEnabled", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		b := e.browser()
		b.login(e.root)
		if a := b.get("/console/alerts"); a.status != 200 || !strings.Contains(a.body, "monitor is not enabled") {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
	t.Run("ListAndAcknowledge", func(t *testing.T) {
		e := newEnv(t, envOpts{alerts: true})
		_, rec := e.token("app", "patient/Observation.rs")
		al := &store.Alert{ID: "alr_0001", Detector: "rate_spike", Severity: store.SeverityHigh, TokenID: rec.ID, Subject: "app",
			Summary: "a spike", Action: "none", CreatedAt: e.clock.Now()}
		if err := e.st.CreateAlert(context.Background(), al); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		csrf := b.login(e.root)
		a := b.get("/console/alerts")
		if !strings.Contains(a.body, "a spike") || !strings.Contains(a.body, "/console/tokens/"+rec.ID) || !strings.Contains(a.body, "/console/audit?token_id="+rec.ID) {
			t.Fatalf("list: %s", a.body)
		}
		if a := b.post("/console/alerts/alr_0001/ack", url.Values{"note": {"checked"}}); a.status != http.StatusForbidden {
			t.Fatalf("ack without CSRF: %d", a.status)
		}
		if a := b.post("/console/alerts/alr_0001/ack", url.Values{"csrf": {csrf}, "note": {"checked"}}); a.status != 200 || !strings.Contains(a.body, "acknowledged") {
			t.Fatalf("ack: %d %s", a.status, a.body)
		}
		got, _ := e.st.Alert(context.Background(), "alr_0001")
		if got.State != store.AlertAcked {
			t.Fatal("not acked")
		}
		var audited bool
		for _, en := range e.entries(audit.ActionAlertAcked) {
			audited = audited || (en.Target == "alr_0001" && en.Actor.Subject == "root")
		}
		if !audited {
			t.Fatal("the acknowledgement is not audited as the session's token")
		}
		if a := b.post("/console/alerts/alr_0001/ack", url.Values{"csrf": {csrf}}); a.status != http.StatusConflict {
			t.Fatalf("second ack: %d", a.status)
		}
	})
}

func TestOverviewChartsTheLastHour(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.seedAccess(4, "pat-1")
	for i := 0; i < 3; i++ {
		if _, err := e.log.Append(context.Background(), &audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied, Reason: policy.Hours.Code()}); err != nil {
			t.Fatal(err)
		}
	}
	e.token("soon", "patient/Patient.rs")
	b := e.browser()
	b.login(e.root)
	a := b.get("/console/")
	for _, want := range []string{"4 granted, 3 denied", `class="granted"`, `class="denied"`, policy.Hours.Code() + ": 3", "active: 2", "2 active tokens expire within 24 hours", "<svg"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// cached: a new grant shows only after the cache's few seconds
	e.seedAccess(1, "pat-1")
	if a := b.get("/console/"); !strings.Contains(a.body, "4 granted") {
		t.Error("not cached")
	}
	e.clock.Add(11 * time.Second)
	if a := b.get("/console/"); !strings.Contains(a.body, "5 granted") {
		t.Error("the cache does not expire")
	}
}

// Rotating the session's own token keeps the session, on the new secret:
// it outlives the old secret's grace.
func TestRotatingYourOwnTokenKeepsTheSessionOnTheNewSecret(t *testing.T) {
	e := newEnv(t, envOpts{})
	d, err := e.auth.Verify(context.Background(), e.root, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal(err)
	}
	secret, rec, err := e.auth.Create(context.Background(), authority.ActorOf(d), authority.Spec{Subject: "officer", Scopes: []string{scope.AdminTokens}, TTL: time.Hour, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	csrf := b.login(secret)
	if a := b.post("/console/tokens/"+rec.ID+"/rotate", url.Values{"csrf": {csrf}}); a.status != 200 || reSecret.FindStringSubmatch(a.body) == nil {
		t.Fatalf("rotate: %d %s", a.status, a.body)
	}
	e.clock.Add(2 * time.Minute) // the old secret's grace is over
	if d, _ := e.auth.Verify(context.Background(), secret, authority.Request{}); d.Reason != policy.Rotated {
		t.Fatalf("the old secret: %v", d.Reason)
	}
	if a := b.get("/console/tokens"); a.status != 200 {
		t.Fatalf("after the grace: %d", a.status)
	}
}
