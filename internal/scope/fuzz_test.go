package scope

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/fhir"
)

// FuzzParse checks that Parse never panics, that its canonical form is a
// fixed point (Parse(String()) gives the same String()), that canonical
// forms are short ASCII, and that a parsed scope covers itself. Seeds live
// in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"patient/Observation.rs",
		"user/*.write",
		"system/Patient.*?_tag=a%7Cb&category=lab",
		"billing:invoices:*",
		"admin:*",
		"patient/Observaton.rs",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q): error %v does not match ErrInvalid", in, err)
			}
			if strings.Contains(in, secretMarker) && strings.Contains(err.Error(), secretMarker) {
				t.Fatalf("Parse(%q): error echoes a token-like input: %v", in, err)
			}
			return
		}
		c := s.String()
		if len(c) > MaxLen || (s.IsPlain() && len(c) > MaxPlainLen) {
			t.Fatalf("Parse(%q): canonical form %q too long", in, c)
		}
		for i := 0; i < len(c); i++ {
			if c[i] <= ' ' || c[i] >= utf8.RuneSelf {
				t.Fatalf("Parse(%q): canonical form %q holds byte %#x", in, c, c[i])
			}
		}
		again, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", in, c, err)
		}
		if again.String() != c || !again.Equal(s) {
			t.Fatalf("Parse(%q) = %q, but Parse(%q) = %q", in, c, c, again)
		}
		if !s.Covers(s) || !s.Covers(again) {
			t.Fatalf("%q does not cover itself", c)
		}
		set, err := ParseSet([]string{in})
		if err != nil {
			t.Fatalf("ParseSet(%q): %v", in, err)
		}
		if !set.Covers(set) || set.Len() != 1 || set.String() != c {
			t.Fatalf("ParseSet(%q) = %q, which does not cover itself", in, set)
		}
		if s.IsPlain() && !set.Has(c) {
			t.Fatalf("set %q does not have %q", set, c)
		}
		checkTypes(t, s)
	})
}

// checkTypes holds for a parsed scope s: ResourceTypes accepts it exactly
// when it is plain or names "*", an R4 type or a custom one, and its error
// matches both sentinels and never echoes a token-like input.
func checkTypes(t *testing.T, s Scope) {
	t.Helper()
	rt, err := NewResourceTypes("MyType")
	if err != nil {
		t.Fatal(err)
	}
	err = rt.CheckScope(s)
	want := s.IsPlain() || s.Resource() == "*" || s.Resource() == "MyType" || fhir.IsResourceType(s.Resource())
	switch {
	case (err == nil) != want:
		t.Fatalf("CheckScope(%q) = %v, want accepted %v", s, err, want)
	case err == nil:
	case !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrUnknownResourceType):
		t.Fatalf("CheckScope(%q): error %v does not match both sentinels", s, err)
	case strings.Contains(err.Error(), secretMarker) && strings.Contains(s.String(), secretMarker):
		t.Fatalf("CheckScope(%q): error echoes a token-like input: %v", s, err)
	}
}

// FuzzParseSet checks that ParseSet never panics, that a set's String()
// parses back to an equal set, and that a set covers itself and each of
// its scopes.
func FuzzParseSet(f *testing.F) {
	f.Add("patient/Observation.rs billing:read", "introspect")
	f.Add("user/*.read  admin:tokens", "")
	f.Add("system/*.cruds?x=%41 system/*.cruds?x=A", "admin:*")
	f.Fuzz(func(t *testing.T, a, b string) {
		set, err := ParseSet([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSet: error %v does not match ErrInvalid", err)
			}
			return
		}
		again, err := ParseSet([]string{set.String()})
		if err != nil || !again.Equal(set) {
			t.Fatalf("ParseSet(%q) = %q, which parses back to %q, %v", []string{a, b}, set, again, err)
		}
		if !set.Covers(set) || set.Uncovered(set) != nil {
			t.Fatalf("%q does not cover itself", set)
		}
		for s := range set.All() {
			one, _ := NewSet(s)
			if !set.Covers(one) {
				t.Fatalf("%q does not cover its member %q", set, s)
			}
		}
	})
}
