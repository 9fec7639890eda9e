package token

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

func mustGenerate(t testing.TB) string {
	t.Helper()
	s, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenerateShape(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		s := mustGenerate(t)
		if len(s) != Len || !strings.HasPrefix(s, Prefix) {
			t.Fatalf("bad shape: len %d", len(s))
		}
		if err := Check(s); err != nil {
			t.Fatalf("generated token fails Check: %v", err)
		}
		if seen[s] {
			t.Fatal("duplicate token")
		}
		seen[s] = true
	}
}

func TestEntropyIsAtLeast256Bits(t *testing.T) {
	// 43 base62 characters carry 43*log2(62) bits.
	const bits = 43 * 5.954196310386876
	if bits < 256 || entropyLen != 43 {
		t.Fatalf("entropy %.2f bits", bits)
	}
}

func TestRandB62Uniform(t *testing.T) {
	// With rejection sampling every symbol appears; a byte stream of only
	// rejected values followed by a valid one must still make progress.
	r := bytes.NewReader(append(bytes.Repeat([]byte{255}, 64), bytes.Repeat([]byte{61}, 64)...))
	dst := make([]byte, 10)
	if err := randB62(r, dst); err != nil {
		t.Fatal(err)
	}
	if string(dst) != strings.Repeat("z", 10) {
		t.Fatalf("got %q", dst)
	}
	counts := map[byte]int{}
	buf := make([]byte, 62*400)
	if err := randB62(rand.Reader, buf); err != nil {
		t.Fatal(err)
	}
	for _, c := range buf {
		counts[c]++
	}
	if len(counts) != 62 {
		t.Fatalf("only %d symbols seen", len(counts))
	}
	for c, n := range counts {
		if n < 250 || n > 550 { // expectation 400; far outside means bias
			t.Errorf("symbol %q seen %d times", c, n)
		}
	}
}

func TestGenerateFailsOnShortRandomness(t *testing.T) {
	if _, err := Generate(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("want error from exhausted reader")
	}
}

// TestCheckRejectsEveryMutation flips every byte of a valid token to every
// other printable character and expects each to be rejected as ErrMalformed.
func TestCheckRejectsEveryMutation(t *testing.T) {
	s := mustGenerate(t)
	b := []byte(s)
	for i := range b {
		orig := b[i]
		for c := byte(0x20); c < 0x7f; c++ {
			if c == orig {
				continue
			}
			b[i] = c
			if err := Check(string(b)); !errors.Is(err, ErrMalformed) {
				// A CRC-32 collision on a single substitution is impossible.
				t.Fatalf("mutation at %d to %q accepted", i, c)
			}
		}
		b[i] = orig
	}
}

func TestCheckNamedMutations(t *testing.T) {
	s := mustGenerate(t)
	cases := map[string]string{
		"empty":             "",
		"prefix_only":       Prefix,
		"truncated":         s[:Len-1],
		"extended":          s + "0",
		"wrong_prefix":      "ghp_" + s[4:],
		"uppercase_prefix":  "PHI_" + s[4:],
		"non_alphabet":      s[:10] + "-" + s[11:],
		"swapped_checksum":  s[:Len-6] + s[Len-5:] + s[Len-6:Len-5],
		"transposed_body":   s[:5] + s[6:7] + s[5:6] + s[7:],
		"whitespace_suffix": s[:Len-1] + " ",
		"nul_byte":          s[:20] + "\x00" + s[21:],
		"utf8":              s[:Len-2] + "é",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if in == s {
				t.Skip("mutation is identity for this token")
			}
			if err := Check(in); err != ErrMalformed {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestErrorDoesNotLeakSecret(t *testing.T) {
	s := mustGenerate(t)
	err := Check(s[:Len-1] + "!")
	if strings.Contains(err.Error(), s[4:20]) {
		t.Fatal("error message contains token material")
	}
}

func TestIDs(t *testing.T) {
	id, err := NewID(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(id) || len(id) != IDLen || !strings.HasPrefix(id, IDPrefix) {
		t.Fatalf("bad id %q", id)
	}
	for _, bad := range []string{"", "tok_", id[:IDLen-1], id + "a", "tik_" + id[4:], id[:6] + "/" + id[7:]} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

type staticKeyring struct{ key []byte }

func (k staticKeyring) Pepper(context.Context) (int, []byte, error) { return 3, k.key, nil }

func randKey(t testing.TB) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func TestHasherMatchesHMAC(t *testing.T) {
	for _, klen := range []int{32, 64, 65, 100} {
		key := make([]byte, klen)
		rand.Read(key)
		h, err := NewHasher(context.Background(), staticKeyring{key})
		if err != nil {
			t.Fatal(err)
		}
		if h.Version() != 3 {
			t.Fatal("version not kept")
		}
		for _, msg := range []string{mustGenerate(t), "", "x", strings.Repeat("a", 128), strings.Repeat("b", 300)} {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(msg))
			var want Hash
			copy(want[:], m.Sum(nil))
			if got := h.Sum(msg); !got.Equal(want) {
				t.Fatalf("key %d msg %d: hash differs from crypto/hmac", klen, len(msg))
			}
		}
	}
}

func TestHasherDependsOnPepper(t *testing.T) {
	s := mustGenerate(t)
	a, _ := NewHasherKey(1, randKey(t))
	b, _ := NewHasherKey(1, randKey(t))
	if a.Sum(s).Equal(b.Sum(s)) {
		t.Fatal("different peppers gave the same hash")
	}
	if _, err := NewHasherKey(1, make([]byte, 16)); err == nil {
		t.Fatal("short pepper accepted")
	}
}

func TestCheckAndSumDoNotAllocate(t *testing.T) {
	s := mustGenerate(t)
	h, _ := NewHasherKey(1, randKey(t))
	bad := s[:Len-1] + "0"
	if n := testing.AllocsPerRun(100, func() { Check(bad); Check(s); h.Sum(s) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("phi_")
	f.Add("")
	f.Add(strings.Repeat("0", Len))
	f.Add("phi_" + strings.Repeat("A", 49))
	f.Fuzz(func(t *testing.T, s string) {
		err := Check(s)
		if err != nil && err != ErrMalformed {
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil {
			if len(s) != Len || !strings.HasPrefix(s, Prefix) {
				t.Fatalf("accepted %q", s)
			}
			// a valid token's checksum is recomputable
			var sum [checksumLen]byte
			putChecksum(sum[:], crc32IEEEString(s[:Len-checksumLen]))
			if string(sum[:]) != s[Len-checksumLen:] {
				t.Fatal("accepted with wrong checksum")
			}
		}
	})
}

func BenchmarkCheckBadChecksum(b *testing.B) {
	s := mustGenerate(b)
	bad := []byte(s)
	bad[Len-1] ^= 1 // stays in the alphabet for most symbols
	if Check(string(bad)) == nil {
		bad[Len-1] = '0'
	}
	bs := string(bad)
	b.ReportAllocs()
	for b.Loop() {
		if Check(bs) == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkCheckValid(b *testing.B) {
	s := mustGenerate(b)
	b.ReportAllocs()
	for b.Loop() {
		if Check(s) != nil {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkHash(b *testing.B) {
	s := mustGenerate(b)
	h, _ := NewHasherKey(1, randKey(b))
	b.ReportAllocs()
	for b.Loop() {
		h.Sum(s)
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCRCMatchesStdlib(t *testing.T) {
	for i := 0; i < 50; i++ {
		s := mustGenerate(t)[:i%Len]
		if crc32IEEEString(s) != crc32.ChecksumIEEE([]byte(s)) {
			t.Fatalf("crc differs for length %d", len(s))
		}
	}
}

func TestIDsSortByCreationTime(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	prev := ""
	for i := 0; i < 100; i++ {
		id, err := NewIDAt(nil, t0.Add(time.Duration(i)*time.Millisecond))
		if err != nil || !ValidID(id) {
			t.Fatal(err, id)
		}
		if id <= prev {
			t.Fatalf("%s sorts before %s", id, prev)
		}
		prev = id
	}
	a, _ := NewIDAt(nil, t0)
	b, _ := NewIDAt(nil, t0)
	if a == b || a[:len(IDPrefix)+idTimeLen] != b[:len(IDPrefix)+idTimeLen] {
		t.Fatal("same-millisecond ids must share the time prefix and differ")
	}
}
