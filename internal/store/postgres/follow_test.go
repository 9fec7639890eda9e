package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/store/postgres/pgtest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
)

// recorder collects what a follower hands on.
type recorder struct {
	mu  sync.Mutex
	got map[string]int64
	ch  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{got: map[string]int64{}, ch: make(chan struct{}, 1024)}
}

func (r *recorder) onChange(id string, rev int64) {
	r.mu.Lock()
	if rev > r.got[id] {
		r.got[id] = rev
	}
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder) rev(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// waitFor waits until the recorder has seen revision rev of id.
func (r *recorder) waitFor(t *testing.T, id string, rev int64, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for r.rev(id) < rev {
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("change %s revision %d not handed on within %v (have %d)", id, rev, within, r.rev(id))
		}
	}
}

// twoNodes opens two stores on one schema, as two nodes would.
func twoNodes(t *testing.T) (a, b *postgres.Store, dsn string) {
	t.Helper()
	dsn = pgtestSchema(t)
	clk := testclock.New()
	var err error
	if a, err = postgres.Open(t.Context(), dsn, postgres.Options{Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = postgres.Open(t.Context(), dsn, postgres.Options{Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b, dsn
}

func newToken(t *testing.T, s *postgres.Store, now time.Time) *token.Record {
	t.Helper()
	id, err := token.NewID(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := token.NewHasherKey(1, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &token.Record{ID: id, Subject: "user:a", Kind: token.KindUser, Status: token.StatusActive,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), NotAfter: now.Add(time.Hour), UpdatedAt: now, Revision: 1}
	if err := s.CreateToken(t.Context(), rec, token.Secret{Hash: h.Sum(plain), PepperVersion: 1, TokenID: id, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestNotifyReachesAnotherNode(t *testing.T) {
	a, b, _ := twoNodes(t)
	rec := newRecorder()
	f, err := b.Follow(t.Context(), postgres.FollowOptions{OnChange: rec.onChange, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitListening(t, f)
	now := testclock.Start()
	tok := newToken(t, a, now)
	if _, err := a.SetStatus(t.Context(), []string{tok.ID}, token.StatusRevoked, "test", now); err != nil {
		t.Fatal(err)
	}
	// the poll runs once an hour: only the notification can bring it
	rec.waitFor(t, tok.ID, 2, 5*time.Second)

	other := newToken(t, a, now)
	o2, _ := a.Token(t.Context(), other.ID)
	o2.Scopes = []string{"api:read"}
	if err := a.UpdateToken(t.Context(), o2); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, other.ID, 2, 5*time.Second)
}

func TestNoNotificationForARolledBackChange(t *testing.T) {
	a, b, _ := twoNodes(t)
	rec := newRecorder()
	f, err := b.Follow(t.Context(), postgres.FollowOptions{OnChange: rec.onChange, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitListening(t, f)
	now := testclock.Start()
	tok := newToken(t, a, now)
	// A rotation that fails (its secret hash is taken) rolls back, and
	// with it its notification.
	other := newToken(t, a, now)
	secs, err := a.Secrets(t.Context(), other.ID)
	if err != nil {
		t.Fatal(err)
	}
	taken := secs[0]
	taken.TokenID = tok.ID
	if err := a.RotateSecret(t.Context(), tok.ID, taken, now.Add(time.Minute), time.Time{}); err == nil {
		t.Fatal("RotateSecret with a taken hash succeeded")
	}
	// A marker change after it: once it arrives, the failed one would have.
	if _, err := a.SetStatus(t.Context(), []string{other.ID}, token.StatusSuspended, "marker", now); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, other.ID, 2, 5*time.Second)
	if got := rec.rev(tok.ID); got != 0 {
		t.Errorf("a rolled-back rotation was handed on (revision %d)", got)
	}
}

// TestPollCatchesAMissedChangeWhateverTheCommitOrder holds the poll's
// window: a change whose transaction began before a poll and committed
// after it (its xid is below that poll's rows, so a "newer than the last
// seen" cursor would skip it) is handed on by a later poll, without any
// notification.
func TestPollCatchesAMissedChangeWhateverTheCommitOrder(t *testing.T) {
	a, b, dsn := twoNodes(t)
	now := testclock.Start()
	slow := newToken(t, a, now)
	fast := newToken(t, a, now)
	rec := newRecorder()
	f, err := b.Follow(t.Context(), postgres.FollowOptions{OnChange: rec.onChange, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := t.Context()
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	// A change as a store makes it, minus the NOTIFY (lost, say, while
	// the listener reconnected).
	silent := "UPDATE tokens SET status = 'revoked', revision = revision + 1, change_xid = pg_current_xact_id() WHERE id = $1"
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, silent, slow.ID); err != nil { // takes its xid now
		t.Fatal(err)
	}
	conn2 := connect(t, dsn)
	if _, err := conn2.Exec(ctx, silent, fast.ID); err != nil { // a later xid, committed first
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.rev(fast.ID) != 2 {
		t.Fatalf("poll did not hand on the committed change (revision %d)", rec.rev(fast.ID))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.rev(slow.ID) != 2 {
		t.Fatalf("poll missed the change that committed after a later one (revision %d)", rec.rev(slow.ID))
	}
	if f.Synced().IsZero() {
		t.Error("Synced is zero after successful polls")
	}
}

func TestSyncedDoesNotAdvanceWhenThePollFails(t *testing.T) {
	_, b, _ := twoNodes(t)
	f, err := b.Follow(t.Context(), postgres.FollowOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Synced().IsZero() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.Synced().IsZero() {
		t.Fatal("no successful poll")
	}
	f.Close()
	b.Close()
	before := f.Synced()
	if err := f.Poll(context.Background()); err == nil {
		t.Error("Poll on a closed store succeeded")
	}
	if !f.Synced().Equal(before) {
		t.Errorf("Synced moved from %v to %v on a failed poll", before, f.Synced())
	}
}

func waitListening(t *testing.T, f *postgres.Follower) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the follower never listened")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestVaultChangeReachesAnotherNode: a write to the shared vault is
// reported to the other nodes, by notification and, failing that, by the
// poll.
func TestVaultChangeReachesAnotherNode(t *testing.T) {
	a, b, _ := twoNodes(t)
	notified := make(chan struct{}, 16)
	f, err := b.Follow(t.Context(), postgres.FollowOptions{Interval: time.Hour, OnVault: func() { notified <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitListening(t, f)
	if err := f.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	put := func(v int) {
		it := vault.Item{Purpose: "p", Name: "n", Version: v, DEKVersion: 1, Ciphertext: []byte("sealed"), CreatedAt: testclock.Start()}
		if err := a.VaultStorage().PutItem(t.Context(), it, false); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("no vault notification")
	}
	// the poll sees it too (a notification lost in a reconnect); a
	// second change, after the listener's one catch-up poll has long run
	put(2)
	select {
	case <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("no vault notification")
	}
	for len(notified) > 0 {
		<-notified
	}
	if err := f.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(notified) == 0 {
		t.Fatal("the poll did not report the vault change")
	}
}

// TestListenerReconnectsAndCatchesUp: when the database goes away and
// comes back, the follower's LISTEN connection is re-established by
// itself, a catch-up poll runs at once (the poll interval here is an
// hour: only the catch-up can move Synced), and notifications flow again.
func TestListenerReconnectsAndCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	pg := pgtest.StartPrivate(t)
	dsn := pg.DSN("disable")
	a, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := newRecorder()
	f, err := b.Follow(t.Context(), postgres.FollowOptions{OnChange: rec.onChange, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitListening(t, f)
	before := f.Synced()

	pg.Stop(t)
	deadline := time.Now().Add(10 * time.Second)
	for f.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("the follower still says it listens with the database stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pg.Start(t)
	waitListening(t, f)
	deadline = time.Now().Add(10 * time.Second)
	for !f.Synced().After(before) {
		if time.Now().After(deadline) {
			t.Fatal("no catch-up poll after the LISTEN connection came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	now := testclock.Start()
	tok := newToken(t, a, now)
	if _, err := a.SetStatus(t.Context(), []string{tok.ID}, token.StatusRevoked, "after the restart", now); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, tok.ID, 2, 5*time.Second)
}
