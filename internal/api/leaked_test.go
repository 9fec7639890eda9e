package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// leakEnv is the admin API over an authority on a test clock, whose
// changes and alerts are kept in memory.
type leakEnv struct {
	*env
	clk *testclock.Clock

	mu      sync.Mutex
	changes []authority.Change
	alerts  []monitor.Alert
}

func (le *leakEnv) RecordChange(_ context.Context, c *authority.Change) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	le.changes = append(le.changes, *c)
	return nil
}

func (le *leakEnv) Raise(_ context.Context, a *monitor.Alert) error {
	le.mu.Lock()
	defer le.mu.Unlock()
	a.ID = fmt.Sprintf("alr_%d", len(le.alerts))
	le.alerts = append(le.alerts, *a)
	return nil
}

func newLeakEnv(t testing.TB) *leakEnv {
	t.Helper()
	clk := testclock.New()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	h, _ := token.NewHasherKey(1, key)
	le := &leakEnv{clk: clk}
	a := authority.New(st, h, authority.Config{Now: clk.Now, Recorder: le, ReplaySealer: newTestSealer(t)})
	secret, _, err := a.Bootstrap(context.Background(), "root", 3*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &bytes.Buffer{}
	s := New(a, Options{Ready: st.Ping, Logger: newTestLogger(logBuf), AlertSink: le})
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	le.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: logBuf}
	return le
}

func (le *leakEnv) report(query string, body []byte) (resp, client.LeakResults) {
	le.t.Helper()
	r := le.do("POST", "/v1/tokens/leaked"+query, le.admin, "application/json", body)
	var out client.LeakResults
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &out); err != nil {
			le.t.Fatalf("answer: %v: %s", err, r.body)
		}
	}
	return r, out
}

func mustMarshal(v any) []byte { b, _ := json.Marshal(v); return b }

func badChecksum(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	last := "A"
	if s[len(s)-1] == 'A' {
		last = "B"
	}
	return s[:len(s)-1] + last
}

// TestLeakReportIsAnsweredPerEntryInRequestOrder: both body forms; a live
// token is revoked, a second mention of it is already_revoked, an unknown
// token is unknown, a checksum failure and an entry of the wrong shape are
// invalid_checksum; nothing but the live tokens changes.
func TestLeakReportIsAnsweredPerEntryInRequestOrder(t *testing.T) {
	le := newLeakEnv(t)
	unknown, _ := token.Generate(nil)
	cases := []struct {
		name string
		body func(live, bad string) []byte
		want []string
	}{
		{"bare list", func(live, bad string) []byte { return mustMarshal([]string{live, unknown, bad, live, ""}) },
			[]string{"revoked", "unknown", "invalid_checksum", "already_revoked", "invalid_checksum"}},
		{"object", func(live, bad string) []byte {
			return fmt.Appendf(nil, `{"tokens":[{"token":%q,"where":"a.go:1"},%q,{"token":%q},{"tok":1},42,null,[%q]],"source":"gitleaks"}`,
				live, unknown, bad, live)
		}, []string{"revoked", "unknown", "invalid_checksum", "invalid_checksum", "invalid_checksum", "invalid_checksum", "invalid_checksum"}},
		{"empty list", func(string, string) []byte { return []byte(`[]`) }, []string{}},
		{"empty object list", func(string, string) []byte { return []byte(`{"tokens":[]}`) }, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			live := le.create(client.CreateTokenRequest{Subject: "svc:lab", Scopes: []string{"billing:read"}})
			r, out := le.report("", c.body(live.Secret, badChecksum(t)))
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if len(out.Results) != len(c.want) {
				t.Fatalf("results %+v, want %v", out.Results, c.want)
			}
			for i, w := range c.want {
				got := out.Results[i]
				if got.Status != w {
					t.Errorf("result %d: %+v, want %s", i, got, w)
				}
				wantID := ""
				if w == "revoked" || w == "already_revoked" {
					wantID = live.ID
				}
				if got.TokenID != wantID {
					t.Errorf("result %d: token %q, want %q", i, got.TokenID, wantID)
				}
				if (w == "invalid_checksum") != (got.Fingerprint == "") {
					t.Errorf("result %d: fingerprint %q", i, got.Fingerprint)
				}
			}
			if bytes.Contains(r.body, []byte(live.Secret)) || bytes.Contains(r.body, []byte(unknown)) {
				t.Fatal("the answer echoes a secret")
			}
		})
	}
	if strings.Contains(le.logBuf.String(), unknown) {
		t.Fatal("a reported secret is in the log")
	}
}

// TestLeakedTokenIsRevokedAuditedAndAlerted: the revocation is recorded
// with reason leaked and where; the alert is high (critical for an admin
// token) and names the token, subject and where; the next use is 401
// token_revoked; a secret quoted in "where" is redacted.
func TestLeakedTokenIsRevokedAuditedAndAlerted(t *testing.T) {
	le := newLeakEnv(t)
	svc := le.create(client.CreateTokenRequest{Subject: "svc:lab", Scopes: []string{"billing:read"}})
	adm := le.create(client.CreateTokenRequest{Subject: "ops:jo", Kind: "admin", Scopes: []string{"admin:tokens"}})
	quoted := le.create(client.CreateTokenRequest{Subject: "svc:x", Scopes: []string{"billing:read"}})
	body := mustMarshal(map[string]any{"source": "ci scan", "tokens": []client.Leak{
		{Token: svc.Secret, Where: "deploy/app.yaml:12"},
		{Token: adm.Secret, Where: "ops.sh:3"},
		{Token: quoted.Secret, Where: "log.txt:9 Authorization: Bearer " + quoted.Secret},
	}})
	r, out := le.report("", body)
	if r.status != 200 || len(out.Results) != 3 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, it := range []client.IssuedToken{svc, adm, quoted} {
		a := le.do("GET", "/v1/tokens/self", it.Secret, "", nil)
		if code, _ := errCode(t, a); a.status != 401 || code != "token_revoked" {
			t.Errorf("%s after the report: %d %s, want 401 token_revoked", it.ID, a.status, code)
		}
	}
	le.mu.Lock()
	defer le.mu.Unlock()
	wantWhere := map[string]string{svc.ID: "deploy/app.yaml:12", adm.ID: "ops.sh:3", quoted.ID: "log.txt:9 Authorization: Bearer phi_[REDACTED]"}
	var revoked int
	for _, c := range le.changes {
		if c.Action != authority.ActionRevoked {
			continue
		}
		revoked++
		if c.Reason != "leaked" || c.Where != wantWhere[c.TargetID] || c.Outcome != authority.OutcomeSuccess {
			t.Errorf("change %+v, want reason leaked at %q", c, wantWhere[c.TargetID])
		}
	}
	if revoked != 3 {
		t.Errorf("%d revocations recorded, want 3", revoked)
	}
	wantSev := map[string]monitor.Severity{svc.ID: monitor.High, adm.ID: monitor.Critical, quoted.ID: monitor.High}
	wantSubj := map[string]string{svc.ID: "svc:lab", adm.ID: "ops:jo", quoted.ID: "svc:x"}
	if len(le.alerts) != 3 {
		t.Fatalf("alerts %+v", le.alerts)
	}
	for _, a := range le.alerts {
		ev, _ := json.Marshal(a.Evidence)
		if a.Detector != monitor.DetectorLeak || a.Severity != wantSev[a.TokenID] || a.Subject != wantSubj[a.TokenID] ||
			a.Action != monitor.Revoked || !a.At.Equal(le.clk.Now().UTC()) || !strings.Contains(a.Summary, wantWhere[a.TokenID]) ||
			!bytes.Contains(ev, []byte(`"source":"ci scan"`)) {
			t.Errorf("alert %+v %s", a, ev)
		}
		for _, s := range []string{svc.Secret, adm.Secret, quoted.Secret} {
			if bytes.Contains(ev, []byte(s)) || strings.Contains(a.Summary, s) {
				t.Fatal("an alert holds a secret")
			}
		}
	}
	for _, s := range []string{svc.Secret, adm.Secret, quoted.Secret} {
		if strings.Contains(le.logBuf.String(), s) {
			t.Fatal("the log holds a secret")
		}
	}
}

// TestLeakReportRevokesTheCallersOwnTokenAndCascadesOnlyWhenAsked.
func TestLeakReportRevokesTheCallersOwnTokenAndCascadesOnlyWhenAsked(t *testing.T) {
	le := newLeakEnv(t)
	parent := func() (client.IssuedToken, client.IssuedToken) {
		p := le.create(client.CreateTokenRequest{Subject: "ops:p", Kind: "admin", Scopes: []string{"admin:tokens", "billing:read"}})
		r := le.json("POST", "/v1/tokens", p.Secret, client.CreateTokenRequest{Subject: "svc:c", Scopes: []string{"billing:read"}})
		if r.status != 201 {
			t.Fatalf("child: %d %s", r.status, r.body)
		}
		var c client.IssuedToken
		json.Unmarshal(r.body, &c)
		return p, c
	}
	status := func(id string) string {
		r := le.json("GET", "/v1/tokens/"+id, le.admin, nil)
		var tk client.Token
		json.Unmarshal(r.body, &tk)
		return tk.Status
	}
	p, c := parent()
	if _, out := le.report("", mustMarshal([]string{p.Secret})); out.Results[0].Status != "revoked" || status(c.ID) != "active" {
		t.Fatalf("without cascade: %+v, child %s", out.Results, status(c.ID))
	}
	p, c = parent()
	if _, out := le.report("?cascade=true", mustMarshal([]string{p.Secret})); out.Results[0].Status != "revoked" || status(c.ID) != "revoked" {
		t.Fatalf("with cascade: %+v, child %s", out.Results, status(c.ID))
	}
	// the caller's own token
	self := le.do("POST", "/v1/tokens/leaked", le.admin, "application/json", mustMarshal([]string{le.admin}))
	var out client.LeakResults
	json.Unmarshal(self.body, &out)
	if self.status != 200 || len(out.Results) != 1 || out.Results[0].Status != "revoked" {
		t.Fatalf("own token: %d %s", self.status, self.body)
	}
	if a := le.do("GET", "/v1/tokens/self", le.admin, "", nil); a.status != 401 {
		t.Fatalf("own token after the report: %d", a.status)
	}
}

// TestLeakReportThatIsNeitherFormIsRefused: the whole report is refused
// (and nothing revoked) when the body is not one of the two forms, is too
// long, has too many tokens, or is not JSON.
func TestLeakReportThatIsNeitherFormIsRefused(t *testing.T) {
	le := newLeakEnv(t)
	live := le.create(client.CreateTokenRequest{Subject: "svc:lab", Scopes: []string{"billing:read"}})
	many := make([]string, client.MaxLeaks+1)
	for i := range many {
		many[i] = live.Secret
	}
	cases := []struct {
		name, ctype, query string
		body               []byte
		status             int
		code, field        string
	}{
		{"empty", "application/json", "", nil, 400, "invalid_request", ""},
		{"string", "application/json", "", mustMarshal(live.Secret), 400, "invalid_request", ""},
		{"number", "application/json", "", []byte(`1`), 400, "invalid_request", ""},
		{"null", "application/json", "", []byte(`null`), 400, "invalid_request", ""},
		{"object without tokens", "application/json", "", []byte(`{"source":"x"}`), 400, "invalid_request", "tokens"},
		{"unknown field", "application/json", "", fmt.Appendf(nil, `{"tokens":[%q],"extra":1}`, live.Secret), 400, "invalid_request", "extra"},
		{"tokens not a list", "application/json", "", []byte(`{"tokens":"x"}`), 400, "invalid_request", "tokens"},
		{"trailing data", "application/json", "", fmt.Appendf(nil, `[%q] []`, live.Secret), 400, "invalid_request", ""},
		{"truncated", "application/json", "", fmt.Appendf(nil, `[%q`, live.Secret), 400, "invalid_request", ""},
		{"too many", "application/json", "", mustMarshal(many), 400, "invalid_request", "tokens"},
		{"too long", "application/json", "", append(append([]byte(`["`), bytes.Repeat([]byte("a"), 1<<20)...), `"]`...), 413, "payload_too_large", ""},
		{"form", "application/x-www-form-urlencoded", "", []byte("token=" + live.Secret), 415, "unsupported_media_type", ""},
		{"bad cascade", "application/json", "?cascade=maybe", mustMarshal([]string{live.Secret}), 400, "invalid_request", "cascade"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := le.do("POST", "/v1/tokens/leaked"+c.query, le.admin, c.ctype, c.body)
			code, field := errCode(t, r)
			if r.status != c.status || code != c.code || field != c.field {
				t.Fatalf("%d %s %q, want %d %s %q: %s", r.status, code, field, c.status, c.code, c.field, r.body)
			}
			if bytes.Contains(r.body, []byte(live.Secret)) {
				t.Fatal("the error echoes a secret")
			}
		})
	}
	if a := le.do("GET", "/v1/tokens/self", live.Secret, "", nil); a.status != 200 {
		t.Fatalf("a refused report revoked the token: %d", a.status)
	}
}

// TestLeakReportNeedsAdminTokens.
func TestLeakReportNeedsAdminTokens(t *testing.T) {
	le := newLeakEnv(t)
	live := le.create(client.CreateTokenRequest{Subject: "svc:lab", Scopes: []string{"billing:read"}})
	r := le.do("POST", "/v1/tokens/leaked", live.Secret, "application/json", mustMarshal([]string{live.Secret}))
	if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" {
		t.Fatalf("%d %s", r.status, code)
	}
	r = le.do("POST", "/v1/tokens/leaked", "", "application/json", mustMarshal([]string{live.Secret}))
	if r.status != 401 {
		t.Fatalf("without a token: %d", r.status)
	}
	if a := le.do("GET", "/v1/tokens/self", live.Secret, "", nil); a.status != 200 {
		t.Fatalf("a refused report revoked the token: %d", a.status)
	}
}

// FuzzLeakReportBody: the parser never panics, keeps its limits, and
// cleans what it keeps; through the server, no body is a 5xx or a
// non-JSON answer.
func FuzzLeakReportBody(f *testing.F) {
	for _, s := range []string{`[]`, `["phi_x"]`, `{"tokens":[{"token":"phi_x","where":"a:1"}],"source":"s"}`, `{"tokens":[1,null,[],{}]}`,
		`{}`, `null`, `"x"`, `[`, `{"tokens":[{"token":"a","where":"\u0000\u2028"}]}`, `[{"token":"a","extra":1}]`} {
		f.Add([]byte(s))
	}
	le := newLeakEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		entries, source, e := parseLeakReport(body)
		if e != nil {
			if e.status != http.StatusBadRequest || entries != nil {
				t.Fatalf("error %+v with %d entries", e, len(entries))
			}
		} else {
			if len(entries) > maxLeaks || len(source) > maxLeakSrc+len("…") {
				t.Fatalf("%d entries, source %d bytes", len(entries), len(source))
			}
			for _, x := range entries {
				if len(x.where) > maxLeakWhere+len("…") || strings.ContainsAny(x.where, "\n\r\x00") {
					t.Fatalf("where %q", x.where)
				}
			}
		}
		r := le.with(t).do("POST", "/v1/tokens/leaked", le.admin, "application/json", body)
		if r.status >= 500 || !json.Valid(r.body) {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
}
