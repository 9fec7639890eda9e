package api

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

func parseQuery(s string) (url.Values, error) { return url.ParseQuery(s) }

func view(rec *token.Record) client.Token {
	t := client.Token{
		ID: rec.ID, Subject: rec.Subject, Kind: string(rec.Kind), Scopes: rec.Scopes, Status: string(rec.Status),
		StatusReason: rec.StatusReason, CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy, ParentID: rec.ParentID,
		ExpiresAt: rec.ExpiresAt, NotAfter: rec.NotAfter, RemainingUses: rec.RemainingUses, Purposes: rec.Purposes,
		PurposeRequired: rec.PurposeRequired, PatientID: rec.PatientID, BreakGlass: rec.BreakGlass,
		SubjectPrefix: rec.SubjectPrefix, Metadata: rec.Metadata, UpdatedAt: rec.UpdatedAt, Revision: rec.Revision,
	}
	if rec.MaxLifetime > 0 {
		t.MaxLifetime = rec.MaxLifetime.String()
	}
	if rec.IdleTimeout > 0 {
		t.IdleTimeout = rec.IdleTimeout.String()
	}
	if p := rec.Period(); p > 0 {
		t.TTL = p.String()
	}
	if rec.Grace > 0 {
		t.Grace = rec.Grace.String()
	}
	t.Rotations, t.RotatedFrom = rec.Rotations, rec.RotatedFrom
	if !rec.RotatedAt.IsZero() {
		ra := rec.RotatedAt
		t.RotatedAt = &ra
	}
	if !rec.LastUsedAt.IsZero() {
		lu := rec.LastUsedAt
		t.LastUsedAt = &lu
	}
	for _, p := range rec.CIDRs {
		t.CIDRs = append(t.CIDRs, p.String())
	}
	if rec.Hours != nil {
		t.Hours = &client.Hours{Start: rec.Hours.Start, End: rec.Hours.End, TZ: rec.Hours.TZ, Days: rec.Hours.Days}
	}
	if rec.Rate != nil {
		t.Rate = &client.Rate{PerSecond: rec.Rate.PerSecond, Burst: rec.Rate.Burst}
	}
	return t
}

func parseDuration(field, s string) (time.Duration, *apiError) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badRequest(field, "%s: %q is not a duration such as 15m or 1h30m", field, truncate(s, 32))
	}
	return d, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func parseCIDRs(in []string) ([]netip.Prefix, *apiError) {
	var out []netip.Prefix
	for i, s := range in {
		field := fmt.Sprintf("cidrs[%d]", i)
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, err2 := netip.ParseAddr(strings.TrimSpace(s))
			if err2 != nil {
				return nil, badRequest(field, "%s: %q is not a CIDR such as 10.0.0.0/8 or an IP address", field, truncate(s, 48))
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out, nil
}

func hours(h *client.Hours) *token.Hours {
	if h == nil {
		return nil
	}
	return &token.Hours{Start: h.Start, End: h.End, TZ: h.TZ, Days: h.Days}
}

func rate(r *client.Rate) *token.Rate {
	if r == nil {
		return nil
	}
	return &token.Rate{PerSecond: r.PerSecond, Burst: r.Burst}
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	var req client.CreateTokenRequest
	if e := s.decodeJSON(w, r, &req, false); e != nil {
		s.writeError(w, r, e)
		return
	}
	if e := checkMonitorPolicy(req.Metadata); e != nil {
		s.writeError(w, r, e)
		return
	}
	spec := authority.Spec{
		Subject: req.Subject, Kind: token.Kind(req.Kind), Scopes: req.Scopes, MaxUses: req.MaxUses,
		Hours: hours(req.Hours), Rate: rate(req.Rate), Purposes: req.Purposes, PurposeRequired: req.PurposeRequired,
		PatientID: req.PatientID, BreakGlass: req.BreakGlass, SubjectPrefix: req.SubjectPrefix, Metadata: req.Metadata,
	}
	var e *apiError
	if spec.TTL, e = parseDuration("ttl", req.TTL); e != nil {
		s.writeError(w, r, e)
		return
	}
	if spec.MaxLifetime, e = parseDuration("max_lifetime", req.MaxLifetime); e != nil {
		s.writeError(w, r, e)
		return
	}
	if spec.IdleTimeout, e = parseDuration("idle_timeout", req.IdleTimeout); e != nil {
		s.writeError(w, r, e)
		return
	}
	if spec.Grace, e = parseDuration("grace", req.Grace); e != nil {
		s.writeError(w, r, e)
		return
	}
	if spec.CIDRs, e = parseCIDRs(req.CIDRs); e != nil {
		s.writeError(w, r, e)
		return
	}
	secret, rec, err := s.auth.Create(r.Context(), ac, spec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token created", "request_id", requestID(r), "token_id", rec.ID, "by", ac.Token.ID, "subject", rec.Subject, "scopes", rec.Scopes)
	w.Header().Set("Location", "/v1/tokens/"+rec.ID)
	writeJSON(w, http.StatusCreated, client.IssuedToken{Token: view(rec), Secret: secret})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	q := r.URL.Query()
	f := store.TokenFilter{Subject: q.Get("subject"), ParentID: q.Get("parent"), After: q.Get("after")}
	if st := q.Get("status"); st != "" {
		if !token.Status(st).Valid() {
			s.writeError(w, r, badRequest("status", "status: want active, suspended or revoked"))
			return
		}
		f.Status = token.Status(st)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, badRequest("limit", "limit: want 1..1000"))
			return
		}
		f.Limit = n
	}
	recs, next, err := s.auth.List(r.Context(), ac, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := client.TokenList{Tokens: make([]client.Token, 0, len(recs)), Next: next}
	for _, rec := range recs {
		out.Tokens = append(out.Tokens, view(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	rec, err := s.auth.Get(r.Context(), ac, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view(rec))
}

func (s *Server) self(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	rec, err := s.auth.Get(r.Context(), ac, ac.Token.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view(rec))
}

var clearable = []string{"idle_timeout", "max_uses", "cidrs", "hours", "rate", "purposes", "patient_id", "metadata"}

func (s *Server) updateToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	var req client.UpdateTokenRequest
	if e := s.decodeJSON(w, r, &req, false); e != nil {
		s.writeError(w, r, e)
		return
	}
	for i, c := range req.Clear {
		if !slices.Contains(clearable, c) {
			s.writeError(w, r, badRequest(fmt.Sprintf("clear[%d]", i), "clear: %q is not one of %s", truncate(c, 32), strings.Join(clearable, ", ")))
			return
		}
	}
	if req.Metadata != nil {
		if e := checkMonitorPolicy(*req.Metadata); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	// parse everything before touching the record
	var idle time.Duration
	var e *apiError
	if req.IdleTimeout != nil {
		if idle, e = parseDuration("idle_timeout", *req.IdleTimeout); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	var ttl time.Duration
	if req.TTL != nil {
		if ttl, e = parseDuration("ttl", *req.TTL); e != nil {
			s.writeError(w, r, e)
			return
		}
		if ttl == 0 {
			s.writeError(w, r, badRequest("ttl", "ttl: must be positive"))
			return
		}
	}
	var grace time.Duration
	if req.Grace != nil {
		if grace, e = parseDuration("grace", *req.Grace); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	var cidrs []netip.Prefix
	if req.CIDRs != nil {
		if cidrs, e = parseCIDRs(*req.CIDRs); e != nil {
			s.writeError(w, r, e)
			return
		}
	}
	now := s.auth.Config().Now().UTC()
	before, after, err := s.auth.Update(r.Context(), ac, r.PathValue("id"), req.Revision, func(rec *token.Record) error {
		for _, c := range req.Clear {
			switch c {
			case "idle_timeout":
				rec.IdleTimeout = 0
			case "max_uses":
				rec.RemainingUses = nil
			case "cidrs":
				rec.CIDRs = nil
			case "hours":
				rec.Hours = nil
			case "rate":
				rec.Rate = nil
			case "purposes":
				rec.Purposes = nil
			case "patient_id":
				rec.PatientID = ""
			case "metadata":
				rec.Metadata = nil
			}
		}
		if req.Scopes != nil {
			rec.Scopes = *req.Scopes
		}
		if req.ExpiresAt != nil {
			rec.ExpiresAt = req.ExpiresAt.UTC()
		}
		if req.TTL != nil {
			rec.ExpiresAt, rec.TTL = now.Add(ttl), ttl // the rotation period too
		}
		if req.Grace != nil {
			rec.Grace = grace
		}
		if req.IdleTimeout != nil {
			rec.IdleTimeout = idle
		}
		if req.MaxUses != nil {
			v := *req.MaxUses
			rec.RemainingUses = &v
		}
		if req.CIDRs != nil {
			rec.CIDRs = cidrs
		}
		if req.Hours != nil {
			rec.Hours = hours(req.Hours)
		}
		if req.Rate != nil {
			rec.Rate = rate(req.Rate)
		}
		if req.Purposes != nil {
			rec.Purposes = *req.Purposes
		}
		if req.PurposeRequired != nil {
			rec.PurposeRequired = *req.PurposeRequired
		}
		if req.PatientID != nil {
			rec.PatientID = *req.PatientID
		}
		if req.BreakGlass != nil {
			rec.BreakGlass = *req.BreakGlass
		}
		if req.SubjectPrefix != nil {
			rec.SubjectPrefix = *req.SubjectPrefix
		}
		if req.Metadata != nil {
			rec.Metadata = *req.Metadata
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token updated", "request_id", requestID(r), "token_id", after.ID, "by", ac.Token.ID,
		"scopes_before", before.Scopes, "scopes_after", after.Scopes, "revision", after.Revision)
	writeJSON(w, http.StatusOK, view(after))
}

func (s *Server) optionalStatusBody(w http.ResponseWriter, r *http.Request) (string, *apiError) {
	var req client.StatusRequest
	if e := s.decodeJSON(w, r, &req, true); e != nil {
		return "", e
	}
	if len(req.Reason) > 256 {
		return "", badRequest("reason", "reason: at most 256 characters")
	}
	return req.Reason, nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	reason, e := s.optionalStatusBody(w, r)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	cascade := false
	if c := r.URL.Query().Get("cascade"); c != "" {
		var err error
		if cascade, err = strconv.ParseBool(c); err != nil {
			s.writeError(w, r, badRequest("cascade", "cascade: want true or false"))
			return
		}
	}
	ids, err := s.auth.Revoke(r.Context(), ac, r.PathValue("id"), cascade, reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token revoked", "request_id", requestID(r), "token_id", r.PathValue("id"), "by", ac.Token.ID, "cascade", cascade, "revoked", ids)
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusOK, client.RevokeResult{Revoked: ids})
}

func (s *Server) suspendToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	s.setStatus(w, r, ac, token.StatusSuspended)
}

func (s *Server) reinstateToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	s.setStatus(w, r, ac, token.StatusActive)
}

func (s *Server) setStatus(w http.ResponseWriter, r *http.Request, ac authority.Actor, st token.Status) {
	reason, e := s.optionalStatusBody(w, r)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	rec, err := s.auth.SetStatus(r.Context(), ac, r.PathValue("id"), st, reason)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("token status changed", "request_id", requestID(r), "token_id", rec.ID, "by", ac.Token.ID, "status", rec.Status)
	writeJSON(w, http.StatusOK, view(rec))
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	s.rotate(w, r, ac, r.PathValue("id"))
}

func (s *Server) rotateSelf(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	s.rotate(w, r, ac, ac.Token.ID)
}

// headerIdempotencyKey makes a rotation safe to retry (see rotate).
const headerIdempotencyKey = "Idempotency-Key"

// rotate answers both rotate endpoints. With an Idempotency-Key header
// (1 to 128 printable ASCII characters, once) the rotation is idempotent:
// a retry by the same token with the same key and body, within the grace
// period, gets the same answer (200, the same body); the same key with
// another body is 422 idempotency_key_reused. A superseded secret asking
// for another rotation is 409 already_rotated.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request, ac authority.Actor, id string) {
	keys := r.Header.Values(headerIdempotencyKey)
	var key string
	switch {
	case len(keys) > 1:
		s.writeError(w, r, badRequest(headerIdempotencyKey, "%s: at most one", headerIdempotencyKey))
		return
	case len(keys) == 1:
		if key = keys[0]; !authority.ValidIdempotencyKey(key) {
			s.writeError(w, r, badRequest(headerIdempotencyKey, "%s: want 1 to %d printable ASCII characters", headerIdempotencyKey, authority.MaxIdempotencyKey))
			return
		}
	}
	var req client.RotateRequest
	body, e := s.decodeJSONBody(w, r, &req, true)
	if e != nil {
		s.writeError(w, r, e)
		return
	}
	ar := authority.RotateRequest{IdempotencyKey: key}
	if req.Grace != "" {
		g, e := parseDuration("grace", req.Grace)
		if e != nil {
			s.writeError(w, r, e)
			return
		}
		ar.Grace = &g
	}
	if ar.TTL, e = parseDuration("ttl", req.TTL); e != nil {
		s.writeError(w, r, e)
		return
	}
	if key != "" {
		// what was asked: the endpoint and the body, byte for byte
		h := sha256.New()
		h.Write([]byte(r.Pattern))
		h.Write([]byte{0})
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write(body)
		h.Sum(ar.Request[:0])
	}
	rot, err := s.auth.RotateWith(r.Context(), ac, id, ar)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rot.Replayed {
		s.log.Info("token rotation retried", "request_id", requestID(r), "token_id", id, "by", ac.Token.ID, "rotation", rot.Token.Rotations)
	} else {
		s.log.Info("token rotated", "request_id", requestID(r), "token_id", id, "by", ac.Token.ID,
			"rotation", rot.Token.Rotations, "rotated_from", rot.Token.RotatedFrom, "previous_not_after", rot.PreviousNotAfter)
	}
	prev := rot.PreviousNotAfter
	writeJSON(w, http.StatusOK, client.IssuedToken{Token: view(rot.Token), Secret: rot.Secret, PreviousNotAfter: &prev})
}

// introspect answers RFC 7662. The caller must hold "introspect" (or
// admin:tokens); an inactive token is {"active":false} and nothing more.
//
// The members of an active answer: scope, token_type "Bearer", sub, exp,
// iat and nbf (the token's creation), jti (its id), iss, client_id (the
// OAuth client that issued it, else the token that created it, else the
// token itself), aud (the upstreams its scopes reach, when the server
// knows them), patient (the token's patient) and fhirUser (its metadata
// key "fhirUser" when that is a relative reference to a Practitioner,
// PractitionerRole, Patient, RelatedPerson or Person, as SMART defines
// the claim), phigate_kind.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request, ac authority.Actor, form url.Values) {
	secret := first(form["token"])
	if secret == "" {
		s.writeError(w, r, badRequest("token", "token: required"))
		return
	}
	rec, set, active, err := s.auth.Introspect(r.Context(), secret)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !active {
		writeJSON(w, http.StatusOK, client.Introspection{Active: false})
		return
	}
	out := client.Introspection{
		Active: true, Scope: set.String(), TokenType: "Bearer", Sub: rec.Subject, Exp: rec.ExpiresAt.Unix(),
		Iat: rec.CreatedAt.Unix(), Nbf: rec.CreatedAt.Unix(), Jti: rec.ID, Iss: s.opts.Issuer, Kind: string(rec.Kind),
		PatientID: rec.PatientID, ClientID: introspectionClientID(rec), FHIRUser: fhirUser(rec.Metadata),
	}
	if s.opts.Audiences != nil {
		out.Aud = s.opts.Audiences(set)
	}
	writeJSON(w, http.StatusOK, out)
}

// introspectionClientID is the client_id of an introspection answer.
func introspectionClientID(rec *token.Record) string {
	switch {
	case rec.ClientID != "":
		return rec.ClientID
	case rec.CreatedBy != "":
		return rec.CreatedBy
	}
	return rec.ID
}

// FHIRUserKey is the metadata key whose value introspection answers as
// SMART's fhirUser.
const FHIRUserKey = "fhirUser"

// fhirUser returns meta's fhirUser when it is a relative FHIR reference
// Type/id to a resource type SMART allows for the claim, else "".
func fhirUser(meta map[string]string) string {
	v := meta[FHIRUserKey]
	if ValidFHIRUser(v) {
		return v
	}
	return ""
}

// ValidFHIRUser reports whether v is a relative reference "Type/id" with
// Type one of Practitioner, PractitionerRole, Patient, RelatedPerson,
// Person and id a FHIR id ([A-Za-z0-9.-]{1,64}).
func ValidFHIRUser(v string) bool {
	typ, id, ok := strings.Cut(v, "/")
	if !ok {
		return false
	}
	switch typ {
	case "Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person":
	default:
		return false
	}
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// revoke answers RFC 7009: the presented token is revoked if it is valid;
// the answer is 200 either way.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, ac authority.Actor, form url.Values) {
	secret := first(form["token"])
	if secret == "" {
		s.writeError(w, r, badRequest("token", "token: required"))
		return
	}
	rec, err := s.auth.RevokeSecret(r.Context(), ac, secret, "revoked through RFC 7009 by "+ac.Token.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rec != nil {
		s.log.Info("token revoked (RFC 7009)", "request_id", requestID(r), "token_id", rec.ID, "by", ac.Token.ID)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
