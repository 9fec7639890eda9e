package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/storetest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// openTemp opens a store in a new file under t.TempDir and closes it at the
// end of the test.
func openTemp(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "phigate.db")
	s, err := Open(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s, _ := openTemp(t, Options{Now: now})
		return s
	})
}

// fixture makes records and secrets for this file's tests.
type fixture struct {
	t testing.TB
	h *token.Hasher
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	h, err := token.NewHasherKey(1, key)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, h: h}
}

func (f *fixture) record() *token.Record {
	f.t.Helper()
	id, err := token.NewID(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	now := testclock.Start() // the stores' clock (Options.Now) in this file
	return &token.Record{
		ID: id, Subject: "user:alice", Kind: token.KindUser, Status: token.StatusActive,
		Scopes: []string{"patient/Observation.rs"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		UpdatedAt: now, Revision: 1,
	}
}

func (f *fixture) secret(id string) token.Secret {
	f.t.Helper()
	plain, err := token.Generate(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return token.Secret{Hash: f.h.Sum(plain), PepperVersion: f.h.Version(), TokenID: id, CreatedAt: testclock.Start()}
}

func TestTimesKeepNanoseconds(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	rec := f.record()
	at := time.Date(2040, 2, 29, 23, 59, 59, 999999999, time.FixedZone("UTC-7", -7*3600))
	rec.CreatedAt, rec.ExpiresAt, rec.UpdatedAt, rec.LastUsedAt, rec.StatusChangedAt = at, at.Add(1), at.Add(2), at.Add(3), at.Add(4)
	sec := f.secret(rec.ID)
	sec.CreatedAt = at.Add(5)
	if err := s.CreateToken(t.Context(), rec, sec); err != nil {
		t.Fatal(err)
	}
	got, gotSec, err := s.TokenBySecret(t.Context(), sec.Hash)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, rec.CreatedAt},
		{"ExpiresAt", got.ExpiresAt, rec.ExpiresAt},
		{"UpdatedAt", got.UpdatedAt, rec.UpdatedAt},
		{"LastUsedAt", got.LastUsedAt, rec.LastUsedAt},
		{"StatusChangedAt", got.StatusChangedAt, rec.StatusChangedAt},
		{"secret CreatedAt", gotSec.CreatedAt, sec.CreatedAt},
	} {
		if !c.got.Equal(c.want) || c.got.Location() != time.UTC {
			t.Errorf("%s = %s, want %s exactly, in UTC", c.name, c.got.Format(time.RFC3339Nano), c.want.UTC().Format(time.RFC3339Nano))
		}
	}
}

func TestTimeOutsideINTEGERNanosecondsIsRefused(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	for _, at := range []time.Time{
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		rec := f.record()
		rec.ExpiresAt = at
		err := s.CreateToken(t.Context(), rec, f.secret(rec.ID))
		if err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateToken(ExpiresAt %d) = %v, want a refusal", at.Year(), err)
		}
	}
}

func TestPragmas(t *testing.T) {
	s, path := openTemp(t, Options{Now: testclock.Start})

	// WAL is a property of the file: a separate connection sees it.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var mode string
	if err := raw.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}

	// synchronous and foreign_keys are per connection: ask the writer.
	var syncMode, fk int
	err = s.write(t.Context(), "test: read pragmas", func(tx *wtx) error {
		if err := tx.scan("PRAGMA synchronous", nil, &syncMode); err != nil {
			return err
		}
		return tx.scan("PRAGMA foreign_keys", nil, &fk)
	})
	if err != nil {
		t.Fatal(err)
	}
	// NORMAL: the WAL is synced by syncLoop before any caller is answered
	if syncMode != 1 {
		t.Errorf("writer synchronous = %d, want 1 (NORMAL, with the WAL synced by the syncer)", syncMode)
	}
	if fk != 1 {
		t.Errorf("writer foreign_keys = %d, want 1", fk)
	}

	// The read pool cannot write.
	var qo int
	if err := s.readDB.QueryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != 1 {
		t.Errorf("reader query_only = %d, %v; want 1", qo, err)
	}
	if _, err := s.readDB.Exec("INSERT INTO meta (key, value) VALUES ('x', x'00')"); err == nil {
		t.Error("a reader connection wrote to the database")
	}
}

func TestDataFileIsCreatedWithMode0600(t *testing.T) {
	s, path := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	rec := f.record()
	if err := s.CreateToken(t.Context(), rec, f.secret(rec.ID)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), perm)
		}
	}
}

func TestOpenRefusesMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Open(t.Context(), filepath.Join(dir, "phigate.db"), Options{Now: testclock.Start})
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open(file in missing directory) = %v, want a clear not-exist error", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created the missing directory")
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, path := openTemp(t, Options{Now: testclock.Start})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	_, err = Open(t.Context(), path, Options{Now: testclock.Start})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open(schema version %d) = %v, want ErrSchemaTooNew", SchemaVersion+1, err)
	}
	if want := fmt.Sprintf("version %d", SchemaVersion+1); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the database's %s", err, want)
	}
}

func TestMigrationsAreRecordedOncePerVersion(t *testing.T) {
	_, path := openTemp(t, Options{Now: testclock.Start})
	// Opening again applies nothing more.
	s2, err := Open(t.Context(), path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var n, maxV int
	if err := s2.readDB.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion || maxV != SchemaVersion {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d", n, maxV, SchemaVersion)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "phigate.db")
	s, err := Open(ctx, path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	rec := f.record()
	rec.RemainingUses = new(int64)
	*rec.RemainingUses = 9
	sec1 := f.secret(rec.ID)
	if err := s.CreateToken(ctx, rec, sec1); err != nil {
		t.Fatal(err)
	}
	sec2 := f.secret(rec.ID)
	if err := s.RotateSecret(ctx, rec.ID, sec2, testclock.Start().Add(time.Hour), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReserveUses(ctx, rec.ID, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(ctx, "bootstrap", []byte("done")); err != nil {
		t.Fatal(err)
	}
	want, err := s.Token(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantSecs, err := s.Secrets(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Token(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening: %+v, want %+v", got, want)
	}
	secs, err := s.Secrets(ctx, rec.ID)
	if err != nil || len(secs) != len(wantSecs) {
		t.Fatalf("Secrets after reopening = %d, %v; want %d", len(secs), err, len(wantSecs))
	}
	for i := range secs {
		if !secs[i].Hash.Equal(wantSecs[i].Hash) || !secs[i].NotAfter.Equal(wantSecs[i].NotAfter) {
			t.Errorf("secret %d differs after reopening", i)
		}
	}
	if v, err := s.GetMeta(ctx, "bootstrap"); err != nil || string(v) != "done" {
		t.Errorf("GetMeta after reopening = %q, %v", v, err)
	}
}

// blockWriter holds the writer inside a batch until release is called, so
// that changes queue up behind it; it returns once the writer is held.
func blockWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	unblock := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.write(context.Background(), "test: hold the writer", func(*wtx) error {
			close(held)
			<-unblock
			return nil
		})
	}()
	<-held
	var once sync.Once
	release = func() { once.Do(func() { close(unblock); <-done }) }
	t.Cleanup(release)
	return release
}

// waitQueued waits until n changes wait in the writer's queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes queued after 10s, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQueuedChangesShareOneCommit(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	const n = 64
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	for i := range recs {
		recs[i] = f.record()
		secs[i] = f.secret(recs[i].ID)
	}
	release := blockWriter(t, s)
	before := s.Stats()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.CreateToken(t.Context(), recs[i], secs[i]) })
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("CreateToken %d: %v", i, err)
		}
	}
	after := s.Stats()
	// One commit for the held batch, one for the 64 creates.
	if commits := after.Commits - before.Commits; commits != 2 {
		t.Errorf("%d creates took %d commits, want 2 (held batch + one group)", n, commits)
	}
	if after.LargestBatch < n {
		t.Errorf("largest batch %d, want %d", after.LargestBatch, n)
	}
}

func TestConcurrentCreatesAreBatched(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	const n = 64
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	for i := range recs {
		recs[i] = f.record()
		secs[i] = f.secret(recs[i].ID)
	}
	before := s.Stats()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if err := s.CreateToken(t.Context(), recs[i], secs[i]); err != nil {
				t.Errorf("CreateToken: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	after := s.Stats()
	commits, ops, syncs := after.Commits-before.Commits, after.Ops-before.Ops, after.Syncs-before.Syncs
	t.Logf("%d concurrent creates: %d ops in %d commits, %d WAL syncs", n, ops, commits, syncs)
	// commits are cheap now (the WAL sync is pipelined); what many callers
	// must share is the sync
	if ops != n || syncs >= ops {
		t.Errorf("%d ops acknowledged by %d syncs, want %d ops sharing fewer syncs", ops, syncs, n)
	}
}

func TestFailingChangeRollsBackAlone(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	a, b := f.record(), f.record()
	dup := f.record()
	dup.ID = a.ID // conflicts with a, which commits in the same transaction
	secA, secB, secDup := f.secret(a.ID), f.secret(b.ID), f.secret(dup.ID)

	release := blockWriter(t, s)
	before := s.Stats()
	var errA, errDup, errB error
	var wg sync.WaitGroup
	wg.Go(func() { errA = s.CreateToken(t.Context(), a, secA) })
	waitQueued(t, s, 1)
	wg.Go(func() { errDup = s.CreateToken(t.Context(), dup, secDup) })
	waitQueued(t, s, 2)
	wg.Go(func() { errB = s.CreateToken(t.Context(), b, secB) })
	waitQueued(t, s, 3)
	release()
	wg.Wait()

	if errA != nil || errB != nil || !errors.Is(errDup, store.ErrConflict) {
		t.Fatalf("batch results: a %v, dup %v, b %v; want nil, ErrConflict, nil", errA, errDup, errB)
	}
	if c := s.Stats().Commits - before.Commits; c != 2 {
		t.Errorf("%d commits, want 2 (held batch + one group)", c)
	}
	for _, r := range []*token.Record{a, b} {
		if _, err := s.Token(t.Context(), r.ID); err != nil {
			t.Errorf("Token(%s): %v", r.ID, err)
		}
	}
	if _, _, err := s.TokenBySecret(t.Context(), secDup.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("secret of the failed create: %v, want ErrNotFound", err)
	}
}

func TestFailedCommitFailsEveryChangeOfTheBatch(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	a, b := f.record(), f.record()
	secA, secB := f.secret(a.ID), f.secret(b.ID)
	orphanID := f.record().ID // never created
	orphan := f.secret(orphanID)

	release := blockWriter(t, s)
	before := s.Stats()
	var errA, errBad, errB error
	var wg sync.WaitGroup
	wg.Go(func() { errA = s.CreateToken(t.Context(), a, secA) })
	waitQueued(t, s, 1)
	// A deferred foreign key violation passes the savepoint and fails the
	// COMMIT, as a full disk would.
	wg.Go(func() {
		errBad = s.write(t.Context(), "test: violate a deferred foreign key", func(tx *wtx) error {
			if _, err := tx.exec("PRAGMA defer_foreign_keys = ON"); err != nil {
				return err
			}
			return insertSecret(tx, orphanID, orphan.Hash, 1, nil, nil)
		})
	})
	waitQueued(t, s, 2)
	wg.Go(func() { errB = s.CreateToken(t.Context(), b, secB) })
	waitQueued(t, s, 3)
	release()
	wg.Wait()

	for name, err := range map[string]error{"a": errA, "bad": errBad, "b": errB} {
		if err == nil || !strings.Contains(err.Error(), "commit") {
			t.Errorf("%s: %v, want the commit error", name, err)
		}
	}
	if st := s.Stats(); st.Aborted != before.Aborted+1 {
		t.Errorf("Aborted = %d, want %d", st.Aborted, before.Aborted+1)
	}
	for _, r := range []*token.Record{a, b} {
		if _, err := s.Token(t.Context(), r.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Token(%s) after failed commit: %v, want ErrNotFound", r.ID, err)
		}
	}
	// The writer goes on.
	c := f.record()
	if err := s.CreateToken(t.Context(), c, f.secret(c.ID)); err != nil {
		t.Errorf("CreateToken after a failed commit: %v", err)
	}
}

func TestWithdrawnChangeNeverRuns(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	rec := f.record()
	release := blockWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.CreateToken(ctx, rec, f.secret(rec.ID)) }()
	waitQueued(t, s, 1)
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "may still") {
		t.Fatalf("CreateToken cancelled while queued = %v, want a plain context.Canceled", err)
	}
	release()
	// A later change has been through the writer after the withdrawn one.
	if err := s.PutMeta(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(t.Context(), rec.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("withdrawn create: Token = %v, want ErrNotFound", err)
	}
}

func TestPanickingChangeFailsAlone(t *testing.T) {
	s, _ := openTemp(t, Options{Now: testclock.Start})
	f := newFixture(t)
	rec := f.record()
	release := blockWriter(t, s)
	var errPanic, errCreate error
	var wg sync.WaitGroup
	wg.Go(func() {
		errPanic = s.write(t.Context(), "test: panic", func(*wtx) error { panic("boom") })
	})
	waitQueued(t, s, 1)
	wg.Go(func() { errCreate = s.CreateToken(t.Context(), rec, f.secret(rec.ID)) })
	waitQueued(t, s, 2)
	release()
	wg.Wait()
	if errPanic == nil || !strings.Contains(errPanic.Error(), "panic") {
		t.Errorf("panicking change: %v, want an error", errPanic)
	}
	if errCreate != nil {
		t.Errorf("create alongside a panicking change: %v", errCreate)
	}
}

func TestCloseCommitsChangesHandedOver(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "phigate.db")
	s, err := Open(ctx, path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	const n = 64
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	for i := range recs {
		recs[i] = f.record()
		secs[i] = f.secret(recs[i].ID)
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.CreateToken(ctx, recs[i], secs[i])
		})
	}
	close(start)
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s, err = Open(ctx, path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	committed := 0
	for i, err := range errs {
		_, getErr := s.Token(ctx, recs[i].ID)
		switch {
		case err == nil:
			committed++
			if getErr != nil {
				t.Errorf("create %d returned nil but after reopening: %v", i, getErr)
			}
		case errors.Is(err, store.ErrClosed):
			if !errors.Is(getErr, store.ErrNotFound) {
				t.Errorf("create %d returned ErrClosed but after reopening: %v", i, getErr)
			}
		default:
			t.Errorf("create %d: %v, want nil or ErrClosed", i, err)
		}
	}
	t.Logf("%d of %d creates racing Close committed", committed, n)
}

func BenchmarkCreateToken64(b *testing.B) {
	s, _ := openTemp(b, Options{Now: testclock.Start})
	before := s.Stats()
	storetest.BenchCreate(b, s)
	st := s.Stats()
	if c := st.Commits - before.Commits; c > 0 {
		b.ReportMetric(float64(st.Ops-before.Ops)/float64(c), "ops/commit")
	}
}

func BenchmarkCreateTokenLatency(b *testing.B) {
	for _, g := range []int{1, 4} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			s, _ := openTemp(b, Options{Now: testclock.Start})
			storetest.BenchCreateLatency(b, s, g)
		})
	}
}

func BenchmarkTokenBySecret(b *testing.B) {
	s, _ := openTemp(b, Options{Now: testclock.Start})
	storetest.BenchTokenBySecret(b, s, 1000)
}

// TestFailedWALSyncFailsTheWriteAndTheStore: a change whose WAL sync fails
// is not acknowledged, and the store refuses writes from then on (the
// kernel may have dropped the pages it could not write).
func TestFailedWALSyncFailsTheWriteAndTheStore(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "t.db"), Options{Now: testclock.Start})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutMeta(t.Context(), "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	s.wal.Close() // the next fdatasync fails (EBADF)
	if err := s.PutMeta(t.Context(), "b", []byte("2")); err == nil {
		t.Fatal("a change was acknowledged although its WAL sync failed")
	}
	if err := s.PutMeta(t.Context(), "c", []byte("3")); err == nil {
		t.Fatal("the store accepted a change after a failed WAL sync")
	}
}

// TestMigrationBoundsEveryTokenByItsIssuersNotAfter opens a version 1
// database and checks that migration 2 gives each token the not_after it
// would have been issued with: its own bound (created_at+max_lifetime, or
// expires_at), never after an issuer's, up the chain, cycles included; and
// that an expiry past it is brought back to it.
func TestMigrationBoundsEveryTokenByItsIssuersNotAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phigate.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{createMigrationsTable, migrations[0], "INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t0 := testclock.Start()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type row struct {
		id, parent           string
		created, expires     time.Time
		maxLifetime          time.Duration
		wantNotAfter, wantEx time.Time
	}
	id := func(n byte) string { return "tok_" + strings.Repeat(string('A'+n), 22) }
	rows := []row{
		// a root with a long max lifetime: its own bound
		{id(0), "", at(0), at(time.Hour), 720 * time.Hour, at(720 * time.Hour), at(time.Hour)},
		// its child, created later with the same max lifetime: the root's end
		{id(1), id(0), at(10 * time.Hour), at(11 * time.Hour), 720 * time.Hour, at(720 * time.Hour), at(11 * time.Hour)},
		// a grandchild without a max lifetime: its expiry
		{id(2), id(1), at(20 * time.Hour), at(20*time.Hour + 15*time.Minute), 0, at(20*time.Hour + 15*time.Minute), at(20*time.Hour + 15*time.Minute)},
		// a parent that cannot be extended, and a child that outlived it
		{id(3), "", at(0), at(time.Hour), 0, at(time.Hour), at(time.Hour)},
		{id(4), id(3), at(30 * time.Minute), at(5 * time.Hour), 24 * time.Hour, at(time.Hour), at(time.Hour)},
		// a cycle of parent ids: both get the earlier bound
		{id(5), id(6), at(0), at(time.Hour), 2 * time.Hour, at(2 * time.Hour), at(time.Hour)},
		{id(6), id(5), at(0), at(time.Hour), 3 * time.Hour, at(2 * time.Hour), at(time.Hour)},
		// a max lifetime whose sum would overflow
		{id(7), "", at(0), at(time.Hour), time.Duration(1<<63 - 1), time.Unix(0, 1<<63-1).UTC(), at(time.Hour)},
	}
	for _, r := range rows {
		var parent any
		if r.parent != "" {
			parent = r.parent
		}
		if _, err := raw.Exec(`INSERT INTO tokens (id, subject, kind, status, parent_id, created_at, expires_at, max_lifetime, revision)
			VALUES (?, 'user:x', 'user', 'active', ?, ?, ?, ?, 1)`, r.id, parent, r.created.UnixNano(), r.expires.UnixNano(), int64(r.maxLifetime)); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	s, err := Open(t.Context(), path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	for i, r := range rows {
		got, err := s.Token(t.Context(), r.id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.NotAfter.Equal(r.wantNotAfter) || !got.ExpiresAt.Equal(r.wantEx) {
			t.Errorf("row %d: not_after %s, expires_at %s; want %s, %s", i,
				got.NotAfter.Format(time.RFC3339), got.ExpiresAt.Format(time.RFC3339), r.wantNotAfter.Format(time.RFC3339), r.wantEx.Format(time.RFC3339))
		}
	}
}

// TestMigrationStartsEveryChainAtZero opens a version 2 database: its
// tokens come back never rotated, with their first expiry as rotation
// period, and can be rotated with a replay at once.
func TestMigrationStartsEveryChainAtZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phigate.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{createMigrationsTable, migrations[0], migrations[1],
		"INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0), (2, 0)"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t0 := testclock.Start()
	id := "tok_" + strings.Repeat("A", 22)
	if _, err := raw.Exec(`INSERT INTO tokens (id, subject, kind, status, created_at, expires_at, not_after, max_lifetime, revision)
		VALUES (?, 'user:x', 'user', 'active', ?, ?, ?, ?, 3)`, id, t0.UnixNano(), t0.Add(time.Hour).UnixNano(), t0.Add(48*time.Hour).UnixNano(), int64(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s, err := Open(t.Context(), path, Options{Now: testclock.Start})
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	got, err := s.Token(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rotations != 0 || !got.RotatedAt.IsZero() || got.RotatedFrom != "" || got.TTL != 0 || got.Grace != 0 || got.Period() != time.Hour {
		t.Fatalf("migrated record: %+v", got)
	}
	var sec token.Secret
	sec.Hash[0], sec.CreatedAt = 1, t0
	rp := &store.Replay{TokenID: id, CallerID: id, Sealed: []byte{1}, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	if err := s.RotateSecretWith(t.Context(), id, store.Rotation{Secret: sec, OldNotAfter: t0, RotatedFrom: "fp_0000000000000000", Revision: 3, Replay: rp}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Token(t.Context(), id); got.Rotations != 1 || got.RotatedFrom != "fp_0000000000000000" {
		t.Fatalf("after a rotation: %+v", got)
	}
}
