package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/transparency-dev/merkle/compact"
)

// Tiles
//
// The per-row hashes put a proof's nodes in as many rows as the tree has
// levels, scattered over the whole table: for a log of millions of entries
// each proof would read some twenty pages at random. So, as in
// golang.org/x/mod/sumdb/tlog, complete subtrees of height 8 are also
// stored whole, as tiles: tile (t, n) holds the 255 interior nodes of
// levels 8t+1 to 8t+8 over leaves n·2^(8t+8) to (n+1)·2^(8t+8)-1, level by
// level from the lowest, each level left to right (8160 bytes). A tile is
// written, in the same transaction, when the entry that completes it is.
// A proof then reads its entry's row, one tile per 8 levels, and the
// per-row hashes only for the nodes of tiles not yet complete.

const (
	tileHeight = 8
	tileNodes  = 1<<tileHeight - 1
	tileBytes  = 32 * tileNodes
)

// tileOf returns the tile holding interior node id (level >= 1) and the
// node's position in it.
func tileOf(id compact.NodeID) (t uint, n uint64, pos int) {
	t = (id.Level - 1) / tileHeight
	k := id.Level - tileHeight*t // 1..8: the level within the tile
	n = id.Index >> (tileHeight - k)
	pos = (1<<tileHeight - 1<<(tileHeight+1-k)) + int(id.Index-n<<(tileHeight-k))
	return t, n, pos
}

// tileKey is the primary key of tile (t, n).
func tileKey(t uint, n uint64) int64 { return int64(t)<<56 | int64(n) }

// tileSpan is the number of leaves a tile at tile level t covers.
func tileSpan(t uint) uint64 { return 1 << (tileHeight*t + tileHeight) }

// tileRow is a complete tile to insert.
type tileRow struct {
	key    int64
	hashes []byte
}

// tileBuilder assembles the tiles being filled, one per tile level, from
// the nodes appended to the tree.
type tileBuilder struct {
	n    [8]uint64
	buf  [8][]byte
	have [8]bool
}

// add records interior node id; it returns the tile it completes, if any.
func (b *tileBuilder) add(id compact.NodeID, h []byte) *tileRow {
	if id.Level == 0 || id.Level > 8*tileHeight {
		return nil
	}
	t, n, pos := tileOf(id)
	if !b.have[t] || b.n[t] != n {
		if b.buf[t] == nil {
			b.buf[t] = make([]byte, tileBytes)
		} else {
			clear(b.buf[t])
		}
		b.n[t], b.have[t] = n, true
	}
	copy(b.buf[t][32*pos:], h)
	if id.Level != tileHeight*(t+1) {
		return nil
	}
	b.have[t] = false
	return &tileRow{key: tileKey(t, n), hashes: append([]byte(nil), b.buf[t]...)}
}

// loadTiles rebuilds the tiles being filled in a tree of the given size
// from the stored nodes.
func (s *store) loadTiles(ctx context.Context, size uint64) (*tileBuilder, error) {
	b := &tileBuilder{}
	for t := uint(0); t < 8 && size >= 1<<(tileHeight*t+1); t++ {
		span := tileSpan(t)
		n := size / span
		if size%span == 0 {
			continue
		}
		var ids []compact.NodeID
		for k := uint(1); k < tileHeight; k++ {
			level := tileHeight*t + k
			for idx := n << (tileHeight - k); (idx+1)<<level <= size; idx++ {
				ids = append(ids, compact.NewNodeID(level, idx))
			}
		}
		hs, err := s.rowNodeHashes(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i, id := range ids {
			b.add(id, hs[i])
		}
		if len(ids) == 0 {
			b.n[t], b.have[t] = n, false
		}
	}
	return b, nil
}

// tilesByKey returns the stored tiles with these keys (absent ones left
// out).
func (s *store) tilesByKey(ctx context.Context, keys []int64) (map[int64][]byte, error) {
	out := make(map[int64][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	q := "SELECT id, hashes FROM tiles WHERE id IN (?" + strings.Repeat(",?", len(keys)-1) + ")"
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k int64
		var h []byte
		if err := rows.Scan(&k, &h); err != nil {
			return nil, err
		}
		if len(h) != tileBytes {
			return nil, fmt.Errorf("%w: tile %x is %d bytes", ErrTampered, k, len(h))
		}
		out[k] = h
	}
	return out, rows.Err()
}
