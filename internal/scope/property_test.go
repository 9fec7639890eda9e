package scope

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// genScope returns a random scope drawn from a small universe, so that
// random pairs are often related.
func genScope(r *rand.Rand) string {
	if r.IntN(4) == 0 {
		plain := []string{
			"billing", "billing:read", "billing:*", "billing:inv:*", "billing:inv:write",
			"admin:tokens", "admin:*", "introspect", "admin:tokens:*", "billingx:read",
		}
		return plain[r.IntN(len(plain))]
	}
	ctx := []string{"patient", "user", "system"}[r.IntN(3)]
	res := []string{"*", "Observation", "Patient"}[r.IntN(3)]
	var perms strings.Builder
	for perms.Len() == 0 {
		for i := range len(permLetters) {
			if r.IntN(2) == 0 {
				perms.WriteByte(permLetters[i])
			}
		}
	}
	s := ctx + "/" + res + "." + perms.String()
	sep := "?"
	for _, p := range modelParams {
		if r.IntN(3) == 0 {
			s += sep + p.Name + "=" + p.Value
			sep = "&"
		}
	}
	return s
}

var modelParams = []Param{{"category", "lab"}, {"category", "vital"}, {"code", "x|1"}}

// request is one thing a token may be used for: a FHIR operation or a plain
// permission check.
type request struct {
	plain  string // a plain permission, or "" for a FHIR operation
	ctx    Context
	res    string
	op     Op
	params []Param // restrictions the resource meets
}

// requests enumerates a universe of requests large enough to contain a
// witness for every non-coverage between generated scopes.
func requests() []request {
	var out []request
	for _, p := range []string{
		"billing", "billing:read", "billing:zzz", "billing:inv", "billing:inv:write", "billing:inv:zzz",
		"admin:tokens", "admin:tokens:x", "admin", "admin:zzz", "introspect", "other",
		"billingx", "billingx:read", "admin:tokensx",
	} {
		out = append(out, request{plain: p})
	}
	for ctx := Patient; ctx <= System; ctx++ {
		for _, res := range []string{"Observation", "Patient", "Other"} {
			for i := range len(permLetters) {
				for mask := range 1 << len(modelParams) {
					var ps []Param
					for j, p := range modelParams {
						if mask&(1<<j) != 0 {
							ps = append(ps, p)
						}
					}
					out = append(out, request{ctx: ctx, res: res, op: Op(permLetters[i]), params: ps})
				}
			}
		}
	}
	return out
}

// modelAllows is the meaning of a scope, written independently of the
// coverage code: which requests it lets through.
func modelAllows(s Scope, q request) bool {
	if s.String() == Root {
		return true
	}
	if q.plain != "" {
		if !s.IsPlain() {
			return false
		}
		if base, ok := strings.CutSuffix(s.String(), ":*"); ok {
			return q.plain == base || strings.HasPrefix(q.plain, base+":")
		}
		return q.plain == s.String()
	}
	if !s.IsSMART() || s.Context() < q.ctx || !s.Perms().Has(q.op) {
		return false
	}
	if s.Resource() != "*" && s.Resource() != q.res {
		return false
	}
	for p := range s.Params() {
		found := false
		for _, have := range q.params {
			found = found || have == p
		}
		if !found {
			return false
		}
	}
	return true
}

func modelSetAllows(set Set, q request) bool {
	for s := range set.All() {
		if modelAllows(s, q) {
			return true
		}
	}
	return false
}

// TestCoversMatchesModel checks Covers, on single scopes and on sets,
// against the model: a covers b exactly when every request b allows, a
// allows too. Soundness (Covers implies the model) is the security
// property; completeness keeps attenuation from refusing what it may grant.
func TestCoversMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	reqs := requests()
	modelCovers := func(a, b Set) bool {
		for _, q := range reqs {
			if modelSetAllows(b, q) && !modelSetAllows(a, q) {
				return false
			}
		}
		return true
	}
	for range 3000 {
		var as, bs []string
		for range 1 + r.IntN(3) {
			as = append(as, genScope(r))
		}
		for range 1 + r.IntN(2) {
			bs = append(bs, genScope(r))
		}
		a, b := mustSet(t, as...), mustSet(t, bs...)
		if got, want := a.Covers(b), modelCovers(a, b); got != want {
			t.Fatalf("%q.Covers(%q) = %v, model says %v", a, b, got, want)
		}
		if len(as) == 1 && len(bs) == 1 {
			sa, sb := mustParse(t, as[0]), mustParse(t, bs[0])
			if got, want := sa.Covers(sb), modelCovers(a, b); got != want {
				t.Fatalf("scope %q.Covers(%q) = %v, model says %v", sa, sb, got, want)
			}
		}
	}
}

// TestCoversIsReflexiveAndTransitive checks every pair and triple of a
// generated population of scopes, and of sets.
func TestCoversIsReflexiveAndTransitive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	scopes := make([]Scope, 80)
	for i := range scopes {
		scopes[i] = mustParse(t, genScope(r))
	}
	relations := 0
	for _, a := range scopes {
		if !a.Covers(a) {
			t.Fatalf("%q does not cover itself", a)
		}
		for _, b := range scopes {
			if !a.Covers(b) {
				continue
			}
			relations++
			for _, c := range scopes {
				if b.Covers(c) && !a.Covers(c) {
					t.Fatalf("%q ⊇ %q ⊇ %q but not %q ⊇ %q", a, b, c, a, c)
				}
			}
		}
	}
	if relations < 2*len(scopes) {
		t.Fatalf("only %d coverage relations among %d scopes: the generator is too sparse", relations, len(scopes))
	}

	sets := make([]Set, 60)
	for i := range sets {
		var ss []string
		for range 1 + r.IntN(3) {
			ss = append(ss, genScope(r))
		}
		sets[i] = mustSet(t, ss...)
	}
	for _, a := range sets {
		if !a.Covers(a) {
			t.Fatalf("set %q does not cover itself", a)
		}
		for _, b := range sets {
			if !a.Covers(b) {
				continue
			}
			for _, c := range sets {
				if b.Covers(c) && !a.Covers(c) {
					t.Fatalf("sets %q ⊇ %q ⊇ %q but not %q ⊇ %q", a, b, c, a, c)
				}
			}
		}
	}
}

// TestGrantsMatchesModel checks that Grants yields exactly the scopes the
// model lets through for some request on (resource, op).
func TestGrantsMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		var ss []string
		for range 1 + r.IntN(4) {
			ss = append(ss, genScope(r))
		}
		set := mustSet(t, ss...)
		for _, res := range []string{"Observation", "Patient", "Other"} {
			for i := range len(permLetters) {
				op := Op(permLetters[i])
				granted := map[string]bool{}
				for s := range set.Grants(res, op) {
					granted[s.String()] = true
				}
				for s := range set.All() {
					// A patient-context request meeting every restriction
					// is one that any scope granting (res, op) lets through.
					want := modelAllows(s, request{ctx: Patient, res: res, op: op, params: modelParams})
					if granted[s.String()] != want {
						t.Fatalf("%q: Grants(%s, %c) includes %q = %v, model says %v", set, res, op, s, granted[s.String()], want)
					}
				}
			}
		}
	}
}
