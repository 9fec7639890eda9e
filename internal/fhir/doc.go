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
//
// # The Patient compartment
//
// [PatientCompartmentParams] is the R4 Patient CompartmentDefinition
// (compartmentdefinition-patient.html): for each of its 66 resource types,
// the search parameters that link a resource to the patient, each with the
// reference elements it searches ("participant.actor" for Appointment's
// actor). [InPatientCompartment] decides whether a JSON resource belongs to
// Patient/{id}: a Patient by its id (not through Patient.link: the linked
// records are others'), any other type when one of those references names
// Patient/{id} (relative, versioned or absolute); a type outside the
// definition never belongs. [IsPatientReference] is the reference test.
//
// # Search parameters
//
// [HasPatientParam] and [HasSubjectPatientParam] report which R4 types
// define a patient search parameter, and a subject one that may name a
// Patient: a search confined by patient= to a type that does not define
// it would be ignored by a lenient server.
package fhir
