package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/monitor/sink"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/tlsutil"
)

// The monitor of a server run: the detectors (internal/monitor, brute
// force included: its Throttle serves both listeners), alerts recorded in
// the store and the audit log and delivered to the configured sinks
// (internal/monitor/sink), suspensions through the authority (audited as
// token.suspended), baselines snapshotted to the store's meta table.

// minWebhookKey is the shortest webhook HMAC key accepted.
const minWebhookKey = 32

// monitorConfig maps the config file's monitor and bruteforce sections
// onto the monitor's Config.
func monitorConfig(c *config.Config) monitor.Config {
	m := c.Monitor
	mode := func(s string) monitor.Mode {
		switch s {
		case config.ModeOff:
			return monitor.ModeOff
		case config.ModeBlock:
			return monitor.ModeBlock
		}
		return monitor.ModeAlert
	}
	b := c.BruteForce
	return monitor.Config{
		Enabled: m.Enabled, MaxTokens: m.MaxTokens, Queue: m.Queue,
		SnapshotEvery: m.SnapshotEvery.Duration(), Cooldown: m.Cooldown.Duration(),
		NewNetwork: monitor.NewNetworkConfig{Mode: mode(m.NewNetwork.Mode), Learning: m.NewNetwork.Learning.Duration(), MaxPrefixes: m.NewNetwork.MaxPrefixes},
		RateSpike: monitor.RateSpikeConfig{Mode: mode(m.RateSpike.Mode), K: m.RateSpike.K, Floor1s: m.RateSpike.Floor1s,
			Floor10s: m.RateSpike.Floor10s, Alpha: m.RateSpike.Alpha},
		OffHours: monitor.OffHoursConfig{Mode: mode(m.OffHours.Mode), Learning: m.OffHours.Learning.Duration(), MaxSubjects: m.OffHours.MaxSubjects},
		Probing: monitor.ProbingConfig{Mode: mode(m.Probing.Mode), Denials: m.Probing.Denials, Window: m.Probing.Window.Duration(),
			Reasons: append([]string(nil), m.Probing.Reasons...)},
		BruteForce: monitor.BruteForceConfig{Mode: monitor.ModeBlock, SlowAfter: b.SlowAfter, BlockAfter: b.BlockAfter,
			Window: b.Window.Duration(), Delay: b.Delay.Duration(), CoolOff: b.CoolOff.Duration(), MaxSources: b.MaxSources},
		Sharing: monitor.SharingConfig{Mode: mode(m.Sharing.Mode), Window: m.Sharing.Window.Duration(), Learning: m.Sharing.Learning.Duration(),
			Margin: m.Sharing.Margin, MinSources: m.Sharing.MinSources},
		BreakGlass: monitor.BreakGlassConfig{Mode: mode(m.BreakGlass.Mode)},
	}
}

// metaSnapshots keeps the monitor's snapshots in the store's meta table,
// under prefix+key: a cluster node's under its own name ("node/<name>/"),
// since what it learned is what it saw.
type metaSnapshots struct {
	st     store.Store
	prefix string
}

func (s metaSnapshots) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.st.GetMeta(ctx, s.prefix+key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

func (s metaSnapshots) Put(ctx context.Context, key string, blob []byte) error {
	return s.st.PutMeta(ctx, s.prefix+key, blob)
}

// runningMonitor is the monitor and what delivers its alerts.
type runningMonitor struct {
	mon      *monitor.Monitor
	webhooks []*sink.Webhook
	// sink is what the monitor raises alerts through (audit + store, then
	// webhooks and log); the admin API raises its leak alerts through it too.
	sink monitor.Sink
}

// throttle is the brute-force detector for the listeners (nil when off:
// a typed nil must not become a non-nil interface).
func (r *runningMonitor) throttle() *monitor.Throttle { return r.mon.Throttle() }

// startMonitor builds the monitor from cfg over node n, restores its last
// snapshot, and runs it and its webhooks until ctx ends.
func startMonitor(ctx context.Context, cfg *config.Config, n *node, now func() time.Time, log *slog.Logger) (*runningMonitor, error) {
	r := &runningMonitor{}
	var deliver []monitor.Sink
	if cfg.Monitor.Sinks.Log {
		deliver = append(deliver, sink.Log{Logger: log})
	}
	secrets := vaultSecrets{v: n.vault}
	for i, wc := range cfg.Monitor.Sinks.Webhooks {
		wc = wc.WithDefaults()
		key, err := secrets.Resolve(ctx, wc.Secret)
		if err != nil {
			return nil, fmt.Errorf("monitor.sinks.webhooks[%d].secret: %w", i, err)
		}
		if len(key) < minWebhookKey {
			return nil, fmt.Errorf("monitor.sinks.webhooks[%d].secret: the key is %d bytes, want at least %d", i, len(key), minWebhookKey)
		}
		tc, err := tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: wc.CAFile})
		if err != nil {
			return nil, fmt.Errorf("monitor.sinks.webhooks[%d].ca_file: %w", i, err)
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
		w, err := sink.NewWebhook(sink.WebhookOptions{URL: wc.URL, Secret: key, Now: now, Queue: wc.Queue, Client: client,
			Attempts: wc.Attempts, Backoff: wc.Backoff.Duration(), MaxBackoff: wc.MaxBackoff.Duration(),
			Logger: log.With("sink", fmt.Sprintf("webhook[%d]", i))})
		if err != nil {
			return nil, fmt.Errorf("monitor.sinks.webhooks[%d]: %w", i, err)
		}
		r.webhooks = append(r.webhooks, w)
		deliver = append(deliver, w)
	}
	snaps := metaSnapshots{st: n.store}
	if n.pg != nil {
		snaps.prefix = "node/" + cfg.Audit.Node + "/"
	}
	if n.metrics != nil {
		deliver = append(deliver, alertCounter{n.metrics})
	}
	fan := &sink.Fanout{Record: &sink.Recorder{Audit: n.audit, Store: n.store}, Deliver: deliver, Logger: log}
	r.sink = fan
	mon, err := monitor.New(monitorConfig(cfg), monitor.Options{Now: now, Sink: fan, Suspender: n.auth,
		Store: snaps, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if err := mon.Restore(ctx); err != nil {
		// learned baselines are lost, not the protection: learn again
		log.Warn("monitor: the last snapshot could not be restored; baselines are learned again", "err", err)
	}
	r.mon = mon
	for _, w := range r.webhooks {
		go w.Run(ctx)
	}
	go func() {
		if err := mon.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("monitor stopped", "err", err)
		}
	}()
	return r, nil
}
