package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/policy"
)

// apiError is an error with its HTTP status and client-facing code.
type apiError struct {
	status  int
	code    string
	msg     string
	field   string
	retry   time.Duration
	wwwAuth string // RFC 6750 error attribute, when set
	scope   string // the scope needed, for insufficient_scope
	basic   bool   // challenge with Basic (a failed client_secret_basic)
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(field, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_request", field: field, msg: fmt.Sprintf(format, a...)}
}

// fromReason turns a deny Decision into an apiError.
func fromReason(d authority.Decision, needScope string) *apiError {
	r := d.Reason
	e := &apiError{code: r.Code(), msg: r.Message()}
	switch {
	case r.Unauthenticated():
		e.status, e.wwwAuth = http.StatusUnauthorized, "invalid_token"
	case r == policy.RateLimited:
		e.status, e.retry = http.StatusTooManyRequests, d.RetryAfter
	case r == policy.Unavailable:
		e.status, e.retry = http.StatusServiceUnavailable, time.Second
	case r == policy.Scope:
		e.status, e.wwwAuth, e.scope = http.StatusForbidden, "insufficient_scope", needScope
		if needScope != "" {
			e.msg = "this request needs the scope " + strconv.Quote(needScope)
		}
	default:
		e.status, e.wwwAuth = http.StatusForbidden, "insufficient_scope"
	}
	return e
}

// fromDomain maps an error of the authority to an apiError; anything
// unexpected is internal (logged, not shown).
func fromDomain(err error) *apiError {
	var ae *apiError
	var fe *policy.FieldError
	var at *authority.AttenuationError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", field: fe.Field, msg: fe.Error()}
	case errors.As(err, &at):
		return &apiError{status: http.StatusForbidden, code: "attenuation", field: at.Field, msg: at.Field + ": " + at.Msg + " (a token can only issue or widen tokens within its own scopes and constraints)"}
	case errors.Is(err, authority.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such token"}
	case errors.Is(err, authority.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "conflict", msg: "the token changed meanwhile; fetch it and try again"}
	case errors.Is(err, authority.ErrAlreadyRotated):
		return &apiError{status: http.StatusConflict, code: "already_rotated", msg: "this secret has already been rotated; use the secret that rotation returned (or retry it with its Idempotency-Key)"}
	case errors.Is(err, authority.ErrIdempotencyKeyReused):
		return &apiError{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused", field: "Idempotency-Key", msg: "this Idempotency-Key was used for another request; use a new key for a new request"}
	case errors.Is(err, authority.ErrIdempotencyUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: "idempotency_unavailable", retry: time.Second, msg: "idempotent rotation is not available on this server"}
	case errors.Is(err, authority.ErrLifetimeEnded):
		return &apiError{status: http.StatusConflict, code: "lifetime_ended", msg: strings.TrimPrefix(err.Error(), "authority: ")}
	case errors.Is(err, authority.ErrIssuerRevoked):
		return &apiError{status: http.StatusConflict, code: "issuer_revoked", msg: strings.TrimPrefix(err.Error(), "authority: ")}
	case errors.Is(err, authority.ErrInvalidState):
		return &apiError{status: http.StatusConflict, code: "invalid_state", msg: strings.TrimPrefix(err.Error(), "authority: ")}
	case errors.Is(err, authority.ErrAuditUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", retry: time.Second, msg: "the audit log cannot be written, so the change was refused; try again later"}
	case errors.Is(err, authority.ErrForbidden):
		return &apiError{status: http.StatusForbidden, code: "insufficient_scope", wwwAuth: "insufficient_scope", msg: "the token may not do this"}
	}
	return nil
}

// writeError writes e (or, for an unexpected err, a 500 after logging it).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := fromDomain(err)
	rid := requestID(r)
	if e == nil {
		s.log.Error("internal error", "request_id", rid, "method", r.Method, "path", r.URL.Path, "err", err)
		e = &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error; the request id identifies it in the server log"}
	}
	if oauthErrors(r) {
		s.writeOAuthError(w, rid, e)
		return
	}
	h := w.Header()
	if e.wwwAuth != "" || e.status == http.StatusUnauthorized {
		v := `Bearer realm="phigate"`
		if e.wwwAuth != "" {
			v += `, error="` + e.wwwAuth + `", error_description="` + strings.ReplaceAll(e.msg, `"`, "'") + `"`
		}
		if e.scope != "" {
			v += `, scope="` + e.scope + `"`
		}
		h.Set("WWW-Authenticate", v)
	}
	if e.retry > 0 {
		secs := int((e.retry + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	var body struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id,omitempty"`
			Field     string `json:"field,omitempty"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message, body.Error.RequestID, body.Error.Field = e.code, e.msg, rid, e.field
	if ow, ok := w.(*observed); ok {
		ow.code = e.code
	}
	writeJSON(w, e.status, body)
	if e.status >= 500 && e.status != http.StatusInternalServerError {
		s.log.Warn("request refused", "request_id", rid, "status", e.status, "code", e.code)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

var _ = slog.LevelInfo
