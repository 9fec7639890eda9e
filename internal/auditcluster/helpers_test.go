package auditcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/testclock"
)

// EnvPostgres names the DSN of the PostgreSQL the tests use.
const EnvPostgres = "PHIGATE_TEST_POSTGRES"

// testDB returns the DSN of a fresh schema (random name, dropped after the
// test) in the test PostgreSQL, and a pool on it for tampering. It skips
// the test when no PostgreSQL is configured, and fails it under CI.
func testDB(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true: the PostgreSQL tests must run", EnvPostgres)
		}
		t.Skipf("%s is not set", EnvPostgres)
	}
	ctx := context.Background()
	var b [8]byte
	rand.Read(b[:])
	schema := "auditcluster_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvPostgres, err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", EnvPostgres, err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = qv.Encode()
	dsn := u.String()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return dsn, pool
}

// testCluster opens a Cluster on a fresh schema.
func testCluster(t testing.TB, clk func() time.Time) (*Cluster, *pgxpool.Pool) {
	t.Helper()
	dsn, pool := testDB(t)
	c, err := Open(context.Background(), dsn, Options{Now: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, pool
}

// ticking is a clock shared by the nodes of a test, a millisecond further
// at each reading, so that their entries interleave in time.
func ticking(clk *testclock.Clock) func() time.Time {
	return func() time.Time { return clk.Add(time.Millisecond) }
}

// node is one node's audit log in its own data directory with its own key.
type node struct {
	name, dir, vkey string
	now             func() time.Time
	log             *audit.Log
}

// reopen opens the node's log again after close.
func reopen(n *node) (*audit.Log, error) {
	return audit.Open(context.Background(), n.dir, audit.Options{Now: n.now})
}

func (n *node) origin() string { return "phigate/" + n.name }

func newNode(t testing.TB, name string, now func() time.Time) *node {
	t.Helper()
	dir := t.TempDir()
	vkey, _, err := audit.InitKeys(dir, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), dir, audit.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, dir: dir, vkey: vkey, now: now, log: l}
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *node) close(t testing.TB) {
	if n.log != nil {
		if err := n.log.Close(); err != nil {
			t.Error(err)
		}
		n.log = nil
	}
}

// appendN appends n entries of subject subj.
func (n *node) appendN(t testing.TB, count int, subj string) {
	t.Helper()
	for i := 0; i < count; i++ {
		_, err := n.log.Append(context.Background(), &audit.Entry{
			Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
			Actor:     audit.Actor{TokenID: fmt.Sprintf("tok_%s_%d", n.name, i%3), Subject: subj, Kind: "service"},
			Source:    audit.Source{IP: "10.0.0.7"},
			RequestID: fmt.Sprintf("req_%s_%d", n.name, i),
			Purpose:   "TREAT", Method: "GET", Upstream: "fhir", Path: fmt.Sprintf("/fhir/Observation/%d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// reader opens the node's log for a mirror.
func (n *node) reader(t testing.TB) *audit.Reader {
	t.Helper()
	r, err := audit.OpenReader(context.Background(), n.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (n *node) mirror(t testing.TB, c *Cluster, opts MirrorOptions) *Mirror {
	t.Helper()
	opts.Verifier = n.vkey
	m, err := c.NewMirror(n.reader(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sync mirrors the node fully and returns the entries copied.
func (n *node) sync(t testing.TB, c *Cluster) int {
	t.Helper()
	k, err := n.mirror(t, c, MirrorOptions{}).Sync(context.Background())
	if err != nil {
		t.Fatalf("mirror %s: %v", n.name, err)
	}
	return k
}

// tamper runs statements with the append-only triggers disabled, as an
// attacker with the database's superuser would.
func tamper(t testing.TB, pool *pgxpool.Pool, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// byOrigin indexes Verify's results.
func byOrigin(rs []OriginResult) map[string]OriginResult {
	m := map[string]OriginResult{}
	for _, r := range rs {
		m[r.Origin] = r
	}
	return m
}
