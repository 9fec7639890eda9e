package fhirtest

import (
	"fmt"
	"time"
)

// The seed, the same in every server of this package and in the Node
// upstream under internal/gateway/testdata/node (seed.js builds it by the
// same rules): SYNTHETIC data only.
const (
	// PatientA has ObservationsOfA Observations, obs-a-1 … obs-a-25, each
	// with subject Patient/pat-a and encounter Encounter/enc-a-1, except
	// the last (MisfiledObservation), whose encounter is Encounter/enc-b-1:
	// an _include of Observation:encounter for PatientA's Observations
	// then reaches outside PatientA's compartment.
	PatientA = "pat-a"
	// PatientB and PatientC each have 3 Observations (obs-b-1 …), one
	// Encounter (enc-b-1), one Condition (cond-b-1) and one
	// MedicationRequest (medrx-b-1).
	PatientB = "pat-b"
	PatientC = "pat-c"
	// ObservationsOfA is the number of PatientA's Observations.
	ObservationsOfA = 25
	// ObservationsOfOthers is the number of Observations of PatientB and
	// of PatientC each.
	ObservationsOfOthers = 3
	// MisfiledObservation is PatientA's Observation whose encounter
	// belongs to PatientB.
	MisfiledObservation = "obs-a-25"
)

// Patients returns the seed's patients, in order.
func Patients() []string { return []string{PatientA, PatientB, PatientC} }

// short is the letter of a patient id ("a" for pat-a).
func short(patient string) string { return patient[len(patient)-1:] }

// ObservationID is the id of the n-th (1-based) Observation of patient.
func ObservationID(patient string, n int) string {
	return fmt.Sprintf("obs-%s-%d", short(patient), n)
}

// EncounterID, ConditionID and MedicationRequestID are the ids of the
// patient's single Encounter, Condition and MedicationRequest.
func EncounterID(patient string) string         { return "enc-" + short(patient) + "-1" }
func ConditionID(patient string) string         { return "cond-" + short(patient) + "-1" }
func MedicationRequestID(patient string) string { return "medrx-" + short(patient) + "-1" }

// resource is one FHIR resource as decoded JSON.
type resource = map[string]any

// Seed returns the seed's resources, by type, in a fixed order, stamped
// with lastUpdated now (meta.versionId "1").
func Seed(now time.Time) map[string][]resource {
	out := map[string][]resource{}
	stamp := now.UTC().Format(time.RFC3339)
	add := func(r resource) {
		r["meta"] = map[string]any{"versionId": "1", "lastUpdated": stamp,
			"tag": []any{map[string]any{"system": "https://phigate.dev/fhir/tags", "code": "SYNTHETIC"}}}
		t := r["resourceType"].(string)
		out[t] = append(out[t], r)
	}
	ref := func(s string) map[string]any { return map[string]any{"reference": s} }
	for i, p := range Patients() {
		add(resource{"resourceType": "Patient", "id": p, "active": true,
			"name":      []any{map[string]any{"family": "Synthetic", "given": []any{fmt.Sprintf("Test%d", i+1)}}},
			"birthDate": fmt.Sprintf("19%d0-01-01", 5+i)})
	}
	for _, p := range Patients() {
		n := ObservationsOfOthers
		if p == PatientA {
			n = ObservationsOfA
		}
		for i := 1; i <= n; i++ {
			enc := EncounterID(p)
			id := ObservationID(p, i)
			if id == MisfiledObservation {
				enc = EncounterID(PatientB)
			}
			add(resource{"resourceType": "Observation", "id": id, "status": "final",
				"category": []any{map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}},
				"code": map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4",
					"display": "Heart rate"}}},
				"subject":       ref("Patient/" + p),
				"encounter":     ref("Encounter/" + enc),
				"valueQuantity": map[string]any{"value": 60 + i, "unit": "/min"}})
		}
	}
	for _, p := range Patients() {
		add(resource{"resourceType": "Encounter", "id": EncounterID(p), "status": "finished",
			"class":   map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
			"subject": ref("Patient/" + p)})
		add(resource{"resourceType": "Condition", "id": ConditionID(p),
			"code": map[string]any{"text": "Synthetic condition"}, "subject": ref("Patient/" + p)})
		add(resource{"resourceType": "MedicationRequest", "id": MedicationRequestID(p), "status": "active",
			"intent": "order", "medicationCodeableConcept": map[string]any{"text": "Synthetic medication"},
			"subject": ref("Patient/" + p)})
	}
	return out
}
