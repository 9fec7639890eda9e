package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/auditcluster"
)

// clusterSchema returns the DSN of a fresh schema in the test PostgreSQL
// (dropped after the test); it skips without PHIGATE_TEST_POSTGRES and
// fails without it under CI.
func clusterSchema(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PHIGATE_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PHIGATE_TEST_POSTGRES is not set, and CI=true: the PostgreSQL tests must run")
		}
		t.Skip("PHIGATE_TEST_POSTGRES is not set")
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "apitest_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestAuditSearchOnAClusterNodeServesTheMergedView(t *testing.T) {
	ctx := context.Background()
	c, err := auditcluster.Open(ctx, clusterSchema(t), auditcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// this node and another, each with its own log, mirrored
	a, st, secret := testAuthority(t)
	var logs []*audit.Log
	for _, name := range []string{"here", "there"} {
		dir := t.TempDir()
		vkey, _, err := audit.InitKeys(dir, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(ctx, dir, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs = append(logs, l)
		for i := 0; i < 3; i++ {
			if _, err := l.Append(ctx, &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
				Actor: audit.Actor{TokenID: "tok_" + name, Subject: "lab-app", Kind: "service"}, Method: "GET", Upstream: "fhir", Path: "/fhir/Observation"}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := audit.OpenReader(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		m, err := c.NewMirror(r, auditcluster.MirrorOptions{Verifier: vkey})
		if err != nil {
			t.Fatal(err)
		}
		// the reader sees the entries once the log's indexer has them
		for k, tries := 0, 0; k < 3; tries++ {
			if tries > 5000 {
				t.Fatalf("the mirror copied %d of 3 entries", k)
			}
			n, err := m.Sync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			k += n
		}
	}
	srv := httptest.NewTLSServer(New(a, Options{Ready: st.Ping, Audit: logs[0], AuditSearch: c, Logger: newTestLogger(&bytes.Buffer{})}))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: &bytes.Buffer{}}

	var nodes []string
	path := "/v1/audit?limit=2&subject=lab-app"
	for pages := 0; ; pages++ {
		r := e.do("GET", path, secret, "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		var p audit.Page
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		for _, en := range p.Entries {
			nodes = append(nodes, en.Node)
		}
		if p.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("the cursor does not advance")
		}
		path = "/v1/audit?limit=2&subject=lab-app&after=" + url.QueryEscape(p.Next)
	}
	count := map[string]int{}
	for _, n := range nodes {
		count[n]++
	}
	if count["here"] != 3 || count["there"] != 3 {
		t.Fatalf("merged view by node: %v, want 3 of each", count)
	}
	if r := e.do("GET", "/v1/audit?after=17", secret, "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("a cursor of one log's view: %d %s, want 400", r.status, r.body)
	}
	// every read was recorded in this node's own log
	p, err := logs[0].Search(ctx, &audit.Query{Actions: []audit.Action{audit.ActionAuditRead}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) < 3 {
		t.Fatalf("%d audit.read entries in this node's log, want one per page", len(p.Entries))
	}
}
