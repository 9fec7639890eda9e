package auditcluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/note"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/testclock"
)

// threeNodes makes three nodes whose logs interleave in time, closes them
// (so each ends with a signed checkpoint) and mirrors them into c.
func threeNodes(t *testing.T, c *Cluster, perNode int) []*node {
	t.Helper()
	now := ticking(testclock.New())
	ns := []*node{newNode(t, "a", now), newNode(t, "b", now), newNode(t, "c", now)}
	for i := 0; i < perNode; i += 10 {
		for j, n := range ns {
			n.appendN(t, 10, fmt.Sprintf("svc:app-%d", j))
		}
	}
	for _, n := range ns {
		n.close(t)
		if k := n.sync(t, c); k != perNode {
			t.Fatalf("%s: mirrored %d entries, want %d", n.name, k, perNode)
		}
	}
	return ns
}

func keysOf(ns []*node) []string {
	var ks []string
	for _, n := range ns {
		ks = append(ks, n.vkey)
	}
	return ks
}

func TestEveryNodesMirroredLogVerifies(t *testing.T) {
	c, _ := testCluster(t, testclock.New().Now)
	ns := threeNodes(t, c, 120)
	for _, keys := range [][]string{keysOf(ns), nil} {
		rs, err := c.Verify(context.Background(), VerifyOptions{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 3 {
			t.Fatalf("%d origins verified, want 3", len(rs))
		}
		for _, r := range rs {
			if !r.OK() || r.Size != 120 || r.Covered != 120 {
				t.Errorf("%s: ok %v size %d covered %d: %v", r.Origin, r.OK(), r.Size, r.Covered, r.Problem)
			}
			if r.KeyFromDatabase != (keys == nil) {
				t.Errorf("%s: KeyFromDatabase %v with keys %v", r.Origin, r.KeyFromDatabase, keys != nil)
			}
		}
	}
}

func TestMirrorIsIdempotent(t *testing.T) {
	c, pool := testCluster(t, testclock.New().Now)
	ns := threeNodes(t, c, 30)
	for _, n := range ns {
		if k := n.sync(t, c); k != 0 {
			t.Errorf("%s: a second mirror copied %d entries again", n.name, k)
		}
	}
	var rows, origins int
	if err := pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT origin) FROM audit_entries").Scan(&rows, &origins); err != nil {
		t.Fatal(err)
	}
	if rows != 90 || origins != 3 {
		t.Errorf("%d rows of %d origins, want 90 of 3", rows, origins)
	}
}

func TestTablesRefuseUpdateDeleteTruncate(t *testing.T) {
	c, pool := testCluster(t, testclock.New().Now)
	threeNodes(t, c, 10)
	for _, q := range []string{
		"UPDATE audit_entries SET body = body WHERE seq = 1",
		"DELETE FROM audit_entries WHERE seq = 1",
		"TRUNCATE audit_entries",
		"UPDATE audit_checkpoints SET note = note",
		"DELETE FROM audit_checkpoints",
		"UPDATE audit_origins SET verifier = 'x'",
		"DELETE FROM audit_origins",
		"TRUNCATE audit_origins CASCADE",
	} {
		_, err := pool.Exec(context.Background(), q)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refused as append-only", q, err)
		}
	}
}

func TestEveryMutationIsDetectedAndNamed(t *testing.T) {
	const a, b = "phigate/a", "phigate/b"
	cases := []struct {
		name string
		// mutate changes the database; keysOK says whether verifying with
		// the registered keys (no --key) must also catch it
		mutate func(t *testing.T, tc *tcase)
		origin string
		seq    uint64
		reason string
		// dbKeyPasses: verifying with the database's keys only does not
		// catch it (the point of --key)
		dbKeyPasses bool
	}{
		{name: "EditBodyByte", origin: a, seq: 7, reason: "edited", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `UPDATE audit_entries SET body = set_byte(body, length(body)-1, get_byte(body, length(body)-1) # 1) WHERE origin = 'phigate/a' AND seq = 7`)
		}},
		{name: "EditSearchColumn", origin: b, seq: 4, reason: "search columns", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `UPDATE audit_entries SET subject = 'svc:other' WHERE origin = 'phigate/b' AND seq = 4`)
		}},
		{name: "DeleteRow", origin: a, seq: 11, reason: "missing (deleted)", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `DELETE FROM audit_entries WHERE origin = 'phigate/a' AND seq = 11`)
		}},
		{name: "DeleteTail", origin: b, seq: 25, reason: "truncated", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `DELETE FROM audit_entries WHERE origin = 'phigate/b' AND seq >= 25`)
		}},
		{name: "InsertRow", origin: a, seq: 5, reason: "inserted", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool,
				`UPDATE audit_entries SET seq = seq + 1000000 WHERE origin = 'phigate/a' AND seq >= 6`,
				`UPDATE audit_entries SET seq = seq - 1000000 + 1 WHERE origin = 'phigate/a' AND seq >= 1000000`,
				`INSERT INTO audit_entries SELECT origin, 6, time, token_id, subject, hashes, body FROM audit_entries WHERE origin = 'phigate/a' AND seq = 5`)
		}},
		{name: "ReorderRows", origin: b, seq: 3, reason: "records sequence number 4", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool,
				`UPDATE audit_entries SET seq = 1000003 WHERE origin = 'phigate/b' AND seq = 3`,
				`UPDATE audit_entries SET seq = 3 WHERE origin = 'phigate/b' AND seq = 4`,
				`UPDATE audit_entries SET seq = 4 WHERE origin = 'phigate/b' AND seq = 1000003`)
		}},
		{name: "SwapCheckpointBetweenOrigins", origin: a, seq: 0, reason: "not signed by phigate/a", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `UPDATE audit_checkpoints SET note = (SELECT note FROM audit_checkpoints WHERE origin = 'phigate/b' ORDER BY size DESC LIMIT 1) WHERE origin = 'phigate/a' AND size = 30`)
		}},
		{name: "MoveCheckpointToAnotherSize", origin: a, reason: "signed for size", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool,
				`UPDATE audit_checkpoints SET size = 29 WHERE origin = 'phigate/a' AND size = 30`)
		}, seq: 0},
		{name: "DeleteEveryCheckpoint", origin: b, seq: 0, reason: "no signed checkpoint", mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `DELETE FROM audit_checkpoints WHERE origin = 'phigate/b'`)
		}},
		{name: "SubstituteKey", origin: b, seq: 0, reason: "substituted", mutate: func(t *testing.T, tc *tcase) {
			vkey, _, err := audit.InitKeys(t.TempDir(), "b", nil)
			if err != nil {
				t.Fatal(err)
			}
			tamper(t, tc.pool, fmt.Sprintf(`UPDATE audit_origins SET verifier = '%s' WHERE origin = 'phigate/b'`, vkey))
		}},
		{name: "SubstituteKeyAndResign", origin: a, seq: 0, reason: "not signed by phigate/a", dbKeyPasses: true, mutate: func(t *testing.T, tc *tcase) {
			// an attacker makes a key of its own for phigate/a, registers
			// it and re-signs a's checkpoints: the database's key then
			// vouches for whatever the attacker wrote
			dir := t.TempDir()
			vkey, _, err := audit.InitKeys(dir, "a", nil)
			if err != nil {
				t.Fatal(err)
			}
			signer, _, err := audit.FileKeys{Dir: dir}.CheckpointSigner(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			rows, err := tc.pool.Query(context.Background(), `SELECT size, note FROM audit_checkpoints WHERE origin = 'phigate/a'`)
			if err != nil {
				t.Fatal(err)
			}
			var stmts []string
			for rows.Next() {
				var size int64
				var msg []byte
				if err := rows.Scan(&size, &msg); err != nil {
					t.Fatal(err)
				}
				text := msg[:bytes.Index(msg, []byte("\n\n"))+1]
				signed, err := note.Sign(&note.Note{Text: string(text)}, signer)
				if err != nil {
					t.Fatal(err)
				}
				stmts = append(stmts, fmt.Sprintf(`UPDATE audit_checkpoints SET note = '\x%x'::bytea WHERE origin = 'phigate/a' AND size = %d`, signed, size))
			}
			rows.Close()
			stmts = append(stmts, fmt.Sprintf(`UPDATE audit_origins SET verifier = '%s' WHERE origin = 'phigate/a'`, vkey))
			tamper(t, tc.pool, stmts...)
		}},
		{name: "DeleteWholeOrigin", origin: b, seq: 0, reason: "no signed checkpoint", dbKeyPasses: true, mutate: func(t *testing.T, tc *tcase) {
			tamper(t, tc.pool, `DELETE FROM audit_entries WHERE origin = 'phigate/b'`,
				`DELETE FROM audit_checkpoints WHERE origin = 'phigate/b'`, `DELETE FROM audit_origins WHERE origin = 'phigate/b'`)
		}},
		{name: "AddForgedOrigin", origin: "phigate/z", seq: 0, reason: "supplied no key", dbKeyPasses: true, mutate: func(t *testing.T, tc *tcase) {
			z := newNode(t, "z", testclock.New().Now)
			z.appendN(t, 5, "svc:forged")
			z.close(t)
			z.sync(t, tc.c)
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTCase(t)
			tt.mutate(t, tc)
			rs, err := tc.c.Verify(context.Background(), VerifyOptions{Keys: keysOf(tc.nodes)})
			if err != nil {
				t.Fatal(err)
			}
			got := byOrigin(rs)
			bad, ok := got[tt.origin]
			if !ok || bad.OK() {
				t.Fatalf("%s verifies after the mutation (%+v)", tt.origin, got)
			}
			if bad.Problem.Seq != tt.seq || !strings.Contains(bad.Problem.Reason, tt.reason) {
				t.Errorf("%s: problem %q at %d, want %q at %d", tt.origin, bad.Problem, bad.Problem.Seq, tt.reason, tt.seq)
			}
			for _, r := range rs {
				if r.Origin != tt.origin && !r.OK() {
					t.Errorf("%s was not mutated and fails: %v", r.Origin, r.Problem)
				}
			}
			// with the keys from the database only
			rs, err = tc.c.Verify(context.Background(), VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dbBad, present := byOrigin(rs)[tt.origin]
			caught := present && !dbBad.OK()
			if caught == tt.dbKeyPasses {
				t.Errorf("with the database's keys only: caught %v, want %v", caught, !tt.dbKeyPasses)
			}
		})
	}
}

// tcase is two nodes of 30 entries, mirrored.
type tcase struct {
	c     *Cluster
	pool  *pgxpool.Pool
	nodes []*node
}

func newTCase(t *testing.T) *tcase {
	c, pool := testCluster(t, testclock.New().Now)
	now := ticking(testclock.New())
	tc := &tcase{c: c, pool: pool, nodes: []*node{newNode(t, "a", now), newNode(t, "b", now)}}
	for _, n := range tc.nodes {
		n.appendN(t, 30, "svc:"+n.name)
		n.close(t)
		n.sync(t, c)
	}
	return tc
}
