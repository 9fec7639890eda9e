package scan

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/phigate/phigate/internal/token"
)

func gen(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badChecksum returns s with its last character changed: same shape, wrong checksum.
func badChecksum(s string) string {
	c := byte('0')
	if s[len(s)-1] == '0' {
		c = '1'
	}
	return s[:len(s)-1] + string(c)
}

func secrets(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Secret())
	}
	return out
}

func TestOnlyValidChecksumTokensAreFound(t *testing.T) {
	a, b := gen(t), gen(t)
	cases := []struct {
		name  string
		in    string
		want  []string
		lines []int
	}{
		{"alone", a, []string{a}, []int{1}},
		{"in code", "x := \"" + a + "\"\n", []string{a}, []int{1}},
		{"two lines", "one\ntwo " + a + "\nthree\n\nfive=" + b + ";", []string{a, b}, []int{2, 5}},
		{"glued to a word on the left", "TOKEN_" + a, []string{a}, []int{1}},
		{"bad checksum", "t=" + badChecksum(a), nil, nil},
		{"run continues", a + "x", nil, nil},
		{"too short", a[:token.Len-1] + " ", nil, nil},
		{"prefix only", "phi_ phi_phi_", nil, nil},
		{"adjacent", a + " " + b, []string{a, b}, []int{1, 1}},
		{"uppercase prefix", "PHI_" + a[4:], nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := Bytes([]byte(c.in), "f")
			got := secrets(fs)
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("found %d tokens, want %d", len(got), len(c.want))
			}
			for i, f := range fs {
				if f.Line != c.lines[i] {
					t.Errorf("finding %d on line %d, want %d", i, f.Line, c.lines[i])
				}
				if f.Fingerprint != token.PublicFingerprint(f.Secret()) || strings.Contains(f.Fingerprint, f.Secret()[4:20]) {
					t.Errorf("finding %d: bad fingerprint", i)
				}
			}
		})
	}
}

func TestTokenAcrossWindowBoundaryIsFound(t *testing.T) {
	a := gen(t)
	for _, at := range []int{BufSize - token.Len - 1, BufSize - token.Len, BufSize - 30, BufSize - 1, BufSize, 2*BufSize - 10} {
		pad := bytes.Repeat([]byte("a b\n"), at/4+1)[:at]
		in := append(append(pad, a...), '\n')
		var got []Finding
		err := Reader(iotest.HalfReader(bytes.NewReader(in)), "f", func(f Finding) error { got = append(got, f); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Secret() != a {
			t.Fatalf("token at %d: found %d", at, len(got))
		}
		if want := bytes.Count(pad, []byte("\n")) + 1; got[0].Line != want {
			t.Fatalf("token at %d: line %d, want %d", at, got[0].Line, want)
		}
	}
}

func TestBinaryInputIsSkipped(t *testing.T) {
	in := "\x00\x01" + gen(t)
	err := Reader(strings.NewReader(in), "f", func(Finding) error { t.Fatal("emitted"); return nil })
	if !errors.Is(err, ErrBinary) {
		t.Fatalf("err = %v, want ErrBinary", err)
	}
	// a NUL after the sniffed prefix does not make it binary
	late := strings.Repeat("x", BinarySniff) + "\x00 " + gen(t)
	if n := len(Bytes([]byte(late), "f")); n != 1 {
		t.Fatalf("found %d after a late NUL, want 1", n)
	}
}

func TestEmitErrorStopsTheScan(t *testing.T) {
	stop := errors.New("stop")
	in := gen(t) + " " + gen(t)
	n := 0
	err := Reader(strings.NewReader(in), "f", func(Finding) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d findings", err, n)
	}
}

func TestReadErrorIsReported(t *testing.T) {
	boom := errors.New("boom")
	err := Reader(io.MultiReader(strings.NewReader(strings.Repeat("x", BinarySniff)), iotest.ErrReader(boom)), "f", func(Finding) error { return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

// reference finds tokens the slow, obvious way.
func reference(b []byte) []string {
	var out []string
	for i := 0; i+token.Len <= len(b); i++ {
		s := string(b[i : i+token.Len])
		if token.Check(s) == nil && (i+token.Len == len(b) || !token.IsB62(b[i+token.Len])) {
			out = append(out, s)
			i += token.Len - 1
		}
	}
	return out
}

func FuzzReaderMatchesReference(f *testing.F) {
	f.Add([]byte("phi_ phi_x"), uint16(0))
	f.Add([]byte("phi_4Vq0d2wTn3Hv5cBRR0ZVdnTbT2l6ORVdPvWcI7bkdZN2vDFoh"), uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint16) {
		// plant a real token so the fuzzer also exercises matches
		tok, _ := token.Generate(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
		at := int(seed) % (len(in) + 1)
		b := append(append(append([]byte{}, in[:at]...), tok...), in[at:]...)
		var got []string
		err := Reader(bytes.NewReader(b), "f", func(f Finding) error { got = append(got, f.Secret()); return nil })
		if errors.Is(err, ErrBinary) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(b); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("got %d tokens, reference %d", len(got), len(want))
		}
	})
}

// corpus is generated text: code-like lines with a phi_ lookalike (bad
// checksum, or wrong length) about every 4 KiB and a real token every 1 MiB.
func corpus(b *testing.B, size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"func", "return", "if", "err", "!=", "nil", "{", "}", "config", "token", "phi", "value:", "//", "the", "x", "=", "\"hello\"", "0x1f", "client.Do(ctx)"}
	var buf bytes.Buffer
	next := 0
	for buf.Len() < size {
		if buf.Len() >= next {
			lk := gen(b)
			if r.IntN(2) == 0 {
				buf.WriteString(badChecksum(lk))
			} else {
				buf.WriteString(lk[:20])
			}
			buf.WriteByte(' ')
			next += 4096
		}
		if buf.Len()%(1<<20) < 40 {
			buf.WriteString(gen(b) + " ")
		}
		for i := r.IntN(12); i >= 0; i-- {
			buf.WriteString(words[r.IntN(len(words))])
			buf.WriteByte(' ')
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func BenchmarkScan(b *testing.B) {
	data := corpus(b, 32<<20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := Reader(bytes.NewReader(data), "f", func(Finding) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
