package server

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/gateway"
	"github.com/phigate/phigate/internal/preauth"
	"github.com/phigate/phigate/internal/tlsutil"
)

func TestAuditEntryOfEachGatewayDecision(t *testing.T) {
	base := gateway.Event{RequestID: "r1", TokenID: "tok_1", Subject: "lab-app", SourceIP: "10.0.0.7", Method: "GET",
		Upstream: "ehr", Path: "/fhir/Observation", Query: "patient=p1", Resource: "Observation", Purpose: "TREAT", Patient: "p1", Interaction: "search-type"}
	for name, c := range map[string]struct {
		mutate  func(*gateway.Event)
		action  audit.Action
		outcome audit.Outcome
	}{
		"grant":         {func(e *gateway.Event) { e.Kind = gateway.KindGrant }, audit.ActionAccessGranted, audit.OutcomeSuccess},
		"break-glass":   {func(e *gateway.Event) { e.Kind, e.BreakGlass, e.Justification = gateway.KindGrant, true, "ED" }, audit.ActionBreakGlassUsed, audit.OutcomeSuccess},
		"complete":      {func(e *gateway.Event) { e.Kind, e.Status, e.BytesOut = gateway.KindComplete, 200, 10 }, audit.ActionAccessCompleted, audit.OutcomeSuccess},
		"upstream down": {func(e *gateway.Event) { e.Kind, e.Status = gateway.KindComplete, 502 }, audit.ActionAccessCompleted, audit.OutcomeFailure},
		"cut after 404": {func(e *gateway.Event) { e.Kind, e.Status, e.Reason = gateway.KindComplete, 404, gateway.CodeAborted }, audit.ActionAccessCompleted, audit.OutcomeFailure},
		"scope":         {func(e *gateway.Event) { e.Kind, e.Status, e.Reason = gateway.KindDeny, 403, "insufficient_scope" }, audit.ActionAccessDenied, audit.OutcomeDenied},
		"bad token":     {func(e *gateway.Event) { e.Kind, e.Status, e.Reason = gateway.KindDeny, 401, "token_revoked" }, audit.ActionAuthFailed, audit.OutcomeDenied},
		"unavailable":   {func(e *gateway.Event) { e.Kind, e.Status, e.Reason = gateway.KindDeny, 503, "unavailable" }, audit.ActionAccessDenied, audit.OutcomeFailure},
	} {
		ev := base
		c.mutate(&ev)
		ev.Duration = time.Millisecond
		e := auditEntry(&ev)
		if e.Action != c.action || e.Outcome != c.outcome {
			t.Errorf("%s: %s/%s, want %s/%s", name, e.Action, e.Outcome, c.action, c.outcome)
		}
		if e.Actor.TokenID != "tok_1" || e.Actor.Subject != "lab-app" || e.Source.IP != "10.0.0.7" || e.RequestID != "r1" ||
			e.Path != "/fhir/Observation?patient=p1" || e.Upstream != "ehr" || e.Purpose != "TREAT" || e.Patient != "p1" || e.Target != "Observation" {
			t.Errorf("%s: entry %+v", name, e)
		}
		if ev.BreakGlass && e.BreakGlass != "ED" {
			t.Errorf("%s: justification %q", name, e.BreakGlass)
		}
		if e.Interaction != "search-type" {
			t.Errorf("%s: interaction %q, want the event's", name, e.Interaction)
		}
	}
}

// TestPublicRequestsAreRecordedAsPublic: the entries of a capability
// statement served without a token say so (actor kind public), name no
// token, and a refusal of one is aggregated like other anonymous ones.
func TestPublicRequestsAreRecordedAsPublic(t *testing.T) {
	for _, k := range []gateway.EventKind{gateway.KindGrant, gateway.KindComplete, gateway.KindDeny} {
		ev := gateway.Event{Kind: k, RequestID: "r1", Public: true, Subject: gateway.PublicSubject, SourceIP: "10.0.0.7",
			Method: "GET", Upstream: "ehr", Path: "/fhir/metadata", Interaction: "capabilities", Status: 200}
		if k == gateway.KindDeny {
			ev.Status, ev.Reason = 429, "rate_limited"
		}
		e := auditEntry(&ev)
		if e.Actor.Kind != PublicActorKind || e.Actor.TokenID != "" || e.Actor.Subject != gateway.PublicSubject || e.Interaction != "capabilities" {
			t.Errorf("%s: actor %+v, interaction %q", k, e.Actor, e.Interaction)
		}
		if anon := preauth.Anonymous(e); anon != (k == gateway.KindDeny) {
			t.Errorf("%s: anonymous %v", k, anon)
		}
	}
	// a token's request is not public
	if e := auditEntry(&gateway.Event{Kind: gateway.KindGrant, TokenID: "tok_1"}); e.Actor.Kind != "" {
		t.Errorf("a token's grant has actor kind %q", e.Actor.Kind)
	}
}

func TestVaultSecretsWithoutAVault(t *testing.T) {
	if _, err := (vaultSecrets{}).Resolve(context.Background(), "secret:ehr"); !errors.Is(err, gateway.ErrNoVault) {
		t.Errorf("secret: without a vault: %v", err)
	}
	t.Setenv("PHIGATE_TEST_GW_SECRET", "s3")
	if b, err := (vaultSecrets{}).Resolve(context.Background(), "env:PHIGATE_TEST_GW_SECRET"); err != nil || string(b) != "s3" {
		t.Errorf("env: %q %v", b, err)
	}
}

// The demo FHIR server is not mounted where a configured upstream would
// lose paths to it, or under a name already taken.
func TestDemoClash(t *testing.T) {
	for want, ups := range map[string][]config.Upstream{
		"":          {{Name: "billing", Prefix: "/billing/"}, {Name: "ehr", Prefix: "/fhir/r4/"}},
		"ehr":       {{Name: "ehr", Prefix: "/fhir/"}},
		"root":      {{Name: "root", Prefix: "/"}},
		"demo-fhir": {{Name: "demo-fhir", Prefix: "/other/"}},
	} {
		if got := demoClash(ups); got != want {
			t.Errorf("%v: %q, want %q", ups, got, want)
		}
	}
}

// With the real audit log unable to take entries, the gateway refuses with
// 503 and forwards nothing, on the proxy and on forward auth.
func TestAuditLogDownRefusesAndForwardsNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	root, _, err := n.auth.Bootstrap(ctx, "root", time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := n.auth.Verify(ctx, root, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal(d.Reason, err)
	}
	secret, _, err := n.auth.Create(ctx, authority.ActorOf(d), authority.Spec{Subject: "app", Scopes: []string{"user/Patient.r"}, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); w.Write([]byte("{}")) }))
	up.StartTLS()
	t.Cleanup(up.Close)
	caFile := filepath.Join(dir, "up-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Dev(dir)
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Upstreams = []config.Upstream{{Name: "ehr", URL: up.URL + "/R4", Prefix: "/ehr/", Kind: config.KindFHIR,
		TLS: config.UpstreamTLS{CAFile: caFile}, Credential: config.Credential{Type: config.CredentialNone}, Operations: []config.Operation{}}}
	gw, err := startGateway(gatewayDeps{Config: cfg, Auth: n.auth, TLS: testServerTLS(t, dir), Logger: slog.New(slog.DiscardHandler),
		Console: io.Discard, Audit: n.audit, Vault: n.vault})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, hdr ...string) int {
		req, _ := http.NewRequest("GET", "https://"+gw.Addr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 20 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/ehr/Patient/p1"); st != 200 || hits.Load() != 1 {
		t.Fatalf("with the audit log: %d, %d forwarded", st, hits.Load())
	}
	n.audit.Close() // the audit log can take nothing more
	if st := get("/ehr/Patient/p1"); st != http.StatusServiceUnavailable {
		t.Errorf("proxy: %d", st)
	}
	if st := get("/v1/authz", "X-Original-Method", "GET", "X-Original-URI", "/ehr/Patient/p1"); st != http.StatusServiceUnavailable {
		t.Errorf("forward auth: %d", st)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests forwarded while the audit log was down", hits.Load()-1)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	gw.Shutdown(sctx)
	n.auth.Close(sctx)
	n.store.Close()
	n.vault.Close()
	n.lock.Close()
}

// testServerTLS is a server TLS config with a self-signed certificate made
// in dir/tls (dated, like the server's, by the wall clock).
func testServerTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	certFile, keyFile, err := tlsutil.GenerateSelfSigned(filepath.Join(dir, "tls"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := tlsutil.NewReloader(certFile, keyFile, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return tlsutil.ServerConfig(rl)
}

// A flood of public capability-statement requests, from one address or
// many, costs the audit log the first few entries of each group and then
// one summary, like anonymous denials: never an entry per request.
func TestPublicRequestsAreRecordedAggregated(t *testing.T) {
	ctx := context.Background()
	n := openDev(t, t.TempDir())
	defer closeNode(t, n)
	pre, err := preauth.New(n.audit, preauth.Config{Full: 3, Window: time.Hour, MaxGroups: 8, MaxField: 256}, time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &auditRecorder{log: n.audit, pre: pre, lg: slog.New(slog.DiscardHandler)}
	before := n.audit.Size()
	const flood = 100
	for i := range flood {
		ev := gateway.Event{Kind: gateway.KindGrant, RequestID: "r", Public: true, Subject: gateway.PublicSubject,
			SourceIP: fmt.Sprintf("2001:db8:%x::1", i), Method: "GET", Upstream: "ehr", Path: "/fhir/metadata", Interaction: "capabilities"}
		if err := rec.Record(ctx, &ev); err != nil {
			t.Fatal(err)
		}
		ev.Kind, ev.Status = gateway.KindComplete, 200
		rec.RecordAsync(&ev)
	}
	if err := pre.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.audit.Size() - before; got > 2*(8*3+2) {
		t.Fatalf("%d entries for %d public requests (grants and completions), want at most the groups' first ones and their summaries", got, flood)
	}
}
