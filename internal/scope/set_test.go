package scope

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, s string) Scope {
	t.Helper()
	sc, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return sc
}

func mustSet(t testing.TB, ss ...string) Set {
	t.Helper()
	set, err := ParseSet(ss)
	if err != nil {
		t.Fatalf("ParseSet(%q): %v", ss, err)
	}
	return set
}

func TestScopeCovers(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		// Root covers everything, and only root covers root.
		{Root, "patient/Observation.rs", true},
		{Root, "system/*.cruds?x=y", true},
		{Root, "billing:*", true},
		{Root, AdminTokens, true},
		{Root, Root, true},
		{Root, "admin", true},
		{AdminTokens, Root, false},
		{"system/*.cruds", Root, false},
		{"billing:*", Root, false},
		{"admin:tokens:*", AdminTokens, true},
		{"admin:tokens:*", Root, false},

		// Identity and permissions.
		{"patient/Observation.rs", "patient/Observation.rs", true},
		{"patient/Observation.rs", "patient/Observation.r", true},
		{"patient/Observation.rs", "patient/Observation.s", true},
		{"patient/Observation.r", "patient/Observation.rs", false},
		{"patient/Observation.cruds", "patient/Observation.cud", true},
		{"patient/Observation.read", "patient/Observation.rs", true},
		{"patient/Observation.write", "patient/Observation.r", false},

		// Wildcard resources.
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/*.r", true},
		{"patient/Observation.rs", "patient/*.rs", false},
		{"patient/Observation.rs", "patient/Patient.rs", false},
		{"patient/*.r", "patient/Observation.rs", false},

		// Context hierarchy: system ⊇ user ⊇ patient, never the reverse.
		{"system/Observation.rs", "user/Observation.rs", true},
		{"system/Observation.rs", "patient/Observation.rs", true},
		{"user/Observation.rs", "patient/Observation.rs", true},
		{"user/Observation.rs", "system/Observation.rs", false},
		{"patient/Observation.rs", "user/Observation.rs", false},
		{"patient/Observation.rs", "system/Observation.rs", false},
		{"system/*.cruds", "patient/Observation.r", true},
		{"user/*.rs", "patient/Observation.rs?category=laboratory", true},

		// Restrictions: b may add, never drop.
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=laboratory", true},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.r?category=laboratory", true},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=laboratory&code=x", true},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs", false},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs", false},
		{"patient/Observation.rs?category=laboratory", "patient/Observation.rs?code=laboratory", false},
		{"patient/Observation.rs?category=laboratory&code=x", "patient/Observation.rs?category=laboratory", false},
		{"patient/Observation.rs", "patient/Observation.rs?category=laboratory", true},
		{"patient/*.rs?_tag=a", "patient/Observation.rs?_tag=a", true},
		{"patient/*.rs?_tag=a", "patient/Observation.rs", false},
		{"patient/Observation.rs?code=x%7Cy", "patient/Observation.rs?code=x|y", true},
		{"patient/Observation.rs?code=a&code=b", "patient/Observation.rs?code=a&code=b&code=c", true},
		{"patient/Observation.rs?code=a&code=b", "patient/Observation.rs?code=a&code=c", false},

		// Plain scopes and the plain wildcard.
		{"billing:read", "billing:read", true},
		{"billing:read", "billing:write", false},
		{"billing:read", "billing:read:x", false},
		{"billing:*", "billing", true},
		{"billing:*", "billing:read", true},
		{"billing:*", "billing:invoices:write", true},
		{"billing:*", "billing:invoices:*", true},
		{"billing:*", "billing:*", true},
		{"billing:*", "billingx", false},
		{"billing:*", "billingx:read", false},
		{"billing:*", "billing.x:read", false},
		{"billing:invoices:*", "billing:*", false},
		{"billing:invoices:*", "billing:read", false},
		{"billing", "billing:read", false},
		{"billing", "billing:*", false},
		{"billing:read", "billing:*", false},

		// Plain and SMART never cover each other (root aside).
		{"billing:*", "patient/Observation.rs", false},
		{"system/*.cruds", "billing:read", false},
		{"system/*.cruds", "introspect", false},
		{"patient", "patient/Observation.rs", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+"⊇"+tt.b, func(t *testing.T) {
			a, b := mustParse(t, tt.a), mustParse(t, tt.b)
			if got := a.Covers(b); got != tt.want {
				t.Errorf("%q.Covers(%q) = %v, want %v", a, b, got, tt.want)
			}
			sa, sb := mustSet(t, tt.a), mustSet(t, tt.b)
			if got := sa.Covers(sb); got != tt.want {
				t.Errorf("set %q.Covers(%q) = %v, want %v", sa, sb, got, tt.want)
			}
			if got := len(sa.Uncovered(sb)) == 0; got != tt.want {
				t.Errorf("Uncovered disagrees with Covers")
			}
		})
	}
}

func TestSetCovers(t *testing.T) {
	tests := []struct {
		name string
		a, b string // space-separated sets
		want bool
	}{
		{"empty_covers_empty", "", "", true},
		{"anything_covers_empty", "billing:read", "", true},
		{"empty_covers_nothing", "", "billing:read", false},
		{"subset", "billing:read introspect patient/Observation.rs", "introspect billing:read", true},
		{"one_missing", "billing:read", "billing:read introspect", false},
		{"root_covers_mixed", "admin:*", "patient/*.cruds billing:* introspect admin:*", true},
		{"perms_split_across_scopes", "patient/Observation.r patient/Observation.s", "patient/Observation.rs", true},
		{"perms_split_across_contexts", "user/Observation.r system/*.s", "patient/Observation.rs", true},
		{"perms_split_one_short", "patient/Observation.r patient/Observation.s", "patient/Observation.rus", false},
		{"perms_split_restricted_part", "patient/Observation.r patient/Observation.s?x=y", "patient/Observation.rs", false},
		{"perms_split_restricted_both", "patient/Observation.r?x=y patient/Observation.s", "patient/Observation.rs?x=y", true},
		{"resources_do_not_add_up_to_star", "patient/Observation.rs patient/Patient.rs", "patient/*.rs", false},
		{"contexts_do_not_add_up", "patient/Observation.rs user/Observation.r", "system/Observation.r", false},
		{"restrictions_do_not_add_up", "patient/Observation.rs?category=a patient/Observation.rs?category=b", "patient/Observation.rs", false},
		{"admin_scopes_not_root", "admin:tokens admin:audit admin:alerts admin:keys", "admin:*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := mustSet(t, tt.a), mustSet(t, tt.b)
			if got := a.Covers(b); got != tt.want {
				t.Errorf("%q.Covers(%q) = %v, want %v", a, b, got, tt.want)
			}
			if got := len(a.Uncovered(b)) == 0; got != tt.want {
				t.Errorf("Uncovered = %v, disagrees with Covers", a.Uncovered(b))
			}
		})
	}
}

func TestUncoveredNamesTheOffendingScopes(t *testing.T) {
	a := mustSet(t, "patient/Observation.rs billing:*")
	b := mustSet(t, "patient/Observation.rs?code=x billing:read introspect user/Observation.r patient/Observation.c")
	var got []string
	for _, s := range a.Uncovered(b) {
		got = append(got, s.String())
	}
	want := []string{"introspect", "patient/Observation.c", "user/Observation.r"}
	if !slices.Equal(got, want) {
		t.Errorf("Uncovered = %q, want %q", got, want)
	}
	if a.Uncovered(a) != nil {
		t.Errorf("a set leaves something of itself uncovered")
	}
}

func TestParseSet(t *testing.T) {
	set, err := ParseSet([]string{
		"user/Observation.read billing:read",
		"",
		"  introspect   billing:read ",
		"user/Observation.rs",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"billing:read", "introspect", "user/Observation.rs"}
	if got := set.Strings(); !slices.Equal(got, want) {
		t.Errorf("Strings() = %q, want %q", got, want)
	}
	if got := set.String(); got != strings.Join(want, " ") {
		t.Errorf("String() = %q", got)
	}
	if set.Len() != 3 {
		t.Errorf("Len() = %d", set.Len())
	}
	var all []string
	for s := range set.All() {
		all = append(all, s.String())
	}
	if !slices.Equal(all, want) {
		t.Errorf("All() = %q", all)
	}
	again := mustSet(t, set.String())
	if !again.Equal(set) {
		t.Errorf("String() does not parse back to the same set")
	}

	var zero Set
	if zero.Len() != 0 || zero.String() != "" || zero.Strings() != nil || zero.Has(Introspect) || zero.Allows("Patient", OpRead) {
		t.Errorf("zero Set is not empty")
	}
	if empty := mustSet(t); !empty.Equal(zero) {
		t.Errorf("ParseSet(nil) is not the empty set")
	}
}

func TestParseSetLimits(t *testing.T) {
	scopes := make([]string, MaxScopes)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("s%d", i)
	}
	if _, err := ParseSet(scopes); err != nil {
		t.Fatalf("%d scopes: %v", MaxScopes, err)
	}
	// One more, even a duplicate, is too many.
	for _, extra := range []string{"s999", "s0"} {
		_, err := ParseSet(append(scopes, extra))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "65 scopes") {
			t.Errorf("%d scopes (+%q): err = %v, want too many", MaxScopes+1, extra, err)
		}
	}
	// The same, in one space-separated string.
	if _, err := ParseSet([]string{strings.Join(scopes, " ") + " x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("65 scopes in one string: err = %v", err)
	}
	if _, err := ParseSet([]string{strings.Repeat(" ", maxElemLen+1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("huge element: err = %v", err)
	}
	// The first bad scope is reported.
	_, err := ParseSet([]string{"billing:read patient/observation.rs Bad"})
	var e *Error
	if !errors.As(err, &e) || e.Scope != "patient/observation.rs" {
		t.Errorf("err = %v, want one naming patient/observation.rs", err)
	}
}

func TestNewSet(t *testing.T) {
	a, b := mustParse(t, "billing:read"), mustParse(t, "introspect")
	set, err := NewSet(b, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.String(); got != "billing:read introspect" {
		t.Errorf("NewSet = %q", got)
	}
	if _, err := NewSet(a, Scope{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewSet with a zero Scope: err = %v", err)
	}
	if _, err := NewSet(make([]Scope, MaxScopes+1)...); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewSet with too many scopes: err = %v", err)
	}
	// NewSet does not keep the caller's slice.
	in := []Scope{b, a}
	set, _ = NewSet(in...)
	in[0] = mustParse(t, "other")
	if set.String() != "billing:read introspect" {
		t.Errorf("NewSet aliases its argument")
	}
}

func TestHas(t *testing.T) {
	tests := []struct {
		set, name string
		want      bool
	}{
		{"admin:tokens", AdminTokens, true},
		{"admin:*", AdminTokens, true},
		{"admin:*", "billing:read", true},
		{"admin:*", Root, true},
		{"admin:tokens", Root, false},
		{"admin:audit", AdminTokens, false},
		{"billing:*", "billing:invoices:write", true},
		{"billing:*", "billing", true},
		{"billing:read", "billing:*", false},
		{"introspect patient/*.cruds", Introspect, true},
		{"system/*.cruds", Introspect, false},
		{"", AdminTokens, false},
		// Names that are not plain scopes are never held, not even by root.
		{"admin:*", "", false},
		{"admin:*", "Admin:tokens", false},
		{"admin:*", "admin:tokens ", false},
		{"admin:*", "patient/Observation.rs", false},
		{"patient/Observation.rs", "patient/Observation.rs", false},
	}
	for _, tt := range tests {
		t.Run(tt.set+"∋"+tt.name, func(t *testing.T) {
			if got := mustSet(t, tt.set).Has(tt.name); got != tt.want {
				t.Errorf("Has = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGrants(t *testing.T) {
	set := mustSet(t, "patient/Observation.rs?category=laboratory user/Observation.r system/*.s billing:* patient/Patient.r")
	tests := []struct {
		resource string
		op       Op
		want     []string
	}{
		{"Observation", OpRead, []string{"patient/Observation.rs?category=laboratory", "user/Observation.r"}},
		{"Observation", OpSearch, []string{"patient/Observation.rs?category=laboratory", "system/*.s"}},
		{"Patient", OpSearch, []string{"system/*.s"}},
		{"Patient", OpRead, []string{"patient/Patient.r"}},
		{"Encounter", OpRead, nil},
		{"Observation", OpCreate, nil},
		{"*", OpSearch, []string{"system/*.s"}},
		{"*", OpRead, nil},
		{"observation", OpRead, nil}, // not a resource type
		{"", OpRead, nil},
		{"Observation", Op('x'), nil},
		{"Observation", 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_%c", tt.resource, byte(tt.op)), func(t *testing.T) {
			var got []string
			for s := range set.Grants(tt.resource, tt.op) {
				got = append(got, s.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Grants = %q, want %q", got, tt.want)
			}
			if set.Allows(tt.resource, tt.op) != (len(tt.want) > 0) {
				t.Errorf("Allows disagrees with Grants")
			}
		})
	}

	// Stopping early stops the iteration.
	n := 0
	for range set.Grants("Observation", OpRead) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break did not stop Grants")
	}

	// Root grants everything and reports itself as system/*.cruds.
	root := mustSet(t, "billing:read admin:*")
	for _, op := range []Op{OpCreate, OpRead, OpUpdate, OpDelete, OpSearch} {
		var got []Scope
		for s := range root.Grants("Observation", op) {
			got = append(got, s)
		}
		if len(got) != 1 || !got[0].IsRoot() || got[0].Context() != System || !got[0].Perms().Has(op) {
			t.Errorf("root: Grants(Observation, %v) = %v", op, got)
		}
	}
}

func TestContextCovers(t *testing.T) {
	ctxs := []Context{0, Patient, User, System}
	for _, c := range ctxs {
		for _, d := range ctxs {
			want := c != 0 && d != 0 && c >= d
			if got := c.Covers(d); got != want {
				t.Errorf("%q.Covers(%q) = %v, want %v", c, d, got, want)
			}
		}
	}
}
