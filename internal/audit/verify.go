package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"hash"
	"sort"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifier is the log's public verifier key. Empty means the copy in
	// the data directory (VerifierKeyFile), which an attacker who can edit
	// the database can replace too: an auditor passes an independent copy.
	Verifier string
	// Checkpoints are earlier signed checkpoints kept outside the log (by
	// a witness, or saved by an auditor). Verify proves the log consistent
	// with each: an entry changed, removed or reordered before its size is
	// detected even if every checkpoint in the database was re-signed or
	// deleted.
	Checkpoints [][]byte
}

// Result is what Verify found.
type Result struct {
	// Size is the number of entries in the log.
	Size uint64
	// Covered is the size of the latest validly signed checkpoint; the
	// entries from Covered to Size are not signed yet (the log was not
	// closed cleanly, or is being written). Open signs them.
	Covered uint64
	// Checkpoint is the latest validly signed checkpoint.
	Checkpoint *Checkpoint
	// Consistent lists the sizes of the given Checkpoints proven
	// consistent with the log.
	Consistent []uint64
	// KeyFromDataDir is set when the verifier key came from the data
	// directory rather than from VerifyOptions.
	KeyFromDataDir bool
	// Journaled counts the entries after Size found in the journal: the
	// log is being written, or was not closed cleanly (opening it
	// replays them into the database). Verify does not check them.
	Journaled uint64
	// Problem is the first problem found, nil when the log is intact.
	Problem *Problem
}

// OK reports whether the log is intact.
func (r *Result) OK() bool { return r.Problem == nil }

// Problem names the first bad entry and why. When the evidence cannot tell
// which of several entries was changed (a tamperer also recomputed the
// stored hashes), Seq..Last is the smallest range that must contain it.
type Problem struct {
	Seq    uint64
	Last   uint64
	Reason string
}

func (p *Problem) Error() string {
	if p.Last > p.Seq {
		return fmt.Sprintf("entries %d to %d: %s", p.Seq, p.Last, p.Reason)
	}
	return fmt.Sprintf("entry %d: %s", p.Seq, p.Reason)
}

func problem(seq uint64, format string, a ...any) *Problem {
	return &Problem{Seq: seq, Last: seq, Reason: fmt.Sprintf(format, a...)}
}

// dbRow is a row of entries as stored.
type dbRow struct {
	seq              int64
	t                int64
	tokenID, subject []byte // nil for NULL
	hashes, body     []byte
}

// rowChecker checks rows in order and appends their leaves to rng. It
// allocates nothing per row but the tree's new nodes.
type rowChecker struct {
	rng *compact.Range
	// nodeBad, when not nil, is told of a stored parent hash that differs
	// from the recomputed one (and the check goes on); when nil, that is a
	// Problem.
	nodeBad func(id compact.NodeID, row uint64)
	// onNode, when not nil, is given every recomputed node.
	onNode func(compact.NodeID, []byte)

	h     hash.Hash
	leaf  []byte
	visit compact.VisitFn
	row   *dbRow
	bad   *Problem
}

func newRowChecker(rng *compact.Range, nodeBad func(compact.NodeID, uint64), onNode func(compact.NodeID, []byte)) *rowChecker {
	c := &rowChecker{rng: rng, nodeBad: nodeBad, onNode: onNode, h: sha256.New(), leaf: make([]byte, 0, 32)}
	c.visit = c.node
	return c
}

// node is the visitor of rng.Append.
func (c *rowChecker) node(id compact.NodeID, h []byte) {
	if c.onNode != nil {
		c.onNode(id, h)
	}
	if id.Level == 0 || c.bad != nil {
		return
	}
	seq := uint64(c.row.seq)
	if int(id.Level) < rowHashCount(seq) && bytes.Equal(h, c.row.hashes[32*id.Level:32*id.Level+32]) {
		return
	}
	if c.nodeBad != nil {
		c.nodeBad(id, seq)
		return
	}
	lo, hi := id.Coverage()
	c.bad = &Problem{Seq: lo, Last: hi - 1, Reason: "the stored tree does not match the entries: an entry or its hash was changed"}
}

// check checks row r, expected at seq rng.End(), and appends its leaf.
func (c *rowChecker) check(r *dbRow) *Problem {
	next := c.rng.End()
	seq := uint64(r.seq)
	if r.seq < 0 || seq != next {
		return problem(next, "missing (deleted): the next stored entry is %d", r.seq)
	}
	var eseq uint64
	var et int64
	var tok, subj []byte
	fr, err := newFieldReader(r.body)
	for err == nil {
		tag, num, val, ok, ferr := fr.next()
		if err = ferr; !ok {
			break
		}
		switch tag {
		case tagSeq:
			eseq = num
		case tagTime:
			et = int64(num)
		case tagTokenID:
			tok = val
		case tagSubject:
			subj = val
		}
	}
	if err != nil {
		return problem(seq, "does not decode (%v)", strings.TrimPrefix(err.Error(), ErrMalformedEntry.Error()+": "))
	}
	if eseq < seq {
		return &Problem{Seq: eseq, Last: seq, Reason: fmt.Sprintf("entry %d records sequence number %d: an entry was inserted (or this one moved) in between", seq, eseq)}
	}
	if eseq > seq {
		return problem(seq, "records sequence number %d: moved, inserted or swapped", eseq)
	}
	if et != r.t || !bytes.Equal(tok, r.tokenID) || (tok == nil) != (r.tokenID == nil) ||
		!bytes.Equal(subj, r.subject) || (subj == nil) != (r.subject == nil) {
		return problem(seq, "its search columns (time, token_id, subject) differ from the entry: edited")
	}
	if len(r.hashes) != 32*rowHashCount(seq) {
		return problem(seq, "its stored hashes are malformed")
	}
	c.h.Reset()
	c.h.Write([]byte{0})
	c.h.Write(r.body)
	c.leaf = c.h.Sum(c.leaf[:0])
	if !bytes.Equal(c.leaf, r.hashes[:32]) {
		return problem(seq, "does not match its leaf hash: the entry was edited after it was written")
	}
	c.row, c.bad = r, nil
	// the range keeps the leaf hash: give it its own copy
	c.rng.Append(append([]byte(nil), c.leaf...), c.visit)
	return c.bad
}

// trusted is a root the log must reproduce at size.
type trusted struct {
	size  uint64
	root  []byte
	saved bool // from VerifyOptions.Checkpoints
}

// Verify checks the audit log in dataDir: it recomputes every leaf from the
// stored entries and rebuilds the tree, checks every stored checkpoint's
// signature and that the rebuilt tree has its root, checks the same for
// each checkpoint of opts.Checkpoints and proves the latest one consistent
// with it. The log may be open by a running server meanwhile.
//
// The error is for what prevented the check (no database, a bad key, a
// saved checkpoint that is not the log's); a log that does not verify is a
// Result with a Problem naming the first bad entry.
func Verify(ctx context.Context, dataDir string, opts VerifyOptions) (*Result, error) {
	res := &Result{}
	vkey := opts.Verifier
	if vkey == "" {
		var err error
		if vkey, err = ReadVerifierKey(dataDir); err != nil {
			return nil, err
		}
		res.KeyFromDataDir = true
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	path, err := dbPath(dataDir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, path, 2)
	if err != nil {
		return nil, err
	}
	defer st.close()
	// a consistent snapshot for the whole check
	conn, err := st.rdb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return nil, err
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	if res, err = verifyConn(ctx, conn, st, v, opts, res); err != nil {
		return nil, err
	}
	// best effort: a running server may be reusing the journal's slots
	if frames, err := readJournal(dataDir, res.Size); err == nil {
		for _, f := range frames {
			res.Journaled += uint64(len(f.rows))
		}
	}
	return res, nil
}

func verifyConn(ctx context.Context, conn *sql.Conn, st *store, v note.Verifier, opts VerifyOptions, res *Result) (*Result, error) {
	saved, err := parseSaved(opts.Checkpoints, v)
	if err != nil {
		return nil, err
	}
	var n int64
	if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(seq)+1, 0) FROM entries").Scan(&n); err != nil {
		return nil, err
	}
	res.Size = uint64(n)
	var cps []StoredCheckpoint
	crow, err := conn.QueryContext(ctx, "SELECT size, time, note FROM checkpoints ORDER BY size")
	if err != nil {
		return nil, err
	}
	for crow.Next() {
		var size, t int64
		var msg []byte
		if err := crow.Scan(&size, &t, &msg); err != nil {
			crow.Close()
			return nil, err
		}
		cps = append(cps, StoredCheckpoint{Size: uint64(size), Note: msg})
	}
	crow.Close()
	if err := crow.Err(); err != nil {
		return nil, err
	}
	// one goroutine reads the rows, verifyTree checks them
	rctx, stop := context.WithCancel(ctx)
	batches := make(chan []dbRow, 4)
	var readErr error
	go func() {
		defer close(batches)
		readErr = readRows(rctx, conn, batches)
	}()
	defer func() {
		stop()
		for range batches { // let the reader finish before conn is reused
		}
	}()
	tc := &tileCheck{st: st, ctx: ctx}
	if err := verifyTree(ctx, v, saved, cps, batches, stop, func() error { return readErr }, tc, res); err != nil {
		return nil, err
	}
	if res.Problem != nil {
		return res, nil
	}
	// prove the latest checkpoint consistent with each saved one, from the
	// stored tree, as an auditor holding only proofs would
	for _, s := range saved {
		if s.size > res.Checkpoint.Size {
			continue // checked against the recomputed tree above
		}
		p, err := st.consistencyProof(ctx, s.size, res.Checkpoint.Size)
		if err == nil {
			err = proof.VerifyConsistency(hasher, s.size, res.Checkpoint.Size, p, s.root, res.Checkpoint.Root)
		}
		if err != nil {
			res.Problem = problem(s.size, "no valid consistency proof from the saved checkpoint of size %d to the latest: %v", s.size, err)
			return res, nil
		}
		res.Consistent = append(res.Consistent, s.size)
	}
	return res, nil
}

// parseSaved parses the checkpoints an auditor saved outside the log.
func parseSaved(msgs [][]byte, v note.Verifier) ([]trusted, error) {
	var saved []trusted
	for i, msg := range msgs {
		cp, err := ParseCheckpoint(msg, v)
		if err != nil {
			return nil, fmt.Errorf("saved checkpoint %d: %w", i+1, err)
		}
		saved = append(saved, trusted{size: cp.Size, root: cp.Root, saved: true})
	}
	return saved, nil
}

// verifyTree is the check Verify and VerifyRows share: every stored
// checkpoint (cps, by size) must be signed by v for the size it is stored
// under; the rows read from batches (in seq order, until it is closed)
// must decode, match their search columns and leaf hashes and rebuild a
// tree with the root of every checkpoint and of every saved one. It sets
// res.Checkpoint, res.Covered and res.Problem; res.Size is the caller's.
// stop is called when a problem makes reading on useless; readErr, called
// once batches is closed, is the reader's error. tc, when not nil, also
// checks the stored proof tiles.
func verifyTree(ctx context.Context, v note.Verifier, saved []trusted, cps []StoredCheckpoint, batches <-chan []dbRow, stop func(), readErr func() error, tc *tileCheck, res *Result) error {
	// the stored checkpoints: every one must be signed
	var roots []trusted
	var cpProblem *Problem
	var prevValid uint64
	for _, c := range cps {
		cp, err := ParseCheckpoint(c.Note, v)
		switch {
		case err != nil:
			if cpProblem == nil {
				cpProblem = problem(prevValid, "the checkpoint stored for size %d is not signed by %s (%v): the entries from %d on are covered by no valid signature",
					c.Size, v.Name(), strings.TrimPrefix(err.Error(), ErrBadCheckpoint.Error()+": "), prevValid)
			}
		case cp.Size != c.Size:
			if cpProblem == nil {
				cpProblem = problem(prevValid, "the checkpoint stored for size %d is signed for size %d", c.Size, cp.Size)
			}
		default:
			roots = append(roots, trusted{size: cp.Size, root: cp.Root})
			res.Checkpoint, res.Covered, prevValid = cp, cp.Size, cp.Size
		}
	}
	if res.Checkpoint == nil && cpProblem == nil {
		cpProblem = problem(0, "no signed checkpoint at all")
	}
	roots = append(roots, saved...)
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].size < roots[j].size })

	// stream the entries
	rng := rangeFactory.NewEmptyRange(0)
	var firstNode *compact.NodeID
	var nodeRow uint64
	ri := 0
	checkRoots := func() *Problem {
		for ; ri < len(roots) && roots[ri].size == rng.End(); ri++ {
			if bytes.Equal(rootOf(rng), roots[ri].root) {
				continue
			}
			// the first bad entry is after the last root that matched
			lo := uint64(0)
			for j := ri - 1; j >= 0; j-- {
				if roots[j].size < roots[ri].size {
					lo = roots[j].size
					break
				}
			}
			hi := roots[ri].size - 1
			what := "signed checkpoint"
			if roots[ri].saved {
				what = "saved checkpoint"
			}
			p := &Problem{Seq: lo, Last: hi, Reason: fmt.Sprintf("the entries do not reproduce the root of the %s of size %d: one of them was changed, and its stored hashes recomputed", what, roots[ri].size)}
			if firstNode != nil {
				a, b := firstNode.Coverage()
				if a <= hi && b > lo {
					p.Seq, p.Last = max(a, lo), min(b-1, hi)
					p.Reason = fmt.Sprintf("the stored tree node over entries %d to %d (stored with entry %d) does not match them: one of these entries was changed and its leaf hash recomputed", a, b-1, nodeRow)
				}
			}
			return p
		}
		return nil
	}
	var entProblem *Problem
	if p := checkRoots(); p != nil {
		entProblem = p
	}
	var onNode func(compact.NodeID, []byte)
	if tc != nil {
		onNode = tc.add
	}
	rc := newRowChecker(rng, func(id compact.NodeID, row uint64) {
		if firstNode == nil {
			firstNode, nodeRow = &id, row
		}
	}, onNode)
	var prevT int64
	for batch := range batches {
		if entProblem != nil {
			continue
		}
		for i := range batch {
			r := &batch[i]
			next := rng.End()
			if p := rc.check(r); p != nil {
				entProblem = p
				break
			}
			if r.t < prevT {
				entProblem = problem(next, "its time is before the previous entry's: reordered or edited")
				break
			}
			prevT = r.t
			if entProblem = checkRoots(); entProblem != nil {
				break
			}
		}
		if entProblem != nil {
			stop()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := readErr(); err != nil && entProblem == nil {
		return err
	}
	if entProblem == nil && tc != nil {
		tc.flush()
		if tc.err != nil {
			return tc.err
		}
	}
	if entProblem == nil {
		if ri < len(roots) {
			t := roots[len(roots)-1]
			entProblem = &Problem{Seq: rng.End(), Last: t.size - 1,
				Reason: fmt.Sprintf("missing: a checkpoint covers %d entries, the log has only %d (truncated)", t.size, rng.End())}
		} else if tc != nil && tc.bad != nil {
			entProblem = tc.bad
		} else if firstNode != nil {
			a, b := firstNode.Coverage()
			entProblem = &Problem{Seq: nodeRow, Last: nodeRow, Reason: fmt.Sprintf(
				"the tree hash (level %d, over entries %d to %d) stored with this entry is wrong; the entries themselves match the signed checkpoints, but proofs served from this log would fail", firstNode.Level, a, b-1)}
		}
	}
	res.Problem = firstProblem(entProblem, cpProblem)
	return nil
}

// tileCheck compares each tile the recomputed tree completes with the
// stored one, 64 at a time.
type tileCheck struct {
	st      *store
	ctx     context.Context
	b       tileBuilder
	pending []tileRow
	bad     *Problem
	err     error
}

func (c *tileCheck) add(id compact.NodeID, h []byte) {
	if t := c.b.add(id, h); t != nil && c.bad == nil {
		c.pending = append(c.pending, *t)
		if len(c.pending) == 64 {
			c.flush()
		}
	}
}

func (c *tileCheck) flush() {
	if len(c.pending) == 0 || c.bad != nil || c.err != nil {
		return
	}
	keys := make([]int64, len(c.pending))
	for i, t := range c.pending {
		keys[i] = t.key
	}
	stored, err := c.st.tilesByKey(c.ctx, keys)
	if err != nil {
		c.err = err
		return
	}
	for _, t := range c.pending {
		if got, ok := stored[t.key]; !ok || !bytes.Equal(got, t.hashes) {
			level, n := uint(t.key>>56), uint64(t.key)&(1<<56-1)
			span := tileSpan(level)
			what := "wrong"
			if !ok {
				what = "missing"
			}
			c.bad = &Problem{Seq: n * span, Last: (n+1)*span - 1, Reason: fmt.Sprintf(
				"the stored proof tile (level %d, index %d) over these entries is %s; the entries match the signed checkpoints, but proofs served from this log would fail", level, n, what)}
			break
		}
	}
	c.pending = c.pending[:0]
}

// readRows sends every row of entries, in order, in batches.
func readRows(ctx context.Context, conn *sql.Conn, out chan<- []dbRow) error {
	rows, err := conn.QueryContext(ctx, "SELECT seq, time, token_id, subject, hashes, body FROM entries ORDER BY seq")
	if err != nil {
		return err
	}
	defer rows.Close()
	const n = 512
	batch := make([]dbRow, 0, n)
	for rows.Next() {
		batch = batch[:len(batch)+1]
		r := &batch[len(batch)-1]
		if err := rows.Scan(&r.seq, &r.t, &r.tokenID, &r.subject, &r.hashes, &r.body); err != nil {
			return err
		}
		if len(batch) == n {
			select {
			case out <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]dbRow, 0, n)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// firstProblem returns the problem with the smaller sequence number.
func firstProblem(a, b *Problem) *Problem {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case b.Seq < a.Seq:
		return b
	}
	return a
}
