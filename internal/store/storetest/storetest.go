// Package storetest is the conformance suite of store.Store. Every backend
// runs it from its own tests, against a fresh store per subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"), sqlite.Options{Now: now})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Run checks every method against every clause of the contract in package
// store; each subtest is named after the clause it holds. The suite runs on
// one clock (package testclock): open MUST give the store that clock, and
// every time the suite makes is relative to it, so no case depends on the
// calendar. Beyond the
// contract it assumes nothing of a backend: in particular it does not care
// whether a rotated secret whose grace period has ended is deleted or kept,
// and it accepts times truncated to the microsecond (store's contract; a
// backend that keeps nanoseconds checks that in its own tests).
//
// Fixtures are made at run time: ids with token.NewID, secrets with
// token.Generate, hashed under a random pepper. No plaintext secret outlives
// the helper that hashed it, and no message prints a hash.
//
// The alert clauses (alerts.go) hold CreateAlert, Alert, ListAlerts and
// AckAlert the same way, and the client clauses (clients.go) the optional
// store.ClientStore: a backend that implements it MUST pass them; one that
// does not has them skipped.
//
// BenchCreate and BenchTokenBySecret are the matching benchmarks.
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// Run runs the conformance suite. open MUST return a new, empty store each
// time it is called, reading the time only from now; Run closes it at the
// end of the subtest (a second Close by open's own cleanup is harmless).
// Subtests run one after another.
func Run(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) {
	t.Helper()
	for _, tc := range allCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(newEnv(t, open))
		})
	}
}

// testCase is one clause of the contract.
type testCase struct {
	name string
	run  func(e *env)
}

// env is what a subtest works with: a fresh store, a hasher under a random
// pepper, and helpers that fail the test on error.
type env struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
	fx  *fixtures
	clk *testclock.Clock // the store's clock

	alerts int // alerts made by e.alert, for unique ids
}

// now is the store's time.
func (e *env) now() time.Time { return e.clk.Now() }

func newEnv(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) *env {
	clk := testclock.At(base)
	s := open(t, clk.Now)
	if s == nil {
		t.Fatal("storetest: open returned a nil store")
	}
	t.Cleanup(func() { _ = s.Close() })
	return &env{t: t, ctx: t.Context(), s: s, fx: newFixtures(t), clk: clk}
}

// fixtures makes ids, secrets and records; it is shared with the
// benchmarks, hence testing.TB.
type fixtures struct {
	tb testing.TB
	h  *token.Hasher
}

func newFixtures(tb testing.TB) *fixtures {
	tb.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		tb.Fatalf("storetest: pepper: %v", err)
	}
	h, err := token.NewHasherKey(1, key)
	if err != nil {
		tb.Fatalf("storetest: hasher: %v", err)
	}
	return &fixtures{tb: tb, h: h}
}

// id returns a new public token id.
func (f *fixtures) id() string {
	id, err := token.NewID(nil)
	if err != nil {
		f.tb.Fatalf("storetest: %v", err)
	}
	return id
}

// secret returns the stored form of a freshly generated secret of token id;
// the plaintext is dropped.
func (f *fixtures) secret(id string, createdAt time.Time) token.Secret {
	plain, err := token.Generate(nil)
	if err != nil {
		f.tb.Fatalf("storetest: %v", err)
	}
	return token.Secret{Hash: f.h.Sum(plain), PepperVersion: f.h.Version(), TokenID: id, CreatedAt: createdAt}
}

// base is the reference time of records and the store's clock at the start
// of each case: the test clock's start with nanoseconds set and a zone
// other than UTC, so that precision and normalisation to UTC are both
// exercised.
var base = testclock.Start().Add(535897932 * time.Nanosecond).In(time.FixedZone("UTC+05:30", 5*3600+1800))

// record returns a minimal valid record with a new id, changed by mods.
func (f *fixtures) record(mods ...func(*token.Record)) *token.Record {
	r := &token.Record{
		ID:        f.id(),
		Subject:   "user:alice",
		Kind:      token.KindUser,
		Scopes:    []string{"patient/Observation.rs"},
		CreatedAt: base,
		ExpiresAt: base.Add(15 * time.Minute),
		NotAfter:  base.Add(15 * time.Minute),
		Status:    token.StatusActive,
		UpdatedAt: base,
		Revision:  1,
	}
	for _, m := range mods {
		m(r)
	}
	return r
}

// create stores rec with a new secret and returns the secret.
func (e *env) create(rec *token.Record) token.Secret {
	e.t.Helper()
	sec := e.fx.secret(rec.ID, rec.CreatedAt)
	if err := e.s.CreateToken(e.ctx, rec, sec); err != nil {
		e.t.Fatalf("CreateToken(%s): %v", rec.ID, err)
	}
	return sec
}

// newToken creates a record made by mods and returns it with its secret.
func (e *env) newToken(mods ...func(*token.Record)) (*token.Record, token.Secret) {
	e.t.Helper()
	rec := e.fx.record(mods...)
	return rec, e.create(rec)
}

// get returns the stored record with this id.
func (e *env) get(id string) *token.Record {
	e.t.Helper()
	rec, err := e.s.Token(e.ctx, id)
	if err != nil {
		e.t.Fatalf("Token(%s): %v", id, err)
	}
	return rec
}

// checkRecord fails the test if got differs from want under the contract's
// equality (times to the microsecond in UTC, nil and empty alike).
func (e *env) checkRecord(where string, got, want *token.Record) {
	e.t.Helper()
	for _, d := range diffRecord(got, want) {
		e.t.Errorf("%s: %s", where, d)
	}
}

// checkSecret fails the test if got differs from want; hashes are compared
// but never printed.
func (e *env) checkSecret(where string, got, want token.Secret) {
	e.t.Helper()
	for _, d := range diffSecret(got, want) {
		e.t.Errorf("%s: %s", where, d)
	}
}

// checkSecrets compares lists of secrets, in order.
func (e *env) checkSecrets(where string, got, want []token.Secret) {
	e.t.Helper()
	if len(got) != len(want) {
		e.t.Errorf("%s: got %d secrets, want %d", where, len(got), len(want))
		return
	}
	for i := range got {
		e.checkSecret(fmt.Sprintf("%s[%d]", where, i), got[i], want[i])
	}
}

// diffRecord lists the fields in which got differs from want.
func diffRecord(got, want *token.Record) []string {
	if got == nil || want == nil {
		if got == want {
			return nil
		}
		return []string{fmt.Sprintf("got record %v, want %v", got, want)}
	}
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	var diffs []string
	for i := range g.NumField() {
		name := g.Type().Field(i).Name
		gf, wf := g.Field(i), w.Field(i)
		if gt, ok := gf.Interface().(time.Time); ok {
			if d := diffTime(gt, wf.Interface().(time.Time)); d != "" {
				diffs = append(diffs, name+": "+d)
			}
			continue
		}
		if !equalish(gf, wf) {
			diffs = append(diffs, fmt.Sprintf("%s: got %s, want %s", name, show(gf), show(wf)))
		}
	}
	return diffs
}

// diffSecret lists the fields in which got differs from want.
func diffSecret(got, want token.Secret) []string {
	var diffs []string
	if !got.Hash.Equal(want.Hash) {
		diffs = append(diffs, "Hash differs")
	}
	if got.PepperVersion != want.PepperVersion {
		diffs = append(diffs, fmt.Sprintf("PepperVersion: got %d, want %d", got.PepperVersion, want.PepperVersion))
	}
	if got.TokenID != want.TokenID {
		diffs = append(diffs, fmt.Sprintf("TokenID: got %q, want %q", got.TokenID, want.TokenID))
	}
	if d := diffTime(got.CreatedAt, want.CreatedAt); d != "" {
		diffs = append(diffs, "CreatedAt: "+d)
	}
	if d := diffTime(got.NotAfter, want.NotAfter); d != "" {
		diffs = append(diffs, "NotAfter: "+d)
	}
	return diffs
}

// diffTime holds the contract for times: UTC, no monotonic reading, equal to
// the time handed in or to it truncated to the microsecond; zero stays zero.
func diffTime(got, want time.Time) string {
	if want.IsZero() {
		if !got.IsZero() {
			return fmt.Sprintf("got %s, want the zero time", got.Format(time.RFC3339Nano))
		}
		return ""
	}
	if got.Location() != time.UTC {
		return fmt.Sprintf("got location %q, want UTC", got.Location())
	}
	if got != got.Round(0) {
		return "got a time with a monotonic clock reading"
	}
	if got.Equal(want) || got.Equal(want.Truncate(time.Microsecond)) {
		return ""
	}
	return fmt.Sprintf("got %s, want %s (or that truncated to the microsecond)",
		got.Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	prefixType = reflect.TypeFor[netip.Prefix]()
)

// equalish is reflect.DeepEqual with the contract's leniency: nil and empty
// slices and maps are equal, and times compare as in diffTime. Pointers must
// agree on nil-ness (RemainingUses nil means unlimited, &0 means used up).
func equalish(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalish(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !equalish(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalish(a.Elem(), b.Elem())
	case reflect.Struct:
		switch {
		case a.Type() == timeType:
			return diffTime(a.Interface().(time.Time), b.Interface().(time.Time)) == ""
		case a.Type() == prefixType || a.Comparable():
			return a.Interface() == b.Interface()
		}
		for i := range a.NumField() {
			if !equalish(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	default:
		return a.Interface() == b.Interface()
	}
}

// show formats a field value for a message, following pointers.
func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "nil"
		}
		return fmt.Sprintf("&%+v", v.Elem().Interface())
	}
	return fmt.Sprintf("%+v", v.Interface())
}

// sorted returns a sorted copy of ids.
func sorted(ids []string) []string {
	c := slices.Clone(ids)
	slices.Sort(c)
	return c
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }
