package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// fastArgon keeps passphrase tests quick; real use takes DefaultArgon2.
var fastArgon = Argon2Params{Time: 1, Memory: 64, Threads: 1}

func randKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func keyProvider(t testing.TB, key []byte) Provider {
	t.Helper()
	p, err := NewKeyProvider(key, "test-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeKeyFile writes key to dir/name with mode and returns its spec.
func writeKeyFile(t testing.TB, dir, name string, key []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, key, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return "file:" + p
}

func mustCreate(t testing.TB, dir string, p Provider, opts Options) *Vault {
	t.Helper()
	v, err := Create(context.Background(), dir, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustOpen(t testing.TB, dir string, p Provider, opts Options) *Vault {
	t.Helper()
	v, err := Open(context.Background(), dir, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// hashDir returns "name sha256" for every file under dir.
func hashDir(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+hex.EncodeToString(s[:]))
		return nil
	})
	sort.Strings(out)
	return out
}

// grepDir reports the files under dir that contain needle.
func grepDir(t testing.TB, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// events collects OnEvent calls.
type events struct {
	list []Event
	fail error
}

func (e *events) on(_ context.Context, ev Event) error {
	e.list = append(e.list, ev)
	if ev.Outcome == OutcomeSuccess {
		return e.fail
	}
	return nil
}

func (e *events) kinds() []string {
	var k []string
	for _, ev := range e.list {
		k = append(k, ev.Kind+"/"+ev.Outcome)
	}
	return k
}
