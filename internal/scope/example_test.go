package scope_test

import (
	"errors"
	"fmt"

	"github.com/phigate/phigate/internal/scope"
)

func ExampleParse() {
	s, err := scope.Parse("patient/Observation.read?code=http://loinc.org%7C2345-7&category=laboratory")
	if err != nil {
		panic(err)
	}
	fmt.Println(s)
	fmt.Println(s.Context(), s.Resource(), s.Perms())

	_, err = scope.Parse("patient/Observation.sr")
	fmt.Println(err)
	fmt.Println(errors.Is(err, scope.ErrInvalid))
	// Output:
	// patient/Observation.rs?category=laboratory&code=http://loinc.org|2345-7
	// patient Observation rs
	// invalid scope "patient/Observation.sr": permissions out of order (want c, r, u, d, s in that order) (at byte 21)
	// true
}

func ExampleSet_Covers() {
	parent, _ := scope.ParseSet([]string{"user/Observation.rs billing:*"})
	child, _ := scope.ParseSet([]string{"patient/Observation.r?category=laboratory billing:invoices:read"})
	fmt.Println(parent.Covers(child))

	wider, _ := scope.ParseSet([]string{"system/Observation.r introspect"})
	fmt.Println(parent.Covers(wider))
	for _, s := range parent.Uncovered(wider) {
		fmt.Println("not within the parent:", s)
	}
	// Output:
	// true
	// false
	// not within the parent: introspect
	// not within the parent: system/Observation.r
}

func ExampleSet_Grants() {
	set, _ := scope.ParseSet([]string{"patient/Observation.rs?category=laboratory user/Observation.r"})
	for g := range set.Grants("Observation", scope.OpRead) {
		fmt.Print(g.Context(), " ", g.Resource(), " restricted=", g.Restricted())
		for p := range g.Params() {
			fmt.Print(" ", p.Name, "=", p.Value)
		}
		fmt.Println()
	}
	// Output:
	// patient Observation restricted=true category=laboratory
	// user Observation restricted=false
}

func ExampleSet_Has() {
	set, _ := scope.ParseSet([]string{"admin:* patient/*.rs"})
	fmt.Println(set.Has(scope.AdminTokens), set.Has(scope.Introspect), set.Has("patient/*.rs"))
	// Output: true true false
}
