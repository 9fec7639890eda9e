// Package fhir holds FHIR R4 semantics as pure functions, for every part of
// phigate that needs them (the scope checks of the authority and the
// configuration, the gateway, the audit export). It imports nothing of
// phigate and keeps no state.
//
// # Resource types
//
// [IsResourceType] reports whether a name is one of the 146 resource types
// of FHIR R4 (4.0.1): the codes of http://hl7.org/fhir/resource-types
// without the abstract Resource and DomainResource, spelt exactly as the
// specification does (case matters: "observation" is not a type).
// [ResourceTypes] lists them in order.
//
// [Nearest] suggests, for a name that is not a resource type, the closest
// one (by edit distance, ignoring case) among the R4 types and the extra
// names given, or "" when none is close enough to be a likely typo: at most
// one edit for names of up to four letters, two up to eight, three beyond.
package fhir
