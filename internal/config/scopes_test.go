package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// validScopes is validGateway with custom resource types, one of which a
// route and an operation name.
const validScopes = validGateway + `scopes:
  custom_resource_types: [Ledger, MyType]
`

func TestParseReadsCustomResourceTypes(t *testing.T) {
	doc := strings.Replace(validScopes, "scope: user/Patient.r", "scope: system/Ledger.r", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Scopes.CustomResourceTypes; !slices.Equal(got, []string{"Ledger", "MyType"}) {
		t.Fatalf("custom_resource_types = %q", got)
	}
	rt := c.Scopes.ResourceTypes()
	if !rt.Known("Ledger") || !rt.Known("Observation") || rt.Known("Ledgr") {
		t.Fatalf("ResourceTypes() = %v", rt.Custom())
	}
}

// Route and operation scopes are held to the same resource types as
// token scopes: a typo would make a route need a scope no token can hold.
func TestUnknownResourceTypeIsRefusedInTheConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		wantAt   string // the line that must be blamed
		wantErr  string
	}{
		{"misspelled operation scope", "scope: user/Patient.r", "scope: user/Patinet.r", "scope: user/Patinet.r",
			`gateway.upstreams[0].operations[0].scope: invalid scope "user/Patinet.r": unknown resource type "Patinet": not a FHIR R4 resource type nor a custom one (did you mean Patient?)`},
		{"misspelled operation resource", "resource: Patient", "resource: Patinet", "resource: Patinet",
			`gateway.upstreams[0].operations[0].resource: unknown resource type "Patinet": not a FHIR R4 resource type nor in scopes.custom_resource_types (did you mean Patient?)`},
		{"misspelled custom type in a route", "scope: billing:read", "scope: user/Ledgr.r", "scope: user/Ledgr.r",
			`gateway.upstreams[1].routes[0].scope: invalid scope "user/Ledgr.r": unknown resource type "Ledgr": not a FHIR R4 resource type nor a custom one (did you mean Ledger?)`},
		{"custom type not an upper-case name", "[Ledger, MyType]", "[Ledger, myType]", "custom_resource_types",
			`scopes.custom_resource_types[1]: "myType": must be an upper-case letter, then letters (at most 64)`},
		{"custom type that is an R4 type", "[Ledger, MyType]", "[Ledger, Observation]", "custom_resource_types",
			`scopes.custom_resource_types[1]: "Observation": already a FHIR R4 resource type`},
		{"custom type repeated", "[Ledger, MyType]", "[Ledger, Ledger]", "custom_resource_types",
			`scopes.custom_resource_types[1]: "Ledger" repeats scopes.custom_resource_types[0]`},
		{"custom types as a string", "[Ledger, MyType]", "Ledger", "custom_resource_types",
			`scopes.custom_resource_types: must be a list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validScopes, tc.old) {
				t.Fatalf("%q not in the document", tc.old)
			}
			doc := strings.Replace(validScopes, tc.old, tc.new, 1)
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatal("accepted")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if want := lineOf(doc, tc.wantAt); e.Line != want {
				t.Errorf("line %d, want %d: %v", e.Line, want, err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not say %s", err, tc.wantErr)
			}
		})
	}
}

func TestValidateChecksCustomResourceTypes(t *testing.T) {
	c := Dev(t.TempDir())
	c.Scopes.CustomResourceTypes = []string{"Ledger", "Ledger", "lower"}
	err := c.Validate(true)
	if err == nil || !strings.Contains(err.Error(), "scopes.custom_resource_types[1]") || !strings.Contains(err.Error(), "scopes.custom_resource_types[2]") {
		t.Fatalf("Validate = %v", err)
	}
	c.Scopes.CustomResourceTypes = make([]string, 257)
	for i := range c.Scopes.CustomResourceTypes {
		c.Scopes.CustomResourceTypes[i] = "T" + strings.Repeat("a", i%60) + string(rune('a'+i/60))
	}
	if err := c.Validate(true); err == nil || !strings.Contains(err.Error(), "scopes.custom_resource_types: at most 256 types") {
		t.Fatalf("Validate of 257 types = %v", err)
	}
}

// lineOf is the 1-based line of the first occurrence of s in doc.
func lineOf(doc, s string) int {
	i := strings.Index(doc, s)
	if i < 0 {
		return 0
	}
	return strings.Count(doc[:i], "\n") + 1
}
