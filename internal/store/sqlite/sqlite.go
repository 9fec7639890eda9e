// Package sqlite is phigate's embedded store: a store.Store kept in one
// SQLite file (modernc.org/sqlite, no cgo), for a single node.
//
// # Guarantees
//
//   - Durability: the database runs in WAL mode with synchronous=FULL, so a
//     change is on disk (fsync'd) when its method returns nil.
//   - Group commit: every change goes through one writer goroutine that runs
//     all changes waiting at that moment (up to Options.MaxBatch) in one
//     transaction with one COMMIT, each inside its own SAVEPOINT. A change
//     that fails (ErrConflict, ErrNotFound, ...) is rolled back alone; the
//     others commit. Each caller learns its own result only after the COMMIT
//     returned; if the COMMIT fails, every caller of the batch gets its
//     error. Stats counts commits and changes, to show the batching.
//   - Reads run on a separate pool of read-only (query_only) connections and
//     never wait for the writer; they see every change whose method has
//     returned.
//   - Schema: versioned migrations recorded in the table schema_migrations,
//     each applied in its own transaction when the store is opened. Open
//     refuses a database written by a newer version (ErrSchemaTooNew).
//   - The data file is created with mode 0600 (SQLite gives its -wal and
//     -shm files the same mode). Its directory must exist.
//   - Times are kept to the nanosecond, as INTEGER unix nanoseconds UTC
//     (years 1678 to 2262; other times are refused), and come back in UTC.
//
// # Usage
//
//	s, err := sqlite.Open(ctx, filepath.Join(dataDir, "phigate.db"), sqlite.Options{})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// Only one process should open a file at a time. A second one would still be
// correct (BEGIN IMMEDIATE and busy_timeout serialise the writers), but
// would not share the group commit.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/phigate/phigate/internal/fsync"
	"github.com/phigate/phigate/internal/store"
)

// Options tune a Store. The zero value is a sensible default.
type Options struct {
	// MaxBatch is the largest number of changes committed in one
	// transaction. 0 means 256.
	MaxBatch int
	// ReadConns is the number of read-only connections. 0 means 4.
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection or process before failing. 0 means 5s.
	BusyTimeout time.Duration
	// Now is the clock, used to drop rotated secrets whose grace period has
	// ended and to date migrations. nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.ReadConns <= 0 {
		o.ReadConns = 4
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store is a store.Store in one SQLite file. It is safe for concurrent use.
type Store struct {
	opts Options
	path string

	writeDB  *sql.DB // one connection, held by wtx
	ckptDB   *sql.DB // one connection for WAL checkpoints
	ckptStop chan struct{}
	ckptDone chan struct{}
	wtx      *wtx    // used only by the writer goroutine once Open returns
	readDB   *sql.DB // query_only connections

	// Prepared statements of the hot read paths.
	stmtToken    *sql.Stmt
	stmtBySecret *sql.Stmt

	mu         sync.RWMutex // guards closed and the closing of queue
	closed     bool
	isClosed   atomic.Bool // closed, for readers that do not take mu
	queue      chan *op
	writerDone chan struct{}

	// the WAL sync pipeline (syncLoop)
	wal        *os.File
	syncer     *fsync.Syncer // the WAL's fdatasync, without holding a P
	syncing    atomic.Bool   // the syncer is in an fdatasync
	syncIdle   chan struct{} // signalled when an fdatasync ends (capacity 1)
	syncq      chan synced
	syncDone   chan struct{}
	syncFailed atomic.Pointer[error]

	stats struct {
		commits, ops, aborted, largest, syncs atomic.Uint64
	}
}

var _ store.Store = (*Store)(nil)

// Stats counts the writer's work since Open.
type Stats struct {
	// Commits is the number of transactions committed.
	Commits uint64
	// Ops is the number of changes that ran in a committed transaction,
	// including those that failed alone (rolled back to their savepoint,
	// e.g. ErrConflict). Ops/Commits is the mean batch size.
	Ops uint64
	// Aborted is the number of transactions rolled back as a whole (BEGIN,
	// a savepoint or COMMIT failed); every change in them failed.
	Aborted uint64
	// LargestBatch is the largest number of changes committed together.
	LargestBatch uint64
	// Syncs is the number of WAL syncs; each acknowledges every change
	// committed since the previous one, so Ops/Syncs is the number of
	// changes sharing one fsync.
	Syncs uint64
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:      s.stats.commits.Load(),
		Ops:          s.stats.ops.Load(),
		Aborted:      s.stats.aborted.Load(),
		LargestBatch: s.stats.largest.Load(),
		Syncs:        s.stats.syncs.Load(),
	}
}

// Open opens the store in the file at path, creating it (mode 0600) and
// bringing its schema up to date. The directory must exist.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := createFile(abs); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{
		opts:       opts,
		path:       abs,
		queue:      make(chan *op, opts.MaxBatch),
		writerDone: make(chan struct{}),
		syncq:      make(chan synced, 64),
		syncDone:   make(chan struct{}),
	}
	if err := s.openWriter(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.openReaders(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.openCheckpointer(); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if s.wal, err = os.OpenFile(abs+"-wal", os.O_RDWR, 0); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open %s: the write-ahead log: %w", path, err)
	}
	s.syncer = fsync.New()
	s.syncIdle = make(chan struct{}, 1)
	go s.syncLoop()
	go s.writeLoop()
	go s.checkpointLoop()
	return s, nil
}

// checkpointInterval is how often the WAL is copied back into the database.
const checkpointInterval = 250 * time.Millisecond

func (s *Store) openCheckpointer() error {
	db, err := sql.Open("sqlite", s.dsn())
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	s.ckptDB = db
	s.ckptStop = make(chan struct{})
	s.ckptDone = make(chan struct{})
	return nil
}

// checkpointLoop runs PASSIVE checkpoints (which never block the writer or
// readers) on their own connection, so that the writer's commits pay only
// for the WAL append and its fsync.
func (s *Store) checkpointLoop() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-t.C:
			// Errors (SQLITE_BUSY while a writer is mid-commit) only mean
			// "try again next tick".
			_, _ = s.ckptDB.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// createFile makes sure the data file exists with mode 0600 before SQLite
// opens it (SQLite would create it with 0644 under the usual umask). An
// existing file is left as it is.
func createFile(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("directory %s does not exist: %w", dir, err)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// dsn is the database/sql name of the file with these pragmas, as a file:
// URI so that no character of the path is taken for a parameter.
func (s *Store) dsn(pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", s.opts.BusyTimeout.Milliseconds()))
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: s.path, RawQuery: q.Encode()}
	return u.String()
}

// openWriter opens the writer connection, checks that WAL is on, and
// migrates the schema.
func (s *Store) openWriter(ctx context.Context) error {
	// cache_size: a 64 MiB page cache keeps the indexes' hot pages in
	// memory; wal_autocheckpoint(0): checkpoints run on their own
	// connection (checkpointLoop), not on the commit path.
	// synchronous(NORMAL): COMMIT writes the WAL without syncing it; the
	// syncer goroutine syncs it before any caller is answered (see
	// syncLoop), so durability is that of FULL with the syncs pipelined.
	db, err := sql.Open("sqlite", s.dsn("foreign_keys(1)", "journal_mode(WAL)", "synchronous(NORMAL)",
		"cache_size(-65536)", "wal_autocheckpoint(0)"))
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s.writeDB = db
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("writer connection: %w", err)
	}
	s.wtx = &wtx{conn: conn, stmts: make(map[string]*sql.Stmt)}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal (does the file system support WAL?)", mode)
	}
	return migrate(ctx, conn, s.opts.Now)
}

// openReaders opens the read pool and prepares the hot read statements.
func (s *Store) openReaders(ctx context.Context) error {
	db, err := sql.Open("sqlite", s.dsn("query_only(1)"))
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(s.opts.ReadConns)
	db.SetMaxIdleConns(s.opts.ReadConns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s.readDB = db
	if s.stmtToken, err = db.PrepareContext(ctx, "SELECT "+tokenCols+" FROM tokens t WHERE t.id = ?"); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if s.stmtBySecret, err = db.PrepareContext(ctx, "SELECT "+tokenCols+
		", s.pepper_version, s.created_at, s.not_after FROM token_secrets s JOIN tokens t ON t.id = s.token_id WHERE s.hash = ?"); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	return nil
}

// closeDBs releases whatever Open has opened.
func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.stmtToken, s.stmtBySecret} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.readDB != nil {
		errs = append(errs, s.readDB.Close())
	}
	if s.wtx != nil {
		errs = append(errs, s.wtx.close())
	}
	if s.writeDB != nil {
		errs = append(errs, s.writeDB.Close())
	}
	if s.ckptDB != nil {
		errs = append(errs, s.ckptDB.Close())
	}
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.syncer != nil {
		errs = append(errs, s.syncer.Close())
	}
	return errors.Join(errs...)
}

// Close stops accepting changes, commits those already handed over, and
// closes the database. Later calls return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("sqlite: close: %w", store.ErrClosed)
	}
	s.closed = true
	s.isClosed.Store(true)
	close(s.queue)
	s.mu.Unlock()
	<-s.writerDone
	close(s.ckptStop)
	<-s.ckptDone
	// leave a small file behind: copy the WAL back and truncate it
	_, _ = s.wtx.exec("PRAGMA wal_checkpoint(TRUNCATE)")
	if err := s.closeDBs(); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Ping reports whether the store can serve reads and accept writes.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed.Load() {
		return fmt.Errorf("sqlite: ping: %w", store.ErrClosed)
	}
	var one int
	if err := s.readDB.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return s.readErr("ping", err)
	}
	select {
	case <-s.writerDone:
		return fmt.Errorf("sqlite: ping: %w", store.ErrClosed)
	default:
	}
	return nil
}

// readErr maps an error of a read: ErrClosed when the store has been closed
// meanwhile, ErrNotFound for no row, else the error wrapped with what.
func (s *Store) readErr(what string, err error) error {
	switch {
	case s.isClosed.Load():
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrClosed)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrNotFound)
	default:
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
}

// checkOpen returns ErrClosed, wrapped with what, once the store is closed.
func (s *Store) checkOpen(what string) error {
	if s.isClosed.Load() {
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrClosed)
	}
	return nil
}
