package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/phigate/phigate/internal/obs"
	"github.com/phigate/phigate/internal/testclock"
)

func gather(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func counter(t testing.TB, m *Metrics, name string, want map[string]string) float64 {
	t.Helper()
	mf := gather(t, m)[name]
	if mf == nil {
		return 0
	}
next:
	for _, s := range mf.GetMetric() {
		ls := labels(s)
		for k, v := range want {
			if ls[k] != v {
				continue next
			}
		}
		if s.Counter != nil {
			return s.Counter.GetValue()
		}
		return s.Gauge.GetValue()
	}
	return 0
}

func TestRequestsAreCountedByTheirLabels(t *testing.T) {
	m := New(Options{Reasons: []string{"token_revoked", "insufficient_scope"}})
	m.ObserveRequest(obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRRead, Outcome: obs.OutcomeGranted, Decision: time.Millisecond, Upstream: 2 * time.Millisecond, Total: 3 * time.Millisecond, Decided: true, Forwarded: true})
	m.ObserveRequest(obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRRead, Outcome: obs.OutcomeGranted, Total: time.Millisecond})
	m.ObserveRequest(obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRRead, Outcome: obs.OutcomeDenied, Reason: "token_revoked", Total: time.Millisecond})
	m.ObserveRequest(obs.Request{Listener: obs.ListenerAdmin, Class: obs.ClassTokenAdmin, Outcome: obs.OutcomeDenied, Reason: "insufficient_scope"})
	for _, c := range []struct {
		ls   map[string]string
		want float64
	}{
		{map[string]string{"listener": "gateway", "class": "fhir-read", "outcome": "granted", "reason": ""}, 2},
		{map[string]string{"listener": "gateway", "class": "fhir-read", "outcome": "denied", "reason": "token_revoked"}, 1},
		{map[string]string{"listener": "admin", "class": "token-admin", "outcome": "denied", "reason": "insufficient_scope"}, 1},
		{map[string]string{"listener": "forward-auth"}, 0},
	} {
		if got := counter(t, m, "phigate_requests_total", c.ls); got != c.want {
			t.Errorf("%v: %v, want %v", c.ls, got, c.want)
		}
	}
	// the histogram of the gateway's decision saw the one decided request
	for _, s := range gather(t, m)["phigate_request_duration_seconds"].GetMetric() {
		ls := labels(s)
		want := map[string]uint64{"decision": 1, "upstream": 1, "total": 3}[ls["stage"]]
		switch ls["listener"] {
		case "admin":
			want = map[string]uint64{"total": 1}[ls["stage"]]
		case "forward-auth":
			want = 0
		}
		if got := s.GetHistogram().GetSampleCount(); got != want {
			t.Errorf("%v: %d samples, want %d", ls, got, want)
		}
	}
}

// TestLabelsStayBoundedWhateverIsObserved feeds values that a caller
// must never put in a label (secrets, paths, subjects) where a label is
// taken: each is counted under "other" (or dropped: an unknown listener),
// none appears in any series, and the number of series stays bounded.
func TestLabelsStayBoundedWhateverIsObserved(t *testing.T) {
	m := New(Options{Reasons: []string{"token_revoked"}, Detectors: []string{"rate_spike"}})
	var leaks []string
	for i := range 5000 {
		secret := fmt.Sprintf("phi_secret%040d", i)
		path := fmt.Sprintf("/fhir/Patient/p%d", i)
		subject := fmt.Sprintf("user-%d@example.org", i)
		leaks = append(leaks, secret, path, subject)
		m.ObserveRequest(obs.Request{Listener: obs.ListenerGateway, Class: path, Outcome: obs.OutcomeDenied, Reason: secret})
		m.ObserveRequest(obs.Request{Listener: subject, Class: obs.ClassHTTP, Outcome: obs.OutcomeGranted})
		m.ObserveRequest(obs.Request{Listener: obs.ListenerAdmin, Class: obs.ClassAudit, Outcome: secret, Reason: subject})
		m.AlertRaised(subject)
	}
	series := 0
	for name, mf := range gather(t, m) {
		if !strings.HasPrefix(name, "phigate_") {
			continue
		}
		for _, s := range mf.GetMetric() {
			series++
			for _, l := range s.GetLabel() {
				for _, leak := range leaks[:30] { // their shapes; all are alike
					if strings.Contains(l.GetValue(), leak) {
						t.Fatalf("%s{%s=%q} carries %q", name, l.GetName(), l.GetValue(), leak)
					}
				}
				if v := l.GetValue(); strings.Contains(v, "phi_") || strings.Contains(v, "/") || strings.Contains(v, "@") {
					t.Fatalf("%s{%s=%q}: not a value of a closed set", name, l.GetName(), v)
				}
			}
		}
	}
	// requests: 2 cells (other class denied other reason; admin audit
	// error other reason); durations 9; alerts 2 (rate_spike, other); the
	// audit histograms and the cache counters 4
	if series > 2+9+2+4 {
		t.Errorf("%d series after 15000 observations of distinct values", series)
	}
	if got := counter(t, m, "phigate_requests_total", map[string]string{"class": Other, "reason": Other}); got != 5000 {
		t.Errorf("other/other: %v, want 5000", got)
	}
	if got := counter(t, m, "phigate_alerts_total", map[string]string{"detector": Other}); got != 5000 {
		t.Errorf("alerts other: %v, want 5000", got)
	}
}

func TestObserveRequestAllocatesNothing(t *testing.T) {
	m := New(Options{Reasons: []string{"token_revoked"}})
	o := obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRSearch, Outcome: obs.OutcomeDenied, Reason: "token_revoked", Decision: time.Microsecond, Total: time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() { m.ObserveRequest(o) }); n != 0 {
		t.Errorf("%v allocations per ObserveRequest", n)
	}
}

type countStore struct {
	calls  int
	counts map[string]int64
	err    error
}

func (c *countStore) CountTokens(ctx context.Context, now time.Time) (map[string]int64, error) {
	c.calls++
	return c.counts, c.err
}

func TestTokensAreCountedAtMostOncePerTTL(t *testing.T) {
	clk := testclock.New()
	st := &countStore{counts: map[string]int64{"active": 3, "revoked": 2, "weird": 1}}
	m := New(Options{Tokens: st, TokensTTL: 5 * time.Second, Now: clk.Now})
	if got := counter(t, m, "phigate_tokens", map[string]string{"status": "active"}); got != 3 {
		t.Errorf("active %v, want 3", got)
	}
	if got := counter(t, m, "phigate_tokens", map[string]string{"status": Other}); got != 1 {
		t.Errorf("other %v, want 1", got)
	}
	gather(t, m)
	if st.calls != 1 {
		t.Errorf("%d counts within the TTL, want 1", st.calls)
	}
	clk.Add(5 * time.Second)
	gather(t, m)
	if st.calls != 2 {
		t.Errorf("%d counts after the TTL, want 2", st.calls)
	}
}

func TestAFailedTokenCountIsLeftOut(t *testing.T) {
	clk := testclock.New()
	st := &countStore{err: errors.New("store down")}
	m := New(Options{Tokens: st, Now: clk.Now})
	if mf := gather(t, m)["phigate_tokens"]; mf != nil {
		t.Errorf("a failed count is exposed: %v", mf)
	}
}

type disk struct{ j, d int64 }

func (u disk) DiskUsage() (int64, int64, error) { return u.j, u.d, nil }

func TestAuditSizesAreReadAtScrapeTime(t *testing.T) {
	m := New(Options{Audit: disk{4096, 8192}})
	m.ObserveCommit(3)
	m.ObserveAppend(time.Millisecond)
	m.CacheHit()
	m.CacheHit()
	m.CacheMiss()
	for name, want := range map[string]float64{"phigate_audit_journal_bytes": 4096, "phigate_audit_database_bytes": 8192,
		"phigate_token_cache_hits_total": 2, "phigate_token_cache_misses_total": 1} {
		if got := counter(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := gather(t, m)["phigate_audit_batch_entries"].GetMetric()[0].GetHistogram().GetSampleSum(); n != 3 {
		t.Errorf("batch sum %v, want 3", n)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New(Options{Reasons: []string{"token_revoked"}})
	o := obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRSearch, Outcome: obs.OutcomeGranted, Decision: time.Microsecond, Upstream: time.Millisecond, Total: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest(o)
	}
}
