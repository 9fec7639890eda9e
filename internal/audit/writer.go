package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Group commit
//
// Append encodes its entry (all but seq and time) in the caller's goroutine
// and queues it. The writer goroutine takes the first request waiting and
// every other one already queued (up to MaxBatch), gives them consecutive
// sequence numbers and the same time, seals their PHI fields (Sealer),
// hashes them into a copy of the compact range, and writes them in one
// SQLite transaction:
//
//	BEGIN IMMEDIATE
//	INSERT INTO entries ... (up to 64 rows per statement)
//	INSERT INTO phi_index ...       -- the blind index of sealed fields
//	INSERT INTO checkpoints ...     -- when one is due: signed over this batch
//	COMMIT                          -- into the WAL, not yet fsync'd
//
// then calls fdatasync on the WAL file, and only then answers the callers,
// publishes the checkpoint and moves the size readers see. Requests that
// arrive during the commit and the sync wait in the queue and make the
// next batch, so one fsync covers many entries under load.
//
// This is exactly SQLite's synchronous=FULL durability (one WAL sync after
// each commit, before the commit is acknowledged), done by the writer
// itself: the database runs with synchronous=NORMAL, under which SQLite
// still syncs the WAL before each checkpoint into the database file, the
// database file after it, and the WAL header when the WAL is reused; what
// it skips, the per-commit sync, the writer does. (An earlier design
// pipelined the sync on a second goroutine; measured on a loaded 2-core
// machine, the extra goroutine hand-offs cost more than the overlap won:
// the gateway's throughput rose by a third without them.)
//
// If a write fails, the transaction is rolled back, every caller of the
// batch gets the error, the log turns unavailable (Ready fails, Append
// refuses at once) and an alert is logged; every ProbeInterval the writer
// reloads its state from the database and tries a small write, and becomes
// available again when it succeeds. A failed fdatasync is not retried: the
// kernel may have dropped the pages it could not write, so the log stays
// unavailable until it is reopened (a restart), which re-reads the WAL.

// writer is the writer connection and the tree state. Only the writer
// goroutine uses it once Open has returned.
type writer struct {
	db     *sql.DB
	conn   *sql.Conn
	wal    *os.File // the WAL, for fdatasync
	path   string
	stmts  map[string]*sql.Stmt
	signer note.Signer

	size      uint64         // entries committed (maybe not yet synced)
	rng       *compact.Range // compact range [0, size)
	tiles     *tileBuilder   // the tiles being filled
	lastTime  int64          // time of the last entry (times never go back)
	cp        *Checkpoint    // latest checkpoint committed
	lastProbe time.Time
}

// openWriter opens the writer connection and creates the schema (with a
// signed checkpoint of the empty tree) in a new database.
func openWriter(ctx context.Context, path string, signer note.Signer, now time.Time) (*writer, error) {
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, "journal_mode(WAL)", "synchronous(NORMAL)", "wal_autocheckpoint(20000)"))
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	w := &writer{db: db, path: path, stmts: map[string]*sql.Stmt{}, signer: signer}
	if w.conn, err = db.Conn(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if err := w.init(ctx, now); err != nil {
		w.close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return w, nil
}

func (w *writer) init(ctx context.Context, now time.Time) error {
	var mode string
	if err := w.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal", mode)
	}
	var v string
	err := w.conn.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'origin'").Scan(&v)
	switch {
	case err == nil:
		if v != w.signer.Name() {
			return fmt.Errorf("this database is the audit log %s, but the signing key is for %s", v, w.signer.Name())
		}
		for _, q := range schema { // new tables of a newer version
			if err := w.exec(q); err != nil {
				return err
			}
		}
		// a write, so that the WAL exists before we open it
		if err := w.exec("INSERT INTO meta (k, v) VALUES ('opened', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", now.UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		return w.openWAL()
	case !strings.Contains(err.Error(), "no such table") && !errors.Is(err, sql.ErrNoRows):
		return err
	}
	// a new log
	cp, err := signCheckpoint(w.signer, 0, hasher.EmptyRoot(), now)
	if err != nil {
		return err
	}
	if err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for _, q := range schema {
		if err = w.exec(q); err != nil {
			break
		}
	}
	if err == nil {
		err = w.exec("INSERT INTO meta (k, v) VALUES ('schema', ?), ('origin', ?)", schemaVersion, w.signer.Name())
	}
	if err == nil {
		err = w.exec("INSERT INTO checkpoints (size, time, note) VALUES (0, ?, ?)", cp.Time.UnixNano(), cp.Note)
	}
	if err == nil {
		err = w.exec("COMMIT")
	}
	if err != nil {
		w.exec("ROLLBACK")
		return err
	}
	if err := w.openWAL(); err != nil {
		return err
	}
	return w.sync()
}

// openWAL opens the WAL file for fdatasync. It exists as long as the
// writer connection is open (SQLite deletes it with the last connection).
func (w *writer) openWAL() error {
	f, err := os.OpenFile(w.path+"-wal", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open the WAL: %w", err)
	}
	w.wal = f
	return nil
}

// sync makes every transaction committed so far durable.
func (w *writer) sync() error {
	for {
		err := syscall.Fdatasync(int(w.wal.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

func (w *writer) close() error {
	var errs []error
	if w.conn != nil {
		w.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	}
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	if w.conn != nil {
		errs = append(errs, w.conn.Close())
	}
	if w.wal != nil {
		errs = append(errs, w.wal.Close())
	}
	errs = append(errs, w.db.Close())
	return errors.Join(errs...)
}

func (w *writer) exec(q string, args ...any) error {
	st, ok := w.stmts[q]
	if !ok {
		var err error
		if st, err = w.conn.PrepareContext(context.Background(), q); err != nil {
			return err
		}
		w.stmts[q] = st
	}
	_, err := st.ExecContext(context.Background(), args...)
	return err
}

// row is an entry ready to be inserted.
type row struct {
	seq              uint64
	t                int64
	tokenID, subject string
	hashes, body     []byte
}

const rowsPerInsert = 64

// appendLeaf hashes the encoded entry seq into rng, and returns the row's
// hashes; a tile it completes is added to tiles. (On a failed write the
// tile builder may be ahead of the database: the probe reloads it.)
func (w *writer) appendLeaf(rng *compact.Range, seq uint64, body []byte, tiles *[]tileRow) []byte {
	leaf := LeafHash(body)
	hs := make([]byte, 0, 32*rowHashCount(seq))
	rng.Append(leaf[:], func(id compact.NodeID, h []byte) {
		hs = append(hs, h...)
		if t := w.tiles.add(id, h); t != nil {
			*tiles = append(*tiles, *t)
		}
	})
	return hs
}

// indexRow is a blind index entry (seal.go).
type indexRow struct {
	tag int64
	seq uint64
}

// write commits rows, their blind index, tiles and, when cp is not nil, the checkpoint, in
// one transaction (not yet synced).
func (w *writer) write(rows []row, index []indexRow, tiles []tileRow, cp *Checkpoint) (err error) {
	if err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			w.exec("ROLLBACK") // fails harmlessly when SQLite already rolled back
		}
	}()
	args := make([]any, 0, 6*min(len(rows), rowsPerInsert))
	for len(rows) > 0 {
		n := min(len(rows), rowsPerInsert)
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, int64(r.seq), r.t, nullable(r.tokenID), nullable(r.subject), r.hashes, r.body)
		}
		q := "INSERT INTO entries (seq, time, token_id, subject, hashes, body) VALUES (?,?,?,?,?,?)" + strings.Repeat(",(?,?,?,?,?,?)", n-1)
		if err := w.exec(q, args...); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		rows = rows[n:]
	}
	for len(index) > 0 {
		n := min(len(index), 2*rowsPerInsert)
		args = args[:0]
		for _, x := range index[:n] {
			args = append(args, x.tag, int64(x.seq))
		}
		q := "INSERT OR IGNORE INTO phi_index (tag, seq) VALUES (?,?)" + strings.Repeat(",(?,?)", n-1)
		if err := w.exec(q, args...); err != nil {
			return fmt.Errorf("insert index: %w", err)
		}
		index = index[n:]
	}
	for _, t := range tiles {
		if err := w.exec("INSERT INTO tiles (id, hashes) VALUES (?, ?)", t.key, t.hashes); err != nil {
			return fmt.Errorf("insert tile: %w", err)
		}
	}
	if cp != nil {
		if err := w.exec("INSERT INTO checkpoints (size, time, note) VALUES (?, ?, ?)", int64(cp.Size), cp.Time.UnixNano(), cp.Note); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	if err := w.exec("COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// cloneRange returns a copy of r that can be extended without changing r.
func cloneRange(r *compact.Range) *compact.Range {
	hs := r.Hashes()
	c, err := rangeFactory.NewRange(r.Begin(), r.End(), append([][]byte(nil), hs...))
	if err != nil {
		panic(err) // a range's own hashes always fit it
	}
	return c
}

// committed is a transaction committed by the writer, to be synced
// (finish).
type committed struct {
	reqs []*request
	res  []result
	size uint64      // tree size after it
	cp   *Checkpoint // checkpoint it stored, if any
	done chan error  // told the outcome (control requests), if not nil
}

// run is the writer goroutine. It ends when the queue is closed and drained
// (Close), after a final checkpoint.
func (l *Log) run() {
	tick := time.NewTicker(max(l.opts.CheckpointInterval/4, time.Millisecond))
	defer tick.Stop()
	batch := make([]*request, 0, l.opts.MaxBatch)
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				l.final()
				return
			}
			batch = append(batch[:0], r)
			closed := false
		fill:
			for len(batch) < l.opts.MaxBatch {
				select {
				case r, ok := <-l.queue:
					if !ok {
						closed = true
						break fill
					}
					batch = append(batch, r)
				default:
					break fill
				}
			}
			l.commit(batch)
			clear(batch)
			if closed {
				l.final()
				return
			}
		case f := <-l.ctl:
			f()
		case <-tick.C:
			l.tick()
		}
	}
}

// finish syncs the WAL after the writer committed c, and only then
// answers its callers, publishes its checkpoint and moves the size
// readers see.
func (l *Log) finish(c *committed) {
	l.syncStart.Store(time.Now().UnixNano())
	err := l.w.sync()
	l.syncStart.Store(0)
	if err != nil {
		l.failFatal(fmt.Errorf("fdatasync of the WAL: %w", err))
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err == nil {
		l.committed.Store(c.size)
		if c.cp != nil {
			l.publish(c.cp)
		}
	}
	for i, r := range c.reqs {
		res := c.res[i]
		if err != nil {
			res = result{err: err}
		}
		r.done <- res
	}
	if c.done != nil {
		c.done <- err
	}
	if err == nil {
		if n := uint64(len(c.reqs)); n > 0 {
			l.stats.commits.Add(1)
			l.stats.entries.Add(n)
			if n > l.stats.largest.Load() {
				l.stats.largest.Store(n)
			}
		}
		l.notifyAll()
	}
}

// final signs the last checkpoint at Close.
func (l *Log) final() {
	if f := l.failure.Load(); f != nil && !f.fatal {
		l.probe(true)
	}
	if l.failure.Load() == nil && l.w.size > l.w.cp.Size {
		if err := l.checkpointAsync(nil); err != nil {
			l.log.Error("audit: final checkpoint failed; the next Open signs one", "err", err)
		}
	}
}

// tick probes after a failure, or issues a checkpoint when one is due.
func (l *Log) tick() {
	if l.failure.Load() != nil {
		l.probe(false)
		return
	}
	w := l.w
	if w.size > w.cp.Size && l.opts.Now().Sub(w.cp.Time) >= l.opts.CheckpointInterval {
		l.checkpointAsync(nil)
	}
}

// checkpointAsync commits a checkpoint of the current tree (in its own
// transaction) unless the latest one already covers it, syncs it, and
// tells done (if not nil) the outcome.
func (l *Log) checkpointAsync(done chan error) error {
	w := l.w
	if f := l.failure.Load(); f != nil {
		err := fmt.Errorf("%w: %w", ErrUnavailable, f.err)
		if done != nil {
			done <- err
		}
		return err
	}
	var cp *Checkpoint
	if w.size > w.cp.Size {
		var err error
		if cp, err = signCheckpoint(w.signer, w.size, rootOf(w.rng), l.opts.Now()); err != nil {
			if done != nil {
				done <- err
			}
			return err
		}
		l.writeStart.Store(time.Now().UnixNano())
		err = w.write(nil, nil, nil, cp)
		l.writeStart.Store(0)
		if err != nil {
			l.fail(err)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			if done != nil {
				done <- err
			}
			return err
		}
		w.cp = cp
	}
	l.finish(&committed{size: w.size, cp: cp, done: done})
	return nil
}

// checkpointSync commits a checkpoint and syncs it, on the calling
// goroutine (Open, before the writer starts).
func (l *Log) checkpointSync() error {
	w := l.w
	cp, err := signCheckpoint(w.signer, w.size, rootOf(w.rng), l.opts.Now())
	if err != nil {
		return err
	}
	if err := w.write(nil, nil, nil, cp); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		return err
	}
	w.cp = cp
	l.publish(cp)
	return nil
}

// publish makes cp the latest checkpoint (once it is durable).
func (l *Log) publish(cp *Checkpoint) {
	l.latest.Store(cp)
	if l.witness != nil {
		l.witness.send(cp)
	}
}

// commit writes one batch, syncs it and answers its callers.
func (l *Log) commit(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.state.CompareAndSwap(reqPending, reqClaimed) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	if f := l.failure.Load(); f != nil {
		err := fmt.Errorf("%w: %w", ErrUnavailable, f.err)
		for _, r := range live {
			r.done <- result{err: err}
		}
		return
	}
	w := l.w
	now := l.opts.Now()
	t := max(now.UnixNano(), w.lastTime)
	rng := cloneRange(w.rng)
	rows := make([]row, 0, len(live))
	res := make([]result, 0, len(live))
	var tiles []tileRow
	var index []indexRow
	kept := live[:0]
	seq := w.size
	for _, r := range live {
		body := appendHead(make([]byte, 0, len(r.tail)+len(r.phi)+sealOverhead+24), seq, time.Unix(0, t))
		body = append(body, r.tail...)
		if r.phi != nil {
			var err error
			if body, err = l.seal(body, seq, r.phi); err != nil {
				r.done <- result{err: err}
				continue
			}
			for _, tag := range r.index {
				index = append(index, indexRow{tag: tag, seq: seq})
			}
		}
		hs := w.appendLeaf(rng, seq, body, &tiles)
		rows = append(rows, row{seq: seq, t: t, tokenID: r.tokenID, subject: r.subject, hashes: hs, body: body})
		res = append(res, result{seq: seq, t: t})
		kept = append(kept, r)
		seq++
	}
	live = kept
	if len(live) == 0 {
		return
	}
	var cp *Checkpoint
	if now.Sub(w.cp.Time) >= l.opts.CheckpointInterval {
		var err error
		if cp, err = signCheckpoint(w.signer, rng.End(), rootOf(rng), now); err != nil {
			l.log.Error("audit: signing a checkpoint failed", "err", err)
			cp = nil
		}
	}
	l.writeStart.Store(time.Now().UnixNano())
	err := w.write(rows, index, tiles, cp)
	l.writeStart.Store(0)
	if err != nil {
		l.fail(err)
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		for _, r := range live {
			r.done <- result{err: err}
		}
		return
	}
	w.size, w.rng, w.lastTime = rng.End(), rng, t
	if cp != nil {
		w.cp = cp
	}
	l.finish(&committed{reqs: live, res: res, size: w.size, cp: cp})
}

// fail marks the log unavailable after a write error, alerting once.
func (l *Log) fail(err error) {
	f := &failure{err: err, since: l.opts.Now()}
	if l.failure.CompareAndSwap(nil, f) {
		l.w.lastProbe = time.Now()
		l.log.Error("AUDIT LOG CANNOT BE WRITTEN: audited actions are refused until it recovers", "err", err, "data_dir", l.dir)
	}
}

// failFatal marks the log unavailable until it is reopened.
func (l *Log) failFatal(err error) {
	f := &failure{err: err, since: l.opts.Now(), fatal: true}
	if old := l.failure.Swap(f); old == nil || !old.fatal {
		l.log.Error("AUDIT LOG CANNOT BE WRITTEN and will not recover by itself: restart phigate (the WAL is re-read on open)", "err", err, "data_dir", l.dir)
	}
}

// probe reloads the state from the database and tries a small write; on
// success the log is available again. It runs on the writer goroutine.
func (l *Log) probe(force bool) {
	f := l.failure.Load()
	if f == nil || f.fatal || !force && time.Since(l.w.lastProbe) < l.opts.ProbeInterval {
		return
	}
	l.w.lastProbe = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.StallTimeout)
	defer cancel()
	err := l.load(ctx)
	if err == nil {
		err = l.w.exec("BEGIN IMMEDIATE")
		if err == nil {
			err = l.w.exec("INSERT INTO meta (k, v) VALUES ('probe', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", l.opts.Now().UTC().Format(time.RFC3339Nano))
			if err == nil {
				err = l.w.exec("COMMIT")
			}
			if err != nil {
				l.w.exec("ROLLBACK")
			}
		}
	}
	if err == nil {
		err = l.w.sync()
	}
	if err != nil {
		l.log.Warn("audit: log still cannot be written", "err", err)
		return
	}
	if l.failure.CompareAndSwap(f, nil) {
		l.log.Warn("audit log writable again", "unavailable_for", l.opts.Now().Sub(f.since).Round(time.Millisecond).String())
	}
}
