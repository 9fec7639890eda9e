package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

func TestAlertCallsSendTheContractRequest(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx := context.Background()
	since := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	f.answer(200, `{"alerts":[{"id":"alr_1","detector":"rate_spike","audit_seqs":[4]}],"next":"alr_1"}`, nil)
	l, err := c.ListAlerts(ctx, client.AlertListOptions{Token: "tok_a", Severity: "high", State: "open", Since: since, Until: since.Add(time.Hour), After: "alr_0", Limit: 5})
	if err != nil || len(l.Alerts) != 1 || l.Next != "alr_1" || l.Alerts[0].AuditSeqs[0] != 4 {
		t.Fatalf("ListAlerts = %+v, %v", l, err)
	}
	r := f.last(t)
	if r.Method != "GET" || r.Path != "/v1/alerts" ||
		r.RawQuery != "after=alr_0&limit=5&severity=high&since=2026-01-02T02%3A04%3A05.000000006Z&state=open&token=tok_a&until=2026-01-02T03%3A04%3A05.000000006Z" {
		t.Errorf("request %s %s?%s", r.Method, r.Path, r.RawQuery)
	}
	f.answer(200, `{"id":"alr_x/y"}`, nil)
	if _, err := c.Alert(ctx, "alr_x/y"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(t); r.Path != "/v1/alerts/alr_x/y" || r.Method != "GET" {
		// the escaped id is one segment on the wire (RawPath), decoded in Path
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	f.answer(200, `{"id":"alr_1","state":"acked"}`, nil)
	a, err := c.AckAlert(ctx, "alr_1", "seen")
	if err != nil || a.State != "acked" {
		t.Fatalf("AckAlert = %+v, %v", a, err)
	}
	r = f.last(t)
	if r.Method != "POST" || r.Path != "/v1/alerts/alr_1/ack" {
		t.Errorf("request %s %s", r.Method, r.Path)
	}
	jsonEqual(t, r.Body, `{"note":"seen"}`)
	f.answer(409, `{"error":{"code":"already_acked","message":"the alert is acknowledged already"}}`, nil)
	var ae *client.APIError
	if _, err := c.AckAlert(ctx, "alr_1", ""); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "already_acked" {
		t.Errorf("second ack: %v", err)
	}
	n := f.count()
	if _, err := c.Alert(ctx, ""); err == nil {
		t.Error("Alert(\"\") sent")
	}
	if _, err := c.AckAlert(ctx, "", ""); err == nil {
		t.Error("AckAlert(\"\") sent")
	}
	if f.count() != n {
		t.Error("an empty alert id reached the server")
	}
}

func TestAllAlertsFollowsCursorAndStopsOnARepeat(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("after") {
		case "":
			fmt.Fprint(w, `{"alerts":[{"id":"alr_1"},{"id":"alr_2"}],"next":"alr_2"}`)
		case "alr_2":
			fmt.Fprint(w, `{"alerts":[{"id":"alr_3"}],"next":"alr_2"}`)
		}
	})
	var ids []string
	var last error
	for a, err := range c.AllAlerts(context.Background(), client.AlertListOptions{}) {
		if err != nil {
			last = err
			break
		}
		ids = append(ids, a.ID)
	}
	if strings.Join(ids, ",") != "alr_1,alr_2,alr_3" || last == nil {
		t.Errorf("ids %v, err %v; want three alerts then the repeated cursor refused", ids, last)
	}
}
