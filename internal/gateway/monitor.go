package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/token"
)

// Monitor is the anomaly monitor (internal/monitor.Monitor). Check is the
// inline call of the monitor stage: made for a request about to be
// admitted, before anything about it is recorded; a blocking Verdict
// refuses it (recorded as a denial with the verdict's reason: 403, or 429
// with Retry-After for a source that is cooling off). Observe is told of
// every decision once it is recorded (grant, denial of an authenticated
// token, completion), with the audit sequence number when the Recorder
// reports one (SeqRecorder). Neither may block or allocate per request.
type Monitor interface {
	Check(o *monitor.Observation) monitor.Verdict
	Observe(o *monitor.Observation)
}

// SeqRecorder is an optional capability of a Recorder: RecordSeq is
// Record that also returns the sequence number the event got in the
// durable log (0 when it has none), for the monitor's evidence.
type SeqRecorder interface {
	RecordSeq(ctx context.Context, ev *Event) (uint64, error)
}

// inline runs the monitor's inline detectors on an authorized request
// (nil: go on).
func (g *Gateway) inline(q *request, rec *token.Record) *denial {
	m := g.opts.Monitor
	if m == nil {
		return nil
	}
	o := g.obsPool.get()
	*o = monitor.Observation{Time: q.now, Kind: monitor.Grant, TokenID: rec.ID, Subject: rec.Subject,
		Source: q.addr, BreakGlass: q.breakGlass, Policy: g.policies.of(rec, g)}
	v := m.Check(o)
	g.obsPool.put(o)
	if !v.Block {
		return nil
	}
	if v.Reason == monitor.ReasonTooManyFailures {
		return &denial{status: http.StatusTooManyRequests, code: CodeTooManyFailures,
			msg: "too many invalid tokens from this address; try again later", retry: v.RetryAfter}
	}
	return unreachable(v.Reason, "the monitor refused this request ("+v.Reason+"): it is outside what this token's policy allows; the request is recorded and an alert raised")
}

// policyCache keeps the parsed monitoring policy of each token revision
// (the monitor.* metadata), so that a request parses nothing. It is
// bounded: past maxPolicies entries it starts over.
type policyCache struct {
	mu sync.RWMutex // read on every request of a token with a policy
	m  map[string]cachedPolicy
}

type cachedPolicy struct {
	rev int64
	p   *monitor.TokenPolicy
}

const maxPolicies = 1 << 16

// of returns rec's policy (nil: none, or one that does not parse, which
// is logged: the defaults then apply).
func (c *policyCache) of(rec *token.Record, g *Gateway) *monitor.TokenPolicy {
	if !hasPolicy(rec.Metadata) {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[rec.ID]
	c.mu.RUnlock()
	if ok && e.rev == rec.Revision {
		return e.p
	}
	p, err := monitor.ParsePolicy(rec.Metadata)
	if err != nil {
		g.log.Warn("a token's monitor policy does not parse; the monitor's defaults apply", "token_id", rec.ID, "err", err)
		p = nil
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxPolicies {
		c.m = make(map[string]cachedPolicy)
	}
	c.m[rec.ID] = cachedPolicy{rec.Revision, p}
	c.mu.Unlock()
	return p
}

// cached returns the policy last seen for token id.
func (c *policyCache) cached(id string) *monitor.TokenPolicy {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[id].p
}

func hasPolicy(meta map[string]string) bool {
	for k := range meta {
		if strings.HasPrefix(k, monitor.PolicyPrefix) {
			return true
		}
	}
	return false
}

// observing is the Recorder the gateway uses when it has a Monitor: it
// records through the configured Recorder, then tells the monitor.
type observing struct {
	g     *Gateway
	inner Recorder
}

func (r *observing) Record(ctx context.Context, ev *Event) error {
	var seq uint64
	var err error
	if sr, ok := r.inner.(SeqRecorder); ok {
		seq, err = sr.RecordSeq(ctx, ev)
	} else {
		err = r.inner.Record(ctx, ev)
	}
	if err == nil {
		r.observe(ev, seq)
	}
	return err
}

// observingAsync is observing over an AsyncRecorder: completions are
// queued as before, then observed.
type observingAsync struct {
	observing
	async AsyncRecorder
}

// RecordAsync implements AsyncRecorder.
func (r *observingAsync) RecordAsync(ev *Event) {
	r.async.RecordAsync(ev)
	r.observe(ev, 0)
}

// observe wraps rec for the monitor, keeping its AsyncRecorder capability.
func observe(g *Gateway, rec Recorder) Recorder {
	o := observing{g: g, inner: rec}
	if ar, ok := rec.(AsyncRecorder); ok {
		return &observingAsync{observing: o, async: ar}
	}
	return &o
}

// observe tells the monitor of a recorded event. Denials before a token
// was identified are left out: the brute-force detector counts those as
// the Throttle's failures (once, not twice).
func (r *observing) observe(ev *Event, seq uint64) {
	if ev.TokenID == "" {
		return
	}
	o := r.g.obsPool.get()
	defer r.g.obsPool.put(o)
	*o = monitor.Observation{Time: ev.Time, TokenID: ev.TokenID, Subject: ev.Subject, Reason: ev.Reason,
		Status: ev.Status, BreakGlass: ev.BreakGlass, AuditSeq: seq, Policy: r.g.policies.cached(ev.TokenID)}
	switch ev.Kind {
	case KindGrant:
		o.Kind = monitor.Grant
	case KindDeny:
		o.Kind = monitor.Deny
	case KindComplete:
		o.Kind = monitor.Complete
	default:
		return
	}
	if a, err := netip.ParseAddr(ev.SourceIP); err == nil {
		o.Source = a.Unmap()
	}
	r.g.opts.Monitor.Observe(o)
}

// obsPool recycles Observations: one handed to an interface escapes, and
// the monitor keeps none after its call returns (its contract).
type obsPool struct{ p sync.Pool }

func (p *obsPool) get() *monitor.Observation {
	if o, ok := p.p.Get().(*monitor.Observation); ok {
		return o
	}
	return new(monitor.Observation)
}

func (p *obsPool) put(o *monitor.Observation) {
	*o = monitor.Observation{} // no token id or policy kept alive
	p.p.Put(o)
}
