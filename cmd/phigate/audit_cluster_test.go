package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/auditcluster"
	"github.com/phigate/phigate/internal/testclock"
)

// clusterDSN returns the DSN of a fresh schema in the test PostgreSQL
// (dropped after the test), and a connection to it; it skips without
// PHIGATE_TEST_POSTGRES and fails without it under CI.
func clusterDSN(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	base := os.Getenv("PHIGATE_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PHIGATE_TEST_POSTGRES is not set, and CI=true: the PostgreSQL tests must run")
		}
		t.Skip("PHIGATE_TEST_POSTGRES is not set")
	}
	ctx := context.Background()
	var b [8]byte
	rand.Read(b[:])
	schema := "clitest_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(ctx, "SET search_path = "+schema); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), conn
}

// mirroredNodes makes two nodes' logs of n entries each, interleaved in
// time, mirrors them into the cluster at dsn and returns their keys.
func mirroredNodes(t *testing.T, dsn string, n int) []string {
	t.Helper()
	ctx := context.Background()
	clk := testclock.New()
	now := func() time.Time { return clk.Add(time.Millisecond) }
	c, err := auditcluster.Open(ctx, dsn, auditcluster.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var keys []string
	var logs []*audit.Log
	var dirs []string
	for _, name := range []string{"n1", "n2"} {
		dir := t.TempDir()
		vkey, _, err := audit.InitKeys(dir, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(ctx, dir, audit.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		keys, logs, dirs = append(keys, vkey), append(logs, l), append(dirs, dir)
	}
	for i := 0; i < n; i++ {
		for j, l := range logs {
			e := &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
				Actor: audit.Actor{TokenID: "tok_" + string(rune('a'+j)), Subject: "lab-app", Kind: "service"}, Method: "GET", Upstream: "fhir", Path: "/fhir/Observation"}
			if _, err := l.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := audit.OpenReader(ctx, dirs[i])
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.NewMirror(r, auditcluster.MirrorOptions{Verifier: keys[i]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	return keys
}

func TestAuditClusterVerifySearchExport(t *testing.T) {
	dsn, conn := clusterDSN(t)
	keys := mirroredNodes(t, dsn, 15)
	keyFile := writeFile(t, "nodes.pub", strings.Join(keys, "\n")+"\n")

	r := runCLI(t, nil, "", "audit", "verify", "--cluster", dsn, "--keys", keyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "phigate/n1: OK: 15 entries, signed up to 15.") || !strings.Contains(r.stdout, "phigate/n2: OK: 15 entries") {
		t.Fatalf("verify --cluster: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "registered in the cluster database") {
		t.Errorf("with --keys, verify says it used the database's keys:\n%s", r.stdout)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--cluster", dsn)
	if r.code != 0 || !strings.Contains(r.stdout, "prove nothing") {
		t.Fatalf("verify --cluster without --keys: %d, want 0 and a warning\n%s%s", r.code, r.stdout, r.stderr)
	}

	t.Run("SearchMergesByTime", func(t *testing.T) {
		r := runCLI(t, nil, "", "--json", "audit", "search", "--cluster", dsn, "--all")
		if r.code != 0 {
			t.Fatalf("%d %s", r.code, r.stderr)
		}
		var page struct {
			Entries []struct {
				Node string    `json:"node"`
				Time time.Time `json:"time"`
			} `json:"entries"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) != 30 || page.Entries[0].Node != "n1" || page.Entries[1].Node != "n2" {
			t.Fatalf("%d entries, first from %+v", len(page.Entries), page.Entries[:min(2, len(page.Entries))])
		}
		for i := 1; i < len(page.Entries); i++ {
			if page.Entries[i].Time.Before(page.Entries[i-1].Time) {
				t.Fatalf("entry %d is before entry %d", i, i-1)
			}
		}
		r = runCLI(t, nil, "", "--json", "audit", "search", "--cluster", dsn, "--limit", "4", "--token-id", "tok_b")
		var p2 struct {
			Entries []json.RawMessage `json:"entries"`
			Next    string            `json:"next"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &p2); err != nil || len(p2.Entries) != 4 || p2.Next == "" {
			t.Fatalf("a page of 4: %v %d %q", err, len(p2.Entries), p2.Next)
		}
		if _, err := auditcluster.ParseCursor(p2.Next); err != nil {
			t.Fatalf("next %q: %v", p2.Next, err)
		}
	})
	t.Run("ExportFHIR", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "all.ndjson")
		r := runCLI(t, nil, "", "audit", "export", "--cluster", dsn, "--format", "fhir", "--out", out)
		if r.code != 0 || !strings.Contains(r.stderr, "Exported 30 entries") {
			t.Fatalf("%d %s", r.code, r.stderr)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			var ev struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ResourceType != "AuditEvent" {
				t.Fatalf("line %d: %v %q", n+1, err, ev.ResourceType)
			}
			n++
		}
		if n != 30 {
			t.Fatalf("%d AuditEvents, want 30", n)
		}
		r = runCLI(t, nil, "", "audit", "export", "--cluster", dsn, "--format", "jsonl", "--token-id", "tok_a")
		if r.code != 0 || strings.Count(r.stdout, "\n") != 15 || strings.Contains(r.stdout, `"node":"n2"`) {
			t.Fatalf("jsonl of tok_a: %d\n%s", r.code, r.stdout)
		}
	})
	t.Run("UsageErrors", func(t *testing.T) {
		for _, args := range [][]string{
			{"audit", "verify", "--cluster", dsn, "--data", t.TempDir()},
			{"audit", "verify", "--data", t.TempDir(), "--keys", keyFile},
			{"audit", "export", "--cluster", dsn, "--decrypt"},
			{"audit", "search", "--cluster", "mysql://x"},
			{"audit", "search", "--cluster", dsn, "--after", "nope"},
		} {
			if r := runCLI(t, nil, "", args...); r.code != 2 {
				t.Errorf("%v: exit %d, want 2 (usage)\n%s", args, r.code, r.stderr)
			}
		}
	})

	// the last: edit an entry of n2 behind the triggers' back
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SET LOCAL session_replication_role = replica",
		"UPDATE audit_entries SET body = set_byte(body, length(body)-1, get_byte(body, length(body)-1) # 1) WHERE origin = 'phigate/n2' AND seq = 9"} {
		if _, err := tx.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--cluster", dsn, "--keys", keyFile)
	if r.code != 1 || !strings.Contains(r.stdout, "phigate/n1: OK") || !strings.Contains(r.stdout, "phigate/n2: FAIL: the first bad entry is 9") ||
		!strings.Contains(r.stderr, "phigate/n2: entry 9") {
		t.Fatalf("verify after an edit: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, nil, "", "--json", "audit", "verify", "--cluster", dsn, "--keys", keyFile)
	var js clusterVerifyJSON
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.OK || len(js.Origins) != 2 || js.Origins[1].FirstBad == nil || *js.Origins[1].FirstBad != 9 {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}
}
