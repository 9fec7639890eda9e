package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
)

// auditDataDir makes a data directory with a closed audit log of n entries
// and returns it with the log's public key.
func auditDataDir(t *testing.T, n int) (dir, vkey string) {
	t.Helper()
	dir = t.TempDir()
	vkey, _, err := audit.InitKeys(dir, "cli-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		e := &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess, Actor: audit.Actor{TokenID: "tok_a", Subject: "lab-app", Kind: "service"},
			Source: audit.Source{IP: "10.0.0.1"}, Purpose: "TREAT", Method: "GET", Upstream: "fhir", Path: "/fhir/Observation?patient=p1", Patient: "p1"}
		if i == 3 {
			e.Action, e.Outcome, e.Reason, e.BreakGlass = audit.ActionBreakGlassUsed, audit.OutcomeSuccess, "", "ED: unconscious patient"
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, vkey
}

func writeFile(t *testing.T, name, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuditVerifyKeyExportOffline(t *testing.T) {
	dir, vkey := auditDataDir(t, 12)
	keyFile := writeFile(t, "audit.pub", vkey+"\n")

	r := runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key", keyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "OK: 12 entries, signed up to 12.") || strings.Contains(r.stdout, "data directory") {
		t.Fatalf("verify: %+v", r)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "public key stored in the data directory") {
		t.Fatalf("verify without --key must say where the key came from: %+v", r)
	}
	// an empty key file (a failed "audit key > FILE") must not fall back
	// to the data directory's copy
	empty := writeFile(t, "empty.pub", "\n")
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key", empty)
	if r.code != 2 || !strings.Contains(r.stderr, "the file is empty") || strings.Contains(r.stdout, "OK:") {
		t.Fatalf("verify with an empty --key file: %+v", r)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", "  ")
	if r.code != 2 || !strings.Contains(r.stderr, "--key-text is empty") {
		t.Fatalf("verify with a blank --key-text: %+v", r)
	}
	r = runCLI(t, nil, "", "--json", "audit", "verify", "--data", dir, "--key-text", vkey)
	var v verifyResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || !v.OK || v.Size != 12 {
		t.Fatalf("verify --json: %+v", r)
	}

	r = runCLI(t, nil, "", "audit", "key", "--data", dir)
	if r.code != 0 || r.stdout != vkey+"\n" {
		t.Fatalf("key: %+v", r)
	}

	r = runCLI(t, nil, "", "audit", "export", "--data", dir, "--format", "fhir")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 12 {
		t.Fatalf("export fhir: %+v", r)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &ev); err != nil || ev["resourceType"] != "AuditEvent" || !strings.Contains(lines[3], `"code":"110127"`) {
		t.Fatalf("break-glass AuditEvent: %s", lines[3])
	}
	out := filepath.Join(t.TempDir(), "x.jsonl")
	r = runCLI(t, nil, "", "audit", "export", "--data", dir, "--format", "jsonl", "--action", "breakglass.used", "--out", out)
	b, _ := os.ReadFile(out)
	if r.code != 0 || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"break_glass":"ED: unconscious patient"`) {
		t.Fatalf("export jsonl: %+v %s", r, b)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode %v", fi.Mode().Perm())
	}
}

func TestAuditVerifyFailsNamingTheEntry(t *testing.T) {
	dir, vkey := auditDataDir(t, 12)
	db, err := sql.Open("sqlite", filepath.Join(dir, audit.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP TRIGGER entries_no_delete", "DELETE FROM entries WHERE seq = 7"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	r := runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey)
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL: the first bad entry is 7: missing") || !strings.Contains(r.stderr, "audit log NOT intact: entry 7") {
		t.Fatalf("%+v", r)
	}
}

func TestAuditVerifyWithSavedCheckpoints(t *testing.T) {
	dir, vkey := auditDataDir(t, 5)
	l, err := audit.Open(context.Background(), dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := l.Checkpoint(context.Background(), false)
	l.Close()
	file := writeFile(t, "witness.txt", string(cp.Note)+"\n"+string(cp.Note)+"\n")
	r := runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey, "--checkpoint", file)
	if r.code != 0 || !strings.Contains(r.stdout, "Consistent with the saved checkpoints of size 5, 5.") {
		t.Fatalf("%+v", r)
	}
	bad := writeFile(t, "bad.txt", "not a checkpoint")
	if r := runCLI(t, nil, "", "audit", "verify", "--data", dir, "--checkpoint", bad); r.code != 1 {
		t.Fatalf("%+v", r)
	}
}

// bundleFor returns a real proof bundle of entry seq and the key.
func bundleFor(t *testing.T, seq uint64) (string, string) {
	t.Helper()
	dir, vkey := auditDataDir(t, 6)
	l, err := audit.Open(context.Background(), dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := l.Proof(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(b)
	return string(j), vkey
}

func TestAuditProveOffline(t *testing.T) {
	bundle, vkey := bundleFor(t, 4)
	file := writeFile(t, "p.json", bundle)
	keyFile := writeFile(t, "k.pub", vkey)
	r := runCLI(t, nil, "", "audit", "prove", file, "--key", keyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "OK: entry 4 is in the log phigate/cli-test of 6 entries") || !strings.Contains(r.stdout, "subject:") {
		t.Fatalf("%+v", r)
	}
	_, otherKey := auditDataDir(t, 0)
	if r := runCLI(t, nil, "", "audit", "prove", file, "--key-text", otherKey); r.code != 1 || !strings.Contains(r.stderr, "invalid proof") {
		t.Fatalf("another log's key: %+v", r)
	}
	tampered := writeFile(t, "t.json", strings.Replace(bundle, `"tree_size":6`, `"tree_size":7`, 1))
	if r := runCLI(t, nil, "", "audit", "prove", tampered, "--key-text", vkey); r.code != 1 {
		t.Fatalf("tampered bundle: %+v", r)
	}
	for _, args := range [][]string{
		{"audit", "prove", file},                                 // no key
		{"audit", "prove", "--key-text", vkey},                   // no bundle
		{"audit", "prove", file, "--seq", "1", "--key", keyFile}, // both
		{"audit", "prove", file, "--key-text", "garbage"},
	} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%v: want a usage error, got %+v", args, r)
		}
	}
}

func TestAuditOnlineCommands(t *testing.T) {
	f := newFakeAPI(t)
	entry := `{"seq":4,"time":"2026-01-02T03:04:05Z","node":"n1","action":"access.denied","outcome":"denied","actor":{"token_id":"tok_a","subject":"lab-app"},"source":{"ip":"10.0.0.1"},"method":"GET","path":"/fhir/x","reason":"outside_hours\u001b[2J"}`
	f.on("GET", "/v1/audit", 200, `{"entries":[`+entry+`],"next":"4"}`)
	f.on("GET", "/v1/audit/checkpoint", 200, `{"origin":"phigate/n1","size":5,"root_hash":"AA==","checkpoint":"phigate/n1\n5\nAA==\n\n— phigate/n1 sig\n"}`)
	bundle, vkey := bundleFor(t, 2)
	f.on("GET", "/v1/audit/proof", 200, bundle)

	r := runCLI(t, f.env(), "", "audit", "search", "--subject", "lab-app", "--action", "access.denied", "--from", "2026-01-01T00:00:00Z", "--limit", "5")
	got := f.last(t)
	q, _ := url.ParseQuery(got.Query)
	if r.code != 0 || got.Path != "/v1/audit" || q.Get("subject") != "lab-app" || q.Get("action") != "access.denied" || q.Get("limit") != "5" || q.Get("from") != "2026-01-01T00:00:00Z" {
		t.Fatalf("search: %+v %+v", r, got)
	}
	if !strings.Contains(r.stdout, "access.denied") || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stderr, "--after 4") {
		t.Fatalf("search output (escape sequences must be neutralised): %q %q", r.stdout, r.stderr)
	}

	r = runCLI(t, f.env(), "", "audit", "tail", "-n", "3")
	q, _ = url.ParseQuery(f.last(t).Query)
	if r.code != 0 || q.Get("order") != "desc" || q.Get("limit") != "3" || !strings.Contains(r.stdout, "SEQ") {
		t.Fatalf("tail: %+v %v", r, q)
	}

	r = runCLI(t, f.env(), "", "audit", "checkpoint")
	if r.code != 0 || r.stdout != "phigate/n1\n5\nAA==\n\n— phigate/n1 sig\n" {
		t.Fatalf("checkpoint: %q", r.stdout)
	}

	// audit key without --data asks the server, says so, and checks what it got
	f.on("GET", "/v1/audit/key", 200, `{"origin":"x","key":"`+vkey+`"}`)
	r = runCLI(t, f.env(), "", "audit", "key")
	if r.code != 0 || r.stdout != vkey+"\n" || !strings.Contains(r.stderr, "Fetched from the server") || f.last(t).Path != "/v1/audit/key" {
		t.Fatalf("key from the server: %+v", r)
	}
	f.on("GET", "/v1/audit/key", 200, `{"origin":"x","key":"not a key"}`)
	if r = runCLI(t, f.env(), "", "audit", "key"); r.code == 0 || r.stdout != "" {
		t.Fatalf("a malformed key from the server must be refused: %+v", r)
	}

	save := filepath.Join(t.TempDir(), "saved.json")
	r = runCLI(t, f.env(), "", "audit", "prove", "--seq", "2", "--key-text", vkey, "--save", save)
	if r.code != 0 || !strings.Contains(r.stdout, "OK: entry 2") || f.last(t).Query != "seq=2" {
		t.Fatalf("prove --seq: %+v", r)
	}
	if r := runCLI(t, nil, "", "audit", "prove", save, "--key-text", vkey); r.code != 0 {
		t.Fatalf("the saved bundle must verify offline: %+v", r)
	}

	for _, args := range [][]string{
		{"audit", "search", "--action", "token.exploded"},
		{"audit", "search", "--from", "yesterday"},
		{"audit", "search", "--outcome", "meh"},
		{"audit", "search", "--limit", "5000"},
		{"audit", "verify"},
		{"audit", "export", "--data", "x", "--format", "csv"},
		{"audit", "tail", "-n", "-1"},
	} {
		if r := runCLI(t, f.env(), "", args...); r.code != 2 {
			t.Errorf("%v: want a usage error, got %+v", args, r)
		}
	}
}

func TestAuditTailFollows(t *testing.T) {
	f := newFakeAPI(t)
	f.mu.Lock()
	f.answers["GET /v1/audit"] = func(r *http.Request) (int, string) {
		q := r.URL.Query()
		switch {
		case q.Get("order") == "desc":
			return 200, `{"entries":[{"seq":9,"time":"2026-01-02T03:04:05Z","action":"token.created","actor":{},"source":{}}]}`
		case q.Get("after") == "9":
			return 200, `{"entries":[{"seq":10,"time":"2026-01-02T03:04:06Z","action":"token.revoked","actor":{},"source":{}}]}`
		}
		return 200, `{"entries":[]}`
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb strings.Builder
	env := f.env()
	root := newRootCmd(&out, &errb, func(k string) string { return env[k] })
	code := execute(ctx, root, []string{"audit", "tail", "-n", "1", "-f", "--interval", "50ms"}, strings.NewReader(""), &errb)
	if code != 0 || !strings.Contains(out.String(), "token.created") || !strings.Contains(out.String(), "token.revoked") {
		t.Fatalf("%d %q %q", code, out.String(), errb.String())
	}
}
