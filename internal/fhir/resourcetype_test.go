package fhir

import (
	"slices"
	"strings"
	"testing"
)

func TestResourceTypesAreTheR4List(t *testing.T) {
	types := slices.Collect(ResourceTypes())
	// the codes of http://hl7.org/fhir/resource-types (R4 4.0.1) but the
	// abstract Resource and DomainResource
	if len(types) != 146 {
		t.Fatalf("%d resource types, want the 146 of FHIR R4", len(types))
	}
	if !slices.IsSorted(types) {
		t.Error("the list is not sorted bytewise")
	}
	if len(slices.Compact(slices.Clone(types))) != len(types) {
		t.Error("the list repeats a type")
	}
	for _, typ := range types {
		if !IsResourceType(typ) {
			t.Errorf("IsResourceType(%q) = false for a listed type", typ)
		}
	}
}

func TestIsResourceTypeOnlyForWholeR4Names(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Observation", true},
		{"Patient", true},
		{"Account", true},            // first
		{"VisionPrescription", true}, // last
		{"MedicinalProductUndesirableEffect", true},
		{"Parameters", true},
		{"Observaton", false},                 // the typo of issue 13
		{"observation", false},                // case matters
		{"OBSERVATION", false},                //
		{"Patien", false},                     // a prefix of a type
		{"atient", false},                     // a suffix
		{"PatientX", false},                   // a type and more
		{"Patient Observation", false},        // two types
		{"Resource", false},                   // abstract
		{"DomainResource", false},             // abstract
		{"MedicinalProductDefinition", false}, // R5, not R4
		{"", false},
		{" ", false},
		{"c", false}, // a letter that occurs only inside names
		{"*", false},
		{strings.Repeat("A", 65), false},
	} {
		if got := IsResourceType(tc.name); got != tc.want {
			t.Errorf("IsResourceType(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsResourceTypeDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { IsResourceType("VisionPrescription"); IsResourceType("Observaton") }); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

func TestNearestSuggestsOnlyLikelyTypos(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"Observaton", nil, "Observation"},
		{"observation", nil, "Observation"},
		{"Patinet", nil, "Patient"},
		{"Pateint", nil, "Patient"},
		{"Condtion", nil, "Condition"},
		{"MedicationRequets", nil, "MedicationRequest"},
		{"Lst", nil, "List"},
		{"Patient", nil, "Patient"},
		{"MyTipe", []string{"MyType"}, "MyType"},
		{"Xyzzy", nil, ""},
		{"Billing", nil, ""},
		{"Q", nil, ""},
		{"", nil, ""},
		{strings.Repeat("A", 65), nil, ""},
	} {
		if got := Nearest(tc.name, tc.extra...); got != tc.want {
			t.Errorf("Nearest(%q, %q) = %q, want %q", tc.name, tc.extra, got, tc.want)
		}
	}
}

// FuzzIsResourceType checks IsResourceType against the list itself and
// that Nearest never panics and suggests only a listed name within its
// bound. Seeds live in testdata/fuzz/FuzzIsResourceType.
func FuzzIsResourceType(f *testing.F) {
	for _, s := range []string{"Observation", "Observaton", "Patient Observation", ""} {
		f.Add(s)
	}
	known := map[string]bool{}
	for typ := range ResourceTypes() {
		known[typ] = true
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got := IsResourceType(name); got != known[name] {
			t.Fatalf("IsResourceType(%q) = %v, want %v", name, got, known[name])
		}
		s := Nearest(name, "MyType")
		switch {
		case s == "":
		case !known[s] && s != "MyType":
			t.Fatalf("Nearest(%q) = %q, which is no candidate", name, s)
		case distance(name, s, 4) > 3:
			t.Fatalf("Nearest(%q) = %q, too far", name, s)
		}
	})
}
