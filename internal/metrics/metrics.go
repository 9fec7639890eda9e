// Package metrics is phigate's Prometheus exposition: it owns one
// prometheus.Registry (never the global default one) and is fed by the
// observer hooks the composition root injects into the components'
// options: the gateway and the admin API (obs.Request), the audit log
// (ObserveAppend, ObserveCommit), the authority's verification cache
// (CacheHit, CacheMiss) and the monitor's alert sinks (AlertRaised). Those
// packages do not import prometheus, nor this package.
//
// # Series
//
//	phigate_requests_total{listener,class,outcome,reason}     counter
//	phigate_request_duration_seconds{listener,stage}          histogram; stage: decision, upstream, total
//	phigate_audit_append_duration_seconds                     histogram (an Append until its entry is durable)
//	phigate_audit_batch_entries                               histogram (entries per group commit)
//	phigate_audit_journal_bytes, phigate_audit_database_bytes gauges (read at scrape time)
//	phigate_token_cache_hits_total, phigate_token_cache_misses_total counters
//	phigate_tokens{status}                                    gauge; status: active, expired, suspended, revoked
//	phigate_alerts_total{detector}                            counter
//	go_*, process_*                                           the Go runtime and process collectors
//
// # Guarantees
//
//   - Bounded cardinality: every label value comes from a closed set
//     given at New (listeners, route classes and outcomes of package obs,
//     Options.Reasons, Options.Detectors, the token statuses); a value
//     outside it is counted under "other". No label carries a token,
//     subject, patient, path, address or anything a client chooses, so the
//     number of series has a fixed upper bound whatever the traffic.
//   - The request path takes no lock and allocates nothing: ObserveRequest
//     adds to a fixed array of atomic counters (the request counter is
//     exposed by a collector that reads them at scrape time, the cells
//     still zero left out) and observes histograms resolved at New.
//   - Costly readings happen at scrape time, bounded: the tokens by status
//     are counted by the store at most once per Options.TokensTTL (a
//     scrape in between gets the cached counts), under a timeout; a
//     failing count is left out of the scrape and logged, never a
//     partial number.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phigate/phigate/internal/obs"
)

// Other is the label value of anything outside a label's closed set.
const Other = "other"

// TokenCounter counts the tokens by status at time now (an optional
// capability of a store). Statuses outside TokenStatuses are counted
// under "other".
type TokenCounter interface {
	CountTokens(ctx context.Context, now time.Time) (map[string]int64, error)
}

// TokenStatuses are the values of phigate_tokens' status label.
func TokenStatuses() []string { return []string{"active", "expired", "suspended", "revoked"} }

// DiskUsage reports the audit log's journal and database sizes in bytes.
type DiskUsage interface {
	DiskUsage() (journal, database int64, err error)
}

// Options configure New.
type Options struct {
	// Reasons is the closed set of reason codes (the external contract's:
	// policy's, the gateway's, the admin API's).
	Reasons []string
	// Detectors is the closed set of the monitor's detector names.
	Detectors []string
	// Tokens, when set, is counted at scrape time (phigate_tokens).
	Tokens TokenCounter
	// TokensTTL is how long a count of the tokens is served from cache
	// (default 5s).
	TokensTTL time.Duration
	// Audit, when set, is asked its sizes at scrape time.
	Audit DiskUsage
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Metrics is the registry and the observers that feed it. Its methods are
// safe for concurrent use.
type Metrics struct {
	reg  *prometheus.Registry
	opts Options
	log  *slog.Logger

	classes, reasons map[string]int
	nClass, nOut     int
	nReason          int // reasons + Other
	reqs             []atomic.Uint64
	reqDesc          *prometheus.Desc
	listeners        []string
	classNames       []string
	outcomes         []string
	reasonNames      []string

	// dur[listener][stage]
	dur [3][3]prometheus.Observer

	appendDur, batch prometheus.Observer
	hits, misses     prometheus.Counter
	alerts           map[string]prometheus.Counter
}

// stages of phigate_request_duration_seconds
const (
	stageDecision = iota
	stageUpstream
	stageTotal
)

// New builds the registry.
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokensTTL <= 0 {
		opts.TokensTTL = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), opts: opts, log: opts.Logger,
		listeners: obs.Listeners(), classNames: obs.Classes(), outcomes: obs.Outcomes()}
	m.classes = index(m.classNames)
	m.reasonNames = dedupe(append(append([]string(nil), opts.Reasons...), Other))
	m.reasons = index(m.reasonNames)
	m.nClass, m.nOut, m.nReason = len(m.classNames)+1, len(m.outcomes), len(m.reasonNames)
	m.classNames = append(m.classNames, Other)
	m.reqs = make([]atomic.Uint64, len(m.listeners)*m.nClass*m.nOut*(m.nReason+1))
	m.reqDesc = prometheus.NewDesc("phigate_requests_total",
		"Requests answered, by listener, route class, outcome and reason code (empty when granted).",
		[]string{"listener", "class", "outcome", "reason"}, nil)
	m.reg.MustRegister(requestCollector{m})

	// latency buckets: 100µs to about 26s
	buckets := prometheus.ExponentialBuckets(0.0001, 2, 19)
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "phigate_request_duration_seconds",
		Help:    "Request latency by listener and stage: decision (authentication and authorization), upstream (the upstream's answer), total.",
		Buckets: buckets}, []string{"listener", "stage"})
	for i, l := range m.listeners {
		for j, s := range []string{"decision", "upstream", "total"} {
			m.dur[i][j] = dur.WithLabelValues(l, s)
		}
	}
	appendDur := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "phigate_audit_append_duration_seconds",
		Help: "How long an audit Append waits until its entry is durable (group commit).", Buckets: buckets})
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "phigate_audit_batch_entries",
		Help: "Entries made durable by one group commit (one fsync).", Buckets: prometheus.ExponentialBuckets(1, 2, 11)})
	m.appendDur, m.batch = appendDur, batch
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "phigate_token_cache_hits_total", Help: "Token verifications answered from the verification cache."})
	misses := prometheus.NewCounter(prometheus.CounterOpts{Name: "phigate_token_cache_misses_total", Help: "Token verifications that had to read the store."})
	m.hits, m.misses = hits, misses
	alerts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "phigate_alerts_total", Help: "Alerts raised, by detector."}, []string{"detector"})
	m.alerts = map[string]prometheus.Counter{}
	for _, d := range dedupe(append(append([]string(nil), opts.Detectors...), Other)) {
		m.alerts[d] = alerts.WithLabelValues(d)
	}
	m.reg.MustRegister(dur, appendDur, batch, hits, misses, alerts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opts.Audit != nil {
		m.reg.MustRegister(&diskCollector{u: opts.Audit, log: m.log,
			journal:  prometheus.NewDesc("phigate_audit_journal_bytes", "Bytes of the audit log's journal files.", nil, nil),
			database: prometheus.NewDesc("phigate_audit_database_bytes", "Bytes of the audit log's database (with its WAL).", nil, nil)})
	}
	if opts.Tokens != nil {
		m.reg.MustRegister(&tokenCollector{m: m, desc: prometheus.NewDesc("phigate_tokens", "Tokens in the store by status (expired: active past its expiry).", []string{"status"}, nil)})
	}
	return m
}

func index(names []string) map[string]int {
	ix := make(map[string]int, len(names))
	for i, n := range names {
		ix[n] = i
	}
	return ix
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	out := names[:0]
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// Registry is the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats, at
// most two scrapes at once, each within 10 seconds.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 2,
		Timeout:             10 * time.Second,
	})
}

func listenerIndex(l string) int {
	switch l {
	case obs.ListenerAdmin:
		return 0
	case obs.ListenerGateway:
		return 1
	case obs.ListenerForwardAuth:
		return 2
	}
	return -1
}

func outcomeIndex(o string) int {
	switch o {
	case obs.OutcomeGranted:
		return 0
	case obs.OutcomeDenied:
		return 1
	}
	return 2 // error, and anything unknown: not a grant
}

// ObserveRequest counts one request and observes its latencies. It takes
// no lock and allocates nothing. A request of an unknown listener is
// dropped; an unknown class or reason counts as "other".
func (m *Metrics) ObserveRequest(o obs.Request) {
	l := listenerIndex(o.Listener)
	if l < 0 {
		return
	}
	c, ok := m.classes[o.Class]
	if !ok {
		c = m.nClass - 1
	}
	r := -1 // no reason
	if o.Reason != "" {
		r = m.nReason - 1 // Other
		if i, ok := m.reasons[o.Reason]; ok {
			r = i
		}
	}
	m.reqs[m.cell(l, c, outcomeIndex(o.Outcome), r)].Add(1)
	if o.Decided {
		m.dur[l][stageDecision].Observe(o.Decision.Seconds())
	}
	if o.Forwarded {
		m.dur[l][stageUpstream].Observe(o.Upstream.Seconds())
	}
	m.dur[l][stageTotal].Observe(o.Total.Seconds())
}

// cell is the index of the counter of listener l, class c, outcome o and
// reason r (0..nReason-1; -1: no reason, a slot of its own, labelled "").
func (m *Metrics) cell(l, c, o, r int) int {
	if r < 0 {
		r = m.nReason // the reasonless slot
	}
	return ((l*m.nClass+c)*m.nOut+o)*(m.nReason+1) + r
}

// requestCollector exposes the request counters.
type requestCollector struct{ m *Metrics }

func (rc requestCollector) Describe(ch chan<- *prometheus.Desc) { ch <- rc.m.reqDesc }

func (rc requestCollector) Collect(ch chan<- prometheus.Metric) {
	m := rc.m
	for l, ln := range m.listeners {
		for c, cn := range m.classNames {
			for o, on := range m.outcomes {
				for r := 0; r <= m.nReason; r++ {
					v := m.reqs[m.cell(l, c, o, r)].Load()
					if v == 0 {
						continue
					}
					rn := ""
					if r < m.nReason {
						rn = m.reasonNames[r]
					}
					ch <- prometheus.MustNewConstMetric(m.reqDesc, prometheus.CounterValue, float64(v), ln, cn, on, rn)
				}
			}
		}
	}
}

// ObserveAppend observes how long one audit Append waited for durability.
func (m *Metrics) ObserveAppend(d time.Duration) { m.appendDur.Observe(d.Seconds()) }

// ObserveCommit observes the entries of one group commit.
func (m *Metrics) ObserveCommit(entries int) { m.batch.Observe(float64(entries)) }

// CacheHit counts a verification answered from the cache.
func (m *Metrics) CacheHit() { m.hits.Inc() }

// CacheMiss counts a verification that read the store.
func (m *Metrics) CacheMiss() { m.misses.Inc() }

// AlertRaised counts an alert of detector (outside Options.Detectors:
// "other").
func (m *Metrics) AlertRaised(detector string) {
	c, ok := m.alerts[detector]
	if !ok {
		c = m.alerts[Other]
	}
	c.Inc()
}

// diskCollector reads the audit log's sizes at scrape time.
type diskCollector struct {
	u                 DiskUsage
	log               *slog.Logger
	journal, database *prometheus.Desc
}

func (d *diskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.journal; ch <- d.database }

func (d *diskCollector) Collect(ch chan<- prometheus.Metric) {
	j, db, err := d.u.DiskUsage()
	if err != nil {
		d.log.Warn("metrics: the audit log's sizes cannot be read", "err", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(d.journal, prometheus.GaugeValue, float64(j))
	ch <- prometheus.MustNewConstMetric(d.database, prometheus.GaugeValue, float64(db))
}

// tokenCollector counts the tokens by status, cached for TokensTTL.
type tokenCollector struct {
	m    *Metrics
	desc *prometheus.Desc

	mu     sync.Mutex // scrape time only
	at     time.Time
	counts map[string]int64
}

func (t *tokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- t.desc }

// tokenCountTimeout bounds one count of the tokens.
const tokenCountTimeout = 5 * time.Second

func (t *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.m.opts.Now()
	if t.counts == nil || now.Sub(t.at) >= t.m.opts.TokensTTL || now.Before(t.at) {
		ctx, cancel := context.WithTimeout(context.Background(), tokenCountTimeout)
		counts, err := t.m.opts.Tokens.CountTokens(ctx, now)
		cancel()
		if err != nil {
			t.m.log.Warn("metrics: the tokens cannot be counted", "err", err)
			return
		}
		t.counts, t.at = counts, now
	}
	known := map[string]bool{}
	for _, s := range TokenStatuses() {
		known[s] = true
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.GaugeValue, float64(t.counts[s]), s)
	}
	var other int64
	for s, n := range t.counts {
		if !known[s] {
			other += n
		}
	}
	if other > 0 {
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.GaugeValue, float64(other), Other)
	}
}
