package server

import (
	"context"
	"errors"
	"github.com/phigate/phigate/internal/config"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/gateway"
)

func TestAuditEntryOfEachGatewayDecision(t *testing.T) {
	base := gateway.Event{RequestID: "r1", TokenID: "tok_1", Subject: "lab-app", SourceIP: "10.0.0.7", Method: "GET",
		Upstream: "ehr", Path: "/fhir/Observation", Query: "patient=p1", Resource: "Observation", Purpose: "TREAT", Patient: "p1"}
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
