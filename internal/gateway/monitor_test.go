package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/monitor"
)

// fakeMonitor answers Check with verdict and keeps what it is told.
type fakeMonitor struct {
	mu       sync.Mutex
	verdict  monitor.Verdict
	checked  []monitor.Observation
	observed []monitor.Observation
}

func (m *fakeMonitor) Check(o *monitor.Observation) monitor.Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checked = append(m.checked, *o)
	return m.verdict
}

func (m *fakeMonitor) Observe(o *monitor.Observation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.observed = append(m.observed, *o)
}

func (m *fakeMonitor) seen() (checked, observed []monitor.Observation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]monitor.Observation(nil), m.checked...), append([]monitor.Observation(nil), m.observed...)
}

// seqRecorder is a memRecorder that numbers what it records.
type seqRecorder struct {
	memRecorder
	mu  sync.Mutex
	seq uint64
}

func (r *seqRecorder) RecordSeq(ctx context.Context, ev *Event) (uint64, error) {
	if err := r.memRecorder.Record(ctx, ev); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return r.seq, nil
}

func monitorFixture(t *testing.T, m Monitor, rec Recorder) *fixture {
	return newFixture(t, fixtureOpts{recorder: rec, options: func(_ *fixture, o *Options) { o.Monitor = m }})
}

func TestMonitorBlockIsARecordedDenialAndNothingIsForwarded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verdict monitor.Verdict
		status  int
		retry   string
	}{
		{"NewNetwork", monitor.Verdict{Block: true, Reason: monitor.ReasonNewNetwork}, http.StatusForbidden, ""},
		{"OffHours", monitor.Verdict{Block: true, Reason: monitor.ReasonOffHours}, http.StatusForbidden, ""},
		{"IPBlock", monitor.Verdict{Block: true, Reason: monitor.ReasonTooManyFailures, RetryAfter: 90 * time.Second}, http.StatusTooManyRequests, "90"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &fakeMonitor{verdict: tc.verdict}
			rec := &seqRecorder{}
			fx := monitorFixture(t, m, rec)
			secret, tok := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
			for _, path := range []string{"/fhir/Observation?code=x", "/v1/authz/fhir/Observation?code=x"} {
				rp := fx.do(t, call{path: path, secret: secret})
				if rp.status != tc.status || rp.code != tc.verdict.Reason {
					t.Fatalf("%s: %d %s, want %d %s", path, rp.status, rp.code, tc.status, tc.verdict.Reason)
				}
				if got := rp.header.Get("Retry-After"); got != tc.retry {
					t.Errorf("%s: Retry-After %q, want %q", path, got, tc.retry)
				}
				evs := rec.byRequest(t, rp.rid, 1)
				if len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Reason != tc.verdict.Reason || evs[0].TokenID != tok.ID {
					t.Errorf("%s: recorded %+v, want one denial with reason %s", path, evs, tc.verdict.Reason)
				}
			}
			if n := fx.fhir.count.Load(); n != 0 {
				t.Errorf("the upstream got %d requests the monitor blocked", n)
			}
			checked, observed := m.seen()
			if len(checked) != 2 || checked[0].TokenID != tok.ID || checked[0].Kind != monitor.Grant || !checked[0].Source.IsValid() {
				t.Errorf("checked %+v", checked)
			}
			if len(observed) != 2 || observed[0].Kind != monitor.Deny || observed[0].Reason != tc.verdict.Reason || observed[0].AuditSeq == 0 {
				t.Errorf("observed %+v, want the two denials with their sequence numbers", observed)
			}
		})
	}
}

func TestMonitorObservesEveryRecordedDecisionWithItsSequence(t *testing.T) {
	m := &fakeMonitor{}
	rec := &seqRecorder{}
	fx := monitorFixture(t, m, rec)
	secret, tok := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}, Metadata: map[string]string{"monitor.network": "block"}})
	if rp := fx.do(t, call{path: "/fhir/Observation?code=x", secret: secret}); rp.status != 200 {
		t.Fatalf("allowed request: %d %s", rp.status, rp.code)
	}
	if rp := fx.do(t, call{path: "/fhir/Patient/pat-1", secret: secret}); rp.status != 403 {
		t.Fatalf("out-of-scope request: %d %s", rp.status, rp.code)
	}
	fx.do(t, call{path: "/fhir/Observation", secret: "phi_not-a-token"})
	deadline := time.Now().Add(2 * time.Second)
	var observed []monitor.Observation
	for {
		_, observed = m.seen()
		if len(observed) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	kinds := map[monitor.Kind]int{}
	for _, o := range observed {
		kinds[o.Kind]++
		if o.TokenID != tok.ID {
			t.Errorf("observed a decision of %q: the anonymous denial is the throttle's, not an observation", o.TokenID)
		}
		if o.Policy == nil || o.Policy.NewNetwork != monitor.ModeBlock {
			t.Errorf("observation %v without the token's policy", o.Kind)
		}
		if o.Kind != monitor.Complete && o.AuditSeq == 0 {
			t.Errorf("%v observed without its sequence number", o.Kind)
		}
	}
	if kinds[monitor.Grant] != 1 || kinds[monitor.Deny] != 1 || kinds[monitor.Complete] != 1 || len(observed) != 3 {
		t.Errorf("observed %v, want one grant, one denial, one completion", kinds)
	}
}

// TestRealMonitorBlocksAnUndeclaredNetwork runs the real detectors: a token
// that declares its networks and blocks others is refused from elsewhere,
// on the very request, and the alert says so.
func TestRealMonitorBlocksAnUndeclaredNetwork(t *testing.T) {
	sink := &alertSink{}
	var fxClk func() time.Time
	mon, err := monitor.New(monitor.DefaultConfig(), monitor.Options{Now: func() time.Time { return fxClk() }, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, fixtureOpts{options: func(f *fixture, o *Options) { fxClk = f.clk.Now; o.Monitor = mon }})
	secret, tok := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"},
		Metadata: map[string]string{"monitor.networks": "10.20.0.0/16", "monitor.network": "block"}})
	rp := fx.do(t, call{path: "/fhir/Observation?code=x", secret: secret})
	if rp.status != http.StatusForbidden || rp.code != monitor.ReasonNewNetwork {
		t.Fatalf("request from 127.0.0.1: %d %s, want 403 %s", rp.status, rp.code, monitor.ReasonNewNetwork)
	}
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("forwarded %d", n)
	}
	mon.Drain(t.Context())
	as := sink.all()
	if len(as) != 1 || as[0].Detector != monitor.DetectorNewNetwork || as[0].TokenID != tok.ID || as[0].Action != monitor.Blocked {
		t.Errorf("alerts %+v, want one new_network alert, action blocked", as)
	}
}

type alertSink struct {
	mu sync.Mutex
	as []*monitor.Alert
}

func (s *alertSink) Raise(_ context.Context, a *monitor.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.as = append(s.as, a)
	return nil
}

func (s *alertSink) all() []*monitor.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*monitor.Alert(nil), s.as...)
}

// BenchmarkDecisionMonitored is BenchmarkDecision with the real monitor's
// inline stage, for a token with a monitoring policy.
func BenchmarkDecisionMonitored(b *testing.B) {
	var now func() time.Time
	mon, err := monitor.New(monitor.DefaultConfig(), monitor.Options{Now: func() time.Time { return now() }})
	if err != nil {
		b.Fatal(err)
	}
	fx := newFixture(b, fixtureOpts{options: func(f *fixture, o *Options) { now = f.clk.Now; o.Monitor = mon }})
	s, _ := fx.token(b, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Metadata: map[string]string{"monitor.network": "alert"}})
	up, rest := fx.gw.table.Load().match("/fhir/Observation")
	q := &request{secret: s, addr: netip.MustParseAddr("127.0.0.1"), purpose: "TREAT", method: "GET", path: rest,
		query: "patient=p1&code=http://loinc.org|8867-4", up: up, maxEntries: 100}
	ctx := context.Background()
	if v := fx.gw.decide(ctx, q); v.deny != nil {
		b.Fatalf("denied: %+v", v.deny)
	}
	b.ReportAllocs()
	for b.Loop() {
		q.now = fx.clk.Now()
		if v := fx.gw.decide(ctx, q); v.deny != nil {
			b.Fatal(v.deny.msg)
		}
	}
}
