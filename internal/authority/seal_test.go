package authority

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// gcmSealer is a FieldSealer with AES-GCM under a random key, bound to
// token id and field.
type gcmSealer struct{ aead cipher.AEAD }

func newGCMSealer(t testing.TB) *gcmSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead: g}
}

func (s *gcmSealer) Seal(_ context.Context, id, field string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(id+"\x00"+field)), nil
}

func (s *gcmSealer) Open(_ context.Context, id, field string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("short ciphertext")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id+"\x00"+field))
}

// randomPatient returns a patient id made at run time (a FHIR id).
func randomPatient() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "pt-" + hex.EncodeToString(b)
}

// raw returns the record as the store holds it.
func (f *fixture) raw(t *testing.T, id string) *token.Record {
	t.Helper()
	rec, err := f.st.Store.Token(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestPatientIDIsSealedInTheStoreAndPlainEverywhereElse(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Sealer: newGCMSealer(t)})
	patient := randomPatient()
	s, rec := f.create(t, Spec{PatientID: patient, Grace: time.Minute})
	if rec.PatientID != patient {
		t.Fatalf("Create returned patient %q", rec.PatientID)
	}
	stored := f.raw(t, rec.ID).PatientID
	if !strings.HasPrefix(stored, sealedPrefix) || strings.Contains(stored, patient) {
		t.Fatalf("the store holds the patient id as %q", stored)
	}
	check := func(where string, r *token.Record) {
		t.Helper()
		if r == nil || r.PatientID != patient {
			t.Errorf("%s: patient id not the plaintext", where)
		}
	}
	d, err := f.auth.Verify(ctx, s, Request{})
	if err != nil || !d.Allowed() {
		t.Fatalf("Verify: %v %v", d.Reason, err)
	}
	check("Verify", d.Token)
	got, err := f.auth.Get(ctx, f.root, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("Get", got)
	list, _, err := f.auth.List(ctx, f.root, store.TokenFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.ID == rec.ID {
			check("List", r)
		}
	}
	ir, _, _, err := f.auth.Introspect(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	check("Introspect", ir)
	rot, err := f.auth.Rotate(ctx, f.root, rec.ID, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	check("Rotate", rot.Token)
	before, after, err := f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error {
		r.Metadata = map[string]string{"team": "lab"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("Update (before)", before)
	check("Update (after)", after)
	if after.Revision != f.raw(t, rec.ID).Revision {
		t.Errorf("Update returned revision %d, the store has %d", after.Revision, f.raw(t, rec.ID).Revision)
	}

	// A change of patient is sealed afresh.
	other := randomPatient()
	_, after, err = f.auth.Update(ctx, f.root, rec.ID, 0, func(r *token.Record) error { r.PatientID = other; return nil })
	if err != nil || after.PatientID != other {
		t.Fatalf("Update(patient) = %v", err)
	}
	stored2 := f.raw(t, rec.ID).PatientID
	if stored2 == stored || !strings.HasPrefix(stored2, sealedPrefix) || strings.Contains(stored2, other) {
		t.Fatal("the changed patient id is not sealed afresh")
	}
	if got, _ := f.auth.Get(ctx, f.root, rec.ID); got.PatientID != other {
		t.Fatal("Get after the change does not see the new patient")
	}
	revoked, err := f.auth.RevokeSecret(ctx, Actor{}, rot.Secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	if revoked.PatientID != other {
		t.Error("RevokeSecret: patient id not the plaintext")
	}
	// A token without a patient stores nothing sealed.
	_, plain := f.create(t, Spec{})
	if f.raw(t, plain.ID).PatientID != "" {
		t.Error("a token without a patient has a stored patient id")
	}
}

func TestSealedPatientIDMovedToAnotherTokenFailsToOpen(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, Config{Sealer: newGCMSealer(t)})
	_, a := f.create(t, Spec{PatientID: randomPatient()})
	bs, b := f.create(t, Spec{PatientID: randomPatient()})
	moved := f.raw(t, b.ID)
	moved.PatientID = f.raw(t, a.ID).PatientID // a's ciphertext in b's row
	if err := f.st.Store.UpdateToken(ctx, moved); err != nil {
		t.Fatal(err)
	}
	f.auth.Invalidate(b.ID)
	if _, err := f.auth.Get(ctx, f.root, b.ID); !errors.Is(err, ErrSealed) {
		t.Fatalf("Get of a token with another's ciphertext = %v, want ErrSealed", err)
	}
	if _, _, err := f.auth.List(ctx, f.root, store.TokenFilter{}); !errors.Is(err, ErrSealed) {
		t.Fatalf("List = %v, want ErrSealed", err)
	}
	// Verify fails closed: an error and no allow.
	d, err := f.auth.Verify(ctx, bs, Request{})
	if !errors.Is(err, ErrSealed) || d.Allowed() || d.Reason != policy.Unavailable {
		t.Fatalf("Verify = %v, %v; want unavailable and ErrSealed", d.Reason, err)
	}
	// Nor does a changed character open (at the start, the middle, the end).
	orig := f.raw(t, a.ID)
	for _, i := range []int{len(sealedPrefix), len(orig.PatientID) / 2, len(orig.PatientID) - 1} {
		bad := orig.Clone()
		c := []byte(bad.PatientID)
		c[i] = 'A'
		if orig.PatientID[i] == 'A' {
			c[i] = 'B'
		}
		bad.PatientID = string(c)
		if err := f.auth.openRecord(ctx, bad); !errors.Is(err, ErrSealed) {
			t.Errorf("byte %d changed: %v, want ErrSealed", i, err)
		}
	}
}

func TestPatientIDStoredBeforeSealingStillReads(t *testing.T) {
	ctx := context.Background()
	// a token written by a phigate without a sealer...
	f := newFixture(t)
	patient := randomPatient()
	s, rec := f.create(t, Spec{PatientID: patient})
	if f.raw(t, rec.ID).PatientID != patient {
		t.Fatal("without a sealer the patient id is stored as given")
	}
	// ...is read as plaintext by one with a sealer
	g := New(f.st, f.auth.hashers.Load().current, Config{Now: f.clk.Now, Sealer: newGCMSealer(t)})
	if got, err := g.Get(ctx, f.root, rec.ID); err != nil || got.PatientID != patient {
		t.Fatalf("Get = %v", err)
	}
	if d, err := g.Verify(ctx, s, Request{}); err != nil || d.Token.PatientID != patient {
		t.Fatalf("Verify = %v %v", d.Reason, err)
	}
	// and sealed at its next update
	if _, _, err := g.Update(ctx, f.root, rec.ID, 0, func(*token.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if st := f.raw(t, rec.ID).PatientID; !strings.HasPrefix(st, sealedPrefix) {
		t.Fatal("the update did not seal the patient id")
	}
	// A sealed value without a sealer is an error, never shown as is.
	if _, err := f.auth.Get(ctx, f.root, rec.ID); !errors.Is(err, ErrSealed) {
		t.Fatalf("Get of a sealed value without a sealer = %v, want ErrSealed", err)
	}
}
