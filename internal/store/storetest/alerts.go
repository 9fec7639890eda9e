package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/phigate/phigate/internal/store"
)

// alertCases are the clauses of the alert methods.
var alertCases = []testCase{
	{"AlertRoundTripKeepsEveryField", testAlertRoundTrip},
	{"AlertWithTakenIDConflicts", testAlertWithTakenIDConflicts},
	{"InvalidAlertsAreRefused", testInvalidAlertsAreRefused},
	{"UnknownAlertIsNotFound", testUnknownAlertIsNotFound},
	{"AckAlertOnceThenConflicts", testAckAlertOnceThenConflicts},
	{"ListAlertsFiltersAndPagesInIDOrder", testListAlertsFiltersAndPages},
	{"AlertMethodsOnClosedStoreReturnErrClosed", testAlertMethodsOnClosedStore},
	{"AlertMethodsWithDoneContextChangeNothing", testAlertMethodsWithDoneContext},
}

// alert returns a valid open alert raised at base+d, changed by mods. Ids
// sort by d (then by a counter), as the monitor's ids sort by time.
func (e *env) alert(d time.Duration, mods ...func(*store.Alert)) *store.Alert {
	e.alerts++
	a := &store.Alert{
		ID:        fmt.Sprintf("alr_%012d%06d", int64(d/time.Millisecond), e.alerts),
		Detector:  "rate_spike",
		Severity:  store.SeverityHigh,
		TokenID:   e.fx.id(),
		Subject:   "user:alice",
		Source:    "192.0.2.0/24",
		Summary:   "rate spike: 120 req/s against a baseline of 2",
		Evidence:  []byte(`{"rate":120,"baseline":2}`),
		AuditSeqs: []uint64{7, 8, 9},
		Action:    "suspended",
		CreatedAt: base.Add(d),
		State:     store.AlertOpen,
	}
	for _, m := range mods {
		m(a)
	}
	return a
}

func (e *env) createAlert(a *store.Alert) {
	e.t.Helper()
	if err := e.s.CreateAlert(e.ctx, a); err != nil {
		e.t.Fatalf("CreateAlert(%s): %v", a.ID, err)
	}
}

// checkAlert compares under the contract's equality (times to the
// microsecond in UTC, nil and empty alike).
func (e *env) checkAlert(where string, got, want *store.Alert) {
	e.t.Helper()
	norm := func(a store.Alert) store.Alert {
		a.CreatedAt = micro(a.CreatedAt)
		a.AckedAt = micro(a.AckedAt)
		if len(a.Evidence) == 0 {
			a.Evidence = nil
		}
		if len(a.AuditSeqs) == 0 {
			a.AuditSeqs = nil
		}
		return a
	}
	g, w := norm(*got), norm(*want)
	if !reflect.DeepEqual(g, w) {
		e.t.Errorf("%s:\n got %+v\nwant %+v", where, g, w)
	}
	if got.CreatedAt.Location() != time.UTC || (!got.AckedAt.IsZero() && got.AckedAt.Location() != time.UTC) {
		e.t.Errorf("%s: times not in UTC", where)
	}
}

// micro is t in UTC to the microsecond, without a monotonic reading.
func micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Round(0).Truncate(time.Microsecond)
}

func testAlertRoundTrip(e *env) {
	a := e.alert(time.Second)
	e.createAlert(a)
	got, err := e.s.Alert(e.ctx, a.ID)
	if err != nil {
		e.t.Fatalf("Alert: %v", err)
	}
	e.checkAlert("Alert", got, a)

	bare := e.alert(2*time.Second, func(a *store.Alert) {
		a.TokenID, a.Subject, a.Source, a.Summary, a.Action = "", "", "", "", ""
		a.Evidence, a.AuditSeqs, a.State = nil, nil, ""
	})
	e.createAlert(bare)
	got, err = e.s.Alert(e.ctx, bare.ID)
	if err != nil {
		e.t.Fatalf("Alert(bare): %v", err)
	}
	bare.State = store.AlertOpen
	e.checkAlert("Alert(bare)", got, bare)

	// Not retained, returned fresh.
	a.Summary = "changed"
	got.AuditSeqs = append(got.AuditSeqs, 99)
	again, _ := e.s.Alert(e.ctx, bare.ID)
	if len(again.AuditSeqs) != 0 {
		e.t.Errorf("a returned alert shares memory with the store")
	}
	first, _ := e.s.Alert(e.ctx, a.ID)
	if first.Summary == "changed" {
		e.t.Errorf("the store retained the alert handed in")
	}
}

func testAlertWithTakenIDConflicts(e *env) {
	a := e.alert(time.Second)
	e.createAlert(a)
	dup := e.alert(time.Second, func(d *store.Alert) { d.ID = a.ID; d.Summary = "second" })
	if err := e.s.CreateAlert(e.ctx, dup); !errors.Is(err, store.ErrConflict) {
		e.t.Fatalf("CreateAlert(taken id) = %v, want ErrConflict", err)
	}
	got, _ := e.s.Alert(e.ctx, a.ID)
	e.checkAlert("after the conflict", got, a)
}

func testInvalidAlertsAreRefused(e *env) {
	for _, tc := range []struct {
		name string
		mod  func(*store.Alert)
	}{
		{"EmptyID", func(a *store.Alert) { a.ID = "" }},
		{"EmptyDetector", func(a *store.Alert) { a.Detector = "" }},
		{"UnknownSeverity", func(a *store.Alert) { a.Severity = "urgent" }},
		{"EmptySeverity", func(a *store.Alert) { a.Severity = "" }},
		{"ZeroCreatedAt", func(a *store.Alert) { a.CreatedAt = time.Time{} }},
		{"EvidenceNotJSON", func(a *store.Alert) { a.Evidence = []byte("{rate") }},
		{"EvidenceNotAnObject", func(a *store.Alert) { a.Evidence = []byte(`[1,2]`) }},
		{"CreatedAcked", func(a *store.Alert) { a.State = store.AlertAcked }},
		{"AckedAtSet", func(a *store.Alert) { a.AckedAt = base }},
		{"AckedBySet", func(a *store.Alert) { a.AckedBy = "tok_x" }},
	} {
		a := e.alert(time.Second, tc.mod)
		err := e.s.CreateAlert(e.ctx, a)
		if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrClosed) {
			e.t.Errorf("%s: CreateAlert = %v, want an invalid-argument error", tc.name, err)
		}
		if a.ID != "" {
			if _, err := e.s.Alert(e.ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
				e.t.Errorf("%s: the refused alert was stored (%v)", tc.name, err)
			}
		}
	}
	if err := e.s.CreateAlert(e.ctx, nil); err == nil {
		e.t.Errorf("CreateAlert(nil) = nil")
	}
	a := e.alert(time.Second)
	e.createAlert(a)
	if _, err := e.s.AckAlert(e.ctx, a.ID, "", "", e.now()); err == nil || errors.Is(err, store.ErrConflict) {
		e.t.Errorf("AckAlert(empty by) = %v, want an invalid-argument error", err)
	}
	if _, err := e.s.AckAlert(e.ctx, a.ID, "tok_op", "", time.Time{}); err == nil || errors.Is(err, store.ErrConflict) {
		e.t.Errorf("AckAlert(zero time) = %v, want an invalid-argument error", err)
	}
}

func testUnknownAlertIsNotFound(e *env) {
	if _, err := e.s.Alert(e.ctx, "alr_unknown"); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("Alert(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := e.s.AckAlert(e.ctx, "alr_unknown", "tok_op", "", e.now()); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("AckAlert(unknown) = %v, want ErrNotFound", err)
	}
}

func testAckAlertOnceThenConflicts(e *env) {
	a := e.alert(time.Second)
	e.createAlert(a)
	at := e.now().Add(time.Minute)
	got, err := e.s.AckAlert(e.ctx, a.ID, "tok_operator", "looked at it", at)
	if err != nil {
		e.t.Fatalf("AckAlert: %v", err)
	}
	want := *a
	want.State, want.AckedAt, want.AckedBy, want.AckNote = store.AlertAcked, at, "tok_operator", "looked at it"
	e.checkAlert("AckAlert", got, &want)
	stored, _ := e.s.Alert(e.ctx, a.ID)
	e.checkAlert("Alert after ack", stored, &want)

	if _, err := e.s.AckAlert(e.ctx, a.ID, "tok_other", "again", at.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		e.t.Errorf("second AckAlert = %v, want ErrConflict", err)
	}
	stored, _ = e.s.Alert(e.ctx, a.ID)
	e.checkAlert("after the second ack", stored, &want)
}

func testListAlertsFiltersAndPages(e *env) {
	tokA, tokB := e.fx.id(), e.fx.id()
	var all []*store.Alert
	for i := range 9 {
		a := e.alert(time.Duration(i)*time.Minute, func(a *store.Alert) {
			a.TokenID = []string{tokA, tokB, ""}[i%3]
			a.Severity = []store.Severity{store.SeverityLow, store.SeverityHigh, store.SeverityCritical}[i%3]
		})
		e.createAlert(a)
		all = append(all, a)
	}
	if _, err := e.s.AckAlert(e.ctx, all[3].ID, "tok_op", "", e.now()); err != nil {
		e.t.Fatal(err)
	}
	ids := func(as []*store.Alert) []string {
		out := []string{}
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	pick := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, all[i].ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.AlertFilter
		want []string
	}{
		{"All", store.AlertFilter{}, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"Token", store.AlertFilter{TokenID: tokA}, pick(0, 3, 6)},
		{"Severity", store.AlertFilter{Severity: store.SeverityCritical}, pick(2, 5, 8)},
		{"StateOpen", store.AlertFilter{State: store.AlertOpen}, pick(0, 1, 2, 4, 5, 6, 7, 8)},
		{"StateAcked", store.AlertFilter{State: store.AlertAcked}, pick(3)},
		{"SinceIsInclusive", store.AlertFilter{Since: base.Add(6 * time.Minute)}, pick(6, 7, 8)},
		{"UntilIsExclusive", store.AlertFilter{Until: base.Add(2 * time.Minute)}, pick(0, 1)},
		{"Combined", store.AlertFilter{TokenID: tokA, State: store.AlertOpen, Since: base.Add(time.Minute)}, pick(6)},
		{"After", store.AlertFilter{After: all[6].ID}, pick(7, 8)},
	} {
		got, next, err := e.s.ListAlerts(e.ctx, tc.f)
		if err != nil {
			e.t.Fatalf("%s: ListAlerts: %v", tc.name, err)
		}
		if g := ids(got); !reflect.DeepEqual(g, tc.want) || next != "" {
			e.t.Errorf("%s: ListAlerts = %v next %q, want %v next \"\"", tc.name, g, next, tc.want)
		}
	}
	// Pages of 4 cover all, each once, in order.
	var seen []string
	f := store.AlertFilter{Limit: 4}
	for range 10 {
		page, next, err := e.s.ListAlerts(e.ctx, f)
		if err != nil {
			e.t.Fatal(err)
		}
		seen = append(seen, ids(page)...)
		if next == "" {
			break
		}
		f.After = next
	}
	if !reflect.DeepEqual(seen, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)) {
		e.t.Errorf("pages of 4 = %v", seen)
	}
	got, _, _ := e.s.ListAlerts(e.ctx, store.AlertFilter{TokenID: tokB})
	if len(got) == 3 {
		e.checkAlert("listed", got[0], all[1])
	}
}

func testAlertMethodsOnClosedStore(e *env) {
	a := e.alert(time.Second)
	e.createAlert(a)
	if err := e.s.Close(); err != nil {
		e.t.Fatal(err)
	}
	var errs []namedErr
	add := func(name string, err error) { errs = append(errs, namedErr{name, err}) }
	add("CreateAlert", e.s.CreateAlert(e.ctx, e.alert(2*time.Second)))
	_, err := e.s.Alert(e.ctx, a.ID)
	add("Alert", err)
	_, _, err = e.s.ListAlerts(e.ctx, store.AlertFilter{})
	add("ListAlerts", err)
	_, err = e.s.AckAlert(e.ctx, a.ID, "tok_op", "", e.now())
	add("AckAlert", err)
	for _, c := range errs {
		if !errors.Is(c.err, store.ErrClosed) {
			e.t.Errorf("%s after Close = %v, want ErrClosed", c.name, c.err)
		}
	}
}

func testAlertMethodsWithDoneContext(e *env) {
	a := e.alert(time.Second)
	e.createAlert(a)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	fresh := e.alert(2 * time.Second)
	if err := e.s.CreateAlert(ctx, fresh); !errors.Is(err, context.Canceled) {
		e.t.Errorf("CreateAlert(done ctx) = %v, want context.Canceled", err)
	}
	if _, err := e.s.AckAlert(ctx, a.ID, "tok_op", "", e.now()); !errors.Is(err, context.Canceled) {
		e.t.Errorf("AckAlert(done ctx) = %v, want context.Canceled", err)
	}
	if _, err := e.s.Alert(e.ctx, fresh.ID); !errors.Is(err, store.ErrNotFound) {
		e.t.Errorf("the alert of a done ctx was stored (%v)", err)
	}
	got, _ := e.s.Alert(e.ctx, a.ID)
	if got.State != store.AlertOpen {
		e.t.Errorf("the ack of a done ctx took effect")
	}
}
