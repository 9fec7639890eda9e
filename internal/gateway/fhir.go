package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/phigate/phigate/internal/scope"
)

// Interaction is a FHIR RESTful interaction (FHIR R4 http.html).
type Interaction uint8

// Interactions the gateway recognises. Anything else is refused.
const (
	InteractionNone   Interaction = iota
	Read                          // GET [type]/[id]
	VRead                         // GET [type]/[id]/_history/[vid]
	HistoryInstance               // GET [type]/[id]/_history
	HistoryType                   // GET [type]/_history
	HistorySystem                 // GET _history
	SearchType                    // GET [type]?…, POST [type]/_search
	SearchSystem                  // GET ?…, POST _search
	SearchCompartment             // GET [ctype]/[cid]/[type|*]?…, POST …/_search
	Create                        // POST [type]
	Update                        // PUT [type]/[id]
	Patch                         // PATCH [type]/[id]
	Delete                        // DELETE [type]/[id]
	ConditionalUpdate             // PUT [type]?…
	ConditionalPatch              // PATCH [type]?…
	ConditionalDelete             // DELETE [type]?…
	Batch                         // POST [base] with a batch or transaction Bundle
	Capabilities                  // GET metadata
	Operation                     // [type/[id]/]$name
)

var interactionNames = [...]string{
	InteractionNone: "", Read: "read", VRead: "vread", HistoryInstance: "history-instance",
	HistoryType: "history-type", HistorySystem: "history-system", SearchType: "search-type",
	SearchSystem: "search-system", SearchCompartment: "search-compartment", Create: "create",
	Update: "update", Patch: "patch", Delete: "delete", ConditionalUpdate: "conditional-update",
	ConditionalPatch: "conditional-patch", ConditionalDelete: "conditional-delete", Batch: "batch",
	Capabilities: "capabilities", Operation: "operation",
}

// String returns the interaction's name as recorded in events.
func (i Interaction) String() string {
	if int(i) < len(interactionNames) {
		return interactionNames[i]
	}
	return ""
}

// Op returns the SMART permission an interaction needs: read, vread and
// instance history need r; searches and type or system history need s;
// create c; update and patch (conditional or not) u; delete d. Batch,
// capabilities and operations have none (they are checked otherwise).
func (i Interaction) Op() scope.Op {
	switch i {
	case Read, VRead, HistoryInstance:
		return scope.OpRead
	case SearchType, SearchSystem, SearchCompartment, HistoryType, HistorySystem:
		return scope.OpSearch
	case Create:
		return scope.OpCreate
	case Update, Patch, ConditionalUpdate, ConditionalPatch:
		return scope.OpUpdate
	case Delete, ConditionalDelete:
		return scope.OpDelete
	}
	return 0
}

// fhirRequest is a classified FHIR request.
type fhirRequest struct {
	interaction Interaction
	// typ is the resource type acted on ("*" for all types: system level,
	// or a compartment search of every type).
	typ string
	id  string
	vid string
	// compType and compID name the compartment of a compartment search or
	// the instance of an instance-level operation.
	compType, compID string
	// op is the operation's name, with its "$".
	op string
	// method is the HTTP method, set by the caller of classifyFHIR when a
	// check needs it (operations).
	method string
	// check is set by authorizeInteraction: the compartment check the
	// answer needs before it may reach the client.
	check checkKind
}

var errNotFHIR = errors.New("not a FHIR RESTful interaction")

// classifyFHIR maps a request to its FHIR interaction. path is the escaped
// path relative to the FHIR base, without a leading "/" (the base itself is
// ""); hasQuery reports a query string. Segments are not decoded: FHIR ids
// and type names have no characters that need encoding, so an encoded
// segment is refused. HEAD is GET.
func classifyFHIR(method, path string, hasQuery bool) (fhirRequest, error) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var segs [5]string
	n := 0
	if path != "" {
		for rest := path; ; {
			if n == len(segs) {
				return fhirRequest{}, errNotFHIR
			}
			seg, after, more := strings.Cut(rest, "/")
			if seg == "" {
				return fhirRequest{}, errNotFHIR
			}
			segs[n] = seg
			n++
			if !more {
				break
			}
			rest = after
		}
	}
	get, post := method == http.MethodGet, method == http.MethodPost
	switch n {
	case 0:
		switch {
		case get:
			return fhirRequest{interaction: SearchSystem, typ: "*"}, nil
		case post:
			return fhirRequest{interaction: Batch}, nil
		}
	case 1:
		s := segs[0]
		switch {
		case s == "metadata" && get:
			return fhirRequest{interaction: Capabilities}, nil
		case s == "_history" && get:
			return fhirRequest{interaction: HistorySystem, typ: "*"}, nil
		case s == "_search" && (get || post):
			return fhirRequest{interaction: SearchSystem, typ: "*"}, nil
		case isOperation(s) && (get || post):
			return fhirRequest{interaction: Operation, typ: "*", op: s}, nil
		case isType(s):
			switch method {
			case http.MethodGet:
				return fhirRequest{interaction: SearchType, typ: s}, nil
			case http.MethodPost:
				return fhirRequest{interaction: Create, typ: s}, nil
			case http.MethodPut:
				if hasQuery {
					return fhirRequest{interaction: ConditionalUpdate, typ: s}, nil
				}
			case http.MethodPatch:
				if hasQuery {
					return fhirRequest{interaction: ConditionalPatch, typ: s}, nil
				}
			case http.MethodDelete:
				if hasQuery {
					return fhirRequest{interaction: ConditionalDelete, typ: s}, nil
				}
			}
		}
	case 2:
		t, s := segs[0], segs[1]
		if !isType(t) {
			break
		}
		switch {
		case s == "_search" && (get || post):
			return fhirRequest{interaction: SearchType, typ: t}, nil
		case s == "_history" && get:
			return fhirRequest{interaction: HistoryType, typ: t}, nil
		case isOperation(s) && (get || post):
			return fhirRequest{interaction: Operation, typ: t, op: s}, nil
		case isID(s):
			switch method {
			case http.MethodGet:
				return fhirRequest{interaction: Read, typ: t, id: s}, nil
			case http.MethodPut:
				return fhirRequest{interaction: Update, typ: t, id: s}, nil
			case http.MethodPatch:
				return fhirRequest{interaction: Patch, typ: t, id: s}, nil
			case http.MethodDelete:
				return fhirRequest{interaction: Delete, typ: t, id: s}, nil
			}
		}
	case 3:
		t, id, s := segs[0], segs[1], segs[2]
		if !isType(t) || !isID(id) {
			break
		}
		switch {
		case s == "_history" && get:
			return fhirRequest{interaction: HistoryInstance, typ: t, id: id}, nil
		case isOperation(s) && (get || post):
			return fhirRequest{interaction: Operation, typ: t, id: id, op: s, compType: t, compID: id}, nil
		case (isType(s) || s == "*") && get:
			return fhirRequest{interaction: SearchCompartment, typ: s, compType: t, compID: id}, nil
		}
	case 4:
		t, id, s, v := segs[0], segs[1], segs[2], segs[3]
		if !isType(t) || !isID(id) {
			break
		}
		switch {
		case s == "_history" && isID(v) && get:
			return fhirRequest{interaction: VRead, typ: t, id: id, vid: v}, nil
		case (isType(s) || s == "*") && v == "_search" && (get || post):
			return fhirRequest{interaction: SearchCompartment, typ: s, compType: t, compID: id}, nil
		}
	}
	return fhirRequest{}, errNotFHIR
}

// isType reports whether s is a FHIR resource type name: an upper-case
// letter and up to 63 letters.
func isType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// isID reports whether s is a FHIR id: [A-Za-z0-9-.]{1,64}, and not "."
// or ".." (which paths cannot carry anyway).
func isID(s string) bool {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isOperation reports whether s is "$" and an operation name.
func isOperation(s string) bool {
	if len(s) < 2 || len(s) > 64 || s[0] != '$' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
