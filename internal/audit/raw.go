package audit

import (
	"context"
	"iter"
	"time"
)

// The raw view of a log, for copies kept elsewhere (a cluster's shared
// database, see internal/auditcluster): the rows exactly as stored, and a
// verifier for such a copy that runs the checks Verify runs.

// RawEntry is an entry as the log stores it: its canonical encoding, the
// search columns copied from it and the Merkle hashes its leaf completes
// (its leaf hash, then one hash per perfect subtree it closes, bottom up).
type RawEntry struct {
	Seq              uint64
	Time             int64  // nanoseconds, a copy of the entry's field 2
	TokenID, Subject []byte // copies of fields 6 and 7; nil when absent
	Hashes           []byte
	Body             []byte
}

// StoredCheckpoint is a signed checkpoint as a log stores it: under the
// size it was issued for, with the time it was issued.
type StoredCheckpoint struct {
	Size uint64
	Time time.Time
	Note []byte
}

// RawSize returns the number of entries in the log's database (entries
// still only in the journal are not counted: they are not readable yet).
func (r *Reader) RawSize(ctx context.Context) (uint64, error) { return r.st.size(ctx) }

// RawEntries returns the stored rows of the entries [from, from+n) that
// exist, in order.
func (r *Reader) RawEntries(ctx context.Context, from uint64, n int) ([]RawEntry, error) {
	return r.st.rawEntries(ctx, from, n)
}

// Checkpoints returns at most n of the stored checkpoints of size greater
// than after, by size.
func (r *Reader) Checkpoints(ctx context.Context, after uint64, n int) ([]StoredCheckpoint, error) {
	return r.st.checkpointsAfter(ctx, after, n)
}

// RawSize returns the number of entries readers see, once every entry
// acknowledged before the call is in the database (it hurries the
// indexer: the in-process mirror reads through the Log, not a Reader,
// which sees entries only when the indexer's batch is written, up to
// 50 ms later).
func (l *Log) RawSize(ctx context.Context) (uint64, error) {
	if l.isClosed.Load() {
		return 0, ErrClosed
	}
	return l.visible(ctx)
}

// RawEntries is Reader.RawEntries on the open log.
func (l *Log) RawEntries(ctx context.Context, from uint64, n int) ([]RawEntry, error) {
	if l.isClosed.Load() {
		return nil, ErrClosed
	}
	return l.st.rawEntries(ctx, from, n)
}

// Checkpoints is Reader.Checkpoints on the open log.
func (l *Log) Checkpoints(ctx context.Context, after uint64, n int) ([]StoredCheckpoint, error) {
	if l.isClosed.Load() {
		return nil, ErrClosed
	}
	return l.st.checkpointsAfter(ctx, after, n)
}

func (s *store) rawEntries(ctx context.Context, from uint64, n int) ([]RawEntry, error) {
	st, err := s.stmt(ctx, "SELECT seq, time, token_id, subject, hashes, body FROM entries WHERE seq >= ? ORDER BY seq LIMIT ?")
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, int64(from), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]RawEntry, 0, n)
	for rows.Next() {
		var e RawEntry
		var seq int64
		if err := rows.Scan(&seq, &e.Time, &e.TokenID, &e.Subject, &e.Hashes, &e.Body); err != nil {
			return nil, err
		}
		e.Seq = uint64(seq)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *store) checkpointsAfter(ctx context.Context, after uint64, n int) ([]StoredCheckpoint, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT size, time, note FROM checkpoints WHERE size > ? ORDER BY size LIMIT ?", int64(after), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		var c StoredCheckpoint
		var size, t int64
		if err := rows.Scan(&size, &t, &c.Note); err != nil {
			return nil, err
		}
		c.Size, c.Time = uint64(size), time.Unix(0, t).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// RowsOptions describe a copy of a log for VerifyRows.
type RowsOptions struct {
	// Verifier is the log's public verifier key.
	Verifier string
	// Size is the number of entries the copy holds (max seq + 1).
	Size uint64
	// Stored are the checkpoints the copy holds, by size.
	Stored []StoredCheckpoint
	// Checkpoints are signed checkpoints saved outside the copy
	// (VerifyOptions.Checkpoints); each is checked against the rebuilt
	// tree.
	Checkpoints [][]byte
}

// VerifyRows runs Verify's checks on a copy of a log held elsewhere: rows
// yields its entries in seq order (a seq out of order is a gap or an
// insertion, reported as such), and every entry must decode, match its
// search columns and stored hashes, and rebuild a tree with the root of
// every stored checkpoint (each signed by opts.Verifier for the size it is
// stored under) and of every saved one. Proof tiles are not checked (a
// copy has none). As for Verify, the error is for what prevented the
// check; a copy that does not verify is a Result with a Problem.
func VerifyRows(ctx context.Context, opts RowsOptions, rows iter.Seq2[[]RawEntry, error]) (*Result, error) {
	v, err := NewVerifier(opts.Verifier)
	if err != nil {
		return nil, err
	}
	saved, err := parseSaved(opts.Checkpoints, v)
	if err != nil {
		return nil, err
	}
	res := &Result{Size: opts.Size}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	batches := make(chan []dbRow, 4)
	var readErr error
	go func() {
		defer close(batches)
		for raw, err := range rows {
			if err != nil {
				readErr = err
				return
			}
			b := make([]dbRow, len(raw))
			for i, e := range raw {
				b[i] = dbRow{seq: int64(e.Seq), t: e.Time, tokenID: e.TokenID, subject: e.Subject, hashes: e.Hashes, body: e.Body}
			}
			select {
			case batches <- b:
			case <-rctx.Done():
				return
			}
		}
	}()
	defer func() {
		stop()
		for range batches {
		}
	}()
	if err := verifyTree(ctx, v, saved, opts.Stored, batches, stop, func() error { return readErr }, nil, res); err != nil {
		return nil, err
	}
	if res.Problem == nil {
		for _, s := range saved {
			res.Consistent = append(res.Consistent, s.size)
		}
	}
	return res, nil
}

// Matches reports whether e passes every filter of q but its cursor and
// limit (a copy searched elsewhere applies them itself). Sealed fields
// that were not opened match no Patient or PathPrefix filter.
func (q *Query) Matches(e *Entry) bool {
	prefix, _ := wholePrefix(q.PathPrefix)
	return q.match(e, prefix)
}

// OpenSealed opens the sealed fields of e with s (nothing to do when s is
// nil or e has none); a field that does not open is ErrTampered.
func OpenSealed(ctx context.Context, s Sealer, e *Entry) error { return openEntry(ctx, s, e) }
