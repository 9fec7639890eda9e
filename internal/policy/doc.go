// Package policy holds the constraints a token carries and the decision they
// lead to: allow, or deny with a Reason.
//
// Guarantees:
//
//   - Deny by default: a Decision is an allow only when every check passed;
//     the zero Reason is not OK.
//   - Constraints are compiled once per cached token (Compile) and then
//     evaluated without allocation: source network (CIDR), daily hours in a
//     time zone, purpose of use, token-bucket rate.
//   - Attenuation (Within) decides whether one token's constraints are within
//     another's: a token can only create or widen tokens inside its own
//     scopes, lifetime and constraints, never beyond. Lifetimes are compared
//     as instants: a child's not_after (its absolute end) is never after its
//     issuer's, whatever their max lifetimes.
//   - A subject prefix (subject_prefix) restricts the subjects a token may
//     issue tokens for, and the prefixes of those tokens: each starts with
//     it. The subject is an asserted name, not a proven identity: the proof
//     of who vouched for it is the issuing token (created_by) and the audit
//     entry of the creation.
package policy
