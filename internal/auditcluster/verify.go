package auditcluster

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/audit"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys are the nodes' verifier keys as the auditor holds them (each
	// names its origin). When given, every origin in the database must
	// have one, every key's origin must be in the database, and a
	// registered key that differs is a failure. When empty, the keys
	// registered in the database are used, which proves nothing against
	// someone who can write the database (OriginResult.KeyFromDatabase).
	Keys []string
	// Checkpoints are signed checkpoints saved outside the database (by a
	// witness, say), each checked against its origin's rebuilt tree; a
	// checkpoint whose origin has no key is an error.
	Checkpoints [][]byte
}

// OriginResult is what Verify found for one origin.
type OriginResult struct {
	Origin string
	// KeyFromDatabase is set when the key used is the one registered in
	// the database rather than one the auditor supplied.
	KeyFromDatabase bool
	// Result is audit.VerifyRows's (Problem nil when intact).
	*audit.Result
}

// Verify checks every origin's log in the database, in one consistent
// snapshot (mirrors may go on copying meanwhile): see audit.VerifyRows for
// what is checked. The results are by origin; the error is for what
// prevented the check (a bad key or saved checkpoint, a lost connection).
func (c *Cluster) Verify(ctx context.Context, opts VerifyOptions) ([]OriginResult, error) {
	supplied := map[string]string{}
	for _, k := range opts.Keys {
		v, err := audit.NewVerifier(k)
		if err != nil {
			return nil, err
		}
		if _, dup := supplied[v.Name()]; dup {
			return nil, fmt.Errorf("auditcluster: two keys given for %s", v.Name())
		}
		supplied[v.Name()] = k
	}
	tx, err := c.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	origins, err := originsIn(ctx, tx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, o := range origins {
		known[o.Name] = true
	}
	for name := range supplied {
		if !known[name] {
			origins = append(origins, Origin{Name: name})
		}
	}
	sort.Slice(origins, func(i, j int) bool { return origins[i].Name < origins[j].Name })
	saved := map[string][][]byte{}
	for i, msg := range opts.Checkpoints {
		origin, ok := noteOrigin(msg)
		if !ok {
			return nil, fmt.Errorf("saved checkpoint %d: %w", i+1, audit.ErrBadCheckpoint)
		}
		saved[origin] = append(saved[origin], msg)
	}
	var out []OriginResult
	for _, o := range origins {
		r, err := verifyOrigin(ctx, tx, o, supplied, saved[o.Name])
		if err != nil {
			return nil, fmt.Errorf("auditcluster: %s: %w", o.Name, err)
		}
		delete(saved, o.Name)
		out = append(out, r)
	}
	for origin := range saved {
		return nil, fmt.Errorf("auditcluster: a saved checkpoint is of %s, which the database does not know", origin)
	}
	return out, nil
}

func verifyOrigin(ctx context.Context, tx pgx.Tx, o Origin, supplied map[string]string, saved [][]byte) (OriginResult, error) {
	r := OriginResult{Origin: o.Name}
	key, given := supplied[o.Name]
	fail := func(seq uint64, format string, a ...any) (OriginResult, error) {
		r.Result = &audit.Result{Problem: &audit.Problem{Seq: seq, Last: seq, Reason: fmt.Sprintf(format, a...)}}
		return r, nil
	}
	switch {
	case !given && len(supplied) > 0:
		return fail(0, "the auditor supplied no key for this origin: an origin added to the database, or a node left out of --key")
	case !given && o.Verifier == "":
		return fail(0, "no verifier key is registered for this origin")
	case !given:
		key, r.KeyFromDatabase = o.Verifier, true
	}
	var size int64
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(seq)+1, 0) FROM audit_entries WHERE origin = $1", o.Name).Scan(&size); err != nil {
		return r, err
	}
	rows, err := tx.Query(ctx, "SELECT size, time, note FROM audit_checkpoints WHERE origin = $1 ORDER BY size", o.Name)
	if err != nil {
		return r, err
	}
	cps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.StoredCheckpoint, error) {
		var c audit.StoredCheckpoint
		var s, t int64
		err := row.Scan(&s, &t, &c.Note)
		c.Size = uint64(s)
		return c, err
	})
	if err != nil {
		return r, err
	}
	res, err := audit.VerifyRows(ctx, audit.RowsOptions{Verifier: key, Size: uint64(size), Stored: cps, Checkpoints: saved}, entryRows(ctx, tx, o.Name))
	if err != nil {
		return r, err
	}
	r.Result = res
	if given && o.Verifier != "" && o.Verifier != key && res.Problem == nil {
		res.Problem = &audit.Problem{Reason: "the verifier key registered in the database is not the one the auditor supplied: substituted (the entries verify with the supplied key)"}
	}
	if given && o.Verifier == "" && size > 0 && res.Problem == nil {
		res.Problem = &audit.Problem{Reason: "no verifier key is registered for this origin (the entries verify with the supplied key)"}
	}
	return r, nil
}

// entryRows yields an origin's entries in seq order, 512 at a time.
func entryRows(ctx context.Context, tx pgx.Tx, origin string) func(func([]audit.RawEntry, error) bool) {
	return func(yield func([]audit.RawEntry, error) bool) {
		rows, err := tx.Query(ctx, "SELECT seq, time, token_id, subject, hashes, body FROM audit_entries WHERE origin = $1 ORDER BY seq", origin)
		if err != nil {
			yield(nil, err)
			return
		}
		defer rows.Close()
		const n = 512
		batch := make([]audit.RawEntry, 0, n)
		for rows.Next() {
			var e audit.RawEntry
			var seq int64
			if err := rows.Scan(&seq, &e.Time, &e.TokenID, &e.Subject, &e.Hashes, &e.Body); err != nil {
				yield(nil, err)
				return
			}
			e.Seq = uint64(seq)
			if seq < 0 {
				e.Seq = ^uint64(0)
			}
			batch = append(batch, e)
			if len(batch) == n {
				if !yield(batch, nil) {
					return
				}
				batch = make([]audit.RawEntry, 0, n)
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, err)
			return
		}
		if len(batch) > 0 {
			yield(batch, nil)
		}
	}
}

// originsIn is Origins within tx.
func originsIn(ctx context.Context, tx pgx.Tx) ([]Origin, error) {
	rows, err := tx.Query(ctx, originsQuery)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOrigin)
}

// noteOrigin returns the first line of a signed note.
func noteOrigin(msg []byte) (string, bool) {
	for i, b := range msg {
		if b == '\n' {
			return string(msg[:i]), i > 0
		}
	}
	return "", false
}
