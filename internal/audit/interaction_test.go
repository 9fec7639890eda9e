package audit

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// The interaction is encoded after the sealed field (tag 26 follows 25),
// in the clear: a sealed entry with one verifies, reads back offline
// without the key, and opens with it.
func TestInteractionIsRecordedInTheClearAfterTheSealedField(t *testing.T) {
	v := testVault(t)
	l, dir := newTestLog(t, Options{Sealer: VaultSealer(v)})
	ctx := context.Background()
	e := grant(1)
	e.Path, e.Interaction = "/fhir/Patient/pat-1/Observation", "search-compartment"
	seq, err := l.Append(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := l.Append(ctx, &Entry{Action: ActionAccessDenied, Outcome: OutcomeDenied, Method: "GET", Interaction: "route"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Entry(ctx, seq)
	if err != nil || got.Interaction != "search-compartment" || got.Path != e.Path {
		t.Fatalf("with the key: %+v, %v", got, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir, VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	r, err := OpenReader(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	found := map[uint64]*Entry{}
	for e, err := range r.All(ctx, Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		found[e.Seq] = e
	}
	if s := found[seq]; s == nil || len(s.Sealed) == 0 || s.Path != "" || s.Interaction != "search-compartment" {
		t.Fatalf("offline, sealed: %+v", s)
	}
	if p := found[plain]; p == nil || p.Interaction != "route" || p.Sealed != nil {
		t.Fatalf("offline, unsealed: %+v", p)
	}
}

func TestInteractionEncodingIsCanonical(t *testing.T) {
	e := grant(2)
	e.takePHI()
	e.Seq, e.Time, e.Sealed, e.Interaction = 4, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), []byte{1, 2, 3}, "read"
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tail := []byte{tagSealed, 3, 1, 2, 3, tagInteraction, 4, 'r', 'e', 'a', 'd'}
	if !bytes.HasSuffix(b, tail) {
		t.Fatalf("encoding ends % x, want % x", b[len(b)-len(tail):], tail)
	}
	d, err := UnmarshalEntry(b)
	if err != nil || d.Interaction != "read" {
		t.Fatalf("decode: %+v %v", d, err)
	}
	// the interaction before the sealed field is out of order
	swapped := append(bytes.Clone(b[:len(b)-len(tail)]), tagInteraction, 4, 'r', 'e', 'a', 'd', tagSealed, 3, 1, 2, 3)
	if _, err := UnmarshalEntry(swapped); err == nil {
		t.Fatal("tag 26 before tag 25 accepted")
	}
	// and it is never sealed: only 15, 16 and 19 are
	if err := new(Entry).putPHI([]byte{tagInteraction, 1, 'x'}); err == nil {
		t.Fatal("putPHI accepted the interaction")
	}
}
