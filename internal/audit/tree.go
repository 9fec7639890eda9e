package audit

import (
	"context"
	"fmt"
	"math/bits"

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
	tiles, err := s.tilesByKey(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("audit: read tiles: %w", err)
	}
	out := make([][]byte, len(ids))
	var rest []compact.NodeID
	var restAt []int
	for i, id := range ids {
		if id.Level > 0 {
			t, n, pos := tileOf(id)
			if tile, ok := tiles[tileKey(t, n)]; ok {
				out[i] = tile[32*pos : 32*pos+32]
				continue
			}
		}
		rest = append(rest, id)
		restAt = append(restAt, i)
	}
	if len(rest) > 0 {
		hs, err := s.rowNodeHashes(ctx, rest)
		if err != nil {
			return nil, err
		}
		for j, i := range restAt {
			out[i] = hs[j]
		}
	}
	return out, nil
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
