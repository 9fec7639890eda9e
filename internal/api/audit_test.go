package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/pkg/client"
)

// auditEnv is an admin API with an audit log behind it (nil log: not
// wired).
type auditEnv struct {
	*env
	log *audit.Log
}

func newAuditEnv(t *testing.T, wired bool) *auditEnv {
	t.Helper()
	ctx := context.Background()
	a, st, secret := testAuthority(t)
	ae := &auditEnv{}
	opts := Options{Ready: st.Ping}
	if wired {
		dir := t.TempDir()
		if _, _, err := audit.InitKeys(dir, "api-test", nil); err != nil {
			t.Fatal(err)
		}
		var err error
		if ae.log, err = audit.Open(ctx, dir, audit.Options{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ae.log.Close() })
		opts.Audit = ae.log
	}
	logBuf := &bytes.Buffer{}
	opts.Logger = newTestLogger(logBuf)
	srv := httptest.NewTLSServer(New(a, opts))
	t.Cleanup(srv.Close)
	ae.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: logBuf}
	return ae
}

func (e *auditEnv) accept(path, accept string) resp {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	r, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return resp{r.StatusCode, r.Header, b.Bytes()}
}

func (e *auditEnv) seed(n int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		ent := &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
			Actor: audit.Actor{TokenID: "tok_app", Subject: "lab-app", Kind: "service"}, Method: "GET", Upstream: "fhir", Path: "/fhir/Observation"}
		if i%2 == 1 {
			ent.Action, ent.Outcome, ent.Reason = audit.ActionAccessDenied, audit.OutcomeDenied, "outside_hours"
		}
		if _, err := e.log.Append(context.Background(), ent); err != nil {
			e.t.Fatal(err)
		}
	}
}

func TestAuditKeyIsPublic(t *testing.T) {
	e := newAuditEnv(t, true)
	r := e.do("GET", "/v1/audit/key", "", "", nil)
	var k struct{ Origin, Key string }
	if r.status != 200 || json.Unmarshal(r.body, &k) != nil || k.Key != e.log.PublicKey() || k.Origin != "phigate/api-test" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = e.accept("/v1/audit/key", "text/plain")
	if r.status != 200 || string(r.body) != e.log.PublicKey()+"\n" {
		t.Fatalf("%d %q", r.status, r.body)
	}
}

func TestAuditReadingNeedsAdminAudit(t *testing.T) {
	e := newAuditEnv(t, true)
	it := e.create(client.CreateTokenRequest{Subject: "tokens-admin", Scopes: []string{"admin:tokens"}, TTL: "10m"})
	for _, p := range []string{"/v1/audit", "/v1/audit/checkpoint", "/v1/audit/proof?seq=0"} {
		r := e.json("GET", p, "", nil)
		if code, _ := errCode(t, r); r.status != 401 || code != "missing_token" {
			t.Errorf("%s without a token: %d %s", p, r.status, r.body)
		}
		r = e.json("GET", p, it.Secret, nil)
		if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="admin:audit"`) {
			t.Errorf("%s with admin:tokens only: %d %s", p, r.status, r.body)
		}
	}
}

func TestAuditSearchIsFilteredPagedAndAudited(t *testing.T) {
	e := newAuditEnv(t, true)
	e.seed(10)
	r := e.json("GET", "/v1/audit?action=access.denied&limit=2", e.admin, nil)
	var page client.AuditPage
	if r.status != 200 || json.Unmarshal(r.body, &page) != nil || len(page.Entries) != 2 || page.Next == "" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, ent := range page.Entries {
		if ent.Action != "access.denied" || ent.Reason != "outside_hours" || ent.Actor.Subject != "lab-app" {
			t.Fatalf("%+v", ent)
		}
	}
	r = e.json("GET", "/v1/audit?action=access.denied&limit=2&after="+page.Next, e.admin, nil)
	var next client.AuditPage
	json.Unmarshal(r.body, &next)
	if len(next.Entries) != 2 || next.Entries[0].Seq <= page.Entries[1].Seq {
		t.Fatalf("next page: %s", r.body)
	}
	// each search was recorded, with who asked
	p, err := e.log.Search(context.Background(), &audit.Query{Actions: []audit.Action{audit.ActionAuditRead}})
	if err != nil || len(p.Entries) != 2 {
		t.Fatalf("%v %d", err, len(p.Entries))
	}
	if rd := p.Entries[0]; rd.Actor.Subject != "root" || rd.Source.IP != "127.0.0.1" || rd.RequestID == "" || !strings.HasPrefix(rd.Path, "/v1/audit?") {
		t.Fatalf("audit.read entry: %+v", rd)
	}
	for _, tc := range []struct{ q, field string }{
		{"limit=0", "limit"}, {"action=nope", "action"}, {"from=yesterday", "from"}, {"bogus=1", "bogus"}, {"after=1&before=2", "before"},
	} {
		r := e.json("GET", "/v1/audit?"+tc.q, e.admin, nil)
		if code, field := errCode(t, r); r.status != 400 || code != "invalid_request" || field != tc.field {
			t.Errorf("%s: %d %s", tc.q, r.status, r.body)
		}
	}
}

func TestAuditCheckpointAndProofVerifyWithThePublicKey(t *testing.T) {
	e := newAuditEnv(t, true)
	e.seed(5)
	v, err := audit.NewVerifier(e.log.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r := e.json("GET", "/v1/proof", e.admin, nil) // no such route
	if r.status != 404 {
		t.Fatal(r.status)
	}
	r = e.json("GET", "/v1/audit/proof?seq=3", e.admin, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b, err := audit.ParseBundle(r.body)
	if err != nil {
		t.Fatal(err)
	}
	ent, cp, err := audit.VerifyBundle(b, v)
	if err != nil || ent.Seq != 3 || cp.Size < 4 {
		t.Fatalf("%v %+v", err, cp)
	}
	r = e.json("GET", "/v1/audit/checkpoint", e.admin, nil)
	var ca client.AuditCheckpoint
	if r.status != 200 || json.Unmarshal(r.body, &ca) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	got, err := audit.ParseCheckpoint([]byte(ca.Checkpoint), v)
	if err != nil || got.Size != ca.Size || ca.Origin != "phigate/api-test" || ca.RootHash == "" {
		t.Fatalf("%+v %v", ca, err)
	}
	r = e.accept("/v1/audit/checkpoint", "text/plain")
	if _, err := audit.ParseCheckpoint(r.body, v); err != nil || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("text checkpoint: %v %q", err, r.body)
	}
	for q, want := range map[string]int{"seq=99": 404, "seq=-1": 400, "seq=01": 400, "": 400, "seq=1&seq=2": 400, "seq=1&x=2": 400} {
		r := e.json("GET", "/v1/audit/proof?"+q, e.admin, nil)
		if r.status != want {
			t.Errorf("proof?%s: %d %s", q, r.status, r.body)
		}
		errCode(t, r)
	}
}

func TestAuditEndpointsWithoutALogAnswer503(t *testing.T) {
	e := newAuditEnv(t, false)
	for _, p := range []string{"/v1/audit", "/v1/audit/checkpoint", "/v1/audit/proof?seq=0", "/v1/audit/key"} {
		r := e.json("GET", p, e.admin, nil)
		if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
}

// TestAuditReadRefusedWhenItCannotBeRecorded: reading the log is an audited
// action, so it fails closed.
func TestAuditReadRefusedWhenItCannotBeRecorded(t *testing.T) {
	e := newAuditEnv(t, true)
	e.seed(2)
	e.log.Close()
	r := e.json("GET", "/v1/audit", e.admin, nil)
	if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
