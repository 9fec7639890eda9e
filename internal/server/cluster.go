package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/auditcluster"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/vault"
)

// A cluster node (store: postgres://…)
//
// Every node opens the one database: the token store and the vault (data
// keys, pepper, upstream credentials) are shared; the data directory keeps
// what is the node's own (TLS files, its audit log, its lock). The first
// node to open an empty database creates the vault in it (phigate init,
// or server --dev); the others find it there.
//
// Each node follows the others' changes (postgres.Follow): a token change
// reaches authority.Refresh, a vault change reloads the vault and the
// peppers. The node's view of the changes is as old as the follower's
// last successful poll; past postgres.max_staleness the node refuses every
// verification (503) and /readyz says so, because it can no longer learn
// of revocations. It serves again by itself once a poll succeeds.

// ErrStale is the refusal of a node whose view of the cluster's changes
// is older than postgres.max_staleness.
var ErrStale = errors.New("this node cannot reach the database to learn of revocations")

// freshness bounds the age of the node's view of the cluster's changes.
type freshness struct {
	max time.Duration
	now func() time.Time
	// follower is nil until the node follows the cluster (Run): before
	// that (init, start-up) there is nothing cached to be stale.
	follower atomic.Pointer[postgres.Follower]
}

// staleError says how old the view is; its message is what /readyz and
// the log report (nothing secret).
type staleError struct {
	age, max time.Duration
	never    bool
}

func (e *staleError) Error() string {
	if e.never {
		return fmt.Sprintf("%v: no change feed poll has succeeded yet (bound %v)", ErrStale, e.max)
	}
	return fmt.Sprintf("%v: its view is %v old (bound %v)", ErrStale, e.age.Round(time.Millisecond), e.max)
}

func (e *staleError) Unwrap() error { return ErrStale }

// Public is what the admin API's /readyz may tell (see api.Options.Ready).
func (e *staleError) Public() string { return e.Error() }

// check returns a *staleError once the view is older than the bound.
func (f *freshness) check() error {
	fol := f.follower.Load()
	if fol == nil {
		return nil
	}
	synced := fol.Synced()
	if synced.IsZero() {
		return &staleError{max: f.max, never: true}
	}
	if age := f.now().Sub(synced); age > f.max {
		return &staleError{age: age, max: f.max}
	}
	return nil
}

// clusterInitialised reports whether the database of cfg's store holds a
// cluster's vault (phigate init made it). A server outside dev mode starts
// only on one, as on an initialised data directory.
func clusterInitialised(ctx context.Context, cfg *config.Config, now func() time.Time, logger *slog.Logger) (bool, error) {
	pg, err := postgres.Open(ctx, cfg.Store, postgres.Options{Now: now, MaxConns: 2, CAFile: cfg.Postgres.CAFile, Logger: logger})
	if err != nil {
		return false, err
	}
	defer pg.Close()
	empty, err := pg.VaultStorage().Empty(ctx)
	return !empty, err
}

// openCluster opens the PostgreSQL store of cfg and the vault in it
// (creating the vault, with its first pepper, in an empty database).
func (n *node) openCluster(ctx context.Context, cfg *config.Config, provider vault.Provider, vopts vault.Options, now func() time.Time, logger *slog.Logger) error {
	pg, err := postgres.Open(ctx, cfg.Store, postgres.Options{Now: now, MaxConns: int32(cfg.Postgres.MaxConns),
		CAFile: cfg.Postgres.CAFile, Logger: logger})
	if err != nil {
		return err // never holds the password (package postgres)
	}
	n.pg, n.store = pg, pg
	n.fresh = &freshness{max: cfg.Postgres.MaxStaleness.Duration(), now: now}
	vs := pg.VaultStorage()
	empty, err := vs.Empty(ctx)
	if err != nil {
		return err
	}
	if !empty {
		n.vault, err = vault.OpenStorage(ctx, vs, provider, vopts)
		return err
	}
	if n.vault, err = vault.CreateStorage(ctx, vs, provider, vopts); err != nil {
		return fmt.Errorf("creating the cluster's vault (start one node first, phigate init): %w", err)
	}
	if _, err := n.vault.RotatePepper(ctx); err != nil {
		return fmt.Errorf("creating the cluster's first pepper: %w", err)
	}
	logger.Info("created the cluster's vault in the database", "schema", pg.Schema())
	return nil
}

// followCluster starts following the other nodes' changes (a no-op
// without a PostgreSQL store) and logs when the node turns stale and
// fresh again. The returned function stops it.
func (n *node) followCluster(ctx context.Context, cfg *config.Config, log *slog.Logger) (stop func(), err error) {
	if n.pg == nil {
		return func() {}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	reload := make(chan struct{}, 1)
	fol, err := n.pg.Follow(ctx, postgres.FollowOptions{
		Interval: cfg.Postgres.PollInterval.Duration(),
		OnChange: n.auth.Refresh,
		OnVault: func() {
			select {
			case reload <- struct{}{}:
			default: // one is pending: it reads everything
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: following the changes: %w", err)
	}
	n.fresh.follower.Store(fol)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cfg.Postgres.PollInterval.Duration())
		defer t.Stop()
		stale := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-reload:
				// another node rotated a key or set a secret
				if err := n.vault.Reload(ctx); err != nil {
					log.Error("cluster: reloading the shared vault failed; keys changed elsewhere are not usable here until it succeeds", "err", err)
					continue
				}
				if err := n.auth.ReloadPeppers(ctx); err != nil {
					log.Error("cluster: reloading the peppers failed", "err", err)
				}
			case <-t.C:
				err := n.fresh.check()
				switch {
				case err != nil && !stale:
					stale = true
					log.Error("cluster: refusing every request until the database is reachable again", "err", err)
				case err == nil && stale:
					stale = false
					log.Warn("cluster: the view of changes is fresh again; serving")
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			fol.Close()
		})
	}, nil
}

// mirrorAudit starts copying the node's audit log into the cluster's
// shared tables (auditcluster: each node's log stays durable on its own
// disk; the shared copy lags by at most the mirror's interval plus one
// commit, and /readyz fails past its MaxLag or on a tamper alarm). It
// returns the cluster's merged audit view for GET /v1/audit, nil without
// a PostgreSQL store. stop MUST be called before the audit log closes;
// it copies what is left, the final checkpoint excepted (the next start
// copies that).
func (n *node) mirrorAudit(ctx context.Context, now func() time.Time, log *slog.Logger) (view *auditcluster.Cluster, stop func(), err error) {
	if n.pg == nil {
		return nil, func() {}, nil
	}
	// Every node shares the vault, so any node opens every node's sealed
	// fields and blind index: the merged view filters by patient too.
	sealer := audit.VaultSealer(n.vault)
	cl, err := auditcluster.New(ctx, n.pg.Pool(), auditcluster.Options{Now: now,
		Sealer: func(string) audit.Sealer { return sealer }})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster audit: %w", err)
	}
	m, err := cl.NewMirror(n.audit, auditcluster.MirrorOptions{Verifier: n.audit.PublicKey(), Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster audit: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("cluster audit: the mirror stopped; this node's entries no longer reach the shared database", "err", err)
		}
	}()
	n.mirror = m
	var once sync.Once
	return cl, func() {
		once.Do(func() {
			cancel()
			<-done
			// what was appended before the stop, in one last copy
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			if _, err := m.Sync(sctx); err != nil {
				log.Warn("cluster audit: the last copy before shutdown failed; the next start copies it", "err", err)
			}
		})
	}, nil
}
