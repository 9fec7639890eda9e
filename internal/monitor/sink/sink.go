// Package sink delivers the monitor's alerts. It guarantees:
//
//   - Every alert is recorded before it is delivered anywhere: Recorder
//     appends an alert.raised audit entry (Target: the alert id, Reason:
//     the detector, Source: the address when there is one, After: the
//     alert as GET /v1/alerts/{id} shows it; no Actor, the server raised
//     it; plus an
//     ip.blocked entry when the action is an IP block) and then stores the
//     alert (store.CreateAlert). An alert that cannot be audited is not
//     stored (Raise returns the error), but Fanout still delivers it,
//     with "recorded": false in its evidence: an audit log that cannot be
//     written (a full disk, say) must not silence the alarms.
//   - Delivery never blocks the monitor: Webhook queues the alert (a
//     bounded queue; when it is full the alert is dropped, counted and
//     logged) and one goroutine posts it, retrying with exponential
//     backoff. Log writes one line per alert to the server log.
//   - Nothing a sink sends or logs holds a token secret: an alert carries
//     ids, counts and prefixes only, and the webhook secret never leaves
//     the signature.
//
// Fanout is the monitor.Sink the server builds: the Recorder first (it
// gives the alert its id), then every delivery sink. Alerts reach syslog
// through the audit log's own syslog forwarder (audit.syslog), which sends
// every alert.raised entry with severity 1 (alert): one syslog client,
// and an alert is in the SIEM only once it is in the tamper-evident log.
//
// # Webhook wire format
//
// A POST with Content-Type application/json, the body a Payload (one JSON
// object: the alert as GET /v1/alerts/{id} shows it, plus "text", a
// one-line summary that Slack-compatible incoming webhooks display), and
// two headers:
//
//	X-Phigate-Timestamp: <unix seconds>
//	X-Phigate-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>
//
// A receiver recomputes the HMAC over the timestamp header, a dot and the
// raw body, compares it in constant time, and rejects a timestamp more
// than 5 minutes from its clock (a replayed delivery). Verify does exactly
// that. A delivery is retried on a network error, a 429 or a 5xx; any
// other answer ends it (2xx: delivered; 4xx: refused, logged).
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// IDPrefix starts every alert id.
const IDPrefix = "alr_"

// NewID returns a new alert id for an alert raised at t: IDPrefix and the
// 22 characters of a token id made at t (base62; the first 8 are the time
// in milliseconds, so ids sort by time; the rest random).
func NewID(r io.Reader, t time.Time) (string, error) {
	id, err := token.NewIDAt(r, t)
	if err != nil {
		return "", fmt.Errorf("sink: alert id: %w", err)
	}
	return IDPrefix + strings.TrimPrefix(id, token.IDPrefix), nil
}

// Auditor appends audit entries (audit.Log).
type Auditor interface {
	Append(ctx context.Context, e *audit.Entry) (uint64, error)
}

// AlertStore keeps alerts (store.Store).
type AlertStore interface {
	CreateAlert(ctx context.Context, a *store.Alert) error
}

// Recorder audits and stores alerts. Audit and Store are required; a nil
// Rand means crypto/rand.
type Recorder struct {
	Audit Auditor
	Store AlertStore
	Rand  io.Reader
}

// ErrInvalidAlert: an alert without a detector or a time.
var ErrInvalidAlert = errors.New("sink: invalid alert")

// Raise implements monitor.Sink: it sets a.ID, audits, then stores.
func (r *Recorder) Raise(ctx context.Context, a *monitor.Alert) error {
	if a == nil || a.Detector == "" || a.At.IsZero() {
		return ErrInvalidAlert
	}
	id, err := NewID(r.Rand, a.At)
	if err != nil {
		return err
	}
	a.ID = id
	rec, err := StoreAlert(a)
	if err != nil {
		return err
	}
	// no Actor: the server itself raised it; the token it is about is in
	// the snapshot (After)
	e := &audit.Entry{
		Action: audit.ActionAlertRaised, Outcome: audit.OutcomeSuccess,
		Source: audit.Source{IP: a.Source},
		Target: id, Reason: a.Detector,
		After: audit.Snapshot(ViewOf(rec)),
	}
	if _, err := r.Audit.Append(ctx, e); err != nil {
		return fmt.Errorf("sink: audit alert %s: %w", id, err)
	}
	if a.Action == monitor.IPBlocked {
		b := &audit.Entry{Action: audit.ActionIPBlocked, Outcome: audit.OutcomeSuccess,
			Source: audit.Source{IP: a.Source}, Target: id, Reason: a.Detector}
		if _, err := r.Audit.Append(ctx, b); err != nil {
			return fmt.Errorf("sink: audit ip block of alert %s: %w", id, err)
		}
	}
	if err := r.Store.CreateAlert(ctx, rec); err != nil {
		return fmt.Errorf("sink: store alert %s: %w", id, err)
	}
	return nil
}

// StoreAlert converts a monitor alert into its stored form.
func StoreAlert(a *monitor.Alert) (*store.Alert, error) {
	var ev []byte
	if len(a.Evidence) > 0 {
		b, err := json.Marshal(a.Evidence)
		if err != nil {
			return nil, fmt.Errorf("%w: evidence: %v", ErrInvalidAlert, err)
		}
		ev = b
	}
	sev := store.Severity(a.Severity.String())
	if !sev.Valid() {
		return nil, fmt.Errorf("%w: severity %d", ErrInvalidAlert, a.Severity)
	}
	return &store.Alert{
		ID: a.ID, Detector: a.Detector, Severity: sev, TokenID: a.TokenID, Subject: a.Subject,
		Source: a.Source, Summary: a.Summary, Evidence: ev, AuditSeqs: append([]uint64(nil), a.AuditSeqs...),
		Action: a.Action.String(), CreatedAt: a.At.UTC(), State: store.AlertOpen,
	}, nil
}

// ViewOf returns the wire view of a stored alert (GET /v1/alerts/{id},
// the CLI, the webhook).
func ViewOf(a *store.Alert) client.Alert {
	v := client.Alert{ID: a.ID, Detector: a.Detector, Severity: string(a.Severity), TokenID: a.TokenID,
		Subject: a.Subject, Source: a.Source, Summary: a.Summary, AuditSeqs: a.AuditSeqs,
		Action: a.Action, CreatedAt: a.CreatedAt.UTC(), State: string(a.State), AckedBy: a.AckedBy, AckNote: a.AckNote}
	if len(a.Evidence) > 0 {
		v.Evidence = json.RawMessage(a.Evidence)
	}
	if v.AuditSeqs == nil {
		v.AuditSeqs = []uint64{}
	}
	if !a.AckedAt.IsZero() {
		t := a.AckedAt.UTC()
		v.AckedAt = &t
	}
	return v
}

// Payload is the webhook body: the alert's View and Text.
type Payload struct {
	client.Alert
	// Text is one line for people; Slack-compatible receivers show it.
	Text string `json:"text"`
}

// Text is the one-line form of an alert: "[phigate] HIGH rate_spike: summary (token tok_…, subject …, action suspended, alert alr_…)".
func Text(v *client.Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[phigate] %s %s: %s (", strings.ToUpper(v.Severity), v.Detector, v.Summary)
	if v.TokenID != "" {
		fmt.Fprintf(&b, "token %s, ", v.TokenID)
	}
	if v.Subject != "" {
		fmt.Fprintf(&b, "subject %s, ", v.Subject)
	}
	if v.Source != "" {
		fmt.Fprintf(&b, "source %s, ", v.Source)
	}
	fmt.Fprintf(&b, "action %s, alert %s)", v.Action, v.ID)
	return b.String()
}

// Fanout records an alert, then hands it to every delivery sink. It is
// the monitor.Sink the server builds.
type Fanout struct {
	Record  monitor.Sink
	Deliver []monitor.Sink
	Logger  *slog.Logger
}

// Raise implements monitor.Sink. A delivery sink's error is logged; the
// Recorder's is returned, after the alert was delivered all the same.
func (f *Fanout) Raise(ctx context.Context, a *monitor.Alert) error {
	rerr := f.Record.Raise(ctx, a)
	if rerr != nil {
		if a.Evidence == nil {
			a.Evidence = map[string]any{}
		}
		a.Evidence["recorded"] = false
	}
	for _, d := range f.Deliver {
		if err := d.Raise(ctx, a); err != nil && f.Logger != nil {
			f.Logger.Warn("alert delivery failed", "alert", a.ID, "err", err)
		}
	}
	return rerr
}

// Log writes every alert to the server log at level Warn (Error for
// high and critical).
type Log struct{ Logger *slog.Logger }

// Raise implements monitor.Sink.
func (l Log) Raise(ctx context.Context, a *monitor.Alert) error {
	level := slog.LevelWarn
	if a.Severity >= monitor.High {
		level = slog.LevelError
	}
	l.Logger.Log(ctx, level, "alert", "alert", a.ID, "detector", a.Detector, "severity", a.Severity.String(),
		"token", a.TokenID, "subject", a.Subject, "source", a.Source, "action", a.Action.String(),
		"summary", a.Summary, "audit_seqs", a.AuditSeqs)
	return nil
}
