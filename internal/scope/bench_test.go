package scope

import "testing"

// benchSet is what a typical clinical app token holds.
var benchScopes = []string{
	"patient/Observation.rs?category=laboratory",
	"patient/Patient.read",
	"user/Encounter.rs",
	"billing:read",
	"introspect",
}

func BenchmarkParseSet(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSet(benchScopes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCovers(b *testing.B) {
	parent := mustSet(b, append([]string{"system/*.s", "admin:tokens"}, benchScopes...)...)
	child := mustSet(b, "patient/Observation.rs?category=laboratory&code=x", "patient/Patient.r", "billing:read")
	if !parent.Covers(child) {
		b.Fatal("parent does not cover child")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !parent.Covers(child) {
			b.Fatal("not covered")
		}
	}
}

func BenchmarkHas(b *testing.B) {
	set := mustSet(b, append([]string{"admin:tokens", "admin:audit"}, benchScopes...)...)
	b.ReportAllocs()
	for b.Loop() {
		if !set.Has(AdminTokens) {
			b.Fatal("not held")
		}
	}
}

func BenchmarkAllows(b *testing.B) {
	set := mustSet(b, benchScopes...)
	b.ReportAllocs()
	for b.Loop() {
		if !set.Allows("Encounter", OpSearch) {
			b.Fatal("not allowed")
		}
	}
}

// BenchmarkGrants is the gateway's loop: find a grant whose restrictions
// the request meets.
func BenchmarkGrants(b *testing.B) {
	set := mustSet(b, benchScopes...)
	b.ReportAllocs()
	for b.Loop() {
		ok := false
		for g := range set.Grants("Observation", OpRead) {
			met := true
			for p := range g.Params() {
				met = met && p.Name == "category" && p.Value == "laboratory"
			}
			if met && g.Context() == Patient {
				ok = true
				break
			}
		}
		if !ok {
			b.Fatal("not granted")
		}
	}
}

// TestHotPathsDoNotAllocate holds the zero-allocation contract of Has,
// Covers, Allows and Grants (with Params) under plain go test.
func TestHotPathsDoNotAllocate(t *testing.T) {
	set := mustSet(t, append([]string{"admin:tokens", "billing:*"}, benchScopes...)...)
	child := mustSet(t, "patient/Observation.r?category=laboratory", "billing:x")
	var sink int
	for name, f := range map[string]func(){
		"Has":    func() { _ = set.Has(AdminTokens) || set.Has("billing:invoices:read") },
		"Covers": func() { _ = set.Covers(child) },
		"Allows": func() { _ = set.Allows("Observation", OpRead) },
		"Grants": func() {
			for g := range set.Grants("Observation", OpSearch) {
				for p := range g.Params() {
					sink += len(p.Value)
				}
			}
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
	_ = sink
}
