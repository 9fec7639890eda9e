package main

import (
	"context"
	"fmt"
	"net/url"
)

// compare measures target t of server p against a baseline that answers
// the same requests with a body of the same size and the same status, and
// reports phigate's share of the baseline's requests per second against
// goal.
func compare(ctx context.Context, o options, scenario string, p *inproc, t *Target, goal float64) (*Report, error) {
	tc, err := tlsClientConfig(p.CertPEM)
	if err != nil {
		return nil, err
	}
	l, err := NewLoader(o.Concurrency, tc)
	if err != nil {
		return nil, err
	}
	defer l.Close()

	size, err := l.Probe(ctx, t)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	expect := t.Expect
	if expect == 0 {
		expect = 200
	}
	b, err := startBaseline(p.CertFile, p.KeyFile, u.Path, size, expect)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer b.Close()
	bt := &Target{
		Name: "baseline", URL: b.URL, Method: t.Method, ContentType: t.ContentType,
		Header: t.Header, Body: t.Body, Next: t.Next, Expect: expect,
	}
	if t.BaselineBody != nil {
		bt.Body, bt.Next = t.BaselineBody, nil
	}
	res, err := l.RunRounds(ctx, []*Target{bt, t}, o.Warmup, o.Duration, o.Rounds)
	if err != nil {
		return nil, err
	}
	base, phi := res[0], res[1]
	rep := &Report{
		Scenario: scenario, Concurrency: o.Concurrency, Results: res, Target: goal,
		Config: map[string]any{
			"duration": o.Duration.String(), "warmup": o.Warmup.String(), "rounds": o.Rounds,
			"response_bytes": size, "status": expect,
		},
	}
	if base.RPS > 0 {
		rep.Ratio = phi.RPS / base.RPS
	}
	rep.Pass = rep.Ratio >= goal && rep.errors() == 0
	rep.Lines = []string{
		resultLine(scenario, base),
		resultLine(scenario, phi) + fmt.Sprintf("  ratio=%.2f%s (target ≥ %.2f) %s", rep.Ratio, roundSpread(phi, base), goal, passFail(rep.Pass)),
		fmt.Sprintf("%-11s setup     c=%d duration=%v warmup=%v rounds=%d (interleaved A/B) response=%dB status=%d TLS1.3 HTTP/1.1 keep-alive",
			scenario, o.Concurrency, o.Duration, o.Warmup, o.Rounds, size, expect),
	}
	return rep, nil
}
