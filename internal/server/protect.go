package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/diskspace"
	"github.com/phigate/phigate/internal/preauth"
)

// protections are what keeps a flood of anonymous requests from filling
// the disk: the aggregation of their denials in the audit log (n.pre) and
// the low-space watermark. (Guessing tokens is the monitor's brute-force
// detector: see monitor.go.)
type protections struct {
	space *diskspace.Watermark
}

// startProtections builds them from cfg and starts their tickers until
// ctx ends; n.pre is set (Close it at shutdown to write the last
// summaries). probe measures the data directory's free space (nil:
// statfs); now is the clock of the aggregation (its ticker follows the
// wall clock).
func startProtections(ctx context.Context, cfg *config.Config, n *node, probe diskspace.Probe, now func() time.Time, log *slog.Logger) (*protections, error) {
	if probe == nil {
		probe = diskspace.Statfs{}
	}
	a := cfg.Audit.Anonymous
	pre, err := preauth.New(n.audit, preauth.Config{Full: a.FullPerWindow, Window: a.Window.Duration(), MaxGroups: a.MaxGroups, MaxField: a.MaxFieldBytes}, now, log)
	if err != nil {
		return nil, fmt.Errorf("audit.anonymous: %w", err)
	}
	st := cfg.Storage
	space, err := diskspace.New(cfg.DataDir, diskspace.Config{MinFreeBytes: uint64(st.MinFreeBytes), MinFreePercent: float64(st.MinFreePercent),
		Interval: st.CheckInterval.Duration()}, probe, func(err error) {
		if err != nil {
			log.Error("disk space below the watermark: refusing every request until space is freed", "err", err)
		} else {
			log.Warn("disk space back above the watermark: serving again")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if err := space.Low(); err != nil {
		log.Error("disk space below the watermark at start: requests are refused until space is freed", "err", err)
	}
	n.pre = pre
	go pre.Run(ctx)
	go space.Run(ctx)
	return &protections{space: space}, nil
}
