package server

import (
	"log/slog"
	"time"

	"github.com/phigate/phigate/internal/config"
	webconsole "github.com/phigate/phigate/internal/console"
)

// newConsole builds the web console the admin listener serves at
// /console/: over the node's authority, audit log and store, behind the
// monitor's brute-force guard; alerts only when the monitor is enabled.
func newConsole(cfg *config.Config, n *node, mon *runningMonitor, now func() time.Time, log *slog.Logger) (*webconsole.Console, error) {
	opts := webconsole.Options{Audit: n.audit, Record: n.recordDenial, Now: now, Logger: log}
	if cfg.Monitor.Enabled {
		opts.Alerts = n.store
	}
	if t := mon.throttle(); t != nil {
		opts.Throttle = t
	}
	return webconsole.New(n.auth, opts)
}
