package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// alertEnv is an admin API over a store with alerts, on one test clock,
// whose audit entries are kept in memory (or refused, when failAudit).
type alertEnv struct {
	*env
	clk *testclock.Clock
	st  *sqlite.Store

	mu        sync.Mutex
	entries   []audit.Entry
	failAudit bool
}

func newAlertEnv(t testing.TB) *alertEnv {
	t.Helper()
	clk := testclock.New()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "api.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	h, _ := token.NewHasherKey(1, key)
	a := authority.New(st, h, authority.Config{Now: clk.Now, ReplaySealer: newTestSealer(t)})
	secret, _, err := a.Bootstrap(t.Context(), "root", 3*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	ae := &alertEnv{clk: clk, st: st}
	record := func(_ context.Context, e *audit.Entry) error {
		ae.mu.Lock()
		defer ae.mu.Unlock()
		if ae.failAudit {
			return audit.ErrUnavailable
		}
		ae.entries = append(ae.entries, *e)
		return nil
	}
	s := New(a, Options{Ready: st.Ping, Alerts: st, Record: record})
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	ae.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client()}
	return ae
}

// raise stores an alert raised d after the clock's start.
func (ae *alertEnv) raise(d time.Duration, mods ...func(*store.Alert)) *store.Alert {
	ae.t.Helper()
	at := testclock.Start().Add(d)
	id, _ := token.NewIDAt(nil, at)
	a := &store.Alert{ID: "alr_" + strings.TrimPrefix(id, token.IDPrefix), Detector: "rate_spike", Severity: store.SeverityHigh,
		TokenID: "tok_someone", Subject: "svc:lab", Summary: "rate spike", Evidence: []byte(`{"count_1s":120}`),
		AuditSeqs: []uint64{3, 4}, Action: "suspended", CreatedAt: at}
	for _, m := range mods {
		m(a)
	}
	if err := ae.st.CreateAlert(context.Background(), a); err != nil {
		ae.t.Fatal(err)
	}
	return a
}

func TestAlertsAreListedWithFiltersAndPages(t *testing.T) {
	ae := newAlertEnv(t)
	a1 := ae.raise(time.Minute)
	a2 := ae.raise(2*time.Minute, func(a *store.Alert) { a.Severity = store.SeverityLow; a.TokenID = "tok_other" })
	a3 := ae.raise(3 * time.Minute)
	list := func(q string) client.AlertList {
		t.Helper()
		r := ae.do("GET", "/v1/alerts"+q, ae.admin, "", nil)
		if r.status != 200 {
			t.Fatalf("GET /v1/alerts%s: %d %s", q, r.status, r.body)
		}
		var l client.AlertList
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	ids := func(l client.AlertList) (out []string) {
		for _, a := range l.Alerts {
			out = append(out, a.ID)
		}
		return out
	}
	since := url.QueryEscape(a2.CreatedAt.Format(time.RFC3339Nano))
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"", []string{a1.ID, a2.ID, a3.ID}},
		{"?severity=low", []string{a2.ID}},
		{"?token=tok_someone", []string{a1.ID, a3.ID}},
		{"?state=open", []string{a1.ID, a2.ID, a3.ID}},
		{"?state=acked", nil},
		{"?since=" + since, []string{a2.ID, a3.ID}},
		{"?until=" + since, []string{a1.ID}},
	} {
		if got := ids(list(tc.q)); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%q: %v, want %v", tc.q, got, tc.want)
		}
	}
	p1 := list("?limit=2")
	if len(p1.Alerts) != 2 || p1.Next != a2.ID {
		t.Fatalf("page 1 = %v next %q", ids(p1), p1.Next)
	}
	if p2 := list("?limit=2&after=" + p1.Next); strings.Join(ids(p2), ",") != a3.ID || p2.Next != "" {
		t.Errorf("page 2 = %v next %q", ids(p2), p2.Next)
	}
	got := list("?token=tok_other").Alerts[0]
	if got.Detector != "rate_spike" || got.Severity != "low" || string(got.Evidence) != `{"count_1s":120}` ||
		len(got.AuditSeqs) != 2 || got.Action != "suspended" || got.State != "open" || got.Subject != "svc:lab" {
		t.Errorf("alert view %+v", got)
	}
}

func TestBadAlertFiltersAreRefused(t *testing.T) {
	ae := newAlertEnv(t)
	for _, tc := range []struct{ q, field string }{
		{"?severity=urgent", "severity"},
		{"?state=closed", "state"},
		{"?since=yesterday", "since"},
		{"?until=2026-13-01T00:00:00Z", "until"},
		{"?limit=0", "limit"},
		{"?limit=1001", "limit"},
		{"?limit=x", "limit"},
	} {
		r := ae.do("GET", "/v1/alerts"+tc.q, ae.admin, "", nil)
		code, field := errCode(t, r)
		if r.status != 400 || code != "invalid_request" || field != tc.field {
			t.Errorf("%s: %d %s field %q", tc.q, r.status, code, field)
		}
	}
}

func TestAlertEndpointsNeedAdminAlerts(t *testing.T) {
	ae := newAlertEnv(t)
	a := ae.raise(time.Minute)
	other := ae.create(client.CreateTokenRequest{Subject: "svc:tokens", Scopes: []string{"admin:tokens"}, TTL: "10m"})
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/alerts"}, {"GET", "/v1/alerts/" + a.ID}, {"POST", "/v1/alerts/" + a.ID + "/ack"},
	} {
		r := ae.json(c.method, c.path, other.Secret, nil)
		if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" {
			t.Errorf("%s %s with admin:tokens only: %d %s", c.method, c.path, r.status, code)
		}
		if r := ae.json(c.method, c.path, "", nil); r.status != 401 {
			t.Errorf("%s %s without a token: %d", c.method, c.path, r.status)
		}
	}
}

func TestAckIsAuditedOnceAndThenConflicts(t *testing.T) {
	ae := newAlertEnv(t)
	a := ae.raise(time.Minute)
	r := ae.json("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, client.AckRequest{Note: "paged the lab team"})
	if r.status != 200 {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	var got client.Alert
	json.Unmarshal(r.body, &got)
	if got.State != "acked" || got.AckNote != "paged the lab team" || got.AckedBy == "" || got.AckedAt == nil || !got.AckedAt.Equal(ae.clk.Now()) {
		t.Errorf("acked alert %+v", got)
	}
	var acks []audit.Entry
	for _, e := range ae.entries {
		if e.Action == audit.ActionAlertAcked {
			acks = append(acks, e)
		}
	}
	if len(acks) != 1 || acks[0].Target != a.ID || acks[0].Actor.TokenID != got.AckedBy {
		t.Fatalf("alert.acked entries = %+v", acks)
	}
	r = ae.json("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, nil)
	if code, _ := errCode(t, r); r.status != 409 || code != "already_acked" {
		t.Errorf("second ack: %d %s", r.status, code)
	}
	if r := ae.json("POST", "/v1/alerts/alr_nope/ack", ae.admin, nil); r.status != 404 {
		t.Errorf("ack of an unknown alert: %d", r.status)
	}
	if r := ae.do("GET", "/v1/alerts/alr_nope", ae.admin, "", nil); r.status != 404 {
		t.Errorf("GET unknown alert: %d", r.status)
	}
}

func TestAckThatCannotBeAuditedIsRefused(t *testing.T) {
	ae := newAlertEnv(t)
	a := ae.raise(time.Minute)
	ae.mu.Lock()
	ae.failAudit = true
	ae.mu.Unlock()
	r := ae.json("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, nil)
	if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" {
		t.Fatalf("ack without audit: %d %s", r.status, code)
	}
	stored, err := ae.st.Alert(t.Context(), a.ID)
	if err != nil || stored.State != store.AlertOpen {
		t.Errorf("the unaudited ack took effect: %+v %v", stored, err)
	}
}

func TestAckNoteNeverKeepsATokenSecret(t *testing.T) {
	ae := newAlertEnv(t)
	a := ae.raise(time.Minute)
	secret, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := ae.json("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, client.AckRequest{Note: "leaked " + secret + " in chat"})
	if r.status != 200 || strings.Contains(string(r.body), secret) {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	stored, _ := ae.st.Alert(t.Context(), a.ID)
	if strings.Contains(stored.AckNote, secret) || !strings.Contains(stored.AckNote, "phi_[REDACTED]") {
		t.Errorf("stored note %q", strings.ReplaceAll(stored.AckNote, secret, "<secret>"))
	}
}

func TestAckNoteIsBounded(t *testing.T) {
	ae := newAlertEnv(t)
	a := ae.raise(time.Minute)
	r := ae.json("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, client.AckRequest{Note: strings.Repeat("x", MaxAckNote+1)})
	if code, field := errCode(t, r); r.status != 400 || field != "note" {
		t.Errorf("long note: %d %s %s", r.status, code, field)
	}
	if r := ae.do("POST", "/v1/alerts/"+a.ID+"/ack", ae.admin, "application/json", []byte(`{"note":`)); r.status != 400 {
		t.Errorf("truncated JSON: %d", r.status)
	}
}

// FuzzAlertQueryAndAckBody: whatever the list's query or the ack's body,
// the answer is JSON and never a 5xx.
func FuzzAlertQueryAndAckBody(f *testing.F) {
	ae := newAlertEnv(f)
	a := ae.raise(time.Minute)
	for _, s := range []string{"", "severity=high&state=open", "since=2026-01-02T15:04:05Z&until=2026-01-02T15:04:05.999999999%2B05:30",
		"limit=1000&after=alr_", "token=%00", "since=0001-01-01T00:00:00Z", "limit=-0", "state=acked&state=open"} {
		f.Add(s, []byte(`{"note":"x"}`))
	}
	f.Add("", []byte(`{"note":1}`))
	f.Add("", []byte(`{"extra":true}`))
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		e := ae.env.with(t)
		q, _ := url.ParseQuery(query) // what parses of it, encoded again
		for _, r := range []resp{
			e.do("GET", "/v1/alerts?"+q.Encode(), e.admin, "", nil),
			e.do("POST", "/v1/alerts/"+a.ID+"/ack", e.admin, "application/json", body),
		} {
			if r.status >= 500 || !json.Valid(r.body) {
				t.Fatalf("%d %q", r.status, r.body)
			}
		}
	})
}

func TestTokenWithAMisspeltMonitorPolicyIsRefused(t *testing.T) {
	ae := newAlertEnv(t)
	for _, meta := range []map[string]string{
		{"monitor.netwrok": "block"},
		{"monitor.network": "deny"},
		{"monitor.networks": "10.0.0.0/33"},
		{"monitor.rate_k": "0"},
	} {
		r := ae.json("POST", "/v1/tokens", ae.admin, client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "10m", Metadata: meta})
		if code, field := errCode(t, r); r.status != 400 || code != "invalid_request" || field != "metadata" {
			t.Errorf("create with %v: %d %s %s", meta, r.status, code, field)
		}
	}
	ok := ae.create(client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "10m",
		Metadata: map[string]string{"monitor.network": "block", "team": "lab"}})
	bad := map[string]string{"monitor.suspend": "maybe"}
	r := ae.json("PATCH", "/v1/tokens/"+ok.ID, ae.admin, client.UpdateTokenRequest{Metadata: &bad})
	if code, field := errCode(t, r); r.status != 400 || field != "metadata" {
		t.Errorf("update with %v: %d %s %s", bad, r.status, code, field)
	}
}
