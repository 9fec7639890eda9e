package authority

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/token"
)

func TestDelegatedIssuerNamesOnlySubjectsUnderItsPrefix(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.issuer(t, Spec{Subject: "team-a-admin", TTL: time.Hour, SubjectPrefix: "team-a/"})
	obs := []string{"patient/Observation.rs"}
	for _, tc := range []struct {
		name       string
		spec       Spec
		field      string // "" when allowed
		wantPrefix string
	}{
		{"inside", Spec{Subject: "team-a/lab"}, "", "team-a/"},
		{"inside_narrower_prefix", Spec{Subject: "team-a/lab", SubjectPrefix: "team-a/lab/"}, "", "team-a/lab/"},
		{"outside", Spec{Subject: "team-b/lab"}, "subject", ""},
		{"the_prefix_without_its_end", Spec{Subject: "team-a"}, "subject", ""},
		{"case_differs", Spec{Subject: "Team-A/lab"}, "subject", ""},
		{"wider_prefix", Spec{Subject: "team-a/lab", SubjectPrefix: "team-"}, "subject_prefix", ""},
		{"other_prefix", Spec{Subject: "team-a/lab", SubjectPrefix: "team-b/"}, "subject_prefix", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Scopes, tc.spec.TTL = obs, time.Minute
			_, rec, err := f.auth.Create(ctx, d, tc.spec)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if rec.SubjectPrefix != tc.wantPrefix {
					t.Fatalf("subject_prefix %q, want %q", rec.SubjectPrefix, tc.wantPrefix)
				}
				return
			}
			var ae *AttenuationError
			if !errors.As(err, &ae) || ae.Field != tc.field {
				t.Fatalf("got %v, want an AttenuationError on %s", err, tc.field)
			}
		})
	}
	// the root is unrestricted
	if _, _, err := f.auth.Create(ctx, f.root, Spec{Subject: "anyone", Scopes: obs}); err != nil {
		t.Fatal(err)
	}
	// an inherited prefix binds the grandchildren
	cs, _, err := f.auth.Create(ctx, d, Spec{Subject: "team-a/sub-admin", Scopes: []string{"admin:tokens", "patient/Observation.rs"}, TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var ae *AttenuationError
	if _, _, err := f.auth.Create(ctx, f.actor(t, cs), Spec{Subject: "team-b/x", Scopes: obs, TTL: time.Minute}); !errors.As(err, &ae) || ae.Field != "subject" {
		t.Fatalf("grandchild outside the inherited prefix: %v, want an AttenuationError on subject", err)
	}
}

func TestSubjectPrefixCanOnlyBeNarrowed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.issuer(t, Spec{Subject: "team-a-admin", TTL: time.Hour, SubjectPrefix: "team-a/"})
	_, c, err := f.auth.Create(ctx, d, Spec{Subject: "team-a/lab", Scopes: []string{"admin:tokens"}, TTL: time.Minute, SubjectPrefix: "team-a/lab/"})
	if err != nil {
		t.Fatal(err)
	}
	set := func(p string) func(*token.Record) error {
		return func(r *token.Record) error { r.SubjectPrefix = p; return nil }
	}
	for _, tc := range []struct {
		name  string
		by    Actor
		to    string
		field string // "" when allowed
	}{
		{"widen_by_issuer", d, "team-a/", "subject_prefix"},
		{"clear_by_issuer", d, "", "subject_prefix"},
		{"widen_by_root", f.root, "team-a/", "subject_prefix"},
		{"clear_by_root", f.root, "", "subject_prefix"},
		{"invalid", d, "team-a/lab/\n", "subject_prefix"},
		{"narrow", d, "team-a/lab/x/", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, after, err := f.auth.Update(ctx, tc.by, c.ID, 0, set(tc.to))
			if tc.field == "" {
				if err != nil || after.SubjectPrefix != tc.to {
					t.Fatalf("got %v, %v; want subject_prefix %q", after, err, tc.to)
				}
				return
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	// a token without a prefix (the root's child) may be given one
	_, plain := f.create(t, Spec{Subject: "x/app"})
	if _, after, err := f.auth.Update(ctx, f.root, plain.ID, 0, set("x/")); err != nil || after.SubjectPrefix != "x/" {
		t.Fatalf("giving a prefix: %v, %v", after, err)
	}
	// and a caller's tokens inherit its prefix, so it cannot name another
	var ae *AttenuationError
	if _, _, err := f.auth.Update(ctx, d, c.ID, 0, set("team-b/")); err == nil || errors.As(err, &ae) && ae.Field != "subject_prefix" {
		t.Fatalf("prefix outside the caller's: %v", err)
	}
}
