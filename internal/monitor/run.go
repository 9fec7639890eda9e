package monitor

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Run acts on what the detectors find until ctx ends: it suspends tokens
// (Suspender), hands alerts to the Sink, and snapshots the learned
// baselines every SnapshotEvery. A finding is acted on as soon as it is
// queued, so a windowed detector acts within a second of the request that
// tripped it. Run returns ctx's error.
//
// Snapshots are taken on a goroutine of their own, so that a slow store
// never delays an alert or a suspension.
func (m *Monitor) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(m.cfg.SnapshotEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := m.Snapshot(ctx); err != nil {
					m.log.Warn("monitor: snapshot failed", "err", err)
				}
			}
		}
	}()
	defer func() { <-done }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f := <-m.queue:
			m.act(ctx, &f)
		}
	}
}

// Drain acts on every finding queued now, then returns (for tests and
// for Close).
func (m *Monitor) Drain(ctx context.Context) {
	for {
		select {
		case f := <-m.queue:
			m.act(ctx, &f)
		default:
			return
		}
	}
}

// Close acts on the findings still queued and takes a last snapshot.
func (m *Monitor) Close(ctx context.Context) error {
	m.Drain(ctx)
	return m.Snapshot(ctx)
}

// act suspends (when the finding says so) and raises the alert.
func (m *Monitor) act(ctx context.Context, f *finding) {
	a := m.alert(f)
	if a.Action == Suspended {
		if m.susp == nil {
			a.Action = None
		} else if err := m.susp.Suspend(ctx, a.TokenID, "monitor: "+a.Detector); err != nil {
			a.Action = None
			a.Evidence["suspend_error"] = err.Error()
			m.log.Error("monitor: suspending a token failed", "token_id", a.TokenID, "detector", a.Detector, "err", err)
		}
	}
	m.raised.Add(1)
	if m.sink == nil {
		m.log.Warn("monitor: alert", "detector", a.Detector, "severity", a.Severity.String(), "token_id", a.TokenID,
			"source", a.Source, "action", a.Action.String(), "summary", a.Summary)
		return
	}
	if err := m.sink.Raise(ctx, a); err != nil {
		m.log.Error("monitor: raising an alert failed", "detector", a.Detector, "token_id", a.TokenID, "err", err)
	}
}

// alert turns a finding into the Alert the Sink gets.
func (m *Monitor) alert(f *finding) *Alert {
	a := &Alert{Detector: f.det.name(), TokenID: f.tokenID, Subject: f.subject, Action: f.action, At: f.at,
		Evidence: map[string]any{}}
	if f.source.IsValid() {
		a.Source = sourceString(f.source)
	}
	if f.nseq > 0 {
		a.AuditSeqs = append([]uint64(nil), f.seqs[:f.nseq]...)
	}
	who := "token " + f.tokenID
	switch f.det {
	case detNewNetwork:
		a.Severity = Medium
		if f.action == Blocked {
			a.Severity = High
		}
		a.Evidence["network"] = a.Source
		a.Evidence["declared"] = f.declared
		a.Evidence["known_count"] = int(f.count)
		if f.nknown > 0 {
			known := make([]string, f.nknown)
			for i := range known {
				known[i] = f.known[i].netip().String()
			}
			a.Evidence["known_networks"] = known // the first maxKnown
		}
		a.Summary = fmt.Sprintf("%s used from network %s, not one it is known from", who, a.Source)
	case detRateSpike:
		a.Severity = High
		a.Evidence["window"] = f.window.String()
		a.Evidence["count"] = f.count
		a.Evidence["baseline_mean"] = round(f.base)
		a.Evidence["baseline_stddev"] = round(f.dev)
		a.Evidence["limit"] = round(f.limit)
		a.Summary = fmt.Sprintf("%s made %.0f requests in %s; its baseline is %.1f (limit %.1f)", who, f.count, f.window, f.base, f.limit)
	case detOffHours:
		a.Severity = Medium
		if f.action == Blocked {
			a.Severity = High
		}
		a.Evidence["hour"] = int(f.hour)
		a.Evidence["normal_hours"] = hoursList(f.learned)
		a.Evidence["declared"] = f.declared
		a.Summary = fmt.Sprintf("%s used at hour %02d, outside its normal hours", who, f.hour)
	case detProbing:
		a.Severity = High
		a.Evidence["denials"] = int(f.count)
		a.Evidence["window"] = f.window.String()
		a.Summary = fmt.Sprintf("%s was denied %d times within %s (insufficient scope or compartment)", who, int(f.count), f.window)
	case detBruteForce:
		a.Severity = High
		a.Evidence["failures"] = int(f.count)
		a.Evidence["window"] = f.window.String()
		a.Evidence["cool_off"] = m.cfg.BruteForce.CoolOff.String()
		src := a.Source
		if src == "" {
			src = "an unknown source"
		}
		a.Summary = fmt.Sprintf("%s presented %d invalid credentials within %s; refused for %s", src, int(f.count), f.window, m.cfg.BruteForce.CoolOff)
	case detSharing:
		a.Severity = Critical
		a.Evidence["distinct_sources"] = int(f.count)
		a.Evidence["most_before"] = int(f.base)
		a.Evidence["limit"] = int(f.limit)
		a.Evidence["window"] = f.window.String()
		a.Summary = fmt.Sprintf("%s used from %d distinct sources within %s; the most before was %d", who, int(f.count), f.window, int(f.base))
	case detBreakGlass:
		a.Severity = High
		a.Summary = fmt.Sprintf("%s used break-glass", who)
	}
	if a.Action == Suspended {
		a.Summary += "; token suspended"
	}
	return a
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

func hoursList(mask uint32) []int {
	var hs []int
	for h := range 24 {
		if mask&(1<<h) != 0 {
			hs = append(hs, h)
		}
	}
	return hs
}

// sourceString renders a prefix the way Alert.Source holds it: an
// address alone, or a network.
func sourceString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}
