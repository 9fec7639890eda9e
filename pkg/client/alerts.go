package client

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Alert is what phigate's monitor raised (GET /v1/alerts/{id}): which
// detector, about which token or source, the evidence it compared (counts,
// prefixes, the baseline) and the audit sequence numbers of the requests
// that tripped it. It never carries a token secret.
type Alert struct {
	ID       string `json:"id"`
	Detector string `json:"detector"`
	// Severity is "low", "medium", "high" or "critical".
	Severity string `json:"severity"`
	TokenID  string `json:"token_id,omitempty"`
	Subject  string `json:"subject,omitempty"`
	Source   string `json:"source,omitempty"`
	Summary  string `json:"summary"`
	// Evidence is a JSON object.
	Evidence  json.RawMessage `json:"evidence,omitempty"`
	AuditSeqs []uint64        `json:"audit_seqs"`
	// Action is what was done: "none", "blocked" (the request),
	// "suspended" (the token) or "ip_blocked" (the source, for a while).
	Action    string    `json:"action"`
	CreatedAt time.Time `json:"created_at"`
	// State is "open" or "acked".
	State   string     `json:"state"`
	AckedAt *time.Time `json:"acked_at,omitempty"`
	AckedBy string     `json:"acked_by,omitempty"`
	AckNote string     `json:"ack_note,omitempty"`
}

// AlertList is a page of GET /v1/alerts; Next is the cursor of the next
// page ("" on the last).
type AlertList struct {
	Alerts []Alert `json:"alerts"`
	Next   string  `json:"next,omitempty"`
}

// AlertListOptions filter GET /v1/alerts. Zero fields are not sent.
type AlertListOptions struct {
	Token    string    // alerts about this token id
	Severity string    // low, medium, high, critical
	State    string    // open, acked
	Since    time.Time // raised at or after
	Until    time.Time // raised before
	After    string    // cursor: AlertList.Next of the previous page
	Limit    int       // page size, 1..1000
}

func (o AlertListOptions) query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("token", o.Token)
	set("severity", o.Severity)
	set("state", o.State)
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	set("after", o.After)
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

// AckRequest is the body of POST /v1/alerts/{id}/ack.
type AckRequest struct {
	Note string `json:"note,omitempty"`
}

var errEmptyAlertID = errors.New("phigate: empty alert id")

func alertPath(id, suffix string) (string, error) {
	if id == "" {
		return "", errEmptyAlertID
	}
	return "/v1/alerts/" + url.PathEscape(id) + suffix, nil
}

// ListAlerts returns one page of alerts, oldest first (GET /v1/alerts).
func (c *Client) ListAlerts(ctx context.Context, opts AlertListOptions) (*AlertList, error) {
	var out AlertList
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/alerts", query: opts.query(), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllAlerts iterates over every alert matching opts, following the cursor.
// The iteration stops at the first error, which it yields.
func (c *Client) AllAlerts(ctx context.Context, opts AlertListOptions) iter.Seq2[Alert, error] {
	return pages("list", func() ([]Alert, string, error) {
		page, err := c.ListAlerts(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		opts.After = page.Next
		return page.Alerts, page.Next, nil
	})
}

// Alert returns one alert (GET /v1/alerts/{id}).
func (c *Client) Alert(ctx context.Context, id string) (*Alert, error) {
	p, err := alertPath(id, "")
	if err != nil {
		return nil, err
	}
	var out Alert
	if err := c.do(ctx, request{method: http.MethodGet, path: p, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AckAlert acknowledges an open alert (POST /v1/alerts/{id}/ack). An
// alert acknowledged already is an *APIError with Status 409.
func (c *Client) AckAlert(ctx context.Context, id, note string) (*Alert, error) {
	p, err := alertPath(id, "/ack")
	if err != nil {
		return nil, err
	}
	var out Alert
	if err := c.do(ctx, request{method: http.MethodPost, path: p, json: AckRequest{Note: note}, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
