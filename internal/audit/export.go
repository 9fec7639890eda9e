package audit

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// FHIR R4 AuditEvent, in the style of IHE Basic Audit Log Patterns (BALP).
// Only the elements phigate fills are declared.

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Reference is a FHIR Reference.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Identifier is a FHIR Identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// AuditEvent is a FHIR R4 AuditEvent resource.
type AuditEvent struct {
	ResourceType   string              `json:"resourceType"`
	ID             string              `json:"id"`
	Meta           *Meta               `json:"meta,omitempty"`
	Type           Coding              `json:"type"`
	Subtype        []Coding            `json:"subtype,omitempty"`
	Action         string              `json:"action,omitempty"`
	Recorded       string              `json:"recorded"`
	Outcome        string              `json:"outcome"`
	OutcomeDesc    string              `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []CodeableConcept   `json:"purposeOfEvent,omitempty"`
	Agent          []AuditEventAgent   `json:"agent"`
	Source         AuditEventSource    `json:"source"`
	Entity         []AuditEventEntity  `json:"entity,omitempty"`
	Extension      []AuditEventExtItem `json:"extension,omitempty"`
}

// Meta is a FHIR Meta (the BALP profile).
type Meta struct {
	Profile []string `json:"profile,omitempty"`
}

// AuditEventAgent is AuditEvent.agent.
type AuditEventAgent struct {
	Type         *CodeableConcept  `json:"type,omitempty"`
	Who          *Reference        `json:"who,omitempty"`
	AltID        string            `json:"altId,omitempty"`
	Requestor    bool              `json:"requestor"`
	Network      *AuditNetwork     `json:"network,omitempty"`
	PurposeOfUse []CodeableConcept `json:"purposeOfUse,omitempty"`
}

// AuditNetwork is AuditEvent.agent.network.
type AuditNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type"` // "2": IP address
}

// AuditEventSource is AuditEvent.source.
type AuditEventSource struct {
	Site     string    `json:"site,omitempty"`
	Observer Reference `json:"observer"`
	Type     []Coding  `json:"type,omitempty"`
}

// AuditEventEntity is AuditEvent.entity.
type AuditEventEntity struct {
	Extension []AuditEventExtItem `json:"extension,omitempty"`
	What      *Reference          `json:"what,omitempty"`
	Type      *Coding             `json:"type,omitempty"`
	Role      *Coding             `json:"role,omitempty"`
	Name      string              `json:"name,omitempty"`
	Query     string              `json:"query,omitempty"` // base64
	Detail    []AuditEntityDetail `json:"detail,omitempty"`
}

// AuditEntityDetail is AuditEvent.entity.detail.
type AuditEntityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// AuditEventExtItem is an extension with one value: a string, base64
// bytes or a boolean.
type AuditEventExtItem struct {
	URL               string `json:"url"`
	ValueString       string `json:"valueString,omitempty"`
	ValueBase64Binary string `json:"valueBase64Binary,omitempty"`
	ValueBoolean      *bool  `json:"valueBoolean,omitempty"`
}

// Code systems.
const (
	sysDCM         = "http://dicom.nema.org/resources/ontology/DCM"
	sysEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysRestful     = "http://hl7.org/fhir/restful-interaction"
	sysActReason   = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	sysSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysPhigateAct  = "urn:phigate:audit:action"
	sysPhigateTok  = "urn:phigate:token-id"
	sysPhigateSubj = "urn:phigate:subject"
	extSeq         = "urn:phigate:audit:seq"
	extReqID       = "urn:phigate:audit:request-id"
	balpProfile    = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
)

// ExtSealed is the URL of the extension that marks what an entry's sealed
// field withholds (see FHIR).
const ExtSealed = "urn:phigate:audit:sealed"

// FHIR returns e as a FHIR R4 AuditEvent of the log origin.
//
// An access.* entry (and audit.read) has type rest (RESTful Operation).
// Its subtype is the entry's interaction as a code of
// http://hl7.org/fhir/restful-interaction, and the action and the BALP
// profile follow from it:
//
//	Entry.Interaction                 subtype             action  profile
//	read, vread                       read, vread         R       Read
//	history-instance|-type|-system    history             R       -
//	search-type|-system|-compartment  search              E       Query
//	create                            create              C       Create
//	update, conditional-update        update              U       Update
//	patch, conditional-patch          patch               U       Update
//	delete, conditional-delete        delete              D       Delete
//	batch, transaction                batch, transaction  E       -
//	capabilities                      capabilities        R       -
//	operation                         operation           E       -
//
// An http upstream's route, or an entry that records no interaction
// (refused before it was classified, or written before entries recorded
// it), has no restful-interaction subtype: its action follows the HTTP
// method (GET, HEAD R; PUT, PATCH U; DELETE D; others E). The requested
// path is an entity (its query base64, as BALP asks), the patient a
// Patient entity. The other actions:
//
//   - auth.failed: DCM 110114 User Authentication, subtype 110122 Login.
//
//   - breakglass.used: DCM 110113 Security Alert, subtype 110127 Emergency
//     Override Started, purposeOfEvent BTG; the justification as an entity
//     detail.
//
//   - token.*: DCM 110113 Security Alert, subtype 110137 User Security
//     Attributes Changed, action C (created), D (revoked) or U (updated,
//     rotated, suspended, reinstated); the token as entity, with before
//     and after as details.
//
//   - alert.raised, alert.acked, ip.blocked: Security Alert; key.rotated, config.loaded: Security
//     Alert with 110129 Security Configuration / 110131 Software
//     Configuration; server.started/stopped: DCM 110100 Application
//     Activity, 110120 Application Start / 110121 Application Stop.
//
// Every subtype list ends with the entry's action as a code of
// urn:phigate:audit:action.
//
// The agent who made the request (requestor) carries the token's subject
// as who, its token id as altId, its source address and purpose of use;
// phigate itself is the source (observer = the origin) and a second agent.
//
// # Sealed fields
//
// An entry exported without its key keeps its PHI fields (the path with
// its query, the patient, the break-glass justification) sealed. Its
// AuditEvent then has the extension ExtSealed (urn:phigate:audit:sealed)
// with valueBase64Binary, the ciphertext the log's Merkle leaf commits to
// (phigate audit export --decrypt opens it instead), and every entity
// whose elements it withholds carries ExtSealed with valueBoolean true:
// the request's entity (no what, no query) and the break-glass
// justification's (no detail). A Patient entity cannot be marked: without
// the key, whether the entry names a patient is sealed too.
func FHIR(e *Entry, origin string) *AuditEvent {
	ev := &AuditEvent{
		ResourceType: "AuditEvent",
		ID:           fhirID(e, origin),
		Recorded:     e.Time.UTC().Format(time.RFC3339Nano),
		Outcome:      fhirOutcome(e),
		OutcomeDesc:  e.Reason,
		Source: AuditEventSource{
			Site:     e.Node,
			Observer: Reference{Display: origin},
			Type:     []Coding{{System: sysSourceType, Code: "4", Display: "Application Server"}},
		},
		Extension: []AuditEventExtItem{{URL: extSeq, ValueString: strconv.FormatUint(e.Seq, 10)}},
	}
	if e.RequestID != "" {
		ev.Extension = append(ev.Extension, AuditEventExtItem{URL: extReqID, ValueString: e.RequestID})
	}
	sealed := len(e.Sealed) > 0
	if sealed {
		ev.Extension = append(ev.Extension, AuditEventExtItem{URL: ExtSealed, ValueBase64Binary: base64.StdEncoding.EncodeToString(e.Sealed)})
	}
	act := string(e.Action)
	actCoding := Coding{System: sysPhigateAct, Code: act}
	switch {
	case strings.HasPrefix(act, "access."):
		ev.Type = Coding{System: sysEventType, Code: "rest", Display: "RESTful Operation"}
		interaction, fhirAction, profile := restful(e)
		if interaction != "" {
			ev.Subtype = append(ev.Subtype, Coding{System: sysRestful, Code: interaction})
		}
		ev.Subtype = append(ev.Subtype, actCoding)
		ev.Action = fhirAction
		if profile != "" {
			ev.Meta = &Meta{Profile: []string{balpProfile + profile}}
		}
	case e.Action == ActionAuthFailed:
		ev.Type = Coding{System: sysDCM, Code: "110114", Display: "User Authentication"}
		ev.Subtype = []Coding{{System: sysDCM, Code: "110122", Display: "Login"}, actCoding}
		ev.Action = "E"
	case e.Action == ActionBreakGlassUsed:
		ev.Type = Coding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		ev.Subtype = []Coding{{System: sysDCM, Code: "110127", Display: "Emergency Override Started"}, actCoding}
		ev.Action = "E"
		ev.PurposeOfEvent = append(ev.PurposeOfEvent, CodeableConcept{Coding: []Coding{{System: sysActReason, Code: "BTG", Display: "break the glass"}}})
	case strings.HasPrefix(act, "token."):
		ev.Type = Coding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		ev.Subtype = []Coding{{System: sysDCM, Code: "110137", Display: "User Security Attributes Changed"}, actCoding}
		switch e.Action {
		case ActionTokenCreated:
			ev.Action = "C"
		case ActionTokenRevoked:
			ev.Action = "D" // final: the credential is gone
		default:
			ev.Action = "U"
		}
	case e.Action == ActionKeyRotated:
		ev.Type = Coding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		ev.Subtype = []Coding{{System: sysDCM, Code: "110129", Display: "Security Configuration"}, actCoding}
		ev.Action = "U"
	case e.Action == ActionConfigLoaded:
		ev.Type = Coding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		ev.Subtype = []Coding{{System: sysDCM, Code: "110131", Display: "Software Configuration"}, actCoding}
		ev.Action = "E"
	case e.Action == ActionServerStarted || e.Action == ActionServerStopped:
		ev.Type = Coding{System: sysDCM, Code: "110100", Display: "Application Activity"}
		c := Coding{System: sysDCM, Code: "110120", Display: "Application Start"}
		if e.Action == ActionServerStopped {
			c = Coding{System: sysDCM, Code: "110121", Display: "Application Stop"}
		}
		ev.Subtype = []Coding{c, actCoding}
		ev.Action = "E"
	case e.Action == ActionAuditRead:
		ev.Type = Coding{System: sysEventType, Code: "rest", Display: "RESTful Operation"}
		ev.Subtype = []Coding{{System: sysRestful, Code: "search"}, actCoding}
		ev.Action = "E"
	default: // alert.raised, audit.archived, and any newer action
		ev.Type = Coding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		ev.Subtype = []Coding{actCoding}
		ev.Action = "E"
	}
	if e.Purpose != "" {
		ev.PurposeOfEvent = append(ev.PurposeOfEvent, CodeableConcept{Coding: []Coding{{System: sysActReason, Code: e.Purpose}}})
	}

	// agents: the requestor, then phigate
	client := AuditEventAgent{
		Type:      &CodeableConcept{Coding: []Coding{{System: sysDCM, Code: "110153", Display: "Source Role ID"}}},
		Requestor: true,
	}
	switch {
	case e.Actor.Subject != "":
		client.Who = &Reference{Identifier: &Identifier{System: sysPhigateSubj, Value: e.Actor.Subject}}
	case e.Actor.TokenID != "":
		client.Who = &Reference{Identifier: &Identifier{System: sysPhigateTok, Value: e.Actor.TokenID}}
	}
	client.AltID = e.Actor.TokenID
	if e.Source.IP != "" {
		client.Network = &AuditNetwork{Address: e.Source.IP, Type: "2"}
	}
	if e.Purpose != "" {
		client.PurposeOfUse = []CodeableConcept{{Coding: []Coding{{System: sysActReason, Code: e.Purpose}}}}
	}
	server := AuditEventAgent{
		Type:      &CodeableConcept{Coding: []Coding{{System: sysDCM, Code: "110152", Display: "Destination Role ID"}}},
		Who:       &Reference{Display: origin},
		Requestor: false,
	}
	if client.Who != nil || client.Network != nil {
		ev.Agent = append(ev.Agent, client)
	}
	ev.Agent = append(ev.Agent, server)

	// entities
	if e.Path != "" || sealed && e.Method != "" {
		ent := AuditEventEntity{
			Type: &Coding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role: &Coding{System: sysObjectRole, Code: "4", Display: "Domain Resource"},
		}
		p, q, _ := strings.Cut(e.Path, "?")
		if e.Path != "" {
			ent.What = &Reference{Reference: strings.TrimPrefix(p, "/")}
		} else {
			ent.Extension = sealedMark()
		}
		if e.Upstream != "" {
			ent.Name = e.Upstream
		}
		if q != "" {
			ent.Query = base64.StdEncoding.EncodeToString([]byte(q))
		}
		if e.Status != 0 {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "http-status", ValueString: strconv.Itoa(e.Status)})
		}
		if e.Bytes != 0 {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "bytes", ValueString: strconv.FormatInt(e.Bytes, 10)})
		}
		if e.Duration != 0 {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "duration-ms", ValueString: strconv.FormatFloat(e.DurationMS(), 'f', -1, 64)})
		}
		ev.Entity = append(ev.Entity, ent)
	}
	if e.Patient != "" {
		ev.Entity = append(ev.Entity, AuditEventEntity{
			What: &Reference{Reference: "Patient/" + url.PathEscape(e.Patient)},
			Type: &Coding{System: sysEntityType, Code: "1", Display: "Person"},
			Role: &Coding{System: sysObjectRole, Code: "1", Display: "Patient"},
		})
	}
	justificationSealed := sealed && e.Action == ActionBreakGlassUsed && e.BreakGlass == ""
	if e.Target != "" || e.Before != nil || e.After != nil || e.BreakGlass != "" || justificationSealed {
		ent := AuditEventEntity{Type: &Coding{System: sysEntityType, Code: "2", Display: "System Object"}}
		if justificationSealed {
			ent.Extension = sealedMark()
		}
		if e.Target != "" {
			ent.What = &Reference{Identifier: &Identifier{System: targetSystem(e), Value: e.Target}}
		}
		if e.Before != nil {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "before", ValueString: string(e.Before)})
		}
		if e.After != nil {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "after", ValueString: string(e.After)})
		}
		if e.BreakGlass != "" {
			ent.Detail = append(ent.Detail, AuditEntityDetail{Type: "break-glass-justification", ValueString: e.BreakGlass})
		}
		ev.Entity = append(ev.Entity, ent)
	}
	return ev
}

func targetSystem(e *Entry) string {
	if strings.HasPrefix(string(e.Action), "token.") {
		return sysPhigateTok
	}
	return "urn:phigate:target"
}

// fhirID is "<node>-<seq>", unique within a deployment.
func fhirID(e *Entry, origin string) string {
	node := e.Node
	if node == "" {
		node = strings.TrimPrefix(origin, OriginPrefix)
	}
	return node + "-" + strconv.FormatUint(e.Seq, 10)
}

// fhirOutcome: 0 success, 4 minor failure (denied), 8 serious failure.
func fhirOutcome(e *Entry) string {
	switch {
	case e.Outcome == OutcomeDenied || e.Action == ActionAccessDenied || e.Action == ActionAuthFailed:
		return "4"
	case e.Outcome == OutcomeFailure || e.Status >= 500:
		return "8"
	}
	return "0"
}

// restful returns the restful-interaction code, the AuditEvent action
// code and the BALP profile name of an access entry (the table of FHIR).
func restful(e *Entry) (interaction, action, profile string) {
	switch e.Interaction {
	case "read", "vread":
		return e.Interaction, "R", "Read"
	case "history-instance", "history-type", "history-system":
		return "history", "R", ""
	case "search-type", "search-system", "search-compartment":
		return "search", "E", "Query"
	case "create":
		return "create", "C", "Create"
	case "update", "conditional-update":
		return "update", "U", "Update"
	case "patch", "conditional-patch":
		return "patch", "U", "Update"
	case "delete", "conditional-delete":
		return "delete", "D", "Delete"
	case "batch", "transaction":
		return e.Interaction, "E", ""
	case "capabilities":
		return "capabilities", "R", ""
	case "operation":
		return "operation", "E", ""
	}
	// an http route, or no interaction recorded: no FHIR code to claim
	switch strings.ToUpper(e.Method) {
	case "GET", "HEAD":
		return "", "R", ""
	case "PUT", "PATCH":
		return "", "U", ""
	case "DELETE":
		return "", "D", ""
	}
	return "", "E", ""
}

// sealedMark is the extension of an entity whose elements are sealed.
func sealedMark() []AuditEventExtItem {
	t := true
	return []AuditEventExtItem{{URL: ExtSealed, ValueBoolean: &t}}
}

// WriteJSONL writes e as one line of JSON.
func WriteJSONL(w io.Writer, e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteFHIR writes e as one line of NDJSON: a FHIR AuditEvent (the FHIR
// Bulk Data format).
func WriteFHIR(w io.Writer, e *Entry, origin string) error {
	b, err := json.Marshal(FHIR(e, origin))
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
