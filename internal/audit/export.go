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
	What   *Reference          `json:"what,omitempty"`
	Type   *Coding             `json:"type,omitempty"`
	Role   *Coding             `json:"role,omitempty"`
	Name   string              `json:"name,omitempty"`
	Query  string              `json:"query,omitempty"` // base64
	Detail []AuditEntityDetail `json:"detail,omitempty"`
}

// AuditEntityDetail is AuditEvent.entity.detail.
type AuditEntityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// AuditEventExtItem is an extension with a string value.
type AuditEventExtItem struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString,omitempty"`
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

// FHIR returns e as a FHIR R4 AuditEvent of the log origin:
//
//   - access.*: type rest with the RESTful interaction as subtype (read,
//     search, create, update, patch, delete), the BALP Read/Create/...
//     profile; the requested path as entity (query base64-encoded as BALP
//     asks), the patient compartment as a Patient entity.
//   - auth.failed: DCM 110114 User Authentication, subtype 110122 Login.
//   - breakglass.used: DCM 110113 Security Alert, subtype 110127 Emergency
//     Override Started, purposeOfEvent BTG; the justification as an entity
//     detail.
//   - token.*: DCM 110113 Security Alert, subtype 110137 User Security
//     Attributes Changed; the token changed as entity, with before and
//     after as details.
//   - alert.raised: Security Alert; key.rotated, config.loaded: Security
//     Alert with 110129 Security Configuration / 110131 Software
//     Configuration; server.started/stopped: DCM 110100 Application
//     Activity, 110120 Application Start / 110121 Application Stop.
//
// The agent who made the request (requestor) carries the token's subject
// as who, its token id as altId, its source address and purpose of use;
// phigate itself is the source (observer = the origin) and a second agent.
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
	act := string(e.Action)
	actCoding := Coding{System: sysPhigateAct, Code: act}
	switch {
	case strings.HasPrefix(act, "access."):
		ev.Type = Coding{System: sysEventType, Code: "rest", Display: "RESTful Operation"}
		interaction, fhirAction, profile := restful(e)
		ev.Subtype = []Coding{{System: sysRestful, Code: interaction}, actCoding}
		ev.Action = fhirAction
		ev.Meta = &Meta{Profile: []string{balpProfile + profile}}
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
		ev.Action = map[Action]string{ActionTokenCreated: "C"}[e.Action]
		if ev.Action == "" {
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
		ev.Subtype = []Coding{{System: sysRestful, Code: "search-type"}, actCoding}
		ev.Action = "R"
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
	if e.Path != "" {
		p, q, _ := strings.Cut(e.Path, "?")
		ent := AuditEventEntity{
			What: &Reference{Reference: strings.TrimPrefix(p, "/")},
			Type: &Coding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role: &Coding{System: sysObjectRole, Code: "4", Display: "Domain Resource"},
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
	if e.Target != "" || e.Before != nil || e.After != nil || e.BreakGlass != "" {
		ent := AuditEventEntity{Type: &Coding{System: sysEntityType, Code: "2", Display: "System Object"}}
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

// restful maps the HTTP method to the FHIR interaction, the AuditEvent
// action code and the BALP profile name.
func restful(e *Entry) (interaction, action, profile string) {
	hasQuery := strings.Contains(e.Path, "?")
	switch strings.ToUpper(e.Method) {
	case "POST":
		return "create", "C", "Create"
	case "PUT":
		return "update", "U", "Update"
	case "PATCH":
		return "patch", "U", "Update"
	case "DELETE":
		return "delete", "D", "Delete"
	case "GET", "HEAD":
		if hasQuery {
			return "search-type", "E", "Query"
		}
		return "read", "R", "Read"
	}
	return "operation", "E", "Query"
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
