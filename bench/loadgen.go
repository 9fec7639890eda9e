package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of every load run: the generator refuses anything larger.
const (
	maxConcurrency = 1024
	maxRunTime     = 15 * time.Minute
	// requestTimeout bounds one request, answer included.
	requestTimeout = 30 * time.Second
	// maxResponseBody is the most a worker reads of one answer.
	maxResponseBody = 1 << 20
)

// Target is one HTTP endpoint under load. It is driven by a Loader, whose
// connections it shares across runs.
type Target struct {
	// Name labels the results ("baseline", "phigate").
	Name string
	// URL is https://IP:port/path on a loopback address.
	URL string
	// Method is the HTTP method (POST when empty).
	Method string
	// ContentType of the request body, if any.
	ContentType string
	// Header is sent with every request (e.g. Authorization). It is never
	// printed: it may hold a bearer token.
	Header http.Header
	// Body is the request body of every request, unless Next is set.
	Body []byte
	// Next, when set, gives the body of each request; ok=false means the
	// work is done and the worker stops. It must be safe for concurrent use.
	Next func() (body []byte, ok bool)
	// BaselineBody, when set, is the baseline's fixed body instead of
	// Next's (bodies that can be spent once, such as signed assertions).
	BaselineBody []byte
	// Expect is the only successful status (200 when zero).
	Expect int
	// Check, when set, validates a successful answer's body; an error makes
	// the request count as an error. It must not include the body (which
	// may echo request data) in the error.
	Check func(body []byte) error
}

// Loader drives Targets with a fixed number of workers. Each worker sends
// one request at a time on its own keep-alive HTTP/1.1 connection over
// TLS 1.3 (one shared Transport allows exactly Concurrency connections per
// host). Only loopback addresses can be dialled.
type Loader struct {
	Concurrency int
	client      *http.Client
	transport   *http.Transport
}

// NewLoader returns a Loader with c workers whose TLS client settings start
// from tlsConf (nil: system roots); the version is forced to 1.3 and ALPN
// to http/1.1.
func NewLoader(c int, tlsConf *tls.Config) (*Loader, error) {
	if c < 1 || c > maxConcurrency {
		return nil, fmt.Errorf("concurrency %d out of range 1..%d", c, maxConcurrency)
	}
	tc := tlsConf.Clone()
	if tc == nil {
		tc = &tls.Config{}
	}
	tc.MinVersion = tls.VersionTLS13
	tc.MaxVersion = tls.VersionTLS13
	tc.NextProtos = []string{"http/1.1"}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          0, // no total limit: keep every target's connections across rounds
		MaxIdleConnsPerHost:   c,
		MaxConnsPerHost:       c,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: requestTimeout,
		DisableCompression:    true,
	}
	return &Loader{
		Concurrency: c,
		transport:   tr,
		client: &http.Client{
			Transport:     tr,
			Timeout:       requestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Close drops the Loader's idle connections.
func (l *Loader) Close() { l.transport.CloseIdleConnections() }

// loopbackOnly refuses to connect anywhere but a loopback address, whatever
// a URL says.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("bench: refusing to connect to %s: only loopback addresses are allowed", address)
	}
	return nil
}

// checkTarget verifies that t names an https URL on a loopback IP.
func checkTarget(t *Target) error {
	u, err := url.Parse(t.URL)
	if err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("target %s: scheme %q: only https is measured", t.Name, u.Scheme)
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("target %s: host %q is not a loopback IP address", t.Name, u.Hostname())
	}
	return nil
}

// Result is what one or more runs of one Target measured.
type Result struct {
	Name      string        `json:"name"`
	Requests  int64         `json:"requests"`
	Errors    int64         `json:"errors"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	RPS       float64       `json:"rps"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Max       time.Duration `json:"max_ns"`
	BodyBytes int64         `json:"body_bytes,omitempty"`
	// CPU is the CPU time this whole process (load generator, proxy and
	// upstream alike) used during the measured phases; CPUUtil is CPU per
	// second of Elapsed (2.0: two cores busy), CPUPerRequest CPU per
	// request. A target that leaves the cores idle while requests wait
	// (for an fsync, say) shows a lower CPUUtil than one that does not.
	CPU           time.Duration `json:"cpu_ns,omitempty"`
	CPUUtil       float64       `json:"cpu_util,omitempty"`
	CPUPerRequest time.Duration `json:"cpu_per_request_ns,omitempty"`
	// RoundRPS is the throughput of each measured round (RunRounds), in
	// order: how much the machine drifted while it was measured.
	RoundRPS []float64 `json:"round_rps,omitempty"`
	// ErrorKinds counts the errors by kind ("status 503", "check: ...",
	// "transport: ...").
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`

	hist *histogram
}

// Merge adds the counts of o (another run of the same target) to r.
func (r *Result) Merge(o *Result) {
	if r.hist == nil {
		r.hist = new(histogram)
	}
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.Elapsed += o.Elapsed
	r.CPU += o.CPU
	if o.BodyBytes > 0 {
		r.BodyBytes = o.BodyBytes
	}
	for k, v := range o.ErrorKinds {
		if r.ErrorKinds == nil {
			r.ErrorKinds = map[string]int64{}
		}
		r.ErrorKinds[k] += v
	}
	if o.hist != nil {
		r.hist.merge(o.hist)
	}
	r.finish()
}

// finish derives the rates and percentiles from the counts.
func (r *Result) finish() {
	if r.Elapsed > 0 {
		r.RPS = float64(r.Requests) / r.Elapsed.Seconds()
		r.CPUUtil = r.CPU.Seconds() / r.Elapsed.Seconds()
	}
	if r.Requests > 0 {
		r.CPUPerRequest = r.CPU / time.Duration(r.Requests)
	}
	if r.hist != nil {
		r.P50 = r.hist.quantile(0.50)
		r.P99 = r.hist.quantile(0.99)
		r.Max = r.hist.max
	}
}

// ErrorSummary lists the error kinds, most frequent first.
func (r *Result) ErrorSummary() string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range r.ErrorKinds {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return strings.Join(parts, "; ")
}

// Run drives t with every worker: first for warmup (not recorded), then
// for d, or until t.Next reports the work done, whichever comes first. Only
// successful requests are counted in Requests and in the latencies.
func (l *Loader) Run(ctx context.Context, t *Target, warmup, d time.Duration) (*Result, error) {
	if err := checkTarget(t); err != nil {
		return nil, err
	}
	if d <= 0 || warmup < 0 || warmup+d > maxRunTime {
		return nil, fmt.Errorf("target %s: duration %v and warmup %v: each run must last between 0 and %v", t.Name, d, warmup, maxRunTime)
	}
	if warmup > 0 {
		if _, err := l.phase(ctx, t, warmup); err != nil {
			return nil, err
		}
	}
	return l.phase(ctx, t, d)
}

// worker is one worker's private tally, merged after the phase.
type worker struct {
	hist      histogram
	ok, errs  int64
	kinds     map[string]int64
	bodyBytes int64
	buf       bytes.Buffer
}

func (w *worker) fail(kind string) {
	w.errs++
	if w.kinds == nil {
		w.kinds = map[string]int64{}
	}
	w.kinds[kind]++
}

// phase runs every worker against t for d and returns their tally.
func (l *Loader) phase(ctx context.Context, t *Target, d time.Duration) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d+requestTimeout)
	defer cancel()
	workers := make([]*worker, l.Concurrency)
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	var stop atomic.Bool
	for i := range workers {
		w := &worker{}
		workers[i] = w
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
				body := t.Body
				if t.Next != nil {
					var ok bool
					if body, ok = t.Next(); !ok {
						stop.Store(true)
						return
					}
				}
				l.do(ctx, t, body, w)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	res := &Result{Name: t.Name, Elapsed: elapsed, CPU: cpu, hist: new(histogram)}
	for _, w := range workers {
		res.Requests += w.ok
		res.Errors += w.errs
		res.hist.merge(&w.hist)
		if w.bodyBytes > 0 {
			res.BodyBytes = w.bodyBytes
		}
		for k, v := range w.kinds {
			if res.ErrorKinds == nil {
				res.ErrorKinds = map[string]int64{}
			}
			res.ErrorKinds[k] += v
		}
	}
	res.finish()
	return res, nil
}

// do sends one request and records its outcome in w.
func (l *Loader) do(ctx context.Context, t *Target, body []byte, w *worker) {
	method := t.Method
	if method == "" {
		method = http.MethodPost
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.URL, rd)
	if err != nil {
		w.fail("request: " + err.Error())
		return
	}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	if t.ContentType != "" && body != nil {
		req.Header.Set("Content-Type", t.ContentType)
	}
	begin := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // the run is over; not the server's fault
		}
		w.fail("transport: " + transportKind(err))
		return
	}
	w.buf.Reset()
	_, rerr := w.buf.ReadFrom(io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	lat := time.Since(begin)
	expect := t.Expect
	if expect == 0 {
		expect = http.StatusOK
	}
	var kind string
	switch {
	case rerr != nil:
		kind = "reading answer: " + transportKind(rerr)
	case resp.StatusCode != expect:
		kind = strings.TrimSpace(fmt.Sprintf("status %d %s", resp.StatusCode, errorCode(w.buf.Bytes())))
	case t.Check != nil:
		if err := t.Check(w.buf.Bytes()); err != nil {
			kind = "check: " + err.Error()
		}
	}
	if kind != "" {
		w.fail(kind)
		return
	}
	w.ok++
	w.bodyBytes = int64(w.buf.Len())
	w.hist.record(lat)
}

// transportKind shortens a transport error to its kind, without the URL.
func transportKind(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// errorCode extracts the "code" of a phigate error body, which is safe to
// print (it never holds request data).
func errorCode(body []byte) string {
	const key = `"code":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return ""
	}
	return "(" + string(rest[:j]) + ")"
}

// RunRounds measures each target for d in total, split into rounds
// interleaved A, B, A, B, ... so that drift of the machine (other load,
// frequency, caches) hits every target alike. Each target is warmed up once
// for warmup before the first round.
func (l *Loader) RunRounds(ctx context.Context, targets []*Target, warmup, d time.Duration, rounds int) ([]*Result, error) {
	if rounds < 1 {
		rounds = 1
	}
	per := d / time.Duration(rounds)
	if per <= 0 {
		return nil, fmt.Errorf("duration %v is too short for %d rounds", d, rounds)
	}
	out := make([]*Result, len(targets))
	for i, t := range targets {
		out[i] = &Result{Name: t.Name, hist: new(histogram)}
		if warmup > 0 {
			if _, err := l.Run(ctx, t, 0, warmup); err != nil {
				return nil, err
			}
		}
	}
	for r := 0; r < rounds; r++ {
		for i, t := range targets {
			res, err := l.Run(ctx, t, 0, per)
			if err != nil {
				return nil, err
			}
			out[i].Merge(res)
			out[i].RoundRPS = append(out[i].RoundRPS, res.RPS)
		}
	}
	return out, nil
}

// histogram records durations in log-linear buckets: exact below 128ns,
// then 128 buckets per power of two (relative error below 0.8%). Its
// memory is fixed whatever the number of samples.
type histogram struct {
	counts [64 * subBuckets]uint64
	n      uint64
	max    time.Duration
}

const subBits = 7
const subBuckets = 1 << subBits

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketMid is the middle of bucket i's range.
func bucketMid(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	lo := uint64(i%subBuckets+subBuckets) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0..1), or 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketMid(i)), h.max)
		}
	}
	return h.max
}

// tlsClientConfig trusts only the certificate in certPEM.
func tlsClientConfig(certPEM []byte) (*tls.Config, error) {
	pool, err := certPool(certPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// Probe sends one request to t and returns the size of its answer's body,
// failing unless the answer is what t expects.
func (l *Loader) Probe(ctx context.Context, t *Target) (int, error) {
	if err := checkTarget(t); err != nil {
		return 0, err
	}
	w := &worker{}
	body := t.Body
	if t.Next != nil {
		var ok bool
		if body, ok = t.Next(); !ok {
			return 0, fmt.Errorf("probe %s: no request to send", t.Name)
		}
	}
	l.do(ctx, t, body, w)
	if w.ok != 1 {
		return 0, fmt.Errorf("probe %s: %s", t.Name, (&Result{ErrorKinds: w.kinds}).ErrorSummary())
	}
	return int(w.bodyBytes), nil
}
