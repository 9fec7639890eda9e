package audit

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// Proofs answers, for every entry of a batch, the bundle Proof answers
// against the same checkpoint, and each verifies; across tree sizes that
// make full tiles, partial tiles and a right edge (generate makes 3000
// entries: tiles of 256 leaves are complete below 2816).
func TestProofsEqualProofAndVerify(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	generate(t, l, 3000, grant)
	ctx := context.Background()
	v, err := NewVerifier(l.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, seqs := range [][]uint64{
		{0},
		{2999},
		{0, 1, 2, 3, 255, 256, 257},
		{2999, 2998, 2816, 2815, 1024, 7, 7},
		func() []uint64 { // a page of 100, newest first
			var s []uint64
			for i := uint64(2999); i > 2899; i-- {
				s = append(s, i)
			}
			return s
		}(),
	} {
		got, err := l.Proofs(ctx, seqs)
		if err != nil {
			t.Fatalf("%v: %v", seqs, err)
		}
		if len(got) != len(seqs) {
			t.Fatalf("%d bundles for %d seqs", len(got), len(seqs))
		}
		for i, seq := range seqs {
			want, err := l.Proof(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[i], want) {
				t.Fatalf("seq %d: the batch's bundle differs from Proof's:\n%+v\n%+v", seq, got[i], want)
			}
			if _, _, err := VerifyBundle(got[i], v); err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
		}
	}
}

// An entry past the log's end: ErrNotFound, no bundles; too many: an
// error; none: none.
func TestProofsRefusesWhatItCannotProve(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	appendN(t, l, 5)
	ctx := context.Background()
	if got, err := l.Proofs(ctx, []uint64{1, 5}); !errors.Is(err, ErrNotFound) || got != nil {
		t.Fatalf("a seq past the end: %v %v", got, err)
	}
	if _, err := l.Proofs(ctx, make([]uint64, MaxProofs+1)); err == nil {
		t.Fatal("more than MaxProofs accepted")
	}
	if got, err := l.Proofs(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("none: %v %v", got, err)
	}
}

// A batch whose entries the latest checkpoint does not cover yet gets a
// new one, as Proof does.
func TestProofsSignsACheckpointThatCoversThem(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	appendN(t, l, 3)
	got, err := l.Proofs(context.Background(), []uint64{2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].TreeSize < 3 || got[1].TreeSize != got[0].TreeSize {
		t.Fatalf("tree sizes %d, %d", got[0].TreeSize, got[1].TreeSize)
	}
}

// The batch against 100 separate Proof calls, for a page of 100 entries
// in a log of 100,000.
func BenchmarkProofs100(b *testing.B) {
	l, _ := newTestLog(b, Options{})
	generate(b, l, 100_000, grant)
	if _, err := l.Search(context.Background(), &Query{Limit: 1}); err != nil { // the indexer caught up
		b.Fatal(err)
	}
	seqs := make([]uint64, 100)
	for i := range seqs {
		seqs[i] = uint64(50_000 + 37*i)
	}
	ctx := context.Background()
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Proofs(ctx, seqs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one_by_one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, s := range seqs {
				if _, err := l.Proof(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
