package scope

import (
	"iter"
	"slices"
	"strings"
)

// maxElemLen bounds one element given to ParseSet: MaxScopes scopes of
// MaxLen bytes and the spaces between them.
const maxElemLen = MaxScopes * (MaxLen + 1)

// Set is a set of scopes: parsed, normalised, without duplicates, sorted
// bytewise by canonical form, at most MaxScopes of them. The zero Set is
// empty. A Set is immutable and safe for concurrent use.
type Set struct {
	scopes []Scope // never mutated after construction, never handed out
	root   bool    // holds Root
}

// ParseSet parses scopes into a Set. Each element of ss may hold several
// scopes separated by spaces, as an OAuth "scope" parameter does; empty
// pieces are ignored. More than MaxScopes pieces in all, counted before
// duplicates are removed, is an error. Errors are *Error and match
// ErrInvalid; the first malformed scope is the one reported.
func ParseSet(ss []string) (Set, error) {
	n := 0
	for _, e := range ss {
		if len(e) > maxElemLen {
			return Set{}, setError("scope string longer than %d bytes", maxElemLen)
		}
		for range fields(e) {
			n++
		}
	}
	if n > MaxScopes {
		return Set{}, setError("%d scopes, more than %d", n, MaxScopes)
	}
	scopes := make([]Scope, 0, n)
	for _, e := range ss {
		for f := range fields(e) {
			s, err := Parse(f)
			if err != nil {
				return Set{}, err
			}
			scopes = append(scopes, s)
		}
	}
	return newSet(scopes), nil
}

// NewSet returns the Set of the given scopes. A zero Scope or more than
// MaxScopes scopes (counted before duplicates are removed) is an error.
func NewSet(scopes ...Scope) (Set, error) {
	if len(scopes) > MaxScopes {
		return Set{}, setError("%d scopes, more than %d", len(scopes), MaxScopes)
	}
	for _, s := range scopes {
		if s.kind == kindNone {
			return Set{}, newError("", "zero Scope")
		}
	}
	return newSet(slices.Clone(scopes)), nil
}

// newSet sorts and deduplicates scopes in place and takes ownership of them.
func newSet(scopes []Scope) Set {
	if len(scopes) == 0 {
		return Set{}
	}
	slices.SortFunc(scopes, func(a, b Scope) int { return strings.Compare(a.str, b.str) })
	scopes = slices.CompactFunc(scopes, Scope.Equal)
	s := Set{scopes: slices.Clip(scopes)}
	for i := range scopes {
		s.root = s.root || scopes[i].root
	}
	return s
}

// fields yields the non-empty space-separated pieces of s.
func fields(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for f := range strings.SplitSeq(s, " ") {
			if f != "" && !yield(f) {
				return
			}
		}
	}
}

// Len returns the number of scopes in a.
func (a Set) Len() int { return len(a.scopes) }

// All yields the scopes of a in order.
func (a Set) All() iter.Seq[Scope] {
	scopes := a.scopes
	return func(yield func(Scope) bool) {
		for _, s := range scopes {
			if !yield(s) {
				return
			}
		}
	}
}

// Strings returns the canonical forms of the scopes of a, in order, in a
// new slice; nil for an empty set.
func (a Set) Strings() []string {
	if len(a.scopes) == 0 {
		return nil
	}
	out := make([]string, len(a.scopes))
	for i, s := range a.scopes {
		out[i] = s.str
	}
	return out
}

// String returns the canonical forms joined by single spaces, as the
// "scope" member of an RFC 7662 introspection response.
func (a Set) String() string {
	var b strings.Builder
	for i, s := range a.scopes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.str)
	}
	return b.String()
}

// Equal reports whether a and b hold the same scopes.
func (a Set) Equal(b Set) bool { return slices.EqualFunc(a.scopes, b.scopes, Scope.Equal) }

// Has reports whether a covers the plain scope name, e.g. whether
// Has(AdminTokens) holds for a set with "admin:tokens" or "admin:*". A name
// that is not a well-formed plain scope (a SMART scope included) is never
// held: use Covers or Grants for those. Has does not allocate.
func (a Set) Has(name string) bool {
	wild, f := checkPlain(name)
	if !f.ok() {
		return false
	}
	if a.root {
		return true
	}
	q := Scope{str: name, kind: kindPlain, wild: wild}
	for i := range a.scopes {
		if p := &a.scopes[i]; p.kind == kindPlain && coversPlain(p, &q) {
			return true
		}
	}
	return false
}

// Covers reports whether every scope of b is within a (see Coverage in
// the package doc): whether a token holding a may create a token holding
// b. It does not allocate.
func (a Set) Covers(b Set) bool {
	if a.root {
		return true
	}
	for i := range b.scopes {
		if !a.covers(&b.scopes[i]) {
			return false
		}
	}
	return true
}

// Uncovered returns, in order, the scopes of b that a does not cover; nil
// when a covers b. Use it to name the offending scopes in an error.
func (a Set) Uncovered(b Set) []Scope {
	if a.root {
		return nil
	}
	var out []Scope
	for i := range b.scopes {
		if !a.covers(&b.scopes[i]) {
			out = append(out, b.scopes[i])
		}
	}
	return out
}

// covers reports whether a covers t; a does not hold Root.
func (a Set) covers(t *Scope) bool {
	switch t.kind {
	case kindPlain:
		for i := range a.scopes {
			if p := &a.scopes[i]; p.kind == kindPlain && coversPlain(p, t) {
				return true
			}
		}
	case kindSMART:
		// Each permission may come from a different scope of a.
		var got Perms
		for i := range a.scopes {
			if p := &a.scopes[i]; p.kind == kindSMART && p.perms&t.perms != 0 && matchesSMART(p, t) {
				if got |= p.perms & t.perms; got == t.perms {
					return true
				}
			}
		}
	}
	return false
}

// Allows reports whether some scope of a grants op on the resource type
// (see Grants). It is a first, necessary check: false means deny; true
// means the gateway must still find, with Grants, one grant whose context
// and restrictions the request meets. It does not allocate.
func (a Set) Allows(resource string, op Op) bool {
	for range a.Grants(resource, op) {
		return true
	}
	return false
}

// Grants yields, in order, every scope of a that grants op on the resource
// type: Root, and each SMART scope whose resource is "*" or resource and
// whose permissions include op. The gateway allows a request when one of
// them has a context the request fits (a Patient grant binds the token's
// patient compartment; Root reports System) and restrictions (Params) that
// all hold. A resource that is neither "*" nor a well-formed resource type
// name, or an op that is not one of the five, yields nothing. Ranging over
// Grants does not allocate.
func (a Set) Grants(resource string, op Op) iter.Seq[Scope] {
	scopes := a.scopes
	return func(yield func(Scope) bool) {
		bit := op.bit()
		if bit == 0 || !checkResource(resource, 0).ok() {
			return
		}
		for i := range scopes {
			if scopes[i].grants(resource, bit) && !yield(scopes[i]) {
				return
			}
		}
	}
}
