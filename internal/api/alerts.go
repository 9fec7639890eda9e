package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/monitor/sink"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/pkg/client"
)

// The alert endpoints, all under the admin:alerts scope:
//
//	GET  /v1/alerts           list: token, severity (low|medium|high|critical),
//	                          state (open|acked), since, until (RFC 3339;
//	                          since <= created_at < until), after (cursor),
//	                          limit (1..1000); oldest first
//	GET  /v1/alerts/{id}      one alert
//	POST /v1/alerts/{id}/ack  acknowledge ({"note": "..."} optional);
//	                          409 already_acked
//
// An acknowledgement is audited (alert.acked, Target the alert id, Actor
// the caller) before it is stored: if the audit log cannot be written the
// acknowledgement is refused (503).

// Alerts is what the alert endpoints need of the store.
type Alerts interface {
	Alert(ctx context.Context, id string) (*store.Alert, error)
	ListAlerts(ctx context.Context, f store.AlertFilter) ([]*store.Alert, string, error)
	AckAlert(ctx context.Context, id, by, note string, at time.Time) (*store.Alert, error)
}

// MaxAckNote bounds an acknowledgement's note.
const MaxAckNote = 1024

func (s *Server) alertRoutes() {
	m := s.mux
	m.HandleFunc("GET /v1/alerts", s.authed(scope.AdminAlerts, s.listAlerts))
	m.HandleFunc("GET /v1/alerts/{id}", s.authed(scope.AdminAlerts, s.getAlert))
	m.HandleFunc("POST /v1/alerts/{id}/ack", s.authed(scope.AdminAlerts, s.ackAlert))
}

var errNoAlerts = &apiError{status: http.StatusServiceUnavailable, code: "alerts_unavailable", msg: "this server keeps no alerts"}

// alertError maps an error of the store's alert methods.
func alertError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such alert"}
	case errors.Is(err, store.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "already_acked", msg: "the alert is acknowledged already"}
	}
	return err
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, _ authority.Actor) {
	if s.opts.Alerts == nil {
		s.writeError(w, r, errNoAlerts)
		return
	}
	q := r.URL.Query()
	f := store.AlertFilter{TokenID: q.Get("token"), After: q.Get("after")}
	if v := q.Get("severity"); v != "" {
		if !store.Severity(v).Valid() {
			s.writeError(w, r, badRequest("severity", "severity: want low, medium, high or critical"))
			return
		}
		f.Severity = store.Severity(v)
	}
	if v := q.Get("state"); v != "" {
		if !store.AlertState(v).Valid() {
			s.writeError(w, r, badRequest("state", "state: want open or acked"))
			return
		}
		f.State = store.AlertState(v)
	}
	for _, b := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.Year() < 1970 || t.Year() > 2200 {
			s.writeError(w, r, badRequest(b.name, "%s: want an RFC 3339 time (2026-01-02T15:04:05Z)", b.name))
			return
		}
		*b.dst = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, badRequest("limit", "limit: want 1..1000"))
			return
		}
		f.Limit = n
	}
	as, next, err := s.opts.Alerts.ListAlerts(r.Context(), f)
	if err != nil {
		s.writeError(w, r, alertError(err))
		return
	}
	out := client.AlertList{Alerts: make([]client.Alert, 0, len(as)), Next: next}
	for _, a := range as {
		out.Alerts = append(out.Alerts, sink.ViewOf(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, _ authority.Actor) {
	if s.opts.Alerts == nil {
		s.writeError(w, r, errNoAlerts)
		return
	}
	a, err := s.opts.Alerts.Alert(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, alertError(err))
		return
	}
	writeJSON(w, http.StatusOK, sink.ViewOf(a))
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request, ac authority.Actor) {
	if s.opts.Alerts == nil {
		s.writeError(w, r, errNoAlerts)
		return
	}
	var req client.AckRequest
	if e := s.decodeJSON(w, r, &req, true); e != nil {
		s.writeError(w, r, e)
		return
	}
	if len(req.Note) > MaxAckNote {
		s.writeError(w, r, badRequest("note", "note: at most %d bytes", MaxAckNote))
		return
	}
	// an operator may paste a secret into a note: it is kept, like
	// everything the audit log keeps, without one
	req.Note = audit.Redact(req.Note)
	id := r.PathValue("id")
	cur, err := s.opts.Alerts.Alert(r.Context(), id)
	if err != nil {
		s.writeError(w, r, alertError(err))
		return
	}
	if cur.State != store.AlertOpen {
		s.writeError(w, r, alertError(store.ErrConflict))
		return
	}
	if s.opts.Record == nil {
		s.writeError(w, r, errAuditUnwired)
		return
	}
	e := &audit.Entry{Action: audit.ActionAlertAcked, Outcome: audit.OutcomeSuccess, Actor: audit.ActorOf(ac.Token),
		RequestID: requestID(r), Target: id, Reason: req.Note}
	if a := clientAddr(r); a.IsValid() {
		e.Source.IP = a.String()
	}
	if err := s.opts.Record(r.Context(), e); err != nil {
		s.log.Error("cannot record an alert acknowledgement; refused", "request_id", e.RequestID, "err", err)
		s.writeError(w, r, errAuditAck)
		return
	}
	a, err := s.opts.Alerts.AckAlert(r.Context(), id, ac.Token.ID, req.Note, s.auth.Config().Now().UTC())
	if err != nil {
		s.writeError(w, r, alertError(err))
		return
	}
	writeJSON(w, http.StatusOK, sink.ViewOf(a))
}

// checkMonitorPolicy refuses metadata whose monitor.* entries are not a
// monitoring policy (internal/monitor.ParsePolicy): a misspelt key or
// value would otherwise leave the token watched by the defaults only.
func checkMonitorPolicy(meta map[string]string) *apiError {
	if _, err := monitor.ParsePolicy(meta); err != nil {
		return badRequest("metadata", "metadata: %s", strings.TrimPrefix(err.Error(), "monitor: "))
	}
	return nil
}

var (
	errAuditAck = &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", retry: time.Second,
		msg: "the acknowledgement cannot be recorded in the audit log, so it is refused; try again later"}
	errAuditUnwired = &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", msg: "this server has no audit log"}
)
