package fhir

import (
	"iter"
	"strings"
)

// r4Types are the resource types of FHIR R4 (4.0.1), sorted bytewise, each
// between single spaces (so a lookup is a substring search for " name ").
// Keep it the one list: scopes, configuration and gateway all use it.
const r4Types = " " +
	"Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment " +
	"AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct " +
	"BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry " +
	"ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression " +
	"CodeSystem Communication CommunicationRequest CompartmentDefinition " +
	"Composition ConceptMap Condition Consent Contract Coverage " +
	"CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device " +
	"DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement " +
	"DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis " +
	"Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare " +
	"EventDefinition Evidence EvidenceVariable ExampleScenario " +
	"ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group " +
	"GuidanceResponse HealthcareService ImagingStudy Immunization " +
	"ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide " +
	"InsurancePlan Invoice Library Linkage List Location Measure MeasureReport " +
	"Media Medication MedicationAdministration MedicationDispense " +
	"MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct " +
	"MedicinalProductAuthorization MedicinalProductContraindication " +
	"MedicinalProductIndication MedicinalProductIngredient " +
	"MedicinalProductInteraction MedicinalProductManufactured " +
	"MedicinalProductPackaged MedicinalProductPharmaceutical " +
	"MedicinalProductUndesirableEffect MessageDefinition MessageHeader " +
	"MolecularSequence NamingSystem NutritionOrder Observation " +
	"ObservationDefinition OperationDefinition OperationOutcome Organization " +
	"OrganizationAffiliation Parameters Patient PaymentNotice " +
	"PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole " +
	"Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson " +
	"RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy " +
	"ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule " +
	"SearchParameter ServiceRequest Slot Specimen SpecimenDefinition " +
	"StructureDefinition StructureMap Subscription Substance " +
	"SubstanceNucleicAcid SubstancePolymer SubstanceProtein " +
	"SubstanceReferenceInformation SubstanceSourceMaterial " +
	"SubstanceSpecification SupplyDelivery SupplyRequest Task " +
	"TerminologyCapabilities TestReport TestScript ValueSet VerificationResult " +
	"VisionPrescription" +
	" "

// maxTypeLen bounds the names IsResourceType looks up (the longest R4
// type, MedicinalProductUndesirableEffect, has 33 letters).
const maxTypeLen = 64

// IsResourceType reports whether name is a FHIR R4 resource type. It does
// not allocate.
func IsResourceType(name string) bool {
	if name == "" || len(name) > maxTypeLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false // also keeps the separator out of the search
		}
	}
	// r4Types starts and ends with a space and name has none, so every
	// match has a byte on either side.
	for at := 0; ; {
		i := strings.Index(r4Types[at:], name)
		if i < 0 {
			return false
		}
		i += at
		if r4Types[i-1] == ' ' && r4Types[i+len(name)] == ' ' {
			return true
		}
		at = i + 1
	}
}

// ResourceTypes yields the FHIR R4 resource types in bytewise order.
func ResourceTypes() iter.Seq[string] {
	return strings.FieldsSeq(r4Types)
}

// Nearest returns the R4 resource type, or the name of extra, closest to
// name (the one listed first on a tie), or "" when none is within the
// distance the package doc states. A name that is itself a type or in
// extra is returned as it is.
func Nearest(name string, extra ...string) string {
	if len(name) > maxTypeLen {
		return ""
	}
	limit := 3
	switch {
	case len(name) <= 4:
		limit = 1
	case len(name) <= 8:
		limit = 2
	}
	best, bestD := "", limit+1
	try := func(c string) {
		if d := distance(name, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	for c := range ResourceTypes() {
		try(c)
	}
	for _, c := range extra {
		if len(c) <= maxTypeLen {
			try(c)
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b, ignoring ASCII case, or
// a value >= bound once it is known to reach bound. Both are at most
// maxTypeLen bytes.
func distance(a, b string, bound int) int {
	if d := len(a) - len(b); d >= bound || -d >= bound {
		return bound
	}
	var rows [2][maxTypeLen + 1]int
	prev, cur := &rows[0], &rows[1]
	for j := 0; j <= len(b); j++ {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		low := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if lower(a[i-1]) == lower(b[j-1]) {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			low = min(low, cur[j])
		}
		if low >= bound {
			return bound
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
