package api

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/policy"
)

// OAuth client authentication on the RFC 7662 and RFC 7009 endpoints.
//
// A resource server using a stock OAuth library authenticates to
// POST /v1/introspect and POST /v1/revoke with one of:
//
//   - client_secret_basic (RFC 6749 §2.3.1): Authorization: Basic with the
//     form-urlencoded client id and secret, joined by ":", in base64;
//   - client_secret_post: the form members client_id and client_secret;
//   - Authorization: Bearer phi_… (phigate's own way).
//
// The client id is a token id (tok_…) and the secret that token's current
// phi_… secret (or a rotated one within its grace period). A secret that
// belongs to another token is refused exactly as a wrong one (401
// invalid_client; the audit entry says client_id_mismatch). The token
// must hold the same scope as with Bearer. Two methods in one request
// (say Basic and a client_secret member) are refused with 400
// invalid_request (RFC 6749 §2.3); "none" (a client_id alone) is not
// supported: 401 invalid_client.
//
// Errors on these two endpoints take the RFC 6749 §5.2 form:
//
//	{"error":"invalid_client","error_description":"…","request_id":"req_…","phigate_code":"invalid_token"}
//
// error is an OAuth code (invalid_request, invalid_client,
// insufficient_scope, access_denied, temporarily_unavailable,
// server_error), phigate_code the reason code the rest of the API uses.
// A failed Basic authentication is answered with WWW-Authenticate: Basic
// realm="phigate"; a failed Bearer with the RFC 6750 challenge.

// Client authentication methods (as in token_endpoint_auth_methods_supported).
const (
	authBearer = "bearer"
	authBasic  = "client_secret_basic"
	authPost   = "client_secret_post"
)

type oauthCtxKey struct{}

// contextWithOAuth marks r's context: its errors take the RFC 6749 form.
func contextWithOAuth(r *http.Request) context.Context {
	return context.WithValue(r.Context(), oauthCtxKey{}, true)
}

func oauthErrors(r *http.Request) bool {
	v, _ := r.Context().Value(oauthCtxKey{}).(bool)
	return v
}

// clientCredentials finds how the request authenticates. It returns the
// method ("" when the request carries no credential at all), the client id
// (for Basic and post) and the secret. A malformed credential yields an
// error to answer.
func clientCredentials(r *http.Request, form url.Values) (method, id, secret string, e *apiError) {
	formID, formSecret := form["client_id"], form["client_secret"]
	if len(formID) > 1 || len(formSecret) > 1 {
		return "", "", "", oauthBad("client_id and client_secret may each appear at most once")
	}
	h := r.Header.Values("Authorization")
	if len(h) > 1 {
		return "", "", "", oauthBad("more than one Authorization header")
	}
	if len(h) == 1 {
		v := h[0]
		if len(formSecret) > 0 {
			return "", "", "", oauthBad("more than one client authentication method (Authorization and client_secret); use one")
		}
		scheme, rest, _ := strings.Cut(v, " ")
		switch {
		case strings.EqualFold(scheme, "basic"):
			id, secret, ok := parseBasic(strings.TrimSpace(rest))
			if !ok {
				return authBasic, "", "", &apiError{status: http.StatusUnauthorized, code: "invalid_client", basic: true,
					msg: "malformed Basic credentials (RFC 6749 §2.3.1: base64 of form-urlencoded client_id:client_secret)"}
			}
			if len(formID) == 1 && formID[0] != id {
				return "", "", "", oauthBad("client_id in the body differs from the one in Authorization")
			}
			return authBasic, id, secret, nil
		default:
			if len(formID) > 0 {
				return "", "", "", oauthBad("client_id is not used with Bearer authentication")
			}
			secret, _ := bearer(r)
			return authBearer, "", secret, nil
		}
	}
	switch {
	case len(formSecret) == 1 && len(formID) == 1:
		return authPost, formID[0], formSecret[0], nil
	case len(formSecret) == 1:
		return authPost, "", "", &apiError{status: http.StatusUnauthorized, code: "invalid_client", msg: "client_secret needs client_id"}
	case len(formID) == 1:
		return "none", "", "", &apiError{status: http.StatusUnauthorized, code: "invalid_client",
			msg: `client authentication "none" is not supported; use client_secret_basic, client_secret_post or Bearer`}
	}
	return "", "", "", nil
}

// parseBasic decodes the credentials of RFC 7617 with the RFC 6749
// §2.3.1 encoding of both parts. Bounded by the header size limit.
func parseBasic(v string) (id, secret string, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", "", false
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", false
	}
	return id, secret, id != "" && secret != ""
}

func oauthBad(msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: msg}
}

type formHandler func(w http.ResponseWriter, r *http.Request, ac authority.Actor, form url.Values)

// clientAuthed is authed for the OAuth endpoints: it reads the form body
// first (client_secret_post travels in it), authenticates with whichever
// single method the request uses, requires need, and answers every error
// in the RFC 6749 §5.2 form. It fails closed on any technical error.
func (s *Server) clientAuthed(need string, h formHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(contextWithOAuth(r))
		form, formErr := s.readForm(w, r)
		if formErr != nil {
			if len(r.Header.Values("Authorization")) == 0 {
				// no credential anywhere: refused and recorded (aggregated,
				// as anonymous) with the body's error
				s.refuse(w, r, authority.Decision{Reason: policy.Malformed}, formErr.code, formErr)
				return
			}
			// authenticate with the header first, as for any request:
			// its failure is what is answered and recorded
			form = url.Values{}
		}
		method, id, secret, e := clientCredentials(r, form)
		if e != nil {
			if e.status == http.StatusUnauthorized {
				s.failed(r, policy.Malformed)
				s.refuse(w, r, authority.Decision{Reason: policy.Malformed}, "invalid_client", e)
				return
			}
			s.refuse(w, r, authority.Decision{Reason: policy.Malformed}, e.code, e)
			return
		}
		if method == "" {
			s.refuse(w, r, authority.Decision{Reason: policy.Malformed}, "missing_token",
				&apiError{status: http.StatusUnauthorized, code: "missing_token", basic: true,
					msg: "client authentication is required: client_secret_basic, client_secret_post or Authorization: Bearer"})
			return
		}
		if e := s.throttle(r); e != nil {
			s.refuse(w, r, authority.Decision{}, e.code, e)
			return
		}
		req := authority.Request{Addr: clientAddr(r), Purpose: r.Header.Get("X-Purpose-Of-Use")}
		hd, d, err := s.auth.Authenticate(r.Context(), secret, req)
		code := ""
		if err == nil && d.Reason == policy.ReasonNone && method != authBearer {
			// the id names the token whose secret this must be; a
			// secret of another token is a wrong secret
			if subtle.ConstantTimeCompare([]byte(hd.Token().ID), []byte(id)) != 1 {
				d, code = authority.Decision{Reason: policy.Unknown}, "client_id_mismatch"
			}
		}
		if err == nil && d.Reason == policy.ReasonNone {
			if need != "" && !hd.Scopes().Has(need) {
				d = authority.Decision{Reason: policy.Scope, Token: hd.Token(), Scopes: hd.Scopes()}
			} else {
				d, err = s.auth.Admit(r.Context(), hd)
			}
		}
		if err != nil {
			s.log.Error("client authentication failed", "request_id", requestID(r), "err", err)
			s.writeError(w, r, fromReason(authority.Decision{Reason: policy.Unavailable}, ""))
			return
		}
		if !d.Allowed() {
			s.failed(r, d.Reason)
			if err := s.recordDenied(r, d, code); err != nil {
				s.writeError(w, r, errAuditDenial)
				return
			}
			if d.Token != nil {
				s.log.Info("request denied", "request_id", requestID(r), "token_id", d.Token.ID, "reason", d.Reason.Code(), "path", r.URL.Path, "client_auth", method)
			} else {
				s.log.Debug("request denied", "request_id", requestID(r), "reason", d.Reason.Code(), "path", r.URL.Path, "client_auth", method, "remote", r.RemoteAddr)
			}
			ae := fromReason(d, need)
			if method == authBasic && ae.status == http.StatusUnauthorized {
				ae.basic = true
			}
			if method != authBearer {
				ae.wwwAuth = "" // no Bearer challenge for a client that did not use Bearer
			}
			s.writeError(w, r, ae)
			return
		}
		if formErr != nil {
			s.writeError(w, r, formErr)
			return
		}
		h(w, r, authority.ActorOf(d), form)
	}
}

// oauthError writes e in the RFC 6749 §5.2 form (see clientAuthed).
func (s *Server) writeOAuthError(w http.ResponseWriter, rid string, e *apiError) {
	h := w.Header()
	if e.basic {
		h.Add("WWW-Authenticate", `Basic realm="phigate", charset="UTF-8"`)
	}
	if e.wwwAuth != "" {
		v := `Bearer realm="phigate", error="` + e.wwwAuth + `", error_description="` + strings.ReplaceAll(e.msg, `"`, "'") + `"`
		if e.scope != "" {
			v += `, scope="` + e.scope + `"`
		}
		h.Add("WWW-Authenticate", v)
	} else if e.status == http.StatusUnauthorized && (!e.basic || e.code == "missing_token") {
		h.Add("WWW-Authenticate", `Bearer realm="phigate"`)
	}
	if e.retry > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.retry+time.Second-1)/time.Second)))
	}
	body := OAuthError{Error: oauthCode(e), Description: e.msg, RequestID: rid, Code: e.code, Field: e.field}
	b, _ := json.Marshal(body)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(e.status)
	w.Write(append(b, '\n'))
}

// OAuthError is the RFC 6749 §5.2 error body of the OAuth endpoints.
type OAuthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	RequestID   string `json:"request_id,omitempty"`
	// Code is phigate's reason code (as in {"error":{"code"}} elsewhere).
	Code  string `json:"phigate_code,omitempty"`
	Field string `json:"field,omitempty"`
}

// oauthCode maps an apiError to the OAuth error code of its answer.
func oauthCode(e *apiError) string {
	switch {
	case e.status == http.StatusUnauthorized:
		return "invalid_client"
	case e.code == "insufficient_scope":
		return "insufficient_scope"
	case e.status == http.StatusForbidden:
		return "access_denied"
	case e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case e.status >= 500:
		return "server_error"
	}
	return "invalid_request"
}
