package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// outsideConsistencyCheck is an auditor's verifier that is not phigate's
// code: only transparency-dev/formats/log (the checkpoint), x/mod's note
// (the signature) and transparency-dev/merkle/proof (RFC 6962), and the
// documented JSON of the proof. It reports whether the checkpoint newer
// extends older according to proofJSON.
func outsideConsistencyCheck(vkey string, older, newer, proofJSON []byte) error {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return err
	}
	// a file of several checkpoints: the last one
	last := func(b []byte) []byte {
		parts := strings.Split(strings.TrimRight(string(b), "\n"), "\n\n")
		return []byte(parts[len(parts)-2] + "\n\n" + parts[len(parts)-1] + "\n")
	}
	a, _, _, err := tlog.ParseCheckpoint(last(older), v.Name(), v)
	if err != nil {
		return fmt.Errorf("older checkpoint: %w", err)
	}
	b, _, _, err := tlog.ParseCheckpoint(last(newer), v.Name(), v)
	if err != nil {
		return fmt.Errorf("newer checkpoint: %w", err)
	}
	var p struct {
		From, To uint64
		Proof    [][]byte
	}
	if err := json.Unmarshal(proofJSON, &p); err != nil {
		return err
	}
	if p.From != a.Size || p.To != b.Size {
		return fmt.Errorf("the proof is %d→%d, the checkpoints %d and %d", p.From, p.To, a.Size, b.Size)
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, a.Size, b.Size, p.Proof, a.Hash, b.Hash)
}

// TestEndToEndConsistencyBetweenTwoCheckpoints: the real server; an auditor
// saves a checkpoint, entries are appended, a later checkpoint is saved;
// phigate audit prove fetches the consistency proof and checks it offline
// with the key and the two checkpoints, and a verifier that is not
// phigate's accepts the same proof (and refuses it against another
// checkpoint of the log).
func TestEndToEndConsistencyBetweenTwoCheckpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startDev(t, dir)
	if s.adm == "" {
		t.Fatal("no bootstrap token")
	}
	work := t.TempDir()
	keyOut, err := exec.Command(phigateBinary(t), "audit", "key", "--data", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(work, "audit.pub")
	os.WriteFile(keyFile, keyOut, 0o600)

	checkpoint := func(name string, larger uint64) ([]byte, uint64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, errs, code := s.cli(t, s.adm, "", "audit", "checkpoint")
			if code != 0 {
				t.Fatalf("audit checkpoint: %s", errs)
			}
			var size uint64
			fmt.Sscan(strings.Split(out, "\n")[1], &size)
			if size > larger {
				os.WriteFile(filepath.Join(work, name), []byte(out), 0o600)
				return []byte(out), size
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint beyond %d", larger)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// something in the log, and the first checkpoint
	for i := 0; i < 3; i++ {
		if _, errs, code := s.cli(t, s.adm, "", "token", "create", "--subject", fmt.Sprintf("app-%d", i), "--scope", "patient/Observation.rs", "--ttl", "10m"); code != 0 {
			t.Fatal(errs)
		}
	}
	old, oldSize := checkpoint("cp-old.txt", 0)
	for i := 0; i < 5; i++ {
		if _, errs, code := s.cli(t, s.adm, "", "token", "create", "--subject", fmt.Sprintf("later-%d", i), "--scope", "patient/Observation.rs", "--ttl", "10m"); code != 0 {
			t.Fatal(errs)
		}
	}
	cur, curSize := checkpoint("cp-new.txt", oldSize)

	saved := filepath.Join(work, "old-new.json")
	out, errs, code := s.cli(t, s.adm, "", "audit", "prove", "--from", filepath.Join(work, "cp-old.txt"), "--to", filepath.Join(work, "cp-new.txt"), "--key", keyFile, "--save", saved)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("of %d entries", curSize)) {
		t.Fatalf("audit prove --from --to: %d %s %s", code, out, errs)
	}
	proofJSON, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := outsideConsistencyCheck(string(keyOut), old, cur, proofJSON); err != nil {
		t.Fatalf("the outside verifier refuses phigate's proof %d→%d: %v", oldSize, curSize, err)
	}
	// offline, from the saved proof: with --to, and with the proof's own checkpoint
	for _, args := range [][]string{
		{"audit", "prove", "--from", filepath.Join(work, "cp-old.txt"), "--to", filepath.Join(work, "cp-new.txt"), "--key", keyFile, saved},
		{"audit", "prove", "--from", filepath.Join(work, "cp-old.txt"), "--key", keyFile, saved},
	} {
		cmd := exec.Command(phigateBinary(t), args...)
		cmd.Env = append(os.Environ(), "PHIGATE_ADDR=https://127.0.0.1:1") // nothing to fetch from
		if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "OK:") {
			t.Fatalf("offline %v: %v %s", args, err, b)
		}
	}
	// a proof does not fit another pair: the old checkpoint swapped for
	// the new one as "older" is refused by both verifiers
	if outsideConsistencyCheck(string(keyOut), cur, cur, proofJSON) == nil {
		t.Fatal("the outside verifier accepts the proof for the wrong checkpoint")
	}
	cmd := exec.Command(phigateBinary(t), "audit", "prove", "--from", filepath.Join(work, "cp-new.txt"), "--to", filepath.Join(work, "cp-new.txt"), "--key", keyFile, saved)
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("prove accepted the proof for the wrong checkpoints: %s", b)
	}
	// a flipped byte in the saved proof is refused
	var p map[string]any
	json.Unmarshal(proofJSON, &p)
	if hs, _ := p["proof"].([]any); len(hs) > 0 {
		h := []byte(hs[0].(string))
		if h[0] == 'A' {
			h[0] = 'B'
		} else {
			h[0] = 'A'
		}
		hs[0] = string(h)
		bad, _ := json.Marshal(p)
		badFile := filepath.Join(work, "bad.json")
		os.WriteFile(badFile, bad, 0o600)
		if outsideConsistencyCheck(string(keyOut), old, cur, bad) == nil {
			t.Fatal("the outside verifier accepts a tampered proof")
		}
		cmd := exec.Command(phigateBinary(t), "audit", "prove", "--from", filepath.Join(work, "cp-old.txt"), "--to", filepath.Join(work, "cp-new.txt"), "--key", keyFile, badFile)
		if b, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("prove accepted a tampered proof: %s", b)
		}
	} else {
		t.Fatalf("an empty proof between %d and %d", oldSize, curSize)
	}
}
