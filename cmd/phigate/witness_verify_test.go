package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"github.com/phigate/phigate/internal/audit"
	"golang.org/x/mod/sumdb/note"
)

// cosign appends to dir's audit.cosigned the latest checkpoint cosigned by
// a new witness (torchwood's cosignature signer) and returns its vkey.
func cosign(t *testing.T, dir, name string) string {
	t.Helper()
	l, err := audit.Open(context.Background(), dir, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := l.Checkpoint(context.Background(), false)
	l.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
	signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := bytes.Cut(signed, []byte("\n\n"))
	f, err := os.OpenFile(filepath.Join(dir, audit.CosignedFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(append(append([]byte(nil), cp.Note...), line...), '\n'))
	f.Close()
	return s.Verifier().String()
}

func TestAuditVerifyRequiresWitnessCosignatures(t *testing.T) {
	dir, vkey := auditDataDir(t, 5)
	a := cosign(t, dir, "w.example/a")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	bs, _ := torchwood.NewCosignatureSigner("w.example/b", priv)
	b := bs.Verifier().String()

	r := runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey, "--witness", a)
	if r.code != 0 || !strings.Contains(r.stdout, "cosigned by w.example/a") {
		t.Fatalf("one witness: %+v", r)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey, "--witness", a, "--witness", b)
	if r.code != 1 || !strings.Contains(r.stderr, "w.example/b (never cosigned)") || !strings.Contains(r.stderr, "NOT witnessed") {
		t.Fatalf("a missing witness must be named: %+v", r)
	}
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey, "--witness", a, "--witness", b, "--witness-quorum", "1")
	if r.code != 0 {
		t.Fatalf("quorum 1 of 2: %+v", r)
	}
	// a cosignature on an older checkpoint does not count for the latest
	l, _ := audit.Open(context.Background(), dir, audit.Options{})
	l.Append(context.Background(), &audit.Entry{Action: audit.ActionServerStarted, Outcome: audit.OutcomeSuccess})
	l.Close()
	r = runCLI(t, nil, "", "audit", "verify", "--data", dir, "--key-text", vkey, "--witness", a)
	if r.code != 1 || !strings.Contains(r.stderr, "w.example/a (newest cosigned size") {
		t.Fatalf("an old cosignature: %+v", r)
	}
	for _, args := range [][]string{
		{"audit", "verify", "--data", dir, "--witness", "garbage"},
		{"audit", "verify", "--data", dir, "--witness", a, "--witness-quorum", "2"},
	} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%v: want a usage error: %+v", args, r)
		}
	}
}

func TestAuditProveConsistencyUsageErrors(t *testing.T) {
	_, vkey := auditDataDir(t, 2)
	cp := writeFile(t, "cp.txt", "x")
	for _, args := range [][]string{
		{"audit", "prove", "--to", cp, "--key-text", vkey},                             // --to without --from
		{"audit", "prove", "--from", cp, "--key-text", vkey},                           // neither --to nor a proof file
		{"audit", "prove", "--from", cp, "--to", cp, "--seq", "1", "--key-text", vkey}, // both kinds
		{"audit", "prove", "--from", cp, "--to", cp, "a.json", "b.json", "--key-text", vkey},
		{"audit", "prove", "--from", cp, "--to", cp}, // no key
	} {
		if r := runCLI(t, nil, "", args...); r.code != 2 {
			t.Errorf("%v: want a usage error: %+v", args, r)
		}
	}
	// a checkpoint file that is not a checkpoint: a clear error, exit 1
	if r := runCLI(t, nil, "", "audit", "prove", "--from", cp, "--to", cp, "--key-text", vkey, cp); r.code != 1 || !strings.Contains(r.stderr, "checkpoint") {
		t.Errorf("a bad checkpoint file: %+v", r)
	}
}
