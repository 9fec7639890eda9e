package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// The change feed
//
// A node caches token records; another node's change (a revocation, a
// suspension, a permission change, a rotation) must reach that cache. Two
// paths carry it, and both end in FollowOptions.OnChange(id, revision):
//
//  1. NOTIFY. Every such change sends "<id> <revision>" on Channel() in
//     its own transaction, so PostgreSQL delivers it at commit, and only
//     if it committed. Follow LISTENs on a connection of its own (not one
//     of the pool's) and hands each notification on at once. When that
//     connection breaks it reconnects (backing off up to a second), LISTENs
//     again and polls at once (the catch-up).
//  2. The poll, every FollowOptions.Interval, for what a broken connection
//     let pass. Each change stamps its row with its transaction id
//     (change_xid). A poll reads, in one statement (one snapshot), the
//     rows whose change_xid is not below xmin(previous poll's snapshot),
//     and that snapshot's xmin. A transaction the previous snapshot did
//     not see had an id at or above its xmin (running, or not yet
//     started), so its rows are read by the next poll once it commits:
//     no committed change is missed, whatever the commit order. Rows
//     read again (the window reaches back to the oldest transaction
//     running anywhere in the cluster) are not handed on twice.
//
// Synced is the start of the last poll that succeeded: every change
// committed before it has been handed on. Its age is how stale the
// node's view of revocations can be; the server refuses to serve once it
// passes a bound (fail closed).

// FollowOptions configure Follow.
type FollowOptions struct {
	// OnChange is called, from the follower's goroutines, for each change
	// (possibly more than once for one change, never for one that did
	// not commit). It MUST NOT block for long.
	OnChange func(id string, revision int64)
	// OnVault is called, likewise, when the shared vault changed (a key
	// rotation, a secret set on another node): reload it.
	OnVault func()
	// Interval is the poll interval (0: 1s).
	Interval time.Duration
}

// Follower follows the store's changes until Close.
type Follower struct {
	s      *Store
	opts   FollowOptions
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	synced    atomic.Int64 // unix nanoseconds of the last successful poll's start; 0 before the first
	listening atomic.Bool

	mu   sync.Mutex // guards xmin and seen (the poller's)
	xmin string     // xid8 as text: the previous snapshot's xmin ("" before the first poll)
	seen map[string]int64
	vgen int64 // the vault's change count at the previous poll
}

// Follow takes the starting point of the changes (the first poll, before
// it returns: Synced is set when it returns nil) and then follows them, a
// listener and a poller, until Close or ctx's end. Changes before the
// starting point are in the database, where a node's first read finds
// them: start following before anything is cached.
func (s *Store) Follow(ctx context.Context, opts FollowOptions) (*Follower, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.OnChange == nil {
		opts.OnChange = func(string, int64) {}
	}
	if opts.OnVault == nil {
		opts.OnVault = func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{s: s, opts: opts, cancel: cancel, kick: make(chan struct{}, 1), seen: map[string]int64{}}
	if err := f.Poll(ctx); err != nil {
		cancel()
		return nil, err
	}
	f.wg.Add(2)
	go f.listen(ctx)
	go f.pollLoop(ctx)
	return f, nil
}

// Close stops following and waits for the goroutines.
func (f *Follower) Close() {
	f.cancel()
	f.wg.Wait()
}

// Synced returns the start of the last successful poll (the zero time
// before the first): every change committed before it has been handed to
// OnChange.
func (f *Follower) Synced() time.Time {
	n := f.synced.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Listening reports whether the LISTEN connection is up.
func (f *Follower) Listening() bool { return f.listening.Load() }

// Poll polls now (tests; the poller calls it on its own).
func (f *Follower) Poll(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := f.s.opts.Now()
	if f.xmin == "" {
		var xmin string
		var vgen int64
		if err := f.s.pool.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, (SELECT gen FROM vault_changes)").Scan(&xmin, &vgen); err != nil {
			return f.s.fail(ctx, "change feed: poll", err)
		}
		f.xmin, f.vgen = xmin, vgen
		f.synced.Store(start.UnixNano())
		return nil
	}
	rows, err := f.s.pool.Query(ctx, `WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
			(SELECT gen FROM vault_changes) AS vgen)
		SELECT s.xmin, s.vgen, t.id, t.revision FROM s LEFT JOIN tokens t ON t.change_xid >= $1::text::xid8`, f.xmin)
	if err != nil {
		return f.s.fail(ctx, "change feed: poll", err)
	}
	var (
		xmin    string
		vgen    int64
		changes = map[string]int64{}
	)
	for rows.Next() {
		var id *string
		var rev *int64
		if err := rows.Scan(&xmin, &vgen, &id, &rev); err != nil {
			rows.Close()
			return f.s.fail(ctx, "change feed: poll", err)
		}
		if id != nil && rev != nil {
			changes[*id] = *rev
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return f.s.fail(ctx, "change feed: poll", err)
	}
	for id, rev := range changes {
		if f.seen[id] != rev {
			f.opts.OnChange(id, rev)
		}
	}
	if vgen != f.vgen {
		f.opts.OnVault()
	}
	f.seen, f.vgen = changes, vgen
	f.xmin = xmin
	f.synced.Store(start.UnixNano())
	return nil
}

func (f *Follower) pollLoop(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
		// bounded: a poll never hangs longer than an interval and a half
		pctx, cancel := context.WithTimeout(ctx, f.opts.Interval*3/2)
		err := f.Poll(pctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			f.s.opts.Logger.Warn("change feed: polling the database failed; retrying", "err", err)
		case err == nil && failing:
			failing = false
			f.s.opts.Logger.Info("change feed: polling the database again")
		}
	}
}

func (f *Follower) listen(ctx context.Context) {
	defer f.wg.Done()
	backoff := 50 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		err := f.listenOnce(ctx, func() {
			backoff = 50 * time.Millisecond
			if down {
				down = false
				f.s.opts.Logger.Info("change feed: listening again", "channel", f.s.channel)
			}
		})
		f.listening.Store(false)
		if ctx.Err() != nil {
			return
		}
		if !down {
			down = true
			f.s.opts.Logger.Warn("change feed: the LISTEN connection failed; reconnecting (the poll still runs)", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// listenOnce connects, LISTENs, asks for a catch-up poll, calls up, and
// hands notifications on until the connection fails.
func (f *Follower) listenOnce(ctx context.Context, up func()) error {
	cctx, cancel := context.WithTimeout(ctx, f.s.opts.ConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, f.s.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return f.s.redact(fmt.Errorf("connect: %w", err))
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.s.channel}.Sanitize()); err != nil {
		return f.s.redact(fmt.Errorf("listen: %w", err))
	}
	f.listening.Store(true)
	up()
	select { // catch up on what the broken connection let pass
	case f.kick <- struct{}{}:
	default:
	}
	for {
		// A connection that dies silently is not noticed here; the poll,
		// which judges freshness, is.
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return f.s.redact(fmt.Errorf("wait: %w", err))
		}
		id, rev, ok := parseNotification(n.Payload)
		switch {
		case ok && id == vaultPayload:
			f.opts.OnVault()
		case ok:
			f.opts.OnChange(id, rev)
		}
	}
}

// parseNotification parses "<id> <revision>".
func parseNotification(p string) (id string, rev int64, ok bool) {
	id, r, found := strings.Cut(p, " ")
	if !found || id == "" {
		return "", 0, false
	}
	rev, err := strconv.ParseInt(r, 10, 64)
	if err != nil || rev < 0 {
		return "", 0, false
	}
	return id, rev, true
}
