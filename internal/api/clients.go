package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/oauth"
	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/pkg/client"
)

// The SMART Backend Services endpoints (package oauth):
//
//	POST   /v1/clients          register (admin:clients; attenuated)
//	GET    /v1/clients          list: status, after, limit
//	GET    /v1/clients/{id}     one client
//	DELETE /v1/clients/{id}     revoke it and its live tokens (reason=…)
//	POST   /v1/oauth/token      client_credentials with a JWT assertion
//
// The token endpoint takes no bearer token: the client authenticates with
// its assertion. Its body is a form of at most MaxTokenForm bytes; its
// errors are RFC 6749 §5.2 objects with a request_id member.

// MaxTokenForm bounds the token endpoint's form body.
const MaxTokenForm = 16 << 10

// OAuth is what the endpoints need of the client registry.
type OAuth interface {
	Register(ctx context.Context, ac authority.Actor, reg oauth.Registration) (*store.Client, error)
	Get(ctx context.Context, ac authority.Actor, id string) (*store.Client, error)
	List(ctx context.Context, ac authority.Actor, f store.ClientFilter) ([]*store.Client, string, error)
	Revoke(ctx context.Context, ac authority.Actor, id, reason string) (*store.Client, []string, error)
	Exchange(ctx context.Context, req oauth.TokenRequest) (*oauth.Issued, error)
}

func (s *Server) clientRoutes() {
	m := s.mux
	m.HandleFunc("POST /v1/clients", s.authed(scope.AdminClients, s.registerClient))
	m.HandleFunc("GET /v1/clients", s.authed(scope.AdminClients, s.listClients))
	m.HandleFunc("GET /v1/clients/{id}", s.authed(scope.AdminClients, s.getClient))
	m.HandleFunc("DELETE /v1/clients/{id}", s.authed(scope.AdminClients, s.revokeClient))
	m.HandleFunc("POST /v1/oauth/token", s.oauthToken)
}

var errNoClients = &apiError{status: http.StatusServiceUnavailable, code: "clients_unavailable", msg: "this server keeps no OAuth clients"}

func clientError(err error) error {
	switch {
	case errors.Is(err, oauth.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such client"}
	case errors.Is(err, oauth.ErrRevoked):
		return &apiError{status: http.StatusConflict, code: "already_revoked", msg: "the client is revoked already"}
	case errors.Is(err, oauth.ErrForbidden):
		return &apiError{status: http.StatusForbidden, code: "forbidden", msg: "this needs the scope admin:clients"}
	}
	return err
}

func clientView(c *store.Client) client.OAuthClient {
	v := oauth.View(c)
	b, _ := json.Marshal(v)
	var out client.OAuthClient
	json.Unmarshal(b, &out)
	return out
}

func (s *Server) registerClient(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	if s.opts.OAuth == nil {
		s.writeError(w, r, errNoClients)
		return
	}
	var req client.RegisterClientRequest
	if e := s.decodeJSON(w, r, &req, false); e != nil {
		s.writeError(w, r, e)
		return
	}
	cidrs, e := parseCIDRs(req.CIDRs)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	ttl, e := parseDuration("max_ttl", req.MaxTTL)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	reg := oauth.Registration{
		Name: req.Name, Subject: req.Subject, JWKS: req.JWKS, JWKSURL: req.JWKSURL, Scopes: req.Scopes, CIDRs: cidrs,
		Hours: hours(req.Hours), Rate: rate(req.Rate), Purposes: req.Purposes, PurposeRequired: req.PurposeRequired, MaxTTL: ttl,
	}
	if string(req.JWKS) == "null" {
		reg.JWKS = nil
	}
	c, err := s.opts.OAuth.Register(r.Context(), ac, reg)
	if err != nil {
		s.writeError(w, r, clientError(err))
		return
	}
	writeJSON(w, http.StatusCreated, clientView(c))
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	if s.opts.OAuth == nil {
		s.writeError(w, r, errNoClients)
		return
	}
	q := r.URL.Query()
	f := store.ClientFilter{After: q.Get("after")}
	switch st := q.Get("status"); st {
	case "", "active", "revoked":
		f.Status = store.ClientStatus(st)
	default:
		s.writeError(w, r, badRequest("status", "status must be active or revoked"))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, badRequest("limit", "limit must be 1..1000"))
			return
		}
		f.Limit = n
	}
	cl, next, err := s.opts.OAuth.List(r.Context(), ac, f)
	if err != nil {
		s.writeError(w, r, clientError(err))
		return
	}
	out := client.ClientList{Clients: []client.OAuthClient{}, Next: next}
	for _, c := range cl {
		out.Clients = append(out.Clients, clientView(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	if s.opts.OAuth == nil {
		s.writeError(w, r, errNoClients)
		return
	}
	c, err := s.opts.OAuth.Get(r.Context(), ac, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, clientError(err))
		return
	}
	writeJSON(w, http.StatusOK, clientView(c))
}

func (s *Server) revokeClient(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	if s.opts.OAuth == nil {
		s.writeError(w, r, errNoClients)
		return
	}
	reason := r.URL.Query().Get("reason")
	if len(reason) > 256 {
		s.writeError(w, r, badRequest("reason", "reason is at most 256 bytes"))
		return
	}
	c, ids, err := s.opts.OAuth.Revoke(r.Context(), ac, r.PathValue("id"), reason)
	if err != nil {
		s.writeError(w, r, clientError(err))
		return
	}
	v := clientView(c)
	v.RevokedTokens = ids
	writeJSON(w, http.StatusOK, v)
}

// oauthError answers an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	h := w.Header()
	h.Set("Pragma", "no-cache")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="phigate", error="invalid_client"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc, "request_id": requestID(r)})
}

func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request) {
	if s.opts.OAuth == nil {
		oauthError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "this server keeps no OAuth clients")
		return
	}
	if e := s.throttle(r); e != nil {
		if e.retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(e.retry.Seconds()+0.999)))
		}
		oauthError(w, r, e.status, "invalid_request", e.msg)
		return
	}
	body, e := readBodyLimit(w, r, MaxTokenForm)
	if e != nil {
		oauthError(w, r, e.status, "invalid_request", e.msg)
		return
	}
	if e := checkContentType(r, "application/x-www-form-urlencoded"); e != nil {
		oauthError(w, r, e.status, "invalid_request", e.msg)
		return
	}
	req, desc := ParseTokenForm(string(body))
	if desc != "" {
		oauthError(w, r, http.StatusBadRequest, "invalid_request", desc)
		return
	}
	iss, err := s.opts.OAuth.Exchange(r.Context(), req)
	if err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			if oe.Code == "invalid_client" {
				s.failed(r, policy.Unknown)
			}
			oauthError(w, r, oe.Status(), oe.Code, oe.Description)
			return
		}
		if errors.Is(err, authority.ErrAuditUnavailable) {
			w.Header().Set("Retry-After", "1")
			oauthError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the audit log cannot be written; try again later")
			return
		}
		s.log.Error("token endpoint failed", "request_id", requestID(r), "err", err)
		oauthError(w, r, http.StatusInternalServerError, "server_error", "internal error; the request id identifies it in the server log")
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": iss.AccessToken, "token_type": "Bearer", "expires_in": iss.ExpiresIn, "scope": iss.Scope,
	})
}

// ParseTokenForm parses the token endpoint's form: each parameter at most
// once (RFC 6749 §3.2), unknown ones ignored, client_id (when sent) kept
// out of the decision (the assertion names the client). It returns a
// description of what is wrong, or "".
func ParseTokenForm(body string) (oauth.TokenRequest, string) {
	v, err := url.ParseQuery(body)
	if err != nil {
		return oauth.TokenRequest{}, "the body is not a valid form"
	}
	for _, k := range []string{"grant_type", "client_assertion_type", "client_assertion", "scope", "client_id"} {
		if len(v[k]) > 1 {
			return oauth.TokenRequest{}, k + " is given more than once"
		}
	}
	_, given := v["scope"]
	return oauth.TokenRequest{
		GrantType: v.Get("grant_type"), AssertionType: v.Get("client_assertion_type"),
		Assertion: v.Get("client_assertion"), Scope: v.Get("scope"), ScopeGiven: given,
	}, ""
}
