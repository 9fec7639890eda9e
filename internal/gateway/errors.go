package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/policy"
)

// Reason codes of the gateway's own refusals, besides those of
// policy.Reason. They are part of the external contract.
const (
	CodeMissingToken      = "missing_token"
	CodeCompartment       = "compartment"
	CodeNoRoute           = "no_route"
	CodeBreakGlass        = "break_glass_required"
	CodeBreakGlassDenied  = "break_glass_denied"
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidPurpose    = "invalid_purpose"
	CodeAmbiguousFraming  = "ambiguous_framing"
	CodeUnsupportedMedia  = "unsupported_media_type"
	CodeTooLarge          = "payload_too_large"
	CodeNotFound          = "not_found"
	CodeAuditUnavailable  = "audit_unavailable"
	CodeUpstreamFailed    = "upstream_unavailable"
	CodeUpstreamTimeout   = "upstream_timeout"
	CodeBodyUnavailable   = "body_unavailable"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeInsufficientScope = "insufficient_scope"
)

// denial is a refusal: what the client is told and what the audit records.
// Its message never holds a secret or request data beyond names the client
// itself sent (a scope, a resource type).
type denial struct {
	status int
	code   string
	msg    string
	// scope is the scope that was needed (insufficient_scope), in the
	// answer's body and the audit.
	scope string
	// challenge asks for WWW-Authenticate on a status other than 401
	// (which always has one): a 403 of the token's privileges. bearer is
	// its RFC 6750 error attribute ("" for none: no RFC 6750 error says
	// what happened), desc its error_description (msg when empty, except
	// on a 401 without an error), and scopeAttr whether it names scope:
	// only when that scope is one the token lacks and that would do.
	challenge bool
	bearer    string
	desc      string
	scopeAttr bool
	retry     time.Duration
	// close asks for the connection to be closed after the answer.
	close bool
}

func deny(status int, code, msg string) *denial {
	return &denial{status: status, code: code, msg: msg}
}

func badRequest(msg string) *denial { return deny(http.StatusBadRequest, CodeInvalidRequest, msg) }

// forbidden is a 403 with the RFC 6750 insufficient_scope error ("the
// request requires higher privileges than provided by the access token")
// and, when need is set, the scope that would do.
func forbidden(code, msg, need string) *denial {
	return &denial{status: http.StatusForbidden, code: code, msg: msg, scope: need, challenge: true, bearer: "insufficient_scope", scopeAttr: need != ""}
}

// unreachable is a 403 that no privilege of a token would lift (no route,
// an operation the gateway does not let through, a break-glass token's
// request without its headers): its challenge names no RFC 6750 error
// and no scope, only what happened.
func unreachable(code, msg string) *denial {
	return &denial{status: http.StatusForbidden, code: code, msg: msg, challenge: true}
}

// outsideCompartment is the 403 of a patient/ scope asked for something
// outside its patient's compartment. need (the scope the token holds at
// patient level) goes to the body and the audit, not to the challenge:
// it would not do. insufficient_scope stays, as RFC 6750 defines it: the
// request needs higher privileges than the token's.
func outsideCompartment(pid, need string) *denial {
	desc := "the request is outside the token's patient compartment"
	if pid == "" {
		desc = "the token's patient/ scopes need it to be bound to a patient, and it is not"
	}
	return &denial{status: http.StatusForbidden, code: CodeCompartment, msg: compartmentMessage(pid), scope: need,
		challenge: true, bearer: "insufficient_scope", desc: desc}
}

var (
	errMissingToken = &denial{status: http.StatusUnauthorized, code: CodeMissingToken, msg: "an Authorization: Bearer phigate token is required"}
	errUnavailable  = &denial{status: http.StatusServiceUnavailable, code: policy.Unavailable.Code(), msg: policy.Unavailable.Message(), retry: time.Second}
	errAudit        = &denial{status: http.StatusServiceUnavailable, code: CodeAuditUnavailable, msg: "the request cannot be recorded in the audit log, so it is refused; nothing was forwarded", retry: time.Second}
)

// fromReason maps a deny of the authority to a denial.
func fromReason(r policy.Reason, retry time.Duration) *denial {
	d := &denial{code: r.Code(), msg: r.Message()}
	switch {
	case r.Unauthenticated():
		d.status, d.bearer = http.StatusUnauthorized, "invalid_token"
	case r == policy.RateLimited:
		d.status, d.retry = http.StatusTooManyRequests, retry
	case r == policy.Unavailable:
		d.status, d.retry = http.StatusServiceUnavailable, time.Second
	default:
		// a constraint of the token (network, hours, purpose, uses): the
		// request needs privileges the token does not have
		d.status, d.challenge, d.bearer = http.StatusForbidden, true, "insufficient_scope"
	}
	return d
}

// writeError answers d in JSON: {"error":{"code","message","request_id"}},
// with WWW-Authenticate on 401 and on a 403 of the token's privileges, and
// Retry-After when set. A request routed to a fhir upstream is answered
// with writeOutcome instead (Gateway.writeRefusal chooses).
func writeError(w http.ResponseWriter, rid string, d *denial) {
	d.setHeaders(w.Header())
	var body struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Scope     string `json:"scope,omitempty"`
			RequestID string `json:"request_id,omitempty"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.Scope, body.Error.RequestID = d.code, d.msg, d.scope, rid
	b, _ := json.Marshal(body) // strings only: cannot fail
	writeBody(w, d.status, "application/json", append(b, '\n'))
}

// setHeaders sets the headers every refusal carries, whatever its body:
// the RFC 6750 challenge (401, and a 403 of the token's privileges),
// Retry-After when set, Connection: close when asked for.
func (d *denial) setHeaders(h http.Header) {
	if d.status == http.StatusUnauthorized || d.challenge {
		h.Set("WWW-Authenticate", d.wwwAuthenticate())
	}
	if d.retry > 0 {
		h.Set("Retry-After", strconv.Itoa(int((d.retry+time.Second-1)/time.Second)))
	}
	if d.close {
		h.Set("Connection", "close")
	}
}

// writeBody writes a refusal's status and body, never cached or sniffed.
func writeBody(w http.ResponseWriter, status int, contentType string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// wwwAuthenticate is d's RFC 6750 challenge: realm, then the error, its
// description and the scope that would do, each only when d has one. A
// 401 without a token has none of them (RFC 6750 §3.1: no error code
// when the request carried no credential).
func (d *denial) wwwAuthenticate() string {
	v := `Bearer realm="phigate"`
	if d.bearer != "" {
		v += `, error="` + d.bearer + `"`
	}
	desc := d.desc
	if desc == "" && (d.bearer != "" || d.status != http.StatusUnauthorized) {
		desc = d.msg
	}
	if desc != "" {
		v += `, error_description="` + quoteSafe(desc) + `"`
	}
	if d.scopeAttr && d.scope != "" {
		v += `, scope="` + quoteSafe(d.scope) + `"`
	}
	return v
}

// quoteSafe makes s safe inside a quoted-string of a header: no quotes,
// backslashes or control characters.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < 0x20 || r == 0x7f:
			return ' '
		}
		return r
	}, s)
}
