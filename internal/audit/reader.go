package audit

import (
	"context"
	"fmt"
	"iter"
)

// Reader reads an audit log directly from its data directory, without the
// server (phigate audit export --data). It never writes; a running server
// may append meanwhile.
type Reader struct {
	st     *store
	origin string
}

// OpenReader opens the audit log of dataDir for reading.
func OpenReader(ctx context.Context, dataDir string) (*Reader, error) {
	path, err := dbPath(dataDir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, path, 2)
	if err != nil {
		return nil, err
	}
	var origin string
	if err := st.rdb.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = 'origin'").Scan(&origin); err != nil {
		st.close()
		return nil, fmt.Errorf("audit: %s: no origin: %w", path, err)
	}
	return &Reader{st: st, origin: origin}, nil
}

// SetSealer makes r open sealed fields (and search the blind index) with
// s; without one, entries keep their PHI fields sealed (Entry.Sealed).
func (r *Reader) SetSealer(s Sealer) { r.st.sealer = s }

// Close releases the database.
func (r *Reader) Close() error { return r.st.close() }

// Origin returns the log's origin (phigate/<node>) as the database records
// it (unauthenticated: Verify checks it against the key).
func (r *Reader) Origin() string { return r.origin }

// Search returns one page of the entries matching q.
func (r *Reader) Search(ctx context.Context, q *Query) (*Page, error) {
	size, err := r.st.size(ctx)
	if err != nil {
		return nil, err
	}
	return r.st.search(ctx, q, size)
}

// All iterates over the entries matching q (its cursor and limit set where
// to start and the page size), following the pages to the end. It stops at
// the first error, which it yields.
func (r *Reader) All(ctx context.Context, q Query) iter.Seq2[*Entry, error] {
	return func(yield func(*Entry, error) bool) {
		if q.Limit == 0 {
			q.Limit = MaxLimit
		}
		for {
			p, err := r.Search(ctx, &q)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range p.Entries {
				if !yield(e, nil) {
					return
				}
			}
			if p.Next == "" {
				return
			}
			var next uint64
			fmt.Sscan(p.Next, &next)
			q.Cursor, q.HasCursor = next, true
		}
	}
}
