package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
)

type alertsView struct {
	Enabled  bool
	State    string
	Alerts   []*store.Alert
	Next     template.URL
	CanToken bool
	CanAudit bool
}

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request, cl *call) {
	c.showAlerts(w, r, cl, "")
}

func (c *Console) showAlerts(w http.ResponseWriter, r *http.Request, cl *call, flash string) {
	v := alertsView{Enabled: c.opts.Alerts != nil, CanToken: cl.v.Can(scope.AdminTokens), CanAudit: cl.v.Can(scope.AdminAudit)}
	if v.Enabled {
		q := r.URL.Query()
		f := store.AlertFilter{Limit: 100}
		if r.Method == http.MethodGet {
			for k, vals := range q {
				if (k != "state" && k != "after") || len(vals) > 1 || len(vals[0]) > maxField {
					c.fail(w, r, cl.v, http.StatusBadRequest, (&FormError{fieldName(k), "unknown, repeated or too long"}).Error())
					return
				}
			}
			v.State, f.After = q.Get("state"), q.Get("after")
			if v.State != "" && !store.AlertState(v.State).Valid() {
				c.fail(w, r, cl.v, http.StatusBadRequest, "state: want open or acked")
				return
			}
			f.State = store.AlertState(v.State)
		}
		as, next, err := c.opts.Alerts.ListAlerts(r.Context(), f)
		if err != nil {
			c.failErr(w, r, cl.v, err)
			return
		}
		v.Alerts = as
		if next != "" {
			v.Next = template.URL(url.Values{"state": {v.State}, "after": {next}}.Encode())
		}
	}
	c.render(w, r, "alerts", page{Title: "Alerts", Nav: "alerts", V: cl.v, Flash: flash, Data: v})
}

// ackAlert acknowledges an alert as the admin API does: recorded in the
// audit log (alert.acked, as the session's token) before it is stored.
func (c *Console) ackAlert(w http.ResponseWriter, r *http.Request, cl *call) {
	if c.opts.Alerts == nil {
		c.fail(w, r, cl.v, http.StatusServiceUnavailable, "The monitor is not enabled on this server: there are no alerts.")
		return
	}
	if c.opts.Record == nil {
		c.fail(w, r, cl.v, http.StatusServiceUnavailable, "This server has no audit log, so acknowledgements are refused.")
		return
	}
	id := r.PathValue("id")
	note := audit.Redact(strings.TrimSpace(r.PostForm.Get("note")))
	if len(note) > 1024 {
		c.fail(w, r, cl.v, http.StatusBadRequest, "note: at most 1024 bytes")
		return
	}
	cur, err := c.opts.Alerts.Alert(r.Context(), id)
	if err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	if cur.State != store.AlertOpen {
		c.fail(w, r, cl.v, http.StatusConflict, "The alert is acknowledged already.")
		return
	}
	e := &audit.Entry{Action: audit.ActionAlertAcked, Outcome: audit.OutcomeSuccess, Actor: audit.ActorOf(cl.ac.Token),
		RequestID: requestID(r), Target: id, Reason: note}
	if a := clientAddr(r); a.IsValid() {
		e.Source.IP = a.String()
	}
	if err := c.opts.Record(r.Context(), e); err != nil {
		c.failErr(w, r, cl.v, audit.ErrUnavailable)
		return
	}
	if _, err := c.opts.Alerts.AckAlert(r.Context(), id, cl.ac.Token.ID, note, c.opts.Now().UTC()); err != nil {
		c.failErr(w, r, cl.v, err)
		return
	}
	c.showAlerts(w, r, cl, "Alert "+id+" acknowledged.")
}
