package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/gateway"
	"github.com/phigate/phigate/internal/metrics"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/policy"
)

// newMetrics builds the node's metrics: the closed sets of its labels
// (every reason code of policy, the gateway, the admin API and the
// monitor; the monitor's detectors), and the store and audit log of n,
// read at scrape time.
func newMetrics(n *node, now func() time.Time, log *slog.Logger) *metrics.Metrics {
	var reasons []string
	for r := policy.ReasonNone; r <= policy.Unavailable; r++ {
		reasons = append(reasons, r.Code())
	}
	reasons = append(reasons, gateway.ReasonCodes()...)
	reasons = append(reasons, api.ReasonCodes()...)
	reasons = append(reasons, monitor.ReasonNewNetwork, monitor.ReasonOffHours, monitor.ReasonTooManyFailures)
	return metrics.New(metrics.Options{
		Reasons: reasons,
		Detectors: []string{monitor.DetectorNewNetwork, monitor.DetectorRateSpike, monitor.DetectorOffHours, monitor.DetectorProbing,
			monitor.DetectorBruteForce, monitor.DetectorSharing, monitor.DetectorBreakGlass, monitor.DetectorLeak},
		Tokens: nodeTokens{n}, Audit: nodeAudit{n}, Now: now, Logger: log,
	})
}

// nodeTokens and nodeAudit read the node's store and audit log once they
// are open (the metrics are built before them, for their hooks).
type nodeTokens struct{ n *node }

func (t nodeTokens) CountTokens(ctx context.Context, now time.Time) (map[string]int64, error) {
	if t.n.store == nil {
		return nil, errors.New("the store is not open")
	}
	c, ok := t.n.store.(metrics.TokenCounter)
	if !ok {
		return nil, errors.New("the store does not count tokens")
	}
	return c.CountTokens(ctx, now)
}

type nodeAudit struct{ n *node }

func (a nodeAudit) DiskUsage() (int64, int64, error) {
	if a.n.audit == nil {
		return 0, 0, errors.New("the audit log is not open")
	}
	return a.n.audit.DiskUsage()
}

// alertCounter is the monitor sink that counts alerts by detector.
type alertCounter struct{ m *metrics.Metrics }

func (c alertCounter) Raise(_ context.Context, a *monitor.Alert) error {
	c.m.AlertRaised(a.Detector)
	return nil
}

// startMetricsListener serves GET /metrics without a token on
// cfg.Metrics.Listen (config checks that it is private unless
// allow_public), over TLS with the server's certificate. It returns nil
// when none is configured.
func startMetricsListener(cfg *config.Config, m *metrics.Metrics, tc *tls.Config, log *slog.Logger) (*http.Server, string, error) {
	if cfg.Metrics.Listen == "" {
		return nil, "", nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listener: %w", err)
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	return srv, ln.Addr().String(), nil
}
