// Package scope defines the grammar of phigate token scopes, parses and
// normalises them, and decides coverage: whether one set of scopes is within
// another (attenuation) and which scopes grant an operation on a FHIR
// resource type.
//
// This comment is the specification. An implementation that follows it
// accepts, rejects, normalises and compares exactly as this package does.
//
// # ROOT SCOPE: admin:*
//
// THE PLAIN SCOPE "admin:*" (the constant [Root]) IS THE ROOT SCOPE. IT
// COVERS EVERY SCOPE THERE IS, SMART AND PLAIN, INCLUDING ITSELF. A token
// holding it may mint any token and, through the gateway, perform any
// operation on any resource type in any context: for [Set.Grants] and
// [Set.Allows] it acts as "system/*.cruds" with no restrictions. Grant it to
// the bootstrap token and to break-glass operators only. Only a set holding
// admin:* covers admin:*.
//
// # Grammar
//
// A scope is a string of at most [MaxLen] (256) bytes. A scope that
// contains "/" is a SMART scope; any other is a plain scope. In ABNF
// (RFC 5234; quoted strings are case-sensitive here, unlike in RFC 5234):
//
//	scope        = smart-scope / plain-scope
//
//	smart-scope  = context "/" resource "." perms [ "?" restriction *( "&" restriction ) ]
//	context      = "patient" / "user" / "system"
//	resource     = "*" / UPPER 0*63( UPPER / LOWER )          ; a FHIR resource type
//	perms        = v2-perms / "read" / "write" / "*"
//	v2-perms     = [ "c" ] [ "r" ] [ "u" ] [ "d" ] [ "s" ]      ; at least one letter
//	restriction  = name "=" value
//	name         = ( ALPHA / "_" ) 0*63( ALPHA / DIGIT / "_" / "-" / "." / ":" )
//	value        = 1*( raw / pct-encoded )
//	raw          = ALPHA / DIGIT / "-" / "." / "_" / "~" / "!" / "$" / "'" /
//	               "(" / ")" / "*" / "," / ";" / ":" / "/" / "@" / "|"
//	pct-encoded  = "%" HEXDIG HEXDIG                            ; either case
//
//	plain-scope  = segment *( ":" segment ) [ ":*" ]            ; at most 128 bytes
//	segment      = ( LOWER / DIGIT ) *( LOWER / DIGIT / "_" / "." / "-" )
//
//	UPPER        = %x41-5A                                      ; A-Z
//	LOWER        = %x61-7A                                      ; a-z
//
// Further rules:
//
//   - The permission letters stand for create, read, update, delete and
//     search, and are written in the order c, r, u, d, s; a permission string
//     out of order, with a repeated letter or with any other letter is an
//     error. The SMART v1 forms are accepted and normalised: "read" is "rs",
//     "write" is "cud" and "*" is "cruds".
//   - A restriction value is percent-decoded. The decoded value MUST be valid
//     UTF-8 and MUST NOT contain a control character (U+0000–U+001F, U+007F).
//     "+", "&", "=", "?", "#", "%", space and non-ASCII bytes must be
//     percent-encoded ("+" is never read as a space).
//   - Several restrictions mean all of them must hold (AND). The same name
//     may appear with different values.
//   - A plain scope may end in the segment "*", meaning "this prefix and
//     everything under it": "billing:*" stands for "billing", "billing:read",
//     "billing:invoices:write", "billing:invoices:*", and so on. "*" alone is
//     not a scope.
//
// # Canonical form
//
// [Scope.String] gives the canonical form, and Parse of a canonical form
// gives the same canonical form back. A plain scope is its own canonical
// form. A SMART scope's canonical form is
//
//	context "/" resource "." v2-perms [ "?" restrictions ]
//
// with the v1 permission forms replaced by their v2 letters, restrictions
// sorted by name then by decoded value (bytewise), exact duplicates removed,
// and each decoded value re-encoded with every raw byte written as itself
// and every other byte as "%" and two upper-case hex digits. The canonical
// form MUST also fit in MaxLen bytes (".*" grows by four bytes).
//
// Examples:
//
//	patient/Observation.read                  → patient/Observation.rs
//	user/*.write                              → user/*.cud
//	patient/Observation.rs?code=x%7Cy&category=laboratory
//	                                          → patient/Observation.rs?category=laboratory&code=x|y
//	billing:*                                 → billing:*
//
// # Sets
//
// A [Set] is what a token holds: at most [MaxScopes] (64) scopes, parsed,
// normalised, without duplicates and sorted bytewise by canonical form.
// [ParseSet] takes a list of strings, each of which may hold several scopes
// separated by spaces (U+0020) as in an OAuth "scope" parameter; empty
// pieces are ignored, and the 64-scope limit counts pieces before
// duplicates are removed. [Set.String] joins the canonical forms with single
// spaces, as the "scope" member of an RFC 7662 introspection response.
//
// # Coverage
//
// Coverage says whether one scope's authority includes another's; it is
// what attenuation is checked with: a token may only create tokens whose
// scopes its own set covers. A scope A covers a scope B when one of:
//
//  1. A is the root scope admin:* (B anything, including admin:*);
//  2. A and B are plain, and either A = B, or A = P ":*" and B equals P
//     or starts with P ":" (so "billing:*" covers "billing:invoices:*" but
//     not "billingx:read");
//  3. A and B are SMART, and (a) A's context includes B's, where
//     system ⊇ user ⊇ patient: a user-level scope can be attenuated into a
//     patient-level one, never the reverse; (b) A's resource is "*" or
//     equals B's ("*" is covered only by "*"); (c) B's permissions are a
//     subset of A's; and (d) every restriction of A is also a restriction of
//     B (same name, same decoded value): B may add restrictions, but B with
//     fewer restrictions than A is not covered, since it would grant more.
//
// A plain scope other than admin:* never covers a SMART scope, and a SMART
// scope never covers a plain one. Coverage of scopes is reflexive and
// transitive.
//
// A set A covers a scope B ([Set.Covers] of a one-scope set) when B is plain
// and some scope of A covers it, or when B is SMART and every permission
// letter of B is granted by some scope of A that meets B's context, resource
// and restrictions (rule 3 without the permission clause) or is admin:*. So
// {patient/Observation.r, patient/Observation.s} covers
// patient/Observation.rs, as each operation is granted independently. A set
// A covers a set B when it covers every scope of B; the empty set is covered
// by every set and covers only the empty set.
//
// # Grants
//
// For the gateway, a scope grants an operation op on a resource type R when
// it is admin:*, or it is SMART, its resource is "*" or R, and its
// permissions include op. [Set.Grants] yields every such scope; the gateway
// then applies each one's context (a patient-level grant is bound to the
// token's patient compartment) and restrictions, and allows the request if
// any one grant's restrictions all hold. A request for the resource "*"
// (all types) is granted only by scopes for "*".
//
// # Resource types
//
// The grammar accepts any name of the resource rule, so that every stored
// token still loads when a deployment's list of types changes. What a new
// scope may name is checked apart, where scopes are issued or added
// (token creation and change, the gateway's configuration), with a
// [ResourceTypes]: "*", the FHIR R4 resource types (package fhir; case
// matters) and the deployment's custom types. A scope naming anything
// else is refused with an error that matches [ErrUnknownResourceType],
// names the type and, for a likely typo, the nearest known one:
//
//	invalid scope "patient/Observaton.rs": unknown resource type "Observaton":
//	not a FHIR R4 resource type (did you mean Observation?)
//
// # Errors
//
// Every malformed scope or set is reported as an [*Error] that matches
// [ErrInvalid] with errors.Is. Its message names the offending scope,
// quoted and truncated to 80 bytes, and why it was rejected. A scope that
// looks as if it holds a token secret (contains "phi_") is never echoed.
package scope
