package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// schemaVersion is the version of the tables below, kept in meta.
const schemaVersion = "1"

// schema creates the log's tables. Entries are append-only: triggers
// (appendOnly) refuse UPDATE and DELETE (defence in depth against accidents; a determined
// tamperer can drop them, which is what Verify is for).
var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
	// seq is the leaf index. time, token_id and subject copy fields of body
	// for searching; hashes holds the Merkle hashes this leaf completes
	// (its leaf hash, then each parent it completes, bottom up); body is
	// the canonical entry.
	`CREATE TABLE IF NOT EXISTS entries (
		seq      INTEGER PRIMARY KEY,
		time     INTEGER NOT NULL,
		token_id TEXT,
		subject  TEXT,
		hashes   BLOB NOT NULL,
		body     BLOB NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS entries_token ON entries(token_id) WHERE token_id IS NOT NULL`,
	`CREATE INDEX IF NOT EXISTS entries_subject ON entries(subject) WHERE subject IS NOT NULL`,
	// the blind index of sealed fields (seal.go): the first 8 bytes of
	// the keyed hash of a patient id or path prefix, and the entry
	`CREATE TABLE IF NOT EXISTS phi_index (
		tag INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		PRIMARY KEY (tag, seq)
	) WITHOUT ROWID`,
	// complete subtrees of height 8, for proofs (see tiles.go); id is
	// tile level << 56 | index
	`CREATE TABLE IF NOT EXISTS tiles (
		id     INTEGER PRIMARY KEY,
		hashes BLOB NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS checkpoints (
		size INTEGER PRIMARY KEY,
		time INTEGER NOT NULL,
		note BLOB NOT NULL
	)`,
}

// appendOnly names the tables whose rows are never updated or deleted,
// with what the refusal calls them; init gives each the two triggers.
var appendOnly = []struct{ table, what string }{
	{"entries", "audit entries are"},
	{"tiles", "audit tiles are"},
	{"phi_index", "the audit index is"},
	{"checkpoints", "audit checkpoints are"},
}

func init() {
	for _, t := range appendOnly {
		for _, op := range []string{"update", "delete"} {
			schema = append(schema, fmt.Sprintf("CREATE TRIGGER IF NOT EXISTS %s_no_%s BEFORE %s ON %s\n\t\tBEGIN SELECT RAISE(ABORT, '%s append-only'); END",
				t.table, op, strings.ToUpper(op), t.table, t.what))
		}
	}
}

// dsn is the database/sql name of path with these pragmas.
func dsn(path string, busy time.Duration, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}
	return u.String()
}

// store is the read side of a log's database, shared by the Log and the
// offline readers (Verify, OpenReader).
type store struct {
	path   string
	rdb    *sql.DB // query_only connections
	sealer Sealer  // opens sealed fields and looks up the blind index; nil: entries stay sealed

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func dbPath(dataDir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, DBFile))
	if err != nil {
		return "", fmt.Errorf("audit: %w", err)
	}
	return abs, nil
}

// openStore opens the read pool of the database at path, which must exist.
func openStore(ctx context.Context, path string, conns int) (*store, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit: %s does not exist (no audit log in this data directory)", path)
		}
		return nil, fmt.Errorf("audit: %w", err)
	}
	// reads go through a memory map of the file: no system call per page
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, "query_only(1)", "mmap_size(2147418112)", "cache_size(-16384)"))
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &store{path: path, rdb: db, stmts: map[string]*sql.Stmt{}}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'schema'").Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: %s is not an audit log: %w", path, err)
	}
	if v != schemaVersion {
		db.Close()
		return nil, fmt.Errorf("audit: %s has schema version %s; this phigate reads version %s", path, v, schemaVersion)
	}
	return s, nil
}

func (s *store) close() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = nil
	s.mu.Unlock()
	return s.rdb.Close()
}

// stmt returns the prepared read statement for q.
func (s *store) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[q]; ok {
		return st, nil
	}
	if s.stmts == nil {
		return nil, ErrClosed
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[q] = st
	return st, nil
}

// size returns the number of entries (the next seq).
func (s *store) size(ctx context.Context) (uint64, error) {
	st, err := s.stmt(ctx, "SELECT coalesce(max(seq)+1, 0) FROM entries")
	if err != nil {
		return 0, err
	}
	var n int64
	if err := st.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// rowHashes returns the stored hashes of the given rows (seqs), keyed by
// seq. Missing rows are absent from the map.
func (s *store) rowHashes(ctx context.Context, seqs []uint64) (map[uint64][]byte, error) {
	out := make(map[uint64][]byte, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), 64)
		q := "SELECT seq, hashes FROM entries WHERE seq IN (?" + strings.Repeat(",?", n-1) + ")"
		st, err := s.stmt(ctx, q)
		if err != nil {
			return nil, err
		}
		args := make([]any, n)
		for i, v := range seqs[:n] {
			args[i] = int64(v)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var seq int64
			var h []byte
			if err := rows.Scan(&seq, &h); err != nil {
				rows.Close()
				return nil, err
			}
			out[uint64(seq)] = h
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		seqs = seqs[n:]
	}
	return out, nil
}

// entry returns the encoded entry with this seq.
func (s *store) entry(ctx context.Context, seq uint64) ([]byte, error) {
	st, err := s.stmt(ctx, "SELECT body FROM entries WHERE seq = ?")
	if err != nil {
		return nil, err
	}
	var b []byte
	err = st.QueryRowContext(ctx, int64(seq)).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return b, err
}

// entryTime returns the time column of seq.
func (s *store) entryTime(ctx context.Context, seq uint64) (int64, error) {
	st, err := s.stmt(ctx, "SELECT time FROM entries WHERE seq = ?")
	if err != nil {
		return 0, err
	}
	var t int64
	err = st.QueryRowContext(ctx, int64(seq)).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return t, err
}

// storedCheckpoint is a row of checkpoints.
type storedCheckpoint struct {
	size uint64
	time time.Time
	note []byte
}

// checkpoints returns every stored checkpoint, by size.
func (s *store) checkpoints(ctx context.Context) ([]storedCheckpoint, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT size, time, note FROM checkpoints ORDER BY size")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedCheckpoint
	for rows.Next() {
		var c storedCheckpoint
		var size, t int64
		if err := rows.Scan(&size, &t, &c.note); err != nil {
			return nil, err
		}
		c.size, c.time = uint64(size), time.Unix(0, t).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// latestCheckpoint returns the stored checkpoint of the largest size, or
// nil when there is none.
func (s *store) latestCheckpoint(ctx context.Context) (*storedCheckpoint, error) {
	var c storedCheckpoint
	var size, t int64
	err := s.rdb.QueryRowContext(ctx, "SELECT size, time, note FROM checkpoints ORDER BY size DESC LIMIT 1").Scan(&size, &t, &c.note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.size, c.time = uint64(size), time.Unix(0, t).UTC()
	return &c, nil
}
