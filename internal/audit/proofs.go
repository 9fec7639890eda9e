package audit

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// MaxProofs bounds one Proofs call.
const MaxProofs = 1000

// Proofs returns the proof bundles of the entries seqs (in that order),
// all against one checkpoint: the latest, or a new one signed first when
// the latest does not cover them all. Each bundle is what Proof returns
// for its entry against that checkpoint; the tree nodes the proofs share
// (the upper levels, a tile holding several paths) are read once, in
// three queries for the whole batch instead of two per proof. At most
// MaxProofs seqs; ErrNotFound if one is not in the log.
func (l *Log) Proofs(ctx context.Context, seqs []uint64) ([]*ProofBundle, error) {
	if len(seqs) > MaxProofs {
		return nil, fmt.Errorf("audit: %d proofs asked for, at most %d", len(seqs), MaxProofs)
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	size, err := l.visible(ctx)
	if err != nil {
		return nil, err
	}
	top := uint64(0)
	for _, s := range seqs {
		if s >= size {
			return nil, ErrNotFound
		}
		top = max(top, s)
	}
	cp := l.latest.Load()
	if top >= cp.Size {
		if cp, err = l.Checkpoint(ctx, true); err != nil {
			return nil, err
		}
	}
	return l.st.bundles(ctx, seqs, cp)
}

func (s *store) bundles(ctx context.Context, seqs []uint64, cp *Checkpoint) ([]*ProofBundle, error) {
	// every proof's node ids, deduplicated into one list
	type want struct {
		n   *proof.Nodes
		idx []int // into ids
	}
	wants := make([]want, len(seqs))
	at := map[compact.NodeID]int{}
	var ids []compact.NodeID
	for i, seq := range seqs {
		n, err := proof.Inclusion(seq, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		w := want{n: &n, idx: make([]int, len(n.IDs))}
		for j, id := range n.IDs {
			k, ok := at[id]
			if !ok {
				k = len(ids)
				at[id] = k
				ids = append(ids, id)
			}
			w.idx[j] = k
		}
		wants[i] = w
	}
	hs, err := s.nodesBatch(ctx, ids)
	if err != nil {
		return nil, err
	}
	bodies, err := s.bodies(ctx, seqs)
	if err != nil {
		return nil, err
	}
	out := make([]*ProofBundle, len(seqs))
	for i, seq := range seqs {
		w := wants[i]
		own := make([][]byte, len(w.idx))
		for j, k := range w.idx {
			own[j] = hs[k]
		}
		p, err := w.n.Rehash(own, hasher.HashChildren)
		if err != nil {
			return nil, err
		}
		if p == nil {
			p = [][]byte{}
		}
		body := bodies[seq]
		if body == nil {
			return nil, ErrNotFound
		}
		e, err := UnmarshalEntry(body)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrTampered, seq, err)
		}
		out[i] = &ProofBundle{Format: BundleFormat, Seq: seq, Entry: e, EntryBytes: body, TreeSize: cp.Size, Inclusion: p, Checkpoint: string(cp.Note)}
	}
	return out, nil
}

// inList is "(?,?,…)" for n arguments padded to a power of two, and the
// arguments padded with their last one: the prepared statements stay
// few (one per power of two), a repeated value changes nothing in IN.
func inList(args []int64) (string, []int64) {
	n := 1 << bits.Len(uint(len(args)-1))
	for len(args) < n {
		args = append(args, args[len(args)-1])
	}
	return "(?" + strings.Repeat(",?", n-1) + ")", args
}

// batchChunk bounds the arguments of one query.
const batchChunk = 4096

// nodesBatch returns the stored hashes of ids, in order, as nodeHashes
// does (the tiles where they are complete, else the rows), reading each
// tile and each row once.
func (s *store) nodesBatch(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	byTile := map[int64][]int{}
	var keys []int64
	for i, id := range ids {
		if id.Level == 0 {
			continue
		}
		t, n, _ := tileOf(id)
		k := tileKey(t, n)
		if _, ok := byTile[k]; !ok {
			keys = append(keys, k)
		}
		byTile[k] = append(byTile[k], i)
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), batchChunk)]
		keys = keys[len(chunk):]
		in, args := inList(append([]int64(nil), chunk...))
		err := s.query(ctx, "SELECT id, hashes FROM tiles WHERE id IN "+in, args, func(rows *sql.Rows) error {
			var k int64
			var raw sql.RawBytes
			if err := rows.Scan(&k, &raw); err != nil {
				return err
			}
			if len(raw) != tileBytes {
				return fmt.Errorf("%w: tile %x is %d bytes", ErrTampered, k, len(raw))
			}
			for _, i := range byTile[k] {
				_, _, pos := tileOf(ids[i])
				out[i] = append([]byte(nil), raw[32*pos:32*pos+32]...)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("audit: read tiles: %w", err)
		}
	}
	byRow := map[int64][]int{}
	var rowsWanted []int64
	for i, id := range ids {
		if out[i] != nil {
			continue
		}
		r, _ := nodeRow(id)
		if _, ok := byRow[int64(r)]; !ok {
			rowsWanted = append(rowsWanted, int64(r))
		}
		byRow[int64(r)] = append(byRow[int64(r)], i)
	}
	for len(rowsWanted) > 0 {
		chunk := rowsWanted[:min(len(rowsWanted), batchChunk)]
		rowsWanted = rowsWanted[len(chunk):]
		in, args := inList(append([]int64(nil), chunk...))
		err := s.query(ctx, "SELECT seq, hashes FROM entries WHERE seq IN "+in, args, func(rows *sql.Rows) error {
			var r int64
			var hs sql.RawBytes
			if err := rows.Scan(&r, &hs); err != nil {
				return err
			}
			if len(hs) != 32*rowHashCount(uint64(r)) {
				return fmt.Errorf("%w: the stored hashes of entry %d are malformed", ErrTampered, r)
			}
			for _, i := range byRow[r] {
				_, pos := nodeRow(ids[i])
				out[i] = append([]byte(nil), hs[32*pos:32*pos+32]...)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("audit: read tree: %w", err)
		}
	}
	for i, id := range ids {
		if out[i] == nil {
			r, _ := nodeRow(id)
			return nil, fmt.Errorf("%w: tree node (level %d, index %d) missing from entry %d", ErrTampered, id.Level, id.Index, r)
		}
	}
	return out, nil
}

// bodies returns the canonical encodings of the entries seqs.
func (s *store) bodies(ctx context.Context, seqs []uint64) (map[uint64][]byte, error) {
	out := make(map[uint64][]byte, len(seqs))
	for len(seqs) > 0 {
		chunk := seqs[:min(len(seqs), batchChunk)]
		seqs = seqs[len(chunk):]
		args := make([]int64, len(chunk))
		for i, s := range chunk {
			args[i] = int64(s)
		}
		in, args := inList(args)
		err := s.query(ctx, "SELECT seq, body FROM entries WHERE seq IN "+in, args, func(rows *sql.Rows) error {
			var r int64
			var b sql.RawBytes
			if err := rows.Scan(&r, &b); err != nil {
				return err
			}
			out[uint64(r)] = append([]byte(nil), b...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("audit: read entries: %w", err)
		}
	}
	return out, nil
}
