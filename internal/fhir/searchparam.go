package fhir

// patientParamTypes are the R4 resource types that define a "patient"
// search parameter (a reference to the Patient the resource is about), and
// subjectParamTypes those that define "subject" with Patient among its
// targets. Moved from the gateway; keep to the R4 specification: a type
// missing here is refused by whoever relies on it, never let through.
var patientParamTypes = setOf(
	// the common clinical-patient parameter
	"AllergyIntolerance", "CarePlan", "CareTeam", "ClinicalImpression", "Composition", "Condition",
	"Consent", "DetectedIssue", "DeviceRequest", "DeviceUseStatement", "DiagnosticReport",
	"DocumentManifest", "DocumentReference", "Encounter", "EpisodeOfCare", "FamilyMemberHistory",
	"Flag", "Goal", "ImagingStudy", "Immunization", "List", "MedicationAdministration",
	"MedicationDispense", "MedicationRequest", "MedicationStatement", "NutritionOrder",
	"Observation", "Procedure", "RiskAssessment", "ServiceRequest", "SupplyDelivery",
	"VisionPrescription",
	// resource-specific patient parameters
	"Account", "Appointment", "AppointmentResponse", "AuditEvent", "Basic", "BodyStructure",
	"ChargeItem", "Claim", "ClaimResponse", "Communication", "CommunicationRequest", "Coverage",
	"CoverageEligibilityRequest", "CoverageEligibilityResponse", "Device", "EnrollmentRequest",
	"ExplanationOfBenefit", "ImmunizationEvaluation", "ImmunizationRecommendation", "Invoice",
	"MeasureReport", "Media", "MolecularSequence", "Person", "Provenance", "QuestionnaireResponse",
	"RelatedPerson", "RequestGroup", "ResearchSubject", "Specimen", "Task",
)

var subjectParamTypes = setOf(
	"CarePlan", "CareTeam", "ClinicalImpression", "Communication", "CommunicationRequest",
	"Composition", "Condition", "DeviceRequest", "DiagnosticReport", "DocumentManifest",
	"DocumentReference", "Encounter", "Flag", "Goal", "List", "Media", "MedicationAdministration",
	"MedicationDispense", "MedicationRequest", "MedicationStatement", "Observation", "Procedure",
	"QuestionnaireResponse", "RiskAssessment", "ServiceRequest", "Specimen",
)

func setOf(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// HasPatientParam reports whether R4 defines a "patient" search parameter
// (a reference to a Patient) for resource type typ.
func HasPatientParam(typ string) bool { return patientParamTypes[typ] }

// HasSubjectPatientParam reports whether R4 defines a "subject" search
// parameter for typ that may name a Patient.
func HasSubjectPatientParam(typ string) bool { return subjectParamTypes[typ] }
