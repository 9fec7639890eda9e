package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// consistencyLog builds a log with a signed checkpoint at each of sizes
// (increasing) and returns it with those checkpoints.
func consistencyLog(t *testing.T, sizes []uint64) (*Log, map[uint64]*Checkpoint) {
	t.Helper()
	l, _ := newTestLog(t, Options{})
	cps := map[uint64]*Checkpoint{0: l.latest.Load()}
	var have uint64
	for _, s := range sizes {
		generate(t, l, int(s-have), func(i int) *Entry { return grant(int(have) + i) })
		have = s
		cp := l.latest.Load()
		if cp.Size != s {
			t.Fatalf("checkpoint of size %d, want %d", cp.Size, s)
		}
		cps[s] = cp
	}
	return l, cps
}

var consistencySizes = []uint64{1, 2, 3, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513}

// TestConsistencyProofsVerifyWithTheIndependentVerifier: for every pair of
// checkpointed sizes, the proof the log serves is accepted by
// transparency-dev/merkle's proof.VerifyConsistency against the two
// signed roots, and by VerifyConsistency; and the proof carries the
// signed checkpoints at both sizes.
func TestConsistencyProofsVerifyWithTheIndependentVerifier(t *testing.T) {
	l, cps := consistencyLog(t, consistencySizes)
	all := append([]uint64{0}, consistencySizes...)
	ctx := context.Background()
	for _, from := range all {
		for _, to := range all {
			if from > to {
				continue
			}
			p, err := l.Consistency(ctx, from, to)
			if err != nil {
				t.Fatalf("%d→%d: %v", from, to, err)
			}
			if p.From != from || p.To != to || p.Format != ConsistencyFormat || p.Origin != l.Origin() {
				t.Fatalf("%d→%d: header %+v", from, to, p)
			}
			if p.ToCheckpoint != string(cps[to].Note) || p.FromCheckpoint != string(cps[from].Note) {
				t.Fatalf("%d→%d: the proof does not carry the signed checkpoints of its sizes", from, to)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, to, p.Proof, cps[from].Root, cps[to].Root); err != nil {
				t.Fatalf("%d→%d: the independent verifier refuses: %v", from, to, err)
			}
			if err := VerifyConsistency(p, cps[from], cps[to]); err != nil {
				t.Fatalf("%d→%d: %v", from, to, err)
			}
			// the JSON round trip keeps it valid
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			q, err := ParseConsistency(raw)
			if err != nil {
				t.Fatalf("%d→%d: %v", from, to, err)
			}
			if err := VerifyConsistency(q, cps[from], cps[to]); err != nil {
				t.Fatalf("%d→%d after JSON: %v", from, to, err)
			}
		}
	}
}

// mutations returns every mutation of a proof: each byte of each hash
// flipped, each hash dropped, a hash added (front, middle, end), each pair
// of adjacent distinct hashes swapped.
func mutations(p [][]byte) map[string][][]byte {
	cp := func() [][]byte {
		out := make([][]byte, len(p))
		for i, h := range p {
			out[i] = append([]byte(nil), h...)
		}
		return out
	}
	m := map[string][][]byte{}
	for i := range p {
		for j := range p[i] {
			q := cp()
			q[i][j] ^= 0x01
			m[fmt.Sprintf("flip hash %d byte %d", i, j)] = q
		}
		q := cp()
		m[fmt.Sprintf("drop hash %d", i)] = append(q[:i], q[i+1:]...)
		if i+1 < len(p) && string(p[i]) != string(p[i+1]) {
			q := cp()
			q[i], q[i+1] = q[i+1], q[i]
			m[fmt.Sprintf("swap hashes %d and %d", i, i+1)] = q
		}
	}
	extra := make([]byte, 32)
	extra[0] = 0xab
	m["add a hash at the front"] = append([][]byte{extra}, cp()...)
	m["add a hash at the end"] = append(cp(), extra)
	if len(p) > 0 {
		m["repeat the last hash"] = append(cp(), append([]byte(nil), p[len(p)-1]...))
		mid := len(p) / 2
		q := cp()
		m["add a hash in the middle"] = append(q[:mid], append([][]byte{extra}, cp()[mid:]...)...)
	}
	return m
}

// TestEveryMutationOfAConsistencyProofIsRefused: each mutation of each
// valid proof (bytes flipped, hashes dropped, added, reordered; sizes
// changed) is refused by the independent verifier and by ours.
func TestEveryMutationOfAConsistencyProofIsRefused(t *testing.T) {
	l, cps := consistencyLog(t, consistencySizes)
	all := append([]uint64{0}, consistencySizes...)
	ctx := context.Background()
	h := rfc6962.DefaultHasher
	n := 0
	for _, from := range all {
		for _, to := range all {
			if from > to {
				continue
			}
			p, err := l.Consistency(ctx, from, to)
			if err != nil {
				t.Fatal(err)
			}
			for name, q := range mutations(p.Proof) {
				n++
				if proof.VerifyConsistency(h, from, to, q, cps[from].Root, cps[to].Root) == nil {
					t.Errorf("%d→%d, %s: the independent verifier accepts it", from, to, name)
				}
				mp := *p
				mp.Proof = q
				if err := VerifyConsistency(&mp, cps[from], cps[to]); !errors.Is(err, ErrBadProof) {
					t.Errorf("%d→%d, %s: VerifyConsistency = %v", from, to, name, err)
				}
			}
			// sizes changed: the same proof and roots, other sizes. An
			// RFC 6962 proof does not bind the larger size by itself (512→513
			// and 512→514 have proofs of the same shape): the signed
			// checkpoint does, so the independent verifier is only held to
			// the smaller size, and ours, which checks the sizes against the
			// checkpoints, to both.
			for _, d := range []struct {
				name     string
				f, t     uint64
				possible bool
			}{
				{"from+1", from + 1, to, from+1 <= to},
				{"from-1", from - 1, to, from > 1}, // every tree extends the empty one
				{"to+1", from, to + 1, true},
				{"to-1", from, to - 1, to > from},
			} {
				if !d.possible {
					continue
				}
				n++
				if d.t == to && proof.VerifyConsistency(h, d.f, d.t, p.Proof, cps[from].Root, cps[to].Root) == nil {
					t.Errorf("%d→%d, %s: the independent verifier accepts it", from, to, d.name)
				}
				mp := *p
				mp.From, mp.To = d.f, d.t
				if err := VerifyConsistency(&mp, cps[from], cps[to]); !errors.Is(err, ErrBadProof) {
					t.Errorf("%d→%d, %s: VerifyConsistency = %v", from, to, d.name, err)
				}
			}
			// the roots exchanged for other checkpoints' (a rewritten history)
			if from != to && from > 0 {
				for _, other := range all {
					if other == from || other > to || other == 0 {
						continue
					}
					if VerifyConsistency(&ConsistencyProof{From: from, To: to, Proof: p.Proof}, &Checkpoint{Origin: cps[from].Origin, Size: from, Root: cps[other].Root}, cps[to]) == nil {
						t.Errorf("%d→%d: accepted against the root of size %d", from, to, other)
					}
				}
			}
		}
	}
	t.Logf("%d mutations refused", n)
}

// TestConsistencyRefusesBadRanges: from > to, or to beyond the latest
// checkpoint, is ErrBadRange.
func TestConsistencyRefusesBadRanges(t *testing.T) {
	l, _ := consistencyLog(t, []uint64{10})
	for _, c := range []struct{ from, to uint64 }{{5, 4}, {0, 11}, {11, 11}, {3, 1 << 62}} {
		if _, err := l.Consistency(context.Background(), c.from, c.to); !errors.Is(err, ErrBadRange) {
			t.Errorf("%d→%d: %v, want ErrBadRange", c.from, c.to, err)
		}
	}
}

func TestParseConsistencyRefusesMalformedProofs(t *testing.T) {
	good := `{"format":"phigate-audit-consistency/1","origin":"phigate/n","from":1,"to":2,"proof":["` + b64(make([]byte, 32)) + `"]}`
	if _, err := ParseConsistency([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"unknown field":   `{"format":"phigate-audit-consistency/1","from":1,"to":2,"proof":[],"x":1}`,
		"other format":    `{"format":"phigate-audit-proof/1","from":1,"to":2,"proof":[]}`,
		"from > to":       `{"format":"phigate-audit-consistency/1","from":3,"to":2,"proof":[]}`,
		"short hash":      `{"format":"phigate-audit-consistency/1","from":1,"to":2,"proof":["` + b64(make([]byte, 31)) + `"]}`,
		"trailing data":   good + `{}`,
		"not json":        `phigate/n`,
		"too many hashes": `{"format":"phigate-audit-consistency/1","from":1,"to":2,"proof":[` + repeatHash(129) + `]}`,
	} {
		if _, err := ParseConsistency([]byte(s)); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseConsistency(f *testing.F) {
	f.Add([]byte(`{"format":"phigate-audit-consistency/1","origin":"phigate/n","from":1,"to":2,"proof":["` + b64(make([]byte, 32)) + `"]}`))
	f.Add([]byte(`{"format":"phigate-audit-consistency/1","from":0,"to":0,"proof":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseConsistency(data)
		if err != nil {
			if !errors.Is(err, ErrBadProof) {
				t.Fatalf("error %v does not wrap ErrBadProof", err)
			}
			return
		}
		if p.From > p.To || len(p.Proof) > maxProofHashes {
			t.Fatalf("accepted %+v", p)
		}
		for _, h := range p.Proof {
			if len(h) != 32 {
				t.Fatal("accepted a hash not of 32 bytes")
			}
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func repeatHash(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = `"` + b64(make([]byte, 32)) + `"`
	}
	return strings.Join(s, ",")
}
