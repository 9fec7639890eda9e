package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/obs"
)

// observed is the ResponseWriter of an observed request: it keeps the
// status and the error code answered.
type observed struct {
	http.ResponseWriter
	start  time.Time
	status int
	code   string
}

func (o *observed) WriteHeader(code int) {
	if o.status == 0 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observed) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	return o.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (o *observed) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// observe reports the answer of r to the Observer: the route class from
// the path's first segments (a closed set: never the path itself), the
// outcome from the status, the reason from the error code answered.
func (s *Server) observe(o *observed, r *http.Request) {
	st := o.status
	if st == 0 {
		st = http.StatusOK
	}
	ob := obs.Request{Listener: obs.ListenerAdmin, Class: adminClass(r.URL.Path), Total: s.auth.Config().Now().Sub(o.start)}
	switch {
	case st >= 500:
		ob.Outcome, ob.Reason = obs.OutcomeError, o.code
	case st >= 400:
		ob.Outcome, ob.Reason = obs.OutcomeDenied, o.code
	default:
		ob.Outcome = obs.OutcomeGranted
	}
	if ob.Reason == "" && ob.Outcome != obs.OutcomeGranted {
		ob.Reason = "denied"
	}
	s.opts.Observer.ObserveRequest(ob)
}

// adminClass is the route class of an admin API path.
func adminClass(p string) string {
	under := func(prefix string) bool {
		return p == prefix || strings.HasPrefix(p, prefix+"/")
	}
	switch {
	case under("/v1/tokens"):
		return obs.ClassTokenAdmin
	case p == "/v1/introspect" || p == "/v1/revoke":
		return obs.ClassIntrospect
	case under("/v1/audit"):
		return obs.ClassAudit
	case under("/v1/secrets") || under("/v1/keys"):
		return obs.ClassKeys
	case under("/v1/alerts"):
		return obs.ClassAlerts
	case under("/v1/oauth") || under("/v1/clients") || strings.HasPrefix(p, "/.well-known/"):
		return obs.ClassOAuth
	case under("/console"):
		return obs.ClassConsole
	case p == "/healthz" || p == "/readyz" || p == "/metrics" || p == "/v1/openapi.json":
		return obs.ClassMeta
	}
	return obs.ClassUnrouted
}

// ReasonCodes lists the error codes the admin API answers besides those
// of policy.Reason (a fresh slice): the closed set of the metrics' reason
// label.
func ReasonCodes() []string {
	return []string{"missing_token", "invalid_request", "not_found", "method_not_allowed", "conflict", "already_rotated",
		"idempotency_key_reused", "idempotency_unavailable", "lifetime_ended", "issuer_revoked", "invalid_state",
		"audit_unavailable", "attenuation", "internal", "storage_low", "not_ready", "too_many_failures",
		"payload_too_large", "unsupported_media_type", "pepper_in_use", "pepper_current", "vault_unavailable", "already_acked",
		"alerts_unavailable", "audit_busy", "denied", "invalid_client", "clients_unavailable", "already_revoked", "forbidden"}
}
