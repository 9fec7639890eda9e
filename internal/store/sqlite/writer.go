package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/phigate/phigate/internal/store"
)

// Group commit
//
// Every change is an op: a function that runs on the one writer connection
// inside a transaction. write hands the op to the writer goroutine and waits
// for its result. The writer takes the first op waiting, then every other op
// already queued (up to Options.MaxBatch), and, while the syncer is in an
// fdatasync, those that arrive until it is done (they could not be
// acknowledged before the next sync anyway); then it runs them all in one
// transaction:
//
//	BEGIN IMMEDIATE
//	<op 1>; <op 2>; ...
//	COMMIT                      -- WAL written (synchronous=NORMAL)
//	                            -- then syncLoop: one fdatasync of the WAL for
//	                            -- every batch committed meanwhile, then answers
//
// If an op fails (a conflict, a missing token), the transaction is rolled
// back, that op gets its error, and the batch is replayed without it: a
// failing op never leaves a partial write and never takes the others down.
// (A savepoint around every op would give the same result at the cost of
// two more statements per op on the common path.)
//
// Each caller learns its own result only after COMMIT has returned. If
// BEGIN or COMMIT fails, the transaction is rolled back and every caller
// of the batch gets that error. While one batch
// commits, the next one queues up, so under load a batch grows until the
// fsync is shared by many callers.
//
// An op's SQL runs with a background context: interrupting a statement can
// abort the whole transaction, and with it the other callers' changes. The
// caller's ctx is honoured around it: a caller whose ctx ends before the
// writer has claimed its op withdraws it (the op never runs, and the caller
// gets ctx.Err()); once claimed, the op runs, and a caller that stops
// waiting gets an error saying the outcome is unknown.

// Life cycle of an op, in op.state.
const (
	opPending   int32 = iota // queued; the caller may still withdraw it
	opClaimed                // taken into a batch by the writer; it will run
	opWithdrawn              // the caller gave up before the writer took it
)

// op is one change waiting for the writer.
type op struct {
	// name says what the op does, with ids but never secrets or hashes; it
	// prefixes every error the caller gets.
	name string
	// run performs the change inside the transaction; it MUST NOT touch
	// memory its caller may still use (results go to variables the caller
	// reads only after done has delivered nil).
	run   func(tx *wtx) error
	state atomic.Int32
	// done receives the op's result once; it is buffered so that the writer
	// never blocks on a caller that has gone.
	done chan error
}

// write runs a change through the group commit and returns its result.
func (s *Store) write(ctx context.Context, name string, run func(tx *wtx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	o := &op{name: name, run: run, done: make(chan error, 1)}
	if err := s.enqueue(ctx, o); err != nil {
		return fmt.Errorf("sqlite: %s: %w", name, err)
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-o.done: // the result arrived at the same moment: prefer it
			return err
		default:
		}
		if o.state.CompareAndSwap(opPending, opWithdrawn) {
			return fmt.Errorf("sqlite: %s: %w", name, ctx.Err())
		}
		return fmt.Errorf("sqlite: %s: stopped waiting for the commit, the change may still be committed: %w", name, ctx.Err())
	}
}

// enqueue hands o to the writer unless the store is closed or ctx ends
// first. The read lock keeps Close from closing the queue under a sender.
func (s *Store) enqueue(ctx context.Context, o *op) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	select {
	case s.queue <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeLoop is the writer goroutine. It ends when the queue is closed and
// drained (Close), so every op handed over before Close still commits.
func (s *Store) writeLoop() {
	defer func() {
		close(s.syncq)
		<-s.syncDone
		close(s.writerDone)
	}()
	batch := make([]*op, 0, s.opts.MaxBatch)
	for first := range s.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case o, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		batch = s.gatherWhileSyncing(batch)
		s.runBatch(batch)
		clear(batch) // drop references to finished ops
	}
}

// gatherWhileSyncing adds to batch the ops that arrive while the syncer is
// in an fdatasync, until it is done or the batch is full. Ops committed
// meanwhile could not be acknowledged before the next sync anyway, and
// one transaction for all of them writes each page it touches to the WAL
// once, where a transaction per op wrote them all again: on token
// creation at 64 clients batches were 1.4 ops on average, and the
// writer's commits (two pwrite calls per WAL page) were a third of the
// store's CPU.
func (s *Store) gatherWhileSyncing(batch []*op) []*op {
	for len(batch) < s.opts.MaxBatch && s.syncing.Load() {
		select {
		case o, ok := <-s.queue:
			if !ok {
				return batch
			}
			batch = append(batch, o)
		case <-s.syncIdle:
		}
	}
	return batch
}

// runBatch runs the claimable ops of batch in one transaction.
func (s *Store) runBatch(batch []*op) {
	live := make([]*op, 0, len(batch))
	for _, o := range batch {
		if o.state.CompareAndSwap(opPending, opClaimed) {
			live = append(live, o)
		}
	}
	if len(live) == 0 {
		return
	}
	// failed holds the ops that returned an error, with it; they are left
	// out of the replayed transaction.
	failed := map[*op]error{}
	for {
		run := live[:0:0]
		for _, o := range live {
			if _, bad := failed[o]; !bad {
				run = append(run, o)
			}
		}
		if len(run) == 0 {
			break
		}
		bad, err := s.tryBatch(run)
		if err != nil { // BEGIN or COMMIT failed: the whole batch fails
			for o, e := range failed {
				o.done <- e
			}
			s.abort(run, "transaction", err)
			return
		}
		if bad == nil {
			s.stats.commits.Add(1)
			s.stats.ops.Add(uint64(len(live)))
			for {
				cur := s.stats.largest.Load()
				if uint64(len(live)) <= cur || s.stats.largest.CompareAndSwap(cur, uint64(len(live))) {
					break
				}
			}
			// answered only once the WAL is synced (syncLoop)
			s.syncq <- synced{ok: run, failed: failed}
			return
		}
		failed[bad.o] = bad.err
	}
	for o, e := range failed {
		o.done <- e
	}
}

// synced is a committed batch waiting for the WAL sync before its callers
// are answered: ok succeeded, failed returned their own errors.
type synced struct {
	ok     []*op
	failed map[*op]error
}

// syncLoop is the syncer goroutine. The writer connection commits with
// synchronous=NORMAL (the WAL is written but not synced), and hands each
// committed batch here; the syncer takes every batch waiting, fdatasyncs
// the WAL once, and only then answers their callers. While it syncs, the
// writer commits the next batch, so the disk is kept busy and one sync
// covers several transactions. A change is acknowledged only after the
// WAL frames holding it are on disk: as durable as synchronous=FULL.
// A failed sync is not retried (the kernel may have dropped the pages):
// every change waiting gets the error and the store refuses writes until
// it is reopened.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	group := make([]synced, 0, 16)
	for b := range s.syncq {
		group = append(group[:0], b)
	more:
		for {
			select {
			case b, ok := <-s.syncq:
				if !ok {
					break more
				}
				group = append(group, b)
			default:
				break more
			}
		}
		err := s.syncErr()
		if err == nil {
			s.syncing.Store(true)
			err = s.syncer.Datasync(s.wal)
			s.syncing.Store(false)
			select { // the writer may be gathering for this sync's end
			case s.syncIdle <- struct{}{}:
			default:
			}
			s.stats.syncs.Add(1)
			if err != nil {
				s.syncFailed.Store(&err)
			}
		}
		for _, g := range group {
			for _, o := range g.ok {
				if err != nil {
					o.done <- fmt.Errorf("sqlite: %s: syncing the write-ahead log: %w", o.name, err)
				} else {
					o.done <- nil
				}
			}
			for o, e := range g.failed {
				o.done <- e
			}
		}
		clear(group)
	}
}

// syncErr is the error of an earlier failed sync, if any.
func (s *Store) syncErr() error {
	if p := s.syncFailed.Load(); p != nil {
		return *p
	}
	return nil
}

type opFailure struct {
	o   *op
	err error
}

// tryBatch runs ops in one transaction. If an op fails, the transaction is
// rolled back (so the failing op's partial writes vanish with it) and the
// op is reported: the caller replays the batch without it. Replays are rare
// (a conflict, a missing token) and cheaper than a savepoint around every
// op on the common path. err is a failure of the transaction itself.
func (s *Store) tryBatch(ops []*op) (*opFailure, error) {
	if err := s.syncErr(); err != nil {
		return nil, fmt.Errorf("an earlier sync of the write-ahead log failed; reopen the store: %w", err)
	}
	tx := s.wtx
	if _, err := tx.exec("BEGIN IMMEDIATE"); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	for _, o := range ops {
		if err := runOp(o, tx); err != nil {
			// SQLite may already have rolled back by itself (I/O error,
			// disk full); then ROLLBACK fails harmlessly, and a replay's
			// BEGIN or COMMIT reports whatever is still wrong.
			_, _ = tx.exec("ROLLBACK")
			return &opFailure{o: o, err: fmt.Errorf("sqlite: %s: %w", o.name, err)}, nil
		}
	}
	if _, err := tx.exec("COMMIT"); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return nil, nil
}

// abort rolls back the open transaction, if any, and fails every op of the
// batch with err: none of their changes was committed.
func (s *Store) abort(live []*op, step string, err error) {
	// ROLLBACK fails harmlessly when SQLite already rolled back.
	_, _ = s.wtx.exec("ROLLBACK")
	s.stats.aborted.Add(1)
	for _, o := range live {
		o.done <- fmt.Errorf("sqlite: %s: %s: %w", o.name, step, err)
	}
}

// runOp runs o, turning a panic into an error so that one bad op cannot take
// the writer, and every caller waiting on it, down.
func runOp(o *op, tx *wtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in store operation: %v", r)
		}
	}()
	return o.run(tx)
}

// wtx is the writer connection with its prepared statements. Only the
// writer goroutine uses it (and Open, before the writer starts).
type wtx struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

// stmt returns the prepared statement for q, preparing it on first use.
func (w *wtx) stmt(q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

func (w *wtx) exec(q string, args ...any) (sql.Result, error) {
	st, err := w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(context.Background(), args...)
}

// scan runs a query expected to return one row and scans it into dest;
// sql.ErrNoRows when there is none.
func (w *wtx) scan(q string, args []any, dest ...any) error {
	st, err := w.stmt(q)
	if err != nil {
		return err
	}
	return st.QueryRowContext(context.Background(), args...).Scan(dest...)
}

// exists reports whether a token with this id exists.
func (w *wtx) exists(id string) (bool, error) {
	var one int
	err := w.scan("SELECT 1 FROM tokens WHERE id = ?", []any{id}, &one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// close releases the prepared statements and the connection.
func (w *wtx) close() error {
	var errs []error
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	errs = append(errs, w.conn.Close())
	return errors.Join(errs...)
}
