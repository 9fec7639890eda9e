package gateway

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/metrics"
	"github.com/phigate/phigate/internal/obs"
	"github.com/phigate/phigate/internal/policy"
)

// reasons is the closed set of reason codes the server gives the metrics.
func reasons() []string {
	var rs []string
	for r := policy.ReasonNone; r <= policy.Unavailable; r++ {
		rs = append(rs, r.Code())
	}
	return append(rs, ReasonCodes()...)
}

// obsLog keeps the observations, for the tests of what is observed.
type obsLog struct {
	ch chan obs.Request
}

func (l *obsLog) ObserveRequest(o obs.Request) { l.ch <- o }

func TestEveryAnswerIsObservedWithItsClassOutcomeAndReason(t *testing.T) {
	log := &obsLog{ch: make(chan obs.Request, 16)}
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Observer = log }})
	read, _ := fx.token(t, authority.Spec{Scopes: []string{"system/Observation.rs"}})
	bill, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	for _, c := range []struct {
		name string
		call call
		want obs.Request
	}{
		{"fhir search granted", call{path: "/fhir/Observation?code=x", secret: read}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRSearch, Outcome: obs.OutcomeGranted}},
		{"fhir read granted", call{path: "/fhir/Observation/1", secret: read}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRRead, Outcome: obs.OutcomeGranted}},
		{"fhir write denied by scope", call{method: "POST", path: "/fhir/Observation", secret: read, body: "{}", contentType: "application/fhir+json"}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassFHIRWrite, Outcome: obs.OutcomeDenied, Reason: "insufficient_scope"}},
		{"missing token", call{path: "/fhir/Observation/1"}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassUnrouted, Outcome: obs.OutcomeDenied, Reason: CodeMissingToken}},
		{"unknown token", call{path: "/billing/invoices/1", secret: "phi_notatoken"}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassUnrouted, Outcome: obs.OutcomeDenied, Reason: "invalid_token"}},
		{"http route granted", call{path: "/billing/invoices/1", secret: bill}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassHTTP, Outcome: obs.OutcomeGranted}},
		{"no upstream", call{path: "/nowhere", secret: bill}, obs.Request{Listener: obs.ListenerGateway, Class: obs.ClassUnrouted, Outcome: obs.OutcomeDenied, Reason: CodeNotFound}},
		{"forward auth denied by scope", call{path: "/v1/authz", secret: bill, header: map[string]string{"X-Original-Method": "GET", "X-Original-Uri": "/records/r/1"}}, obs.Request{Listener: obs.ListenerForwardAuth, Class: obs.ClassHTTP, Outcome: obs.OutcomeDenied, Reason: "insufficient_scope"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx.do(t, c.call)
			got := <-log.ch
			if got.Listener != c.want.Listener || got.Class != c.want.Class || got.Outcome != c.want.Outcome || got.Reason != c.want.Reason {
				t.Errorf("observed %+v, want %+v", got, c.want)
			}
			if got.Outcome == obs.OutcomeGranted && c.want.Listener == obs.ListenerGateway && (!got.Forwarded || !got.Decided) {
				t.Errorf("a forwarded request without its latencies: %+v", got)
			}
		})
	}
	fx.do(t, call{path: "/healthz"})
	select {
	case o := <-log.ch:
		t.Errorf("/healthz observed: %+v", o)
	default:
	}
}

func TestARefusalThatCannotBeRecordedIsObservedAsAnError(t *testing.T) {
	log := &obsLog{ch: make(chan obs.Request, 4)}
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Observer = log }})
	bill, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	fx.rec.fail.Store(true)
	for _, path := range []string{"/billing/invoices/1", "/billing/invoices/secret"} { // a grant, a denial
		if r := fx.do(t, call{path: path, secret: bill}); r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d", path, r.status)
		}
		if got := <-log.ch; got.Outcome != obs.OutcomeError || got.Reason != CodeAuditUnavailable {
			t.Errorf("%s: observed %+v, want error audit_unavailable", path, got)
		}
	}
}

// TestMetricLabelsCarryNoTokenPathOrSubject sends the real gateway
// requests with many distinct tokens, subjects, patients and paths, and
// checks that the series stay few and that no label value holds any of
// them.
func TestMetricLabelsCarryNoTokenPathOrSubject(t *testing.T) {
	m := metrics.New(metrics.Options{Reasons: reasons()})
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Observer = m }})
	var secrets, shapes []string
	for i := range 40 {
		subject, patient := fmt.Sprintf("subject-%d-x", i), fmt.Sprintf("patient%dx", i)
		s, rec := fx.token(t, authority.Spec{Subject: subject, PatientID: patient, Scopes: []string{"patient/Observation.rs", "billing:read"}})
		secrets = append(secrets, s)
		shapes = append(shapes, s, subject, patient, rec.ID)
		paths := []string{fmt.Sprintf("/fhir/Observation?patient=%s&n=%d", patient, i), fmt.Sprintf("/fhir/Patient/%s", patient),
			fmt.Sprintf("/billing/invoices/inv%dx", i), fmt.Sprintf("/nowhere/p%dx", i)}
		for _, p := range paths {
			fx.do(t, call{path: p, secret: s})
			shapes = append(shapes, strings.SplitN(p, "?", 2)[0])
		}
		fx.do(t, call{path: fmt.Sprintf("/fhir/Observation/o%dx", i), secret: s[:len(s)-3] + "abc"}) // a bad checksum
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "phigate_") {
			continue
		}
		for _, s := range mf.GetMetric() {
			series++
			checkLabels(t, mf, s, shapes)
		}
	}
	// 200 requests of 40 tokens: a handful of (class, outcome, reason)
	// cells and the 9 latency histograms, whatever the number of tokens
	if series > 30 {
		t.Errorf("%d series for 40 tokens", series)
	}
	_ = secrets
}

func checkLabels(t *testing.T, mf *dto.MetricFamily, s *dto.Metric, shapes []string) {
	t.Helper()
	for _, l := range s.GetLabel() {
		v := l.GetValue()
		for _, sh := range shapes {
			if v != "" && (strings.Contains(v, sh) || strings.Contains(sh, v) && len(v) > 12) {
				t.Errorf("%s{%s=%q} holds %q", mf.GetName(), l.GetName(), v, sh)
			}
		}
		if strings.ContainsAny(v, "/?=") || strings.Contains(v, "phi_") {
			t.Errorf("%s{%s=%q}: not a value of a closed set", mf.GetName(), l.GetName(), v)
		}
	}
}

// BenchmarkDecisionMetrics is BenchmarkDecision with the metrics on: the
// timed decision and the observation the request path makes after it.
func BenchmarkDecisionMetrics(b *testing.B) {
	m := metrics.New(metrics.Options{Reasons: reasons()})
	fx := newFixture(b, fixtureOpts{options: func(_ *fixture, o *Options) { o.Observer = m }})
	s, _ := fx.token(b, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	up, rest := fx.gw.table.Load().match("/fhir/Observation")
	q := &request{secret: s, addr: netip.MustParseAddr("127.0.0.1"), purpose: "TREAT", method: "GET", path: rest,
		query: "patient=p1&code=http://loinc.org|8867-4", up: up, maxEntries: 100}
	ctx := context.Background()
	x := &exchange{}
	b.ReportAllocs()
	for b.Loop() {
		q.now = fx.clk.Now()
		x.start = q.now
		v := fx.gw.decideObserved(ctx, q, x)
		if v.deny != nil {
			b.Fatal(v.deny.msg)
		}
		fillEvent(&x.ev, &v)
		x.ev.Kind = KindComplete
		fx.gw.observe(x)
	}
}

// TestEveryCodeConstantIsInReasonCodes reads the package's Code*
// constants from its source: each must be in ReasonCodes, else the
// metrics would count it as "other".
func TestEveryCodeConstantIsInReasonCodes(t *testing.T) {
	known := map[string]bool{}
	for _, c := range ReasonCodes() {
		known[c] = true
	}
	fset := gotoken.NewFileSet()
	files, _ := filepath.Glob("*.go")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(nd ast.Node) bool {
			vs, ok := nd.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
					n++
					if c, _ := strconv.Unquote(lit.Value); !known[c] {
						t.Errorf("%s: %s = %q is not in ReasonCodes", fset.Position(lit.Pos()), name.Name, c)
					}
				}
			}
			return true
		})
	}
	if n < 10 {
		t.Fatalf("found %d Code constants", n)
	}
}
