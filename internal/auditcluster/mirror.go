package auditcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/audit"
)

// Source is the node's own log, read by a Mirror: the open *audit.Log in
// the node's process (which hurries its indexer when asked), or an
// *audit.Reader of its data directory.
type Source interface {
	// Origin is the log's origin, phigate/<node>.
	Origin() string
	// RawSize is the number of entries readable now.
	RawSize(ctx context.Context) (uint64, error)
	// RawEntries returns the stored rows of the entries [from, from+n)
	// that exist, in order.
	RawEntries(ctx context.Context, from uint64, n int) ([]audit.RawEntry, error)
	// Checkpoints returns at most n stored checkpoints of size greater
	// than after, by size.
	Checkpoints(ctx context.Context, after uint64, n int) ([]audit.StoredCheckpoint, error)
}

// MirrorOptions configure a Mirror.
type MirrorOptions struct {
	// Verifier is the node's public verifier key (audit.Log.PublicKey,
	// or audit.ReadVerifierKey of its data directory). Required.
	Verifier string
	// Batch is the number of entries copied per transaction (1000).
	Batch int
	// Interval is how often Run looks for new entries (50 ms).
	Interval time.Duration
	// MaxLag is the age of the oldest entry not copied yet beyond which
	// Status reports an error (5 s).
	MaxLag time.Duration
	// Logger receives the tamper alarm and retried errors (slog.Default).
	Logger *slog.Logger
}

// Mirror copies one node's log into the cluster's tables. Sync and Run
// must not be called concurrently on one Mirror (two Mirrors of one origin,
// in two processes, are safe: they take turns under an advisory lock).
type Mirror struct {
	c    *Cluster
	src  Source
	opts MirrorOptions

	// the copier's own state
	started bool
	next    uint64 // entries in the database
	cpAfter uint64 // the largest checkpoint size in the database

	// beforeCommit, when set (by tests), runs in each batch's transaction
	// after its writes; an error rolls the batch back, as a kill would.
	beforeCommit func() error

	mu     sync.Mutex
	status Status
}

// Status is how far the shared copy is behind the node's log.
type Status struct {
	Origin string
	// Mirrored is the number of the origin's entries in the database.
	Mirrored uint64
	// Local is the size of the node's log when last looked at.
	Local uint64
	// Behind = Local - Mirrored; Oldest is the time of the first entry not
	// copied yet (zero when none).
	Behind uint64
	Oldest time.Time
	// LastSync is when the last copy finished.
	LastSync time.Time
	// MaxLag is the longest an entry has waited, from its time to the
	// commit that copied it, since the Mirror started.
	MaxLag time.Duration
	// Err is the last error, or the lag exceeding MaxLag; ErrConflict and
	// ErrKeyChanged are permanent (Run stopped: see the alarm in the log).
	Err error
}

// NewMirror returns a Mirror of src into c.
func (c *Cluster) NewMirror(src Source, opts MirrorOptions) (*Mirror, error) {
	if opts.Verifier == "" {
		return nil, errors.New("auditcluster: a mirror needs the node's verifier key")
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = 50 * time.Millisecond
	}
	if opts.MaxLag <= 0 {
		opts.MaxLag = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Mirror{c: c, src: src, opts: opts}
	m.status.Origin = src.Origin()
	return m, nil
}

// Status returns how far the copy is behind (as of the last Sync), with
// Err set when the oldest entry not copied is older than MaxLag.
func (m *Mirror) Status() Status {
	m.mu.Lock()
	s := m.status
	m.mu.Unlock()
	if s.Err == nil && !s.Oldest.IsZero() {
		if lag := m.c.now().Sub(s.Oldest); lag > m.opts.MaxLag {
			s.Err = fmt.Errorf("auditcluster: %s: the shared audit copy is %v behind (more than %v)", s.Origin, lag.Round(time.Millisecond), m.opts.MaxLag)
		}
	}
	return s
}

// Run copies the log until ctx ends, every Interval. It returns nil when
// ctx ends, and ErrConflict or ErrKeyChanged (the tamper alarm, logged)
// when it stops because of them; other errors are logged and retried.
func (m *Mirror) Run(ctx context.Context) error {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	failing := false
	for {
		_, err := m.Sync(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrConflict), errors.Is(err, ErrKeyChanged):
			m.opts.Logger.Error("AUDIT TAMPER ALARM: the cluster's copy of this node's audit log conflicts with the log; mirroring stopped", "origin", m.src.Origin(), "err", err)
			return err
		case err != nil && !failing:
			m.opts.Logger.Warn("cannot copy the audit log to the cluster database; retrying", "origin", m.src.Origin(), "err", err)
			failing = true
		case err == nil && failing:
			m.opts.Logger.Info("the audit log is copied to the cluster database again", "origin", m.src.Origin())
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync copies everything the node's log holds now and returns the number
// of entries copied.
func (m *Mirror) Sync(ctx context.Context) (int, error) {
	n, err := m.sync(ctx)
	m.mu.Lock()
	m.status.Err = err
	m.mu.Unlock()
	return n, err
}

func (m *Mirror) sync(ctx context.Context) (int, error) {
	if !m.started {
		if err := m.c.Register(ctx, m.src.Origin(), m.opts.Verifier); err != nil {
			return 0, err
		}
		if err := m.resume(ctx); err != nil {
			return 0, err
		}
		m.started = true
	}
	// first, so that a Log hurries its indexer for what it acknowledged
	if _, err := m.src.RawSize(ctx); err != nil {
		return 0, err
	}
	total := 0
	for {
		n, more, err := m.batch(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if !more {
			break
		}
	}
	return total, m.look(ctx)
}

// look records how far the copy is behind.
func (m *Mirror) look(ctx context.Context) error {
	size, err := m.src.RawSize(ctx)
	if err != nil {
		return err
	}
	var oldest time.Time
	if size > m.next {
		first, err := m.src.RawEntries(ctx, m.next, 1)
		if err != nil {
			return err
		}
		if len(first) == 1 {
			oldest = time.Unix(0, first[0].Time)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status.Mirrored, m.status.Local, m.status.Behind, m.status.Oldest = m.next, size, 0, oldest
	if size > m.next {
		m.status.Behind = size - m.next
	}
	m.status.LastSync = m.c.now()
	return nil
}

// resume learns what the database holds for the origin, and checks that
// its last entry is the node's own.
func (m *Mirror) resume(ctx context.Context) error {
	origin := m.src.Origin()
	var next, cp int64
	err := m.c.pool.QueryRow(ctx, `SELECT
			(SELECT coalesce(max(seq)+1, 0) FROM audit_entries WHERE origin = $1),
			(SELECT coalesce(max(size), 0) FROM audit_checkpoints WHERE origin = $1)`, origin).Scan(&next, &cp)
	if err != nil {
		return err
	}
	if next > 0 {
		var body []byte
		if err := m.c.pool.QueryRow(ctx, `SELECT body FROM audit_entries WHERE origin = $1 AND seq = $2`, origin, next-1).Scan(&body); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w: %s: entry %d is missing", ErrConflict, origin, next-1)
			}
			return err
		}
		local, err := m.src.RawEntries(ctx, uint64(next-1), 1)
		if err != nil {
			return err
		}
		if len(local) == 0 || local[0].Seq != uint64(next-1) {
			return fmt.Errorf("%w: %s: the database holds %d entries, the node's log fewer", ErrConflict, origin, next)
		}
		if !bytes.Equal(local[0].Body, body) {
			return fmt.Errorf("%w: %s: entry %d differs", ErrConflict, origin, next-1)
		}
	}
	if cp > 0 {
		var note []byte
		if err := m.c.pool.QueryRow(ctx, `SELECT note FROM audit_checkpoints WHERE origin = $1 AND size = $2`, origin, cp).Scan(&note); err != nil {
			return err
		}
		local, err := m.src.Checkpoints(ctx, uint64(cp-1), 1)
		if err != nil {
			return err
		}
		if len(local) == 0 || local[0].Size != uint64(cp) || !bytes.Equal(local[0].Note, note) {
			return fmt.Errorf("%w: %s: the checkpoint of size %d differs from the node's", ErrConflict, origin, cp)
		}
	}
	m.next, m.cpAfter = uint64(next), uint64(cp)
	m.mu.Lock()
	m.status.Mirrored = m.next
	m.mu.Unlock()
	return nil
}

// errMoved: another mirror of the origin copied meanwhile.
var errMoved = errors.New("auditcluster: the origin's copy moved")

// batch copies up to Batch entries and the checkpoints they complete in
// one transaction; more reports that there may be more to copy.
func (m *Mirror) batch(ctx context.Context) (n int, more bool, err error) {
	origin := m.src.Origin()
	local, err := m.src.RawEntries(ctx, m.next, m.opts.Batch)
	if err != nil {
		return 0, false, err
	}
	for i, e := range local {
		if e.Seq != m.next+uint64(i) {
			return 0, false, fmt.Errorf("auditcluster: %s: the node's log skips from %d to %d", origin, m.next+uint64(i), e.Seq)
		}
	}
	end := m.next + uint64(len(local))
	cps, err := m.src.Checkpoints(ctx, m.cpAfter, 1000)
	if err != nil {
		return 0, false, err
	}
	for i, c := range cps {
		if c.Size > end {
			cps = cps[:i]
			break
		}
	}
	if len(local) == 0 && len(cps) == 0 {
		return 0, false, nil
	}
	err = pgx.BeginFunc(ctx, m.c.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "phigate-audit:"+origin); err != nil {
			return err
		}
		var have int64
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(seq)+1, 0) FROM audit_entries WHERE origin = $1", origin).Scan(&have); err != nil {
			return err
		}
		if uint64(have) < m.next {
			return fmt.Errorf("%w: %s: the database held %d entries and now holds %d (deleted)", ErrConflict, origin, m.next, have)
		}
		if uint64(have) != m.next {
			return errMoved
		}
		if len(local) > 0 {
			rows := make([][]any, len(local))
			for i, e := range local {
				rows[i] = []any{origin, int64(e.Seq), e.Time, e.TokenID, e.Subject, e.Hashes, e.Body}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_entries"},
				[]string{"origin", "seq", "time", "token_id", "subject", "hashes", "body"}, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
		}
		for _, c := range cps {
			tag, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (origin, size, time, note) VALUES ($1, $2, $3, $4) ON CONFLICT (origin, size) DO NOTHING`,
				origin, int64(c.Size), c.Time.UnixNano(), c.Note)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				continue
			}
			var note []byte
			if err := tx.QueryRow(ctx, `SELECT note FROM audit_checkpoints WHERE origin = $1 AND size = $2`, origin, int64(c.Size)).Scan(&note); err != nil {
				return err
			}
			if !bytes.Equal(note, c.Note) {
				return fmt.Errorf("%w: %s: the checkpoint of size %d differs", ErrConflict, origin, c.Size)
			}
		}
		if m.beforeCommit != nil {
			return m.beforeCommit()
		}
		return nil
	})
	if errors.Is(err, errMoved) {
		// copied by another mirror of this origin (or by this one before
		// a restart): check what is there and go on from it
		return 0, true, m.resume(ctx)
	}
	if err != nil {
		return 0, false, err
	}
	if len(local) > 0 {
		lag := m.c.now().Sub(time.Unix(0, local[0].Time))
		m.mu.Lock()
		m.status.MaxLag = max(m.status.MaxLag, lag)
		m.mu.Unlock()
	}
	m.next = end
	if len(cps) > 0 {
		m.cpAfter = cps[len(cps)-1].Size
	}
	return len(local), len(local) == m.opts.Batch || len(cps) == 1000, nil
}
