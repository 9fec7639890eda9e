package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/vault"
)

// testVault creates a vault with a random master key in its own directory.
func testVault(t testing.TB) *vault.Vault {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	p, err := vault.NewKeyProvider(key, "test-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Create(context.Background(), t.TempDir(), p, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// randomID is a patient id no file could contain by chance.
func randomID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// dirBytes returns every file under dir.
func dirBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = b
		}
		return nil
	})
	return out
}

// TestSealedFieldsNeverOnDisk appends access entries naming patients, with
// paths, queries and a break-glass justification, to a log with the
// vault's sealer; then no file of the data directory holds any of them,
// the log answers them in the clear, the blind index finds them by
// patient and by path prefix, and the log verifies without the key.
func TestSealedFieldsNeverOnDisk(t *testing.T) {
	v := testVault(t)
	l, dir := newTestLog(t, Options{Sealer: VaultSealer(v)})
	ctx := context.Background()
	p1, p2 := randomID("pat-"), randomID("pat-")
	why := "cardiac arrest in bay " + randomID("")
	var want1, want2 []uint64
	for i := 0; i < 40; i++ {
		e := grant(i)
		p := p1
		if i%4 == 0 {
			p = p2
		}
		e.Patient = p
		e.Path = "/fhir/Patient/" + p + "/Observation?code=" + randomID("c")
		if i == 7 {
			e.Action, e.BreakGlass, e.Purpose = ActionBreakGlassUsed, why, "ETREAT"
		}
		seq, err := l.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if e.Patient != p || e.Sealed != nil {
			t.Fatalf("Append gave the caller back %q, sealed %d bytes", e.Patient, len(e.Sealed))
		}
		if p == p1 {
			want1 = append(want1, seq)
		} else {
			want2 = append(want2, seq)
		}
	}
	// an entry without PHI is not sealed
	plain, err := l.Append(ctx, &Entry{Action: ActionTokenRevoked, Outcome: OutcomeSuccess, Target: "tok_x"})
	if err != nil {
		t.Fatal(err)
	}

	for name, q := range map[string]*Query{
		"patient":     {Patient: p2},
		"path_prefix": {PathPrefix: "/fhir/Patient/" + p2},
		"both":        {Patient: p2, PathPrefix: "/fhir/Patient/" + p2 + "/Observation"},
		"desc":        {Patient: p2, Desc: true},
	} {
		page, err := l.Search(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(page.Entries) != len(want2) {
			t.Fatalf("%s: %d entries, want %d", name, len(page.Entries), len(want2))
		}
		for _, e := range page.Entries {
			if e.Patient != p2 || e.Sealed != nil {
				t.Fatalf("%s: entry %d: patient %q, sealed %v", name, e.Seq, e.Patient, e.Sealed != nil)
			}
		}
	}
	page, err := l.Search(ctx, &Query{PathPrefix: "/fhir/Patient"})
	if err != nil || len(page.Entries) != 40 {
		t.Fatalf("/fhir/Patient: %d entries, %v", len(page.Entries), err)
	}
	if page, err := l.Search(ctx, &Query{Patient: randomID("pat-")}); err != nil || len(page.Entries) != 0 {
		t.Fatalf("unknown patient: %v, %v", page, err)
	}
	e, err := l.Entry(ctx, 7)
	if err != nil || e.BreakGlass != why || e.Patient != p1 {
		t.Fatalf("entry 7: %+v, %v", e, err)
	}
	if e, err := l.Entry(ctx, plain); err != nil || e.Sealed != nil || e.Target != "tok_x" {
		t.Fatalf("plain entry: %+v, %v", e, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	for name, b := range dirBytes(t, dir) {
		for _, s := range []string{p1, p2, why, "/Patient/", "code=c"} {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("%s contains %q", name, s)
			}
		}
	}

	// without the key: the log verifies, the entries are sealed
	if _, err := Verify(ctx, dir, VerifyOptions{}); err != nil {
		t.Fatalf("verify without the key: %v", err)
	}
	r, err := OpenReader(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	page, err = r.Search(ctx, &Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 41 || page.Entries[7].Sealed == nil || page.Entries[7].Patient != "" || page.Entries[7].Path != "" {
		t.Fatalf("reader without the key: %d entries, entry 7 %+v", len(page.Entries), page.Entries[7])
	}
	r.SetSealer(VaultSealer(v))
	page, err = r.Search(ctx, &Query{Patient: p1})
	if err != nil || len(page.Entries) != len(want1) || page.Entries[0].Seq != want1[0] {
		t.Fatalf("reader with the key: %v, %v", page, err)
	}
}

// TestSealedFieldBoundToItsEntry: a sealed field opens only for the entry
// it was sealed for, and one that does not open is tampering, never
// garbage.
func TestSealedFieldBoundToItsEntry(t *testing.T) {
	v := testVault(t)
	s := VaultSealer(v)
	ctx := context.Background()
	e := &Entry{Patient: randomID("pat-"), Path: "/fhir/Patient"}
	pt := e.takePHI()
	ct, err := s.Seal(ctx, 5, pt)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open(ctx, 5, ct); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %q, %v", got, err)
	}
	moved := &Entry{Seq: 6, Sealed: ct}
	if err := openEntry(ctx, s, moved); !errors.Is(err, ErrTampered) || moved.Patient != "" {
		t.Fatalf("moved to entry 6: %v, patient %q", err, moved.Patient)
	}
	flipped := bytes.Clone(ct)
	flipped[len(flipped)-1] ^= 1
	bad := &Entry{Seq: 5, Sealed: flipped}
	if err := openEntry(ctx, s, bad); !errors.Is(err, ErrTampered) || bad.Patient != "" {
		t.Fatalf("flipped: %v, patient %q", err, bad.Patient)
	}
}

// TestSealedRoundTrip: the encoding of a sealed entry is canonical (it
// decodes and re-encodes byte for byte) and putPHI undoes takePHI.
func TestSealedRoundTrip(t *testing.T) {
	e := grant(3)
	e.BreakGlass = "ED"
	want := *e
	phi := e.takePHI()
	if !e.phiEmpty() {
		t.Fatal("takePHI left fields")
	}
	e.Seq, e.Time, e.Sealed = 9, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), []byte{0, 1, 2, 0xff}
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	d, err := UnmarshalEntry(b)
	if err != nil || !bytes.Equal(d.Sealed, e.Sealed) {
		t.Fatalf("decode: %v", err)
	}
	if b2, _ := d.MarshalBinary(); !bytes.Equal(b, b2) {
		t.Fatal("not canonical")
	}
	var back Entry
	if err := back.putPHI(phi); err != nil || back.Patient != want.Patient || back.Path != want.Path || back.BreakGlass != "ED" {
		t.Fatalf("putPHI: %+v, %v", back, err)
	}
	for _, bad := range [][]byte{nil, {tagPath, 0}, {tagPath, 5, 'a'}, {tagPatient, 1, 'a', tagBreakGlass, 1, 'b'}, {tagTarget, 1, 'a'}} {
		if err := new(Entry).putPHI(bad); err == nil {
			t.Fatalf("putPHI(%v) accepted", bad)
		}
	}
}
