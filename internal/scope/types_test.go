package scope

import (
	"errors"
	"strings"
	"testing"
)

func TestUnknownResourceTypeIsRefused(t *testing.T) {
	rt, err := NewResourceTypes("MyType")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scope string
		want  string // in the message; "" means accepted
	}{
		{"patient/Observation.rs", ""},
		{"user/*.cruds", ""},
		{"system/MyType.r", ""},
		{"billing:read", ""},
		{"admin:*", ""},
		{"patient/Observaton.rs", `unknown resource type "Observaton": not a FHIR R4 resource type nor a custom one (did you mean Observation?)`},
		{"user/Patinet.r", "(did you mean Patient?)"},
		{"user/MyTipe.r", "(did you mean MyType?)"},
		{"system/Xyzzy.s", "(a custom type must be listed in scopes.custom_resource_types)"},
		{"system/Resource.r", "unknown resource type"}, // abstract
		{"system/DomainResource.r", "unknown resource type"},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			s, err := Parse(tc.scope)
			if err != nil {
				t.Fatalf("Parse: %v (the grammar must accept every type-shaped name)", err)
			}
			err = rt.CheckScope(s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrUnknownResourceType) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrUnknownResourceType and ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.scope) {
				t.Errorf("error %q does not name the scope and say %q", err, tc.want)
			}
		})
	}
}

func TestZeroResourceTypesKnowsR4Only(t *testing.T) {
	set, err := ParseSet([]string{"patient/Observation.rs user/*.r billing:read"})
	if err != nil {
		t.Fatal(err)
	}
	if err := (ResourceTypes{}).Check(set); err != nil {
		t.Fatalf("Check(%q) = %v", set, err)
	}
	set, err = ParseSet([]string{"patient/Observation.rs system/MyType.r"})
	if err != nil {
		t.Fatal(err)
	}
	err = (ResourceTypes{}).Check(set)
	if !errors.Is(err, ErrUnknownResourceType) || strings.Contains(err.Error(), "nor a custom one") {
		t.Fatalf("Check(%q) = %v, want an unknown R4 type", set, err)
	}
}

func TestCustomResourceTypesAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		custom []string
		want   string // "" means valid
	}{
		{"none", nil, ""},
		{"two", []string{"MyType", "OtherType"}, ""},
		{"lower-case", []string{"myType"}, "must be an upper-case letter, then letters"},
		{"digit", []string{"Type2"}, "must be an upper-case letter, then letters"},
		{"star", []string{"*"}, "must be an upper-case letter, then letters"},
		{"empty", []string{""}, "must be an upper-case letter, then letters"},
		{"r4", []string{"Observation"}, "already a FHIR R4 resource type"},
		{"repeated", []string{"MyType", "MyType"}, "listed twice"},
		{"too-many", make([]string, MaxCustomTypes+1), "more than 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := NewResourceTypes(tc.custom...)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range tc.custom {
					if !rt.Known(c) {
						t.Errorf("custom %q not known", c)
					}
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidCustomType) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewResourceTypes(%q) = %v, want %q", tc.custom, err, tc.want)
			}
		})
	}
}

func TestResourceTypesCheckDoesNotEchoSecrets(t *testing.T) {
	_, err := NewResourceTypes("phi_" + strings.Repeat("x", 40))
	if err == nil || strings.Contains(err.Error(), "phi_") {
		t.Fatalf("NewResourceTypes: %v", err)
	}
}
