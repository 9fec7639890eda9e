package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
)

func TestTileLayout(t *testing.T) {
	seen := map[[2]uint64]bool{}
	for level := uint(1); level <= 16; level++ {
		for idx := uint64(0); idx < 1<<(17-level); idx++ {
			tl, n, pos := tileOf(compact.NewNodeID(level, idx))
			if tl != (level-1)/8 || pos < 0 || pos >= tileNodes {
				t.Fatalf("(%d,%d): tile %d pos %d", level, idx, tl, pos)
			}
			k := [2]uint64{uint64(tileKey(tl, n)), uint64(pos)}
			if seen[k] {
				t.Fatalf("(%d,%d) collides", level, idx)
			}
			seen[k] = true
			// the node is under the tile's span
			lo, hi := compact.NewNodeID(level, idx).Coverage()
			if lo < n*tileSpan(tl) || hi > (n+1)*tileSpan(tl) {
				t.Fatalf("(%d,%d) outside tile %d/%d", level, idx, tl, n)
			}
		}
	}
}

// TestTilesMatchTheRows: every node read through the tiles equals the one
// stored in the rows, for a log past the first tile of tile level 1
// (65,536 entries), built partly by Append across a reopen.
func TestTilesMatchTheRows(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 66k-entry log")
	}
	l, dir := newTestLog(t, Options{CheckpointInterval: 0})
	ctx := context.Background()
	generate(t, l, 65536+300, func(i int) *Entry { return &Entry{Action: ActionServerStarted, Target: "x"} })
	l.Close()
	l, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 300; i++ { // completes tile (0, 257) through Append, after a reopen
		if _, err := l.Append(ctx, &Entry{Action: ActionServerStopped}); err != nil {
			t.Fatal(err)
		}
	}
	size := l.Size()
	if _, err := l.visible(ctx); err != nil { // read below the log, from the index
		t.Fatal(err)
	}
	var n int
	l.st.rdb.QueryRow("SELECT count(*) FROM tiles").Scan(&n)
	if want := int(size/256 + size/65536); n != want {
		t.Fatalf("%d tiles, want %d", n, want)
	}
	var ids []compact.NodeID
	for level := uint(1); level <= 16; level++ {
		for idx := uint64(0); (idx+1)<<level <= size; idx += 1 + idx%97 {
			ids = append(ids, compact.NewNodeID(level, idx))
		}
	}
	fromTiles, err := l.st.nodeHashes(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	fromRows, err := l.st.rowNodeHashes(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if !bytes.Equal(fromTiles[i], fromRows[i]) {
			t.Fatalf("node %+v differs", ids[i])
		}
	}
	v, _ := NewVerifier(l.PublicKey())
	for _, seq := range []uint64{0, 255, 256, 65535, 65536, size - 1} {
		b, err := l.Proof(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := VerifyBundle(b, v); err != nil {
			t.Fatalf("proof of %d: %v", seq, err)
		}
	}
	l.Close()
	if res := mustVerify(t, dir, VerifyOptions{}); !res.OK() {
		t.Fatal(res.Problem)
	}
}

func TestVerifyNamesACorruptTile(t *testing.T) {
	dir := tamperLog(t, 600, 100)
	for name, q := range map[string]string{
		"corrupt": "UPDATE tiles SET hashes = zeroblob(8160) WHERE id = 1",
		"delete":  "DELETE FROM tiles WHERE id = 1",
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			copyDir(t, dir, d)
			mustExec(t, rawDB(t, d), q)
			res := mustVerify(t, d, VerifyOptions{})
			if p := res.Problem; p == nil || p.Seq != 256 || p.Last != 511 || !strings.Contains(p.Reason, "tile") {
				t.Fatalf("%v", res.Problem)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{DBFile, SigningKeyFile, VerifierKeyFile} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			continue
		}
		os.MkdirAll(filepath.Join(to, "keys"), 0o700)
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
