package fhir

import (
	"slices"
	"strings"
	"testing"
)

// The search-parameter lists name only R4 resource types, and every type
// with a typed subject parameter has a patient one too.
func TestSearchParamTypesAreR4ResourceTypes(t *testing.T) {
	for name, types := range map[string]map[string]bool{"patientParamTypes": patientParamTypes, "subjectParamTypes": subjectParamTypes} {
		for typ := range types {
			if !IsResourceType(typ) {
				t.Errorf("%s: %q is not a FHIR R4 resource type", name, typ)
			}
		}
	}
	for typ := range subjectParamTypes {
		if !patientParamTypes[typ] {
			t.Errorf("subjectParamTypes: %q is not in patientParamTypes", typ)
		}
	}
}

// The Patient compartment holds exactly the 66 types of the R4
// CompartmentDefinition's table, each with the parameters the table
// lists, and nothing else.
func TestPatientCompartmentIsTheR4Table(t *testing.T) {
	// compartmentdefinition-patient.html, R4 (4.0.1): type → parameters
	spec := map[string]string{
		"Account": "subject", "AdverseEvent": "subject", "AllergyIntolerance": "patient recorder asserter",
		"Appointment": "actor", "AppointmentResponse": "actor", "AuditEvent": "patient", "Basic": "patient author",
		"BodyStructure": "patient", "CarePlan": "patient performer", "CareTeam": "patient participant",
		"ChargeItem": "subject", "Claim": "patient payee", "ClaimResponse": "patient", "ClinicalImpression": "subject",
		"Communication": "subject sender recipient", "CommunicationRequest": "subject sender recipient requester",
		"Composition": "subject author attester", "Condition": "patient asserter", "Consent": "patient",
		"Coverage": "policy-holder subscriber beneficiary payor", "CoverageEligibilityRequest": "patient",
		"CoverageEligibilityResponse": "patient", "DetectedIssue": "patient", "DeviceRequest": "subject performer",
		"DeviceUseStatement": "subject", "DiagnosticReport": "subject", "DocumentManifest": "subject author recipient",
		"DocumentReference": "subject author", "Encounter": "patient", "EnrollmentRequest": "subject",
		"EpisodeOfCare": "patient", "ExplanationOfBenefit": "patient payee", "FamilyMemberHistory": "patient",
		"Flag": "patient", "Goal": "patient", "Group": "member", "ImagingStudy": "patient", "Immunization": "patient",
		"ImmunizationEvaluation": "patient", "ImmunizationRecommendation": "patient", "Invoice": "subject patient recipient",
		"List": "subject source", "MeasureReport": "patient", "Media": "subject",
		"MedicationAdministration": "patient performer subject", "MedicationDispense": "subject patient receiver",
		"MedicationRequest": "subject", "MedicationStatement": "subject", "MolecularSequence": "patient",
		"NutritionOrder": "patient", "Observation": "subject performer", "Patient": "link", "Person": "patient",
		"Procedure": "patient performer", "Provenance": "patient", "QuestionnaireResponse": "subject author",
		"RelatedPerson": "patient", "RequestGroup": "subject participant", "ResearchSubject": "individual",
		"RiskAssessment": "subject", "Schedule": "actor", "ServiceRequest": "subject performer", "Specimen": "subject",
		"SupplyDelivery": "patient", "SupplyRequest": "subject", "VisionPrescription": "patient",
	}
	for typ, ps := range patientCompartment {
		n := 0
		for _, p := range ps {
			n += len(p.Paths)
		}
		if n > 8 { // InPatientCompartment's one pass keeps 8
			t.Errorf("%s: %d paths", typ, n)
		}
	}
	if len(spec) != 66 || len(patientCompartment) != len(spec) {
		t.Fatalf("the table has %d types, the definition %d (want 66)", len(spec), len(patientCompartment))
	}
	for typ, want := range spec {
		if !IsResourceType(typ) || !InPatientCompartmentType(typ) {
			t.Errorf("%s: not in the compartment", typ)
			continue
		}
		var got []string
		for _, p := range PatientCompartmentParams(typ) {
			got = append(got, p.Name)
			if len(p.Paths) == 0 {
				t.Errorf("%s.%s: no element path", typ, p.Name)
			}
			if !IsPatientCompartmentParam(typ, p.Name) {
				t.Errorf("%s.%s: IsPatientCompartmentParam false", typ, p.Name)
			}
		}
		if !slices.Equal(got, strings.Fields(want)) {
			t.Errorf("%s: parameters %v, want %s", typ, got, want)
		}
	}
	for _, typ := range []string{"Practitioner", "Organization", "Medication", "Location", "Device", "Bundle"} {
		if InPatientCompartmentType(typ) {
			t.Errorf("%s is not in the Patient compartment", typ)
		}
	}
}

// A resource belongs to Patient/p1's compartment only through a reference
// at one of its type's compartment paths naming p1.
func TestResourceBelongsOnlyThroughItsCompartmentReferences(t *testing.T) {
	for _, tc := range []struct {
		name, typ, doc string
		want           bool
	}{
		{"subject", "Observation", `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`, true},
		{"performer array", "Observation", `{"resourceType":"Observation","performer":[{"reference":"Practitioner/x"},{"reference":"Patient/p1"}]}`, true},
		{"absolute reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"https://ehr.example/fhir/Patient/p1"}}`, true},
		{"versioned reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1/_history/3"}}`, true},
		{"nested path", "Appointment", `{"resourceType":"Appointment","participant":[{"actor":{"reference":"Practitioner/d"}},{"actor":{"reference":"Patient/p1"}}]}`, true},
		{"deep nested path", "CarePlan", `{"resourceType":"CarePlan","subject":{"reference":"Patient/p2"},"activity":[{"detail":{"performer":[{"reference":"Patient/p1"}]}}]}`, true},
		{"the patient itself", "Patient", `{"resourceType":"Patient","id":"p1"}`, true},
		{"another patient", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p2"}}`, false},
		{"a prefix of the id", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p10"}}`, false},
		{"reference elsewhere", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p2"},"focus":[{"reference":"Patient/p1"}]}`, false},
		{"wrong type named", "Observation", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`, false},
		{"type outside the compartment", "Practitioner", `{"resourceType":"Practitioner","subject":{"reference":"Patient/p1"}}`, false},
		{"conditional reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient?identifier=p1"}}`, false},
		{"contained reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"#p1"}}`, false},
		{"other patient by link", "Patient", `{"resourceType":"Patient","id":"p2","link":[{"other":{"reference":"Patient/p1"}}]}`, false},
		{"not an object", "Observation", `[]`, false},
		{"not JSON", "Observation", `{"resourceType":`, false},
		{"reference not a string", "Observation", `{"resourceType":"Observation","subject":{"reference":7}}`, false},
	} {
		if got := InPatientCompartment(tc.typ, []byte(tc.doc), "p1"); got != tc.want {
			t.Errorf("%s: InPatientCompartment = %v, want %v", tc.name, got, tc.want)
		}
	}
	if InPatientCompartment("Patient", []byte(`{"resourceType":"Patient","id":""}`), "") {
		t.Error("an empty patient id matched")
	}
}

func FuzzInPatientCompartment(f *testing.F) {
	f.Add("Observation", []byte(`{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`))
	f.Add("Appointment", []byte(`{"resourceType":"Appointment","participant":[{"actor":{"reference":"Patient/p1"}}]}`))
	f.Add("Patient", []byte(`{"resourceType":"Patient","id":"p1"}`))
	f.Fuzz(func(t *testing.T, typ string, doc []byte) {
		in := InPatientCompartment(typ, doc, "p1")
		if in && !strings.Contains(string(doc), "p1") {
			t.Fatalf("%q belongs to p1 without naming it", doc)
		}
	})
}

// A Group naming the patient among its members is withheld from the
// patient: it would show every other member.
func TestAGroupIsWithheldFromItsMembers(t *testing.T) {
	doc := []byte(`{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p2"}}]}`)
	if _, _, ok, in := ResourceInPatientCompartment(doc, "p1"); !ok || in {
		t.Fatalf("a Group listing Patient/p1: ok %v, in %v; want withheld", ok, in)
	}
	if InPatientCompartment("Group", doc, "p1") {
		t.Fatal("InPatientCompartment holds the Group")
	}
	if !WithheldFromPatients("Group") || WithheldFromPatients("Observation") {
		t.Fatal("WithheldFromPatients")
	}
}
