package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Fuzz targets for every parser of the package. Their seed corpora are in
// testdata/fuzz/<target>/ (regenerate with PHIGATE_GEN_FUZZ=1 go test -run
// TestGenerateFuzzCorpus).

// fuzzKeyPair is a fixed key pair, so that the committed seeds verify.
func fuzzKeyPair() (skey, vkey string) {
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), "phigate/fuzz")
	if err != nil {
		panic(err)
	}
	return skey, vkey
}

func fuzzKeys(tb testing.TB) (note.Signer, note.Verifier) {
	tb.Helper()
	skey, vkey := fuzzKeyPair()
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return s, v
}

func FuzzUnmarshalEntry(f *testing.F) {
	b, _ := exampleEntry().MarshalBinary()
	f.Add(b)
	sealed := exampleEntry()
	sealed.takePHI()
	sealed.Sealed = []byte{0xff, 0, 1}
	b, _ = sealed.MarshalBinary()
	f.Add(b)
	sealed.Interaction = "search-compartment"
	b, _ = sealed.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEntry(b)
		if err != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded entry does not re-encode to the same bytes: %v", err)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	s, v := fuzzKeys(f)
	cp, _ := signCheckpoint(s, 3, bytes.Repeat([]byte{1}, 32), time.Unix(0, 0))
	f.Add(cp.Note)
	f.Fuzz(func(t *testing.T, b []byte) {
		if cp, err := ParseCheckpoint(b, v); err == nil {
			if cp.Origin != "phigate/fuzz" || len(cp.Root) != 32 {
				t.Fatalf("accepted %+v", cp)
			}
		}
		if notes, err := SplitCheckpoints(b); err == nil {
			n := 0
			for _, x := range notes {
				n += len(x)
			}
			if n > len(b) {
				t.Fatal("split invented bytes")
			}
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"format":"phigate-audit-proof/1","seq":0,"entry_bytes":"AQIBBAF4","tree_size":1,"inclusion":[],"checkpoint":"x"}`))
	_, v := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		bundle, err := ParseBundle(b)
		if err != nil {
			return
		}
		if e, cp, err := VerifyBundle(bundle, v); err == nil && (e.Seq != bundle.Seq || cp.Size != bundle.TreeSize) {
			t.Fatal("verified a bundle that says something else")
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "subject=a&limit=5", "action=token.created,access.denied&order=desc", "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00.5Z&after=17", "before=3&path_prefix=/fhir"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			return
		}
		q2, err := ParseQuery(q.Values())
		if err != nil {
			t.Fatalf("Values of a parsed query does not parse: %v (%s)", err, q.Values().Encode())
		}
		if !q.From.Equal(q2.From) || !q.To.Equal(q2.To) {
			t.Fatal("times changed")
		}
		q.From, q.To, q2.From, q2.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(q, q2) {
			t.Fatalf("round trip: %+v != %+v", q, q2)
		}
	})
}

func FuzzVerifyArchive(f *testing.F) {
	f.Add([]byte(`{"format":"phigate-audit-archive/1","origin":"phigate/fuzz","size":1,"checkpoint":"x"}` + "\nAQIBBAF4\n"))
	_, v := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		VerifyArchive(bytes.NewReader(b), v)
	})
}

// TestGenerateFuzzCorpus writes the committed seed corpora from real
// values (a real entry, checkpoint, proof bundle, archive).
func TestGenerateFuzzCorpus(t *testing.T) {
	if os.Getenv("PHIGATE_GEN_FUZZ") == "" {
		t.Skip("set PHIGATE_GEN_FUZZ=1 to regenerate testdata/fuzz")
	}
	dir := t.TempDir()
	l, err := Open(context.Background(), dir, Options{Keys: staticKeys{}, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	full := completion(1)
	full.Before, full.After, full.BreakGlass, full.Reason = json.RawMessage(`{"scopes":["a"]}`), json.RawMessage(`{"scopes":["b"]}`), "ED", "r"
	for _, e := range []*Entry{grant(0), full, {Action: ActionServerStarted}} {
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	write := func(target, name string, vals ...any) {
		p := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(p, 0o755)
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			}
		}
		if err := os.WriteFile(filepath.Join(p, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l.visible(ctx)
	for i := uint64(0); i < 3; i++ {
		body, _ := l.st.entry(ctx, i)
		write("FuzzUnmarshalEntry", fmt.Sprintf("entry-%d", i), body)
	}
	cp, _ := l.Checkpoint(ctx, true)
	write("FuzzParseCheckpoint", "checkpoint", cp.Note)
	write("FuzzParseCheckpoint", "witness-file", append(append(append([]byte(nil), cp.Note...), '\n'), cp.Note...))
	b, _ := l.Proof(ctx, 1)
	bj, _ := json.Marshal(b)
	write("FuzzParseBundle", "bundle", bj)
	for i, q := range []string{"subject=svc%3Alab&token_id=tok_1&action=access.granted&outcome=success&upstream=fhir&path_prefix=%2Ffhir&from=2026-01-01T00%3A00%3A00Z&to=2026-02-01T00%3A00%3A00Z&limit=50", "order=desc&before=100", "after=0&limit=1000"} {
		write("FuzzParseQuery", fmt.Sprintf("query-%d", i), q)
	}
	var ab bytes.Buffer
	if _, err := l.Archive(ctx, &ab, 3); err != nil {
		t.Fatal(err)
	}
	write("FuzzVerifyArchive", "archive", ab.Bytes())
	l.Close()
}

// staticKeys is the Keys of fuzzKeyPair.
type staticKeys struct{}

func (staticKeys) CheckpointSigner(context.Context) (note.Signer, string, error) {
	skey, vkey := fuzzKeyPair()
	s, err := note.NewSigner(skey)
	return s, vkey, err
}

// FuzzPutPHI: the decoder of sealed fields (what a Sealer opened) accepts
// exactly what takePHI produces: whatever it accepts re-encodes byte for
// byte.
func FuzzPutPHI(f *testing.F) {
	e := grant(1)
	e.BreakGlass = "ED"
	f.Add(e.takePHI())
	f.Add([]byte{tagPath, 1, '/'})
	f.Add([]byte{tagPatient, 2, 'p', 'x', tagBreakGlass, 1, 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if err := e.putPHI(b); err != nil {
			return
		}
		if got := e.takePHI(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x as %x", b, got)
		}
	})
}
