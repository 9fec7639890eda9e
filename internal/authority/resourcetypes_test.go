package authority

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
)

func TestMisspelledResourceTypeIsRefusedAtCreation(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		scopes []string
		want   string
	}{
		{[]string{"patient/Observaton.rs"}, `unknown resource type "Observaton": not a FHIR R4 resource type (did you mean Observation?)`},
		{[]string{"patient/Observation.rs", "user/Patinet.r"}, "did you mean Patient?"},
		{[]string{"system/MyType.r"}, "scopes.custom_resource_types"},
	} {
		_, _, err := f.auth.Create(context.Background(), f.root, Spec{Subject: "app", Scopes: tc.scopes, TTL: time.Hour})
		var fe *policy.FieldError
		if !errors.As(err, &fe) || fe.Field != "scopes" || !strings.Contains(fe.Msg, tc.want) {
			t.Errorf("Create(%q) = %v, want a scopes error saying %q", tc.scopes, err, tc.want)
		}
	}
	// "*" and R4 types are fine
	f.create(t, Spec{Scopes: []string{"user/*.rs", "patient/Observation.rs", "billing:read"}, TTL: time.Hour})
}

func TestConfiguredCustomResourceTypeIsAccepted(t *testing.T) {
	rt, err := scope.NewResourceTypes("MyType")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, Config{ResourceTypes: rt})
	f.create(t, Spec{Scopes: []string{"system/MyType.r"}, TTL: time.Hour})
	_, _, err = f.auth.Create(context.Background(), f.root, Spec{Subject: "app", Scopes: []string{"system/MyTipe.r"}, TTL: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "did you mean MyType?") {
		t.Fatalf("a misspelled custom type: %v", err)
	}
}

// A token issued while a custom type was configured still loads, verifies
// and can be changed once the type is gone; only scopes a change adds are
// checked.
func TestTokenWithAnUnconfiguredTypeStillLoadsAndChanges(t *testing.T) {
	rt, err := scope.NewResourceTypes("MyType")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, Config{ResourceTypes: rt})
	secret, rec := f.create(t, Spec{Scopes: []string{"system/MyType.r", "system/Patient.r"}, TTL: time.Hour})

	// the configuration no longer names MyType (as after a restart)
	f.auth.cfg.ResourceTypes = scope.ResourceTypes{}
	f.auth.Invalidate(rec.ID)
	if r := f.verify(t, secret, Request{}); r != policy.OK {
		t.Fatalf("the stored token no longer verifies: %v", r)
	}
	ctx := context.Background()
	_, after, err := f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error {
		r.CIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		return nil
	})
	if err != nil || len(after.Scopes) != 2 {
		t.Fatalf("a change that keeps the scopes: %v", err)
	}
	if _, _, err := f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error {
		r.Scopes = []string{"system/MyType.r"}
		return nil
	}); err != nil {
		t.Fatalf("narrowing to the old scope: %v", err)
	}
	_, _, err = f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error {
		r.Scopes = []string{"system/MyType.r", "system/Observaton.r"}
		return nil
	})
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Field != "scopes" || !strings.Contains(fe.Msg, "did you mean Observation?") {
		t.Fatalf("adding a misspelled type: %v", err)
	}
}
