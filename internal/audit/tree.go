package audit

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Tree storage
//
// The log stores every node of every perfect subtree, in the row of the
// leaf that completes it: appending leaf j completes its leaf node (level
// 0, index j) and, for each trailing 1 bit of j, one more parent. Row j's
// hashes column is those t+1 hashes (t = trailing ones of j), 32 bytes each,
// bottom up. So node (level L, index i) lives in row ((i+1) << L) - 1, at
// offset 32·L. A proof for any leaf of a tree of any size needs at most
// 2·log2(size) nodes, each found with one primary-key lookup.

var (
	hasher       = rfc6962.DefaultHasher
	rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}
)

// nodeRow returns the row (seq) that stores node id, and the node's
// position among that row's hashes.
func nodeRow(id compact.NodeID) (uint64, int) {
	return (id.Index+1)<<id.Level - 1, int(id.Level)
}

// rowHashCount is the number of hashes stored in row seq.
func rowHashCount(seq uint64) int { return 1 + bits.TrailingZeros64(^seq) }

// nodeHashes returns the stored hashes of ids, in order: from the tiles
// where they are complete, else from the rows.
func (s *store) nodeHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	hs, _, err := s.nodesAndEntry(ctx, ids, -1)
	return hs, err
}

// nodesAndEntry is nodeHashes, and also returns the encoded entry seq
// (when seq >= 0), in at most two queries: one for the tiles, one for the
// rows (a proof's hot path).
func (s *store) nodesAndEntry(ctx context.Context, ids []compact.NodeID, seq int64) ([][]byte, []byte, error) {
	out := make([][]byte, len(ids))
	// the tiles
	var keys []int64
	seen := make(map[int64]bool, 4)
	for _, id := range ids {
		if id.Level == 0 {
			continue
		}
		t, n, _ := tileOf(id)
		if k := tileKey(t, n); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		err := s.query(ctx, "SELECT id, hashes FROM tiles WHERE id IN (?"+strings.Repeat(",?", len(keys)-1)+")", keys, func(rows *sql.Rows) error {
			var k int64
			var raw sql.RawBytes
			if err := rows.Scan(&k, &raw); err != nil {
				return err
			}
			if len(raw) != tileBytes {
				return fmt.Errorf("%w: tile %x is %d bytes", ErrTampered, k, len(raw))
			}
			for i, id := range ids {
				if id.Level == 0 {
					continue
				}
				if t, n, pos := tileOf(id); tileKey(t, n) == k {
					out[i] = append([]byte(nil), raw[32*pos:32*pos+32]...)
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("audit: read tiles: %w", err)
		}
	}
	// the rows, for the rest
	var seqs []int64
	rowSeen := make(map[int64]bool, len(ids))
	if seq >= 0 {
		seqs, rowSeen[seq] = append(seqs, seq), true
	}
	for i, id := range ids {
		if out[i] != nil {
			continue
		}
		if r, _ := nodeRow(id); !rowSeen[int64(r)] {
			rowSeen[int64(r)] = true
			seqs = append(seqs, int64(r))
		}
	}
	var body []byte
	if len(seqs) > 0 {
		// the body of seq only (seq is the first argument, -1 for none)
		q := "SELECT seq, hashes, CASE seq WHEN ? THEN body END FROM entries WHERE seq IN (?" + strings.Repeat(",?", len(seqs)-1) + ")"
		err := s.query(ctx, q, append([]int64{seq}, seqs...), func(rows *sql.Rows) error {
			var r int64
			var hs, b sql.RawBytes
			if err := rows.Scan(&r, &hs, &b); err != nil {
				return err
			}
			if r == seq {
				body = append([]byte(nil), b...)
			}
			for i, id := range ids {
				if out[i] != nil {
					continue
				}
				if nr, pos := nodeRow(id); int64(nr) == r {
					if len(hs) != 32*rowHashCount(nr) {
						return fmt.Errorf("%w: the stored hashes of entry %d are malformed", ErrTampered, r)
					}
					out[i] = append([]byte(nil), hs[32*pos:32*pos+32]...)
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("audit: read tree: %w", err)
		}
	}
	for i, id := range ids {
		if out[i] == nil {
			r, _ := nodeRow(id)
			return nil, nil, fmt.Errorf("%w: tree node (level %d, index %d) missing from entry %d", ErrTampered, id.Level, id.Index, r)
		}
	}
	if seq >= 0 && body == nil {
		return nil, nil, ErrNotFound
	}
	return out, body, nil
}

// query runs the prepared statement q with args and calls f for each row.
func (s *store) query(ctx context.Context, q string, args []int64, f func(*sql.Rows) error) error {
	st, err := s.stmt(ctx, q)
	if err != nil {
		return err
	}
	a := make([]any, len(args))
	for i, v := range args {
		a[i] = v
	}
	rows, err := st.QueryContext(ctx, a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// rowNodeHashes returns the hashes of ids, in order, from the rows.
func (s *store) rowNodeHashes(ctx context.Context, ids []compact.NodeID) ([][]byte, error) {
	seqs := make([]uint64, 0, len(ids))
	seen := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if r, _ := nodeRow(id); !seen[r] {
			seen[r] = true
			seqs = append(seqs, r)
		}
	}
	rows, err := s.rowHashes(ctx, seqs)
	if err != nil {
		return nil, fmt.Errorf("audit: read tree: %w", err)
	}
	out := make([][]byte, len(ids))
	for i, id := range ids {
		r, pos := nodeRow(id)
		blob, ok := rows[r]
		if !ok || len(blob) != 32*rowHashCount(r) {
			return nil, fmt.Errorf("%w: tree node (level %d, index %d) missing from entry %d", ErrTampered, id.Level, id.Index, r)
		}
		out[i] = blob[32*pos : 32*pos+32]
	}
	return out, nil
}

// rangeAt returns the compact range [0, size) from the stored nodes.
func (s *store) rangeAt(ctx context.Context, size uint64) (*compact.Range, error) {
	ids := compact.RangeNodes(0, size, nil)
	hs, err := s.nodeHashes(ctx, ids)
	if err != nil {
		return nil, err
	}
	return rangeFactory.NewRange(0, size, hs)
}

// rootOf returns the root hash of r (the empty root for an empty range).
func rootOf(r *compact.Range) []byte {
	if r.End() == 0 {
		return hasher.EmptyRoot()
	}
	h, err := r.GetRootHash(nil)
	if err != nil { // only for a range not starting at 0
		panic(err)
	}
	return h
}

// inclusionProof returns the RFC 6962 inclusion proof of leaf index in the
// tree of the given size.
func (s *store) inclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	hs, err := s.nodeHashes(ctx, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hs, hasher.HashChildren)
}

// consistencyProof returns the RFC 6962 consistency proof between the trees
// of size1 and size2.
func (s *store) consistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	n, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	hs, err := s.nodeHashes(ctx, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hs, hasher.HashChildren)
}
