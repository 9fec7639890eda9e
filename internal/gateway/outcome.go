package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
)

// ReasonSystem is the coding system of the reason code in a FHIR-shaped
// refusal's issue.details: the codes are those of the JSON error's
// error.code.
const ReasonSystem = "urn:phigate:reason"

// FHIR issue types (the IssueType value set of FHIR R4) a refusal's
// issue.code takes.
const (
	issueLogin     = "login"
	issueForbidden = "forbidden"
	issueSecurity  = "security"
	issueThrottled = "throttled"
	issueNotFound  = "not-found"
	issueInvalid   = "invalid"
	issueTooLong   = "too-long"
	issueException = "exception"
	issueTransient = "transient"
)

// issueTypeFor is the FHIR issue type of the OperationOutcome of each
// reason code the gateway answers; ok is false for a code not listed,
// which takes the type of its status (issueTypeOf).
func issueTypeFor(code string) (issue string, ok bool) {
	switch code {
	case CodeMissingToken, "invalid_token", "token_expired", "token_revoked", "token_suspended", "token_idle", "token_rotated":
		return issueLogin, true // the credential itself (401)
	case CodeInsufficientScope, CodeCompartment, CodeNoRoute, CodeBreakGlass, CodeBreakGlassDenied, "network_denied",
		"outside_hours", "purpose_denied", "uses_exhausted", CodeBodyUnavailable, "denied":
		return issueForbidden, true // a privilege the token lacks, or a request no token may make (403)
	case CodeAmbiguousFraming, "invalid_continuation":
		return issueSecurity, true // a request that could reach an upstream as another one than decided
	case "rate_limited", CodeTooManyFailures:
		return issueThrottled, true
	case CodeNotFound:
		return issueNotFound, true
	case CodeInvalidRequest, CodeInvalidPurpose, CodeUnsupportedMedia, CodeMethodNotAllowed:
		return issueInvalid, true // the request itself
	case CodeTooLarge, CodeResponseTooLarge:
		return issueTooLong, true
	case "internal", CodeUpstreamFailed:
		return issueException, true
	case "unavailable", CodeAuditUnavailable, CodeStorageLow, CodeUpstreamTimeout:
		return issueTransient, true
	}
	return "", false
}

// issueTypeOf is the FHIR issue type of a refusal with code and status.
func issueTypeOf(code string, status int) string {
	if t, ok := issueTypeFor(code); ok {
		return t
	}
	switch {
	case status == http.StatusUnauthorized:
		return issueLogin
	case status == http.StatusForbidden:
		return issueForbidden
	case status == http.StatusNotFound:
		return issueNotFound
	case status == http.StatusRequestEntityTooLarge:
		return issueTooLong
	case status == http.StatusTooManyRequests:
		return issueThrottled
	case status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return issueTransient
	case status >= 500:
		return issueException
	}
	return issueInvalid
}

// outcomeBody is the OperationOutcome of a refusal.
type outcomeBody struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Issue        []outcomeIssue `json:"issue"`
}

type outcomeIssue struct {
	Severity    string         `json:"severity"`
	Code        string         `json:"code"`
	Details     outcomeDetails `json:"details"`
	Diagnostics string         `json:"diagnostics,omitempty"`
}

type outcomeDetails struct {
	Coding []outcomeCoding `json:"coding"`
	Text   string          `json:"text"`
}

type outcomeCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

// writeOutcome answers d as a FHIR OperationOutcome
// (application/fhir+json), for requests routed to a fhir upstream: the
// status, WWW-Authenticate, Retry-After and Connection headers as
// writeError sets them, and
//
//	{"resourceType":"OperationOutcome","id":"<request id>","issue":[{
//	  "severity":"error","code":"<FHIR issue type>",
//	  "details":{"coding":[{"system":"urn:phigate:reason","code":"<reason code>"}],"text":"<message>"},
//	  "diagnostics":"request id <request id>"}]}
//
// The message is encoded as JSON whatever it holds (quotes, control
// characters; invalid UTF-8 becomes U+FFFD).
func writeOutcome(w http.ResponseWriter, rid string, d *denial) {
	d.setHeaders(w.Header())
	oo := outcomeBody{ResourceType: "OperationOutcome", ID: outcomeID(rid), Issue: []outcomeIssue{{
		Severity: "error", Code: issueTypeOf(d.code, d.status),
		Details: outcomeDetails{Coding: []outcomeCoding{{System: ReasonSystem, Code: d.code}}, Text: d.msg},
	}}}
	if rid != "" {
		oo.Issue[0].Diagnostics = "request id " + rid
	}
	b, _ := json.Marshal(&oo) // strings only: cannot fail
	writeBody(w, d.status, "application/fhir+json", append(b, '\n'))
}

// outcomeID is rid as a FHIR id ([A-Za-z0-9-.]{1,64}) when it is one: a
// client's request id may hold "_", which a FHIR id may not ("" then:
// the diagnostics still name it).
func outcomeID(rid string) string {
	if rid == "" || len(rid) > 64 {
		return ""
	}
	for i := 0; i < len(rid); i++ {
		if c := rid[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return ""
		}
	}
	return rid
}

// writeRefusal answers d for r: an OperationOutcome when r is routed to a
// fhir upstream (its path under the prefix of one, and not a path the
// gateway serves itself, such as forward auth), else the JSON error.
func (g *Gateway) writeRefusal(w http.ResponseWriter, r *http.Request, rid string, d *denial) {
	if g.fhirRouted(r) {
		writeOutcome(w, rid, d)
		return
	}
	writeError(w, rid, d)
}

// fhirRouted reports whether r's path leads to a fhir upstream.
func (g *Gateway) fhirRouted(r *http.Request) bool {
	path := r.URL.EscapedPath()
	if reservedPath(path) {
		return false
	}
	t := g.table.Load()
	if t == nil {
		return false
	}
	up, _ := t.match(path)
	return up != nil && up.fhir
}

// reservedPath reports whether the gateway answers path itself, whatever
// the upstreams' prefixes: /healthz, the identity key, forward auth and
// the rest of /.well-known/.
func reservedPath(path string) bool {
	return path == "/healthz" || path == IdentityKeyPath || path == authzPath ||
		strings.HasPrefix(path, authzPath+"/") || strings.HasPrefix(path, "/.well-known/")
}
