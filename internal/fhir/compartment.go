package fhir

import (
	"strings"

	"github.com/phigate/phigate/internal/jsonscan"
)

// CompartmentParam is one search parameter of the R4 Patient compartment
// definition for a resource type, with the element paths it searches
// (dotted, from the resource's root: "participant.actor"; arrays are
// crossed transparently).
type CompartmentParam struct {
	Name  string
	Paths []string
}

// patientCompartment is the R4 (4.0.1) Patient CompartmentDefinition
// (compartmentdefinition-patient.html): for each resource type in the
// compartment, the search parameters that link a resource to the patient,
// and the reference elements those parameters search (from the search
// parameter definitions). Types not listed are not in the compartment.
// Patient itself is in it through its own id (see InPatientCompartment).
var patientCompartment = map[string][]CompartmentParam{
	"Account":                     {{"subject", []string{"subject"}}},
	"AdverseEvent":                {{"subject", []string{"subject"}}},
	"AllergyIntolerance":          {{"patient", []string{"patient"}}, {"recorder", []string{"recorder"}}, {"asserter", []string{"asserter"}}},
	"Appointment":                 {{"actor", []string{"participant.actor"}}},
	"AppointmentResponse":         {{"actor", []string{"actor"}}},
	"AuditEvent":                  {{"patient", []string{"agent.who", "entity.what"}}},
	"Basic":                       {{"patient", []string{"subject"}}, {"author", []string{"author"}}},
	"BodyStructure":               {{"patient", []string{"patient"}}},
	"CarePlan":                    {{"patient", []string{"subject"}}, {"performer", []string{"activity.detail.performer"}}},
	"CareTeam":                    {{"patient", []string{"subject"}}, {"participant", []string{"participant.member"}}},
	"ChargeItem":                  {{"subject", []string{"subject"}}},
	"Claim":                       {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
	"ClaimResponse":               {{"patient", []string{"patient"}}},
	"ClinicalImpression":          {{"subject", []string{"subject"}}},
	"Communication":               {{"subject", []string{"subject"}}, {"sender", []string{"sender"}}, {"recipient", []string{"recipient"}}},
	"CommunicationRequest":        {{"subject", []string{"subject"}}, {"sender", []string{"sender"}}, {"recipient", []string{"recipient"}}, {"requester", []string{"requester"}}},
	"Composition":                 {{"subject", []string{"subject"}}, {"author", []string{"author"}}, {"attester", []string{"attester.party"}}},
	"Condition":                   {{"patient", []string{"subject"}}, {"asserter", []string{"asserter"}}},
	"Consent":                     {{"patient", []string{"patient"}}},
	"Coverage":                    {{"policy-holder", []string{"policyHolder"}}, {"subscriber", []string{"subscriber"}}, {"beneficiary", []string{"beneficiary"}}, {"payor", []string{"payor"}}},
	"CoverageEligibilityRequest":  {{"patient", []string{"patient"}}},
	"CoverageEligibilityResponse": {{"patient", []string{"patient"}}},
	"DetectedIssue":               {{"patient", []string{"patient"}}},
	"DeviceRequest":               {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"DeviceUseStatement":          {{"subject", []string{"subject"}}},
	"DiagnosticReport":            {{"subject", []string{"subject"}}},
	"DocumentManifest":            {{"subject", []string{"subject"}}, {"author", []string{"author"}}, {"recipient", []string{"recipient"}}},
	"DocumentReference":           {{"subject", []string{"subject"}}, {"author", []string{"author"}}},
	"Encounter":                   {{"patient", []string{"subject"}}},
	"EnrollmentRequest":           {{"subject", []string{"candidate"}}},
	"EpisodeOfCare":               {{"patient", []string{"patient"}}},
	"ExplanationOfBenefit":        {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
	"FamilyMemberHistory":         {{"patient", []string{"patient"}}},
	"Flag":                        {{"patient", []string{"subject"}}},
	"Goal":                        {{"patient", []string{"subject"}}},
	"Group":                       {{"member", []string{"member.entity"}}},
	"ImagingStudy":                {{"patient", []string{"subject"}}},
	"Immunization":                {{"patient", []string{"patient"}}},
	"ImmunizationEvaluation":      {{"patient", []string{"patient"}}},
	"ImmunizationRecommendation":  {{"patient", []string{"patient"}}},
	"Invoice":                     {{"subject", []string{"subject"}}, {"patient", []string{"subject"}}, {"recipient", []string{"recipient"}}},
	"List":                        {{"subject", []string{"subject"}}, {"source", []string{"source"}}},
	"MeasureReport":               {{"patient", []string{"subject"}}},
	"Media":                       {{"subject", []string{"subject"}}},
	"MedicationAdministration":    {{"patient", []string{"subject"}}, {"performer", []string{"performer.actor"}}, {"subject", []string{"subject"}}},
	"MedicationDispense":          {{"subject", []string{"subject"}}, {"patient", []string{"subject"}}, {"receiver", []string{"receiver"}}},
	"MedicationRequest":           {{"subject", []string{"subject"}}},
	"MedicationStatement":         {{"subject", []string{"subject"}}},
	"MolecularSequence":           {{"patient", []string{"patient"}}},
	"NutritionOrder":              {{"patient", []string{"patient"}}},
	"Observation":                 {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"Patient":                     {{"link", []string{"link.other"}}},
	"Person":                      {{"patient", []string{"link.target"}}},
	"Procedure":                   {{"patient", []string{"subject"}}, {"performer", []string{"performer.actor"}}},
	"Provenance":                  {{"patient", []string{"target"}}},
	"QuestionnaireResponse":       {{"subject", []string{"subject"}}, {"author", []string{"author"}}},
	"RelatedPerson":               {{"patient", []string{"patient"}}},
	"RequestGroup":                {{"subject", []string{"subject"}}, {"participant", []string{"action.participant"}}},
	"ResearchSubject":             {{"individual", []string{"individual"}}},
	"RiskAssessment":              {{"subject", []string{"subject"}}},
	"Schedule":                    {{"actor", []string{"actor"}}},
	"ServiceRequest":              {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"Specimen":                    {{"subject", []string{"subject"}}},
	"SupplyDelivery":              {{"patient", []string{"patient"}}},
	"SupplyRequest":               {{"subject", []string{"deliverTo"}}},
	"VisionPrescription":          {{"patient", []string{"patient"}}},
}

// PatientCompartmentParams returns the search parameters of the R4 Patient
// compartment for resource type typ (nil when typ is not in the
// compartment). The slice is shared: do not modify it.
func PatientCompartmentParams(typ string) []CompartmentParam {
	return patientCompartment[typ]
}

// InPatientCompartmentType reports whether resources of type typ can belong
// to a Patient compartment.
func InPatientCompartmentType(typ string) bool {
	_, ok := patientCompartment[typ]
	return ok
}

// WithheldFromPatients reports whether the gateway withholds resources of
// type typ from patient-bound tokens although the compartment definition
// holds them: a Group is in the compartment of each of its members, and
// reading it would show every other member (deny by default, as for
// Patient.link). ResourceInPatientCompartment reports such a resource as
// outside the compartment.
func WithheldFromPatients(typ string) bool { return typ == "Group" }

// IsPatientCompartmentParam reports whether name is one of the R4 Patient
// compartment's parameters for typ (a search with name=Patient/{id} then
// stays in that patient's compartment).
func IsPatientCompartmentParam(typ, name string) bool {
	for _, p := range patientCompartment[typ] {
		if p.Name == name {
			return true
		}
	}
	return false
}

// InPatientCompartment reports whether the JSON resource doc, of type typ
// (its resourceType must say so), belongs to the compartment of
// Patient/pid:
//
//   - a Patient belongs when its id is pid. (The definition also puts the
//     Patients named by Patient.link.other in it; they are other records,
//     with their own PHI, and are left out here: deny by default.)
//   - a resource of another type in the compartment belongs when one of
//     the reference elements of its compartment parameters (at any depth
//     of the listed path, across arrays) is a reference to Patient/pid:
//     "Patient/pid", "Patient/pid/_history/v", or an absolute URL ending
//     in "/Patient/pid" (or with its _history).
//   - a resource of a type WithheldFromPatients (a Group) never belongs;
//   - nothing else belongs; a document that is not a JSON object, or of
//     another type, does not either.
//
// doc may come from an untrusted server: any input is answered, never a
// panic.
func InPatientCompartment(typ string, doc []byte, pid string) bool {
	rt, _, ok, in := ResourceInPatientCompartment(doc, pid)
	return ok && rt == typ && in
}

// ResourceInPatientCompartment reads, in one pass over the JSON resource
// doc, its resourceType and id and whether it belongs to the compartment
// of Patient/pid (as InPatientCompartment, for the type it names). ok is
// false when doc is not a JSON object with a string resourceType (and a
// string id, when it has one), or has a key that differs from
// resourceType or id only in letter case (Go clients read it as that key).
func ResourceInPatientCompartment(doc []byte, pid string) (typ, id string, ok, in bool) {
	type member struct{ k, v []byte }
	var top [48]member
	n, overflow := 0, false
	var rt, rid []byte
	caseVariant := false
	if !jsonscan.Fields(doc, func(k, v []byte) bool {
		switch {
		case string(k) == "resourceType":
			rt = v
		case string(k) == "id":
			rid = v
		case foldEq(k, "resourcetype") || foldEq(k, "id"):
			caseVariant = true
			return false
		case n < len(top):
			top[n] = member{k, v}
			n++
		default:
			overflow = true
		}
		return true
	}) || caseVariant {
		return "", "", false, false
	}
	if typ, ok = jsonscan.String(rt); !ok {
		return "", "", false, false
	}
	if rid != nil {
		if id, ok = jsonscan.String(rid); !ok {
			return "", "", false, false
		}
	}
	if pid == "" {
		return typ, id, true, false
	}
	if typ == "Patient" {
		return typ, id, true, id == pid
	}
	if WithheldFromPatients(typ) {
		return typ, id, true, false
	}
	for _, p := range patientCompartment[typ] {
		for _, path := range p.Paths {
			first, rest, _ := strings.Cut(path, ".")
			var v []byte
			if overflow {
				v, _ = jsonscan.Field(doc, first)
			} else {
				for _, m := range top[:n] {
					if string(m.k) == first {
						v = m.v // the last of duplicates
					}
				}
			}
			if v != nil && refIn(v, rest, pid) {
				return typ, id, true, true
			}
		}
	}
	return typ, id, true, false
}

// foldEq reports whether k equals lower (lower-case ASCII) ignoring ASCII
// case, as encoding/json matches keys.
func foldEq(k []byte, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i := range k {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// refAt reports whether a Reference at the dotted path below the object
// obj names Patient/pid; arrays on the way are crossed.
func refAt(obj []byte, path, pid string) bool {
	name, rest, _ := strings.Cut(path, ".")
	v, ok := jsonscan.Field(obj, name)
	if !ok {
		return false
	}
	return refIn(v, rest, pid)
}

// refIn reports whether the value v (an object, or an array of them)
// holds, at the dotted path rest ("" for v itself), a Reference naming
// Patient/pid.
func refIn(v []byte, rest, pid string) bool {
	found := false
	at := func(o []byte) bool {
		if rest != "" {
			found = refAt(o, rest, pid)
		} else if ref, ok := jsonscan.Field(o, "reference"); ok {
			s, isStr := jsonscan.String(ref)
			found = isStr && IsPatientReference(s, pid)
		}
		return !found
	}
	if len(v) > 0 && v[0] == '[' {
		jsonscan.Elems(v, at)
	} else {
		at(v)
	}
	return found
}

// IsPatientReference reports whether the reference ref names Patient/pid:
// "Patient/pid", "Patient/pid/_history/vid", or an absolute URL whose path
// ends so. A query, fragment, contained (#…) or urn: reference names no
// stored patient here.
func IsPatientReference(ref, pid string) bool {
	if pid == "" || strings.ContainsAny(ref, "?#") {
		return false
	}
	if i := strings.Index(ref, "://"); i >= 0 {
		rest := ref[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return false
		}
		ref = rest[j+1:]
		// the server's base path comes first: take from the last "Patient/"
		k := strings.LastIndex("/"+ref, "/Patient/")
		if k < 0 {
			return false
		}
		ref = ref[k:]
	}
	id, ok := strings.CutPrefix(ref, "Patient/")
	if !ok {
		return false
	}
	if base, hist, ok := strings.Cut(id, "/_history/"); ok {
		if hist == "" || strings.IndexByte(hist, '/') >= 0 {
			return false
		}
		id = base
	}
	return id == pid
}
