package scope

import (
	"iter"
	"strings"
)

// Limits.
const (
	// MaxLen is the longest scope, SMART or plain, in bytes, both as given
	// and in canonical form.
	MaxLen = 256
	// MaxPlainLen is the longest plain scope in bytes.
	MaxPlainLen = 128
	// MaxScopes is the most scopes a Set holds.
	MaxScopes = 64
	// maxResourceLen is the longest FHIR resource type name.
	maxResourceLen = 64
	// maxParamNameLen is the longest restriction name.
	maxParamNameLen = 64
)

// Plain scopes with a meaning to phigate itself.
const (
	// Root is THE ROOT SCOPE: it covers every scope, SMART and plain, and
	// grants every operation on every resource type (see the package doc).
	Root = "admin:*"
	// AdminTokens allows managing tokens: create, list, change, revoke, rotate.
	AdminTokens = "admin:tokens"
	// AdminAudit allows reading, exporting and checkpointing the audit log.
	AdminAudit = "admin:audit"
	// AdminAlerts allows listing and acknowledging alerts.
	AdminAlerts = "admin:alerts"
	// AdminKeys allows rotating keys and managing upstream secrets.
	AdminKeys = "admin:keys"
	// AdminMetrics allows reading the Prometheus metrics (GET /metrics).
	AdminMetrics = "admin:metrics"
	// AuditReadTiles allows reading the audit log's tlog-tiles listener
	// (audit.tiles.access: token).
	AuditReadTiles = "audit:read-tiles"
	// AdminClients allows registering, listing and revoking the OAuth
	// clients of SMART Backend Services (within the caller's own scopes
	// and constraints).
	AdminClients = "admin:clients"
	// Introspect allows RFC 7662 introspection of other tokens.
	Introspect = "introspect"
)

// Context is the launch context of a SMART scope. Contexts are ordered:
// System includes User, which includes Patient.
type Context uint8

// Contexts. The zero Context is that of a plain scope (other than Root).
const (
	Patient Context = iota + 1
	User
	System
)

// String returns "patient", "user", "system", or "" for the zero Context.
func (c Context) String() string {
	switch c {
	case Patient:
		return "patient"
	case User:
		return "user"
	case System:
		return "system"
	}
	return ""
}

// Covers reports whether c includes d: system ⊇ user ⊇ patient. The zero
// Context neither covers nor is covered.
func (c Context) Covers(d Context) bool {
	return d >= Patient && c >= d && c <= System
}

// Op is one FHIR operation, written as its SMART permission letter.
type Op byte

// Operations.
const (
	OpCreate Op = 'c'
	OpRead   Op = 'r'
	OpUpdate Op = 'u'
	OpDelete Op = 'd'
	OpSearch Op = 's'
)

// permLetters lists the permission letters in canonical order; the bit of a
// letter in Perms is 1 << its index here.
const permLetters = "cruds"

// bit returns op's bit in Perms, or 0 when op is not an operation.
func (op Op) bit() Perms {
	switch op {
	case OpCreate:
		return 1 << 0
	case OpRead:
		return 1 << 1
	case OpUpdate:
		return 1 << 2
	case OpDelete:
		return 1 << 3
	case OpSearch:
		return 1 << 4
	}
	return 0
}

// String returns "create", "read", "update", "delete", "search", or "" when
// op is not an operation.
func (op Op) String() string {
	switch op {
	case OpCreate:
		return "create"
	case OpRead:
		return "read"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpSearch:
		return "search"
	}
	return ""
}

// Perms is a set of operations.
type Perms uint8

const allPerms Perms = 1<<len(permLetters) - 1

// Has reports whether p includes op.
func (p Perms) Has(op Op) bool {
	b := op.bit()
	return b != 0 && p&b == b
}

// String returns the v2 permission letters of p in canonical order, e.g.
// "rs"; "" when p is empty.
func (p Perms) String() string {
	var b [len(permLetters)]byte
	n := 0
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b[n] = permLetters[i]
			n++
		}
	}
	return string(b[:n])
}

// Param is one restriction of a SMART scope: the FHIR search parameter Name
// must have the (percent-decoded) Value.
type Param struct {
	Name  string
	Value string
}

type kind uint8

const (
	kindNone kind = iota // the zero Scope, which is not a scope
	kindPlain
	kindSMART
)

// Scope is one parsed and normalised scope. The zero Scope is not a valid
// scope: it covers nothing, grants nothing and is rejected by NewSet. Scopes
// are immutable and safe for concurrent use; compare them with Equal.
type Scope struct {
	str  string // canonical form
	kind kind

	// SMART scopes (the root scope reports System, "*" and all perms).
	ctx    Context
	res    string
	perms  Perms
	params []Param // sorted by Name then Value, no duplicates; never mutated

	// Plain scopes.
	wild bool // ends in ":*"
	root bool // is Root
}

// Parse parses one scope and normalises it (see the package doc for the
// grammar and the canonical form). Errors are *Error and match ErrInvalid.
func Parse(s string) (Scope, error) {
	switch {
	case s == "":
		return Scope{}, newError(s, "empty scope")
	case len(s) > MaxLen:
		return Scope{}, newError(s, "longer than 256 bytes")
	case strings.IndexByte(s, '/') >= 0:
		return parseSMART(s)
	}
	return parsePlain(s)
}

// String returns the canonical form of s; "" for the zero Scope.
func (s Scope) String() string { return s.str }

// IsSMART reports whether s is a SMART scope (context/resource.perms).
func (s Scope) IsSMART() bool { return s.kind == kindSMART }

// IsPlain reports whether s is a plain API scope (Root included).
func (s Scope) IsPlain() bool { return s.kind == kindPlain }

// IsRoot reports whether s is the root scope admin:*.
func (s Scope) IsRoot() bool { return s.root }

// IsWildcard reports whether s is a plain scope ending in ":*".
func (s Scope) IsWildcard() bool { return s.wild }

// Context returns the context of a SMART scope; System for Root; the zero
// Context for other plain scopes.
func (s Scope) Context() Context {
	if s.root {
		return System
	}
	return s.ctx
}

// Resource returns the resource type of a SMART scope, or "*" for all
// types; "*" for Root; "" for other plain scopes.
func (s Scope) Resource() string {
	if s.root {
		return "*"
	}
	return s.res
}

// Perms returns the operations a SMART scope permits; all of them for Root;
// none for other plain scopes.
func (s Scope) Perms() Perms {
	if s.root {
		return allPerms
	}
	return s.perms
}

// Restricted reports whether s carries restrictions ("?name=value").
func (s Scope) Restricted() bool { return len(s.params) > 0 }

// Params yields the restrictions of a SMART scope, sorted by name then
// value, with values percent-decoded. All of them must hold for s to grant a
// request. Ranging over Params does not allocate.
func (s Scope) Params() iter.Seq[Param] {
	params := s.params
	return func(yield func(Param) bool) {
		for _, p := range params {
			if !yield(p) {
				return
			}
		}
	}
}

// Equal reports whether s and t are the same scope (same canonical form).
func (s Scope) Equal(t Scope) bool { return s.kind == t.kind && s.str == t.str }

// Covers reports whether s covers t: whether t's authority is within s's
// (see Coverage in the package doc). A zero Scope covers nothing and is
// covered by nothing.
func (s Scope) Covers(t Scope) bool {
	if s.kind == kindNone || t.kind == kindNone {
		return false
	}
	if s.root {
		return true
	}
	if s.kind != t.kind {
		return false
	}
	if s.kind == kindPlain {
		return coversPlain(&s, &t)
	}
	return matchesSMART(&s, &t) && s.perms&t.perms == t.perms
}

// coversPlain applies the plain coverage rule to two plain scopes. It does
// not know about Root; callers check that first. A wildcard b needs no
// special case: "Q:*" starts with "P:" exactly when Q is P or under P.
func coversPlain(a, b *Scope) bool {
	if !a.wild {
		return a.str == b.str
	}
	under := a.str[:len(a.str)-len("*")] // "P:"
	return b.str == under[:len(under)-1] || strings.HasPrefix(b.str, under)
}

// matchesSMART reports whether the SMART scope a meets b in context,
// resource and restrictions: coverage without the permission clause.
func matchesSMART(a, b *Scope) bool {
	return a.ctx.Covers(b.ctx) &&
		(a.res == "*" || a.res == b.res) &&
		paramsSubset(a.params, b.params)
}

// paramsSubset reports whether every element of a is in b; both are sorted
// by Name then Value and free of duplicates.
func paramsSubset(a, b []Param) bool {
	if len(a) > len(b) {
		return false
	}
	j := 0
	for _, p := range a {
		for j < len(b) && comparePar(b[j], p) < 0 {
			j++
		}
		if j == len(b) || b[j] != p {
			return false
		}
		j++
	}
	return true
}

func comparePar(p, q Param) int {
	if c := strings.Compare(p.Name, q.Name); c != 0 {
		return c
	}
	return strings.Compare(p.Value, q.Value)
}

// grants reports whether s grants op (a single valid bit) on resource.
func (s *Scope) grants(resource string, bit Perms) bool {
	if s.root {
		return true
	}
	return s.kind == kindSMART && s.perms&bit != 0 && (s.res == "*" || s.res == resource)
}
