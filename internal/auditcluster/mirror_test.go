package auditcluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/testclock"
)

// contiguous checks that origin's rows are exactly seq 0..want-1.
func contiguous(t *testing.T, pool *pgxpool.Pool, origin string, want int) {
	t.Helper()
	var n, distinct, maxSeq int64
	err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT seq), coalesce(max(seq), -1) FROM audit_entries WHERE origin = $1`, origin).Scan(&n, &distinct, &maxSeq)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(want) || distinct != n || maxSeq != n-1 {
		t.Fatalf("%s: %d rows, %d distinct, max seq %d; want %d without gaps or duplicates", origin, n, distinct, maxSeq, want)
	}
}

var errKilled = errors.New("killed mid-batch")

func TestMirrorKilledMidBatchResumesWithoutGapsOrDuplicates(t *testing.T) {
	c, pool := testCluster(t, testclock.New().Now)
	n := newNode(t, "a", ticking(testclock.New()))
	n.appendN(t, 250, "svc:a")
	n.close(t)

	// the first mirror copies two batches of 100, then dies while writing
	// the third (its transaction never commits)
	m := n.mirror(t, c, MirrorOptions{Batch: 100})
	batches := 0
	m.beforeCommit = func() error {
		if batches++; batches == 3 {
			return errKilled
		}
		return nil
	}
	if k, err := m.Sync(context.Background()); !errors.Is(err, errKilled) || k != 200 {
		t.Fatalf("first mirror: %d copied, %v; want 200 and the kill", k, err)
	}
	contiguous(t, pool, n.origin(), 200)

	// a new mirror (the restarted node) starts from what the database has
	m2 := n.mirror(t, c, MirrorOptions{Batch: 100})
	if k, err := m2.Sync(context.Background()); err != nil || k != 50 {
		t.Fatalf("restarted mirror: %d copied, %v; want the 50 missing", k, err)
	}
	contiguous(t, pool, n.origin(), 250)
	rs, err := c.Verify(context.Background(), VerifyOptions{Keys: []string{n.vkey}})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].OK() || rs[0].Covered != 250 {
		t.Fatalf("after the restart: %v (covered %d)", rs[0].Problem, rs[0].Covered)
	}
	if st := m2.Status(); st.Mirrored != 250 || st.Behind != 0 || st.Err != nil {
		t.Errorf("status %+v", st)
	}
}

func TestMirrorKeepsUpWithAWritingNodeAndResumesAfterItsRestart(t *testing.T) {
	c, pool := testCluster(t, testclock.New().Now)
	now := ticking(testclock.New())
	n := newNode(t, "a", now)
	ctx, stop := context.WithCancel(context.Background())
	m := n.mirror(t, c, MirrorOptions{Batch: 64, Interval: time.Millisecond})
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = m.Run(ctx) }()
	for i := 0; i < 10; i++ {
		n.appendN(t, 40, "svc:a")
	}
	// stop the mirror while the node still writes, as kill -9 would
	stop()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	n.appendN(t, 100, "svc:a")
	n.close(t) // the node's final checkpoint
	if k := n.sync(t, c); k == 0 {
		t.Fatal("the restarted mirror copied nothing")
	}
	contiguous(t, pool, n.origin(), 500)
	rs, err := c.Verify(context.Background(), VerifyOptions{Keys: []string{n.vkey}})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].OK() || rs[0].Covered != 500 {
		t.Fatalf("%v (covered %d of %d)", rs[0].Problem, rs[0].Covered, rs[0].Size)
	}
}

func TestMirrorRefusesWhatConflictsWithItsLog(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(t *testing.T, pool *pgxpool.Pool, c *Cluster)
		want   error
	}{
		{"EditedLastEntry", func(t *testing.T, pool *pgxpool.Pool, _ *Cluster) {
			tamper(t, pool, `UPDATE audit_entries SET body = set_byte(body, length(body)-1, get_byte(body, length(body)-1) # 1) WHERE seq = 19`)
		}, ErrConflict},
		{"ForgedEntryAfterTheEnd", func(t *testing.T, pool *pgxpool.Pool, _ *Cluster) {
			tamper(t, pool, `INSERT INTO audit_entries SELECT origin, 20, time, token_id, subject, hashes, body FROM audit_entries WHERE seq = 19`)
		}, ErrConflict},
		{"DeletedLastEntry", func(t *testing.T, pool *pgxpool.Pool, _ *Cluster) {
			tamper(t, pool, `DELETE FROM audit_entries WHERE seq = 19`)
		}, nil}, // resumes from 19: the deletion is refilled from the node's own log (Verify names it meanwhile)
		{"OtherCheckpointOfTheSameSize", func(t *testing.T, pool *pgxpool.Pool, _ *Cluster) {
			tamper(t, pool, `UPDATE audit_checkpoints SET size = 30, note = set_byte(note, 0, 0) WHERE size = 20`)
		}, ErrConflict},
		{"OriginRegisteredWithAnotherKey", func(t *testing.T, pool *pgxpool.Pool, _ *Cluster) {
			tamper(t, pool, `UPDATE audit_origins SET verifier = replace(verifier, 'phigate/a+', 'phigate/a+0')`)
		}, ErrKeyChanged},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, pool := testCluster(t, testclock.New().Now)
			n := newNode(t, "a", ticking(testclock.New()))
			n.appendN(t, 20, "svc:a")
			if err := n.log.Close(); err != nil { // a checkpoint of size 20
				t.Fatal(err)
			}
			n.sync(t, c)
			tt.mutate(t, pool, c)
			l, err := reopen(n)
			if err != nil {
				t.Fatal(err)
			}
			n.log = l
			n.appendN(t, 10, "svc:a")
			n.close(t) // and one of size 30
			_, err = n.mirror(t, c, MirrorOptions{}).Sync(context.Background())
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("mirror after the mutation: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMirrorReportsItsLag(t *testing.T) {
	clk := testclock.New()
	c, _ := testCluster(t, clk.Now)
	n := newNode(t, "a", clk.Now)
	m := n.mirror(t, c, MirrorOptions{MaxLag: time.Second})
	n.appendN(t, 5, "svc:a")
	n.close(t)
	// a reader that sees only what the database has: nothing copied yet
	if st := m.Status(); st.Mirrored != 0 || st.Err != nil {
		t.Fatalf("before any sync: %+v", st)
	}
	if _, err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Mirrored != 5 || st.Behind != 0 || !st.Oldest.IsZero() || st.Err != nil {
		t.Fatalf("after a sync: %+v", st)
	}
	// the node writes on, the mirror does not run: the lag grows with the clock
	l, err := reopen(n)
	if err != nil {
		t.Fatal(err)
	}
	n.log = l
	n.appendN(t, 3, "svc:a")
	n.close(t)
	if err := m.look(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Behind != 3 || st.Err != nil {
		t.Fatalf("just behind: %+v", st)
	}
	clk.Add(2 * time.Second)
	if st := m.Status(); st.Err == nil {
		t.Fatalf("2 s behind with MaxLag 1 s: no error (%+v)", st)
	}
	if _, err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Err != nil || st.Behind != 0 {
		t.Fatalf("caught up: %+v", st)
	}
}

func TestRegisterRefusesAKeyChange(t *testing.T) {
	c, _ := testCluster(t, testclock.New().Now)
	n := newNode(t, "a", testclock.New().Now)
	other := newNode(t, "a", testclock.New().Now) // same name, another key
	ctx := context.Background()
	if err := c.Register(ctx, n.origin(), n.vkey); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, n.origin(), n.vkey); err != nil {
		t.Fatalf("registering the same key again: %v", err)
	}
	if err := c.Register(ctx, n.origin(), other.vkey); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("another key for the origin: %v, want ErrKeyChanged", err)
	}
	if err := c.Register(ctx, "phigate/b", n.vkey); err == nil {
		t.Fatal("a's key registered for phigate/b")
	}
}

func TestMirrorOfTheOpenLogCopiesWhatItAcknowledged(t *testing.T) {
	c, pool := testCluster(t, testclock.New().Now)
	n := newNode(t, "a", ticking(testclock.New()))
	m, err := c.NewMirror(n.log, MirrorOptions{Verifier: n.vkey})
	if err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 3; round++ {
		n.appendN(t, 7, "svc:a")
		// no waiting for the log's indexer: a Sync right after Append
		// returned copies the entry
		if k, err := m.Sync(context.Background()); err != nil || k != 7 {
			t.Fatalf("round %d: %d copied, %v; want 7", round, k, err)
		}
		contiguous(t, pool, n.origin(), 7*round)
	}
	n.close(t)
	if _, err := m.Sync(context.Background()); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("mirror of a closed log: %v, want ErrClosed", err)
	}
}
