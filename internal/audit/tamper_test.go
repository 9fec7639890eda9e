package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// The tampering tests build a log, close it, change audit.db directly with
// SQL (as an insider with file access would, dropping the append-only
// triggers first), and expect Verify to name the entry.

// tamperLog builds a closed log of n entries, with signed checkpoints at
// every cpEvery entries, and returns its directory.
func tamperLog(t *testing.T, n, cpEvery int) string {
	t.Helper()
	l, dir := newTestLog(t, Options{Now: stepClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Millisecond), CheckpointInterval: time.Hour})
	ctx := context.Background()
	for i := 0; i < n; i++ {
		e := grant(i)
		if i%3 == 1 {
			e = completion(i)
		}
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		if (i+1)%cpEvery == 0 {
			if _, err := l.Checkpoint(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawDB opens audit.db for tampering, without the append-only triggers.
func rawDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(filepath.Join(dir, DBFile), time.Second))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	for _, tr := range []string{"entries_no_update", "entries_no_delete", "tiles_no_update", "tiles_no_delete", "checkpoints_no_update", "checkpoints_no_delete"} {
		mustExec(t, db, "DROP TRIGGER "+tr)
	}
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func rowBody(t *testing.T, db *sql.DB, seq int) ([]byte, []byte) {
	t.Helper()
	var body, hs []byte
	if err := db.QueryRow("SELECT body, hashes FROM entries WHERE seq = ?", seq).Scan(&body, &hs); err != nil {
		t.Fatal(err)
	}
	return body, hs
}

func reencode(t *testing.T, body []byte, change func(e *Entry)) []byte {
	t.Helper()
	e, err := UnmarshalEntry(body)
	if err != nil {
		t.Fatal(err)
	}
	change(e)
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustVerify(t *testing.T, dir string, opts VerifyOptions) *Result {
	t.Helper()
	res, err := Verify(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestVerifyIntactLog(t *testing.T) {
	dir := tamperLog(t, 100, 10)
	res := mustVerify(t, dir, VerifyOptions{})
	if !res.OK() || res.Size != 100 || res.Covered != 100 || !res.KeyFromDataDir {
		t.Fatalf("%+v %v", res, res.Problem)
	}
}

func TestVerifyNamesTheTamperedEntry(t *testing.T) {
	const n, k = 100, 37 // k odd: its leaf and its level-1 parent share a row
	cases := []struct {
		name      string
		tamper    func(t *testing.T, db *sql.DB)
		seq, last uint64
		reason    string
	}{
		{"change_one_field", func(t *testing.T, db *sql.DB) {
			body, _ := rowBody(t, db, k)
			mustExec(t, db, "UPDATE entries SET body = ? WHERE seq = ?", reencode(t, body, func(e *Entry) { e.Path = "/fhir/Patient/someone-else" }), k)
		}, k, k, "does not match its leaf hash"},
		{"change_outcome", func(t *testing.T, db *sql.DB) {
			body, _ := rowBody(t, db, 40)
			mustExec(t, db, "UPDATE entries SET body = ? WHERE seq = 40", reencode(t, body, func(e *Entry) { e.Outcome = OutcomeDenied }))
		}, 40, 40, "does not match its leaf hash"},
		{"flip_a_byte", func(t *testing.T, db *sql.DB) {
			body, _ := rowBody(t, db, k)
			body[len(body)-3] ^= 0x01
			mustExec(t, db, "UPDATE entries SET body = ? WHERE seq = ?", body, k)
		}, k, k, ""},
		{"change_search_column", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, "UPDATE entries SET subject = 'someone-else' WHERE seq = ?", k)
		}, k, k, "search columns"},
		{"delete_an_entry", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, "DELETE FROM entries WHERE seq = ?", k)
		}, k, k, "missing"},
		{"insert_an_entry", func(t *testing.T, db *sql.DB) {
			// shift entries k.. up by one and put a forged one at k
			mustExec(t, db, "UPDATE entries SET seq = seq + 1000000 WHERE seq >= ?", k)
			mustExec(t, db, "UPDATE entries SET seq = seq - 999999 WHERE seq >= 1000000")
			body, hs := rowBody(t, db, k+1)
			forged := reencode(t, body, func(e *Entry) { e.Seq = k; e.Path = "/fhir/Patient/forged" })
			leaf := LeafHash(forged)
			hs = append(leaf[:], hs[32:]...)
			mustExec(t, db, "INSERT INTO entries (seq, time, token_id, subject, hashes, body) SELECT ?, time, token_id, subject, ?, ? FROM entries WHERE seq = ?", k, hs, forged, k+1)
		}, k, k + 1, "inserted"},
		{"swap_two_entries", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, "UPDATE entries SET seq = -1 WHERE seq = ?", k)
			mustExec(t, db, "UPDATE entries SET seq = ? WHERE seq = ?", k, k+5)
			mustExec(t, db, "UPDATE entries SET seq = ? WHERE seq = -1", k+5)
		}, k, k, "moved, inserted or swapped"},
		{"truncate_the_tail", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, "DELETE FROM entries WHERE seq >= ?", k)
		}, k, n - 1, "truncated"},
		{"recompute_a_leaf_hash", func(t *testing.T, db *sql.DB) {
			body, hs := rowBody(t, db, k)
			forged := reencode(t, body, func(e *Entry) { e.Path = "/fhir/Patient/someone-else" })
			leaf := LeafHash(forged)
			copy(hs, leaf[:])
			mustExec(t, db, "UPDATE entries SET body = ?, hashes = ? WHERE seq = ?", forged, hs, k)
		}, k - 1, k, "leaf hash recomputed"},
		{"recompute_an_even_leaf_hash", func(t *testing.T, db *sql.DB) {
			body, hs := rowBody(t, db, k+1)
			forged := reencode(t, body, func(e *Entry) { e.Path = "/fhir/Patient/someone-else" })
			leaf := LeafHash(forged)
			copy(hs, leaf[:])
			mustExec(t, db, "UPDATE entries SET body = ?, hashes = ? WHERE seq = ?", forged, hs, k+1)
		}, k + 1, k + 2, "leaf hash recomputed"},
		{"unsigned_latest_checkpoint", func(t *testing.T, db *sql.DB) {
			mustExec(t, db, "UPDATE checkpoints SET note = ? WHERE size = ?", "phigate/test-node\n100\n"+strings.Repeat("A", 43)+"=\n", n)
		}, 90, 90, "not signed"},
		{"checkpoint_signed_by_another_key", func(t *testing.T, db *sql.DB) {
			skey, _, _ := note.GenerateKey(rand.Reader, "phigate/test-node")
			s, _ := note.NewSigner(skey)
			var msg []byte
			db.QueryRow("SELECT note FROM checkpoints WHERE size = ?", n).Scan(&msg)
			text := msg[:bytes.Index(msg, []byte("\n\n"))+1]
			forged, _ := note.Sign(&note.Note{Text: string(text)}, s)
			mustExec(t, db, "UPDATE checkpoints SET note = ? WHERE size = ?", forged, n)
		}, 90, 90, "not signed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tamperLog(t, n, 10)
			tc.tamper(t, rawDB(t, dir))
			res := mustVerify(t, dir, VerifyOptions{})
			p := res.Problem
			if p == nil {
				t.Fatalf("tampering not detected: %+v", res)
			}
			if p.Seq != tc.seq || p.Last != tc.last || !strings.Contains(p.Reason, tc.reason) {
				t.Fatalf("got %v (seq %d..%d), want seq %d..%d and %q", p, p.Seq, p.Last, tc.seq, tc.last, tc.reason)
			}
			// a tampered log is refused at Open too (unless the tampering is
			// before the latest checkpoint: Open checks only the tail)
			if l, err := Open(context.Background(), dir, Options{}); err == nil {
				l.Close()
				if tc.name == "unsigned_latest_checkpoint" || tc.name == "truncate_the_tail" {
					t.Fatalf("Open accepted a log whose latest checkpoint is not valid")
				}
			}
		})
	}
}

// rewriteTree recomputes every stored hash from the bodies and re-signs
// every checkpoint with signer: what an insider who also has the signing
// key would do to hide an edit.
func rewriteTree(t *testing.T, db *sql.DB, signer note.Signer) {
	t.Helper()
	rows, err := db.Query("SELECT seq, body FROM entries ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	type upd struct {
		seq int64
		hs  []byte
	}
	var ups []upd
	rng := rangeFactory.NewEmptyRange(0)
	roots := map[uint64][]byte{0: hasher.EmptyRoot()}
	for rows.Next() {
		var seq int64
		var body []byte
		rows.Scan(&seq, &body)
		leaf := LeafHash(body)
		var hs []byte
		rng.Append(leaf[:], func(_ compact.NodeID, h []byte) { hs = append(hs, h...) })
		ups = append(ups, upd{seq, hs})
		roots[rng.End()] = rootOf(rng)
	}
	rows.Close()
	for _, u := range ups {
		mustExec(t, db, "UPDATE entries SET hashes = ? WHERE seq = ?", u.hs, u.seq)
	}
	crow, _ := db.Query("SELECT size FROM checkpoints")
	var sizes []uint64
	for crow.Next() {
		var s uint64
		crow.Scan(&s)
		sizes = append(sizes, s)
	}
	crow.Close()
	for _, s := range sizes {
		cp, err := signCheckpoint(signer, s, roots[s], time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, "UPDATE checkpoints SET note = ? WHERE size = ?", cp.Note, s)
	}
}

// TestSavedCheckpointCatchesRewrittenHistory: an insider who edits an entry,
// recomputes every hash and re-signs every checkpoint (having the key)
// passes a verify that trusts only the database, but not one given a
// checkpoint saved earlier outside the log (a witness's).
func TestSavedCheckpointCatchesRewrittenHistory(t *testing.T) {
	dir := tamperLog(t, 60, 20)
	db := rawDB(t, dir)
	var saved []byte
	db.QueryRow("SELECT note FROM checkpoints WHERE size = 40").Scan(&saved)

	body, _ := rowBody(t, db, 25)
	mustExec(t, db, "UPDATE entries SET body = ? WHERE seq = 25", reencode(t, body, func(e *Entry) { e.Actor.Subject = "nobody" }))
	mustExec(t, db, "UPDATE entries SET subject = 'nobody' WHERE seq = 25")
	s, _, err := FileKeys{dir}.CheckpointSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rewriteTree(t, db, s)

	if res := mustVerify(t, dir, VerifyOptions{}); !res.OK() {
		t.Fatalf("a fully re-signed log should pass a verify without outside evidence: %v", res.Problem)
	}
	res := mustVerify(t, dir, VerifyOptions{Checkpoints: [][]byte{saved}})
	if p := res.Problem; p == nil || p.Seq != 20 || p.Last != 39 || !strings.Contains(p.Reason, "saved checkpoint of size 40") {
		t.Fatalf("want entries 20..39 named against the saved checkpoint, got %v", res.Problem)
	}
}

// TestSavedCheckpointCatchesTruncation: the tail and every checkpoint
// covering it deleted; only the saved checkpoint knows.
func TestSavedCheckpointCatchesTruncation(t *testing.T) {
	dir := tamperLog(t, 60, 20)
	db := rawDB(t, dir)
	var saved []byte
	db.QueryRow("SELECT note FROM checkpoints WHERE size = 60").Scan(&saved)
	mustExec(t, db, "DELETE FROM entries WHERE seq >= 45")
	mustExec(t, db, "DELETE FROM checkpoints WHERE size > 40")
	if res := mustVerify(t, dir, VerifyOptions{}); !res.OK() || res.Covered != 40 {
		t.Fatalf("without outside evidence the truncation looks like an unsigned tail: %+v %v", res, res.Problem)
	}
	res := mustVerify(t, dir, VerifyOptions{Checkpoints: [][]byte{saved}})
	if p := res.Problem; p == nil || p.Seq != 45 || !strings.Contains(p.Reason, "truncated") {
		t.Fatalf("got %v", res.Problem)
	}
}

func TestVerifyProvesConsistencyWithSavedCheckpoints(t *testing.T) {
	dir := tamperLog(t, 50, 7)
	db := rawDB(t, dir)
	var saved [][]byte
	for _, s := range []int{0, 7, 21, 49} {
		var msg []byte
		db.QueryRow("SELECT note FROM checkpoints WHERE size = ?", s).Scan(&msg)
		saved = append(saved, msg)
	}
	res := mustVerify(t, dir, VerifyOptions{Checkpoints: saved})
	if !res.OK() || len(res.Consistent) != 4 {
		t.Fatalf("%+v %v", res, res.Problem)
	}
	// a checkpoint of another log is refused outright
	other := tamperLog(t, 5, 5)
	var msg []byte
	rawDB(t, other).QueryRow("SELECT note FROM checkpoints WHERE size = 5").Scan(&msg)
	if _, err := Verify(context.Background(), dir, VerifyOptions{Checkpoints: [][]byte{msg}}); err == nil {
		t.Fatal("a checkpoint signed by another key was accepted")
	}
}

func TestVerifyWithIndependentKey(t *testing.T) {
	dir := tamperLog(t, 10, 5)
	vkey, err := ReadVerifierKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, dir, VerifyOptions{Verifier: vkey}); !res.OK() || res.KeyFromDataDir {
		t.Fatalf("%+v", res)
	}
	_, other, _ := note.GenerateKey(rand.Reader, "phigate/test-node")
	res := mustVerify(t, dir, VerifyOptions{Verifier: other})
	if res.Problem == nil || res.Problem.Seq != 0 {
		t.Fatalf("another key must find no valid checkpoint: %v", res.Problem)
	}
}
