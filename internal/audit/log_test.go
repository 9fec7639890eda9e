package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestAppendVerifyRoundTrip(t *testing.T) {
	l, dir := newTestLog(t, Options{})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		e := grant(i)
		seq, err := l.Append(ctx, e)
		if err != nil || seq != uint64(i) {
			t.Fatalf("append %d: %d %v", i, seq, err)
		}
		if e.Seq != seq || e.Time.IsZero() || e.Node != "test-node" {
			t.Fatalf("Append did not report what it recorded: %+v", e)
		}
		got, err := l.Entry(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := got.MarshalBinary()
		b, _ := e.MarshalBinary()
		if !bytes.Equal(a, b) {
			t.Fatalf("stored entry differs:\n%+v\n%+v", got, e)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(ctx, grant(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	res, err := Verify(ctx, dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Size != 10 || res.Covered != 10 {
		t.Fatalf("verify: %+v %v", res, res.Problem)
	}
}

func TestAppendRefusesInvalidEntries(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	ctx := context.Background()
	for name, e := range map[string]*Entry{
		"no_action":       {},
		"unknown_action":  {Action: "token.exploded"},
		"bad_outcome":     {Action: ActionTokenCreated, Outcome: "meh"},
		"negative_bytes":  {Action: ActionAccessCompleted, Bytes: -1},
		"before_not_json": {Action: ActionTokenUpdated, Before: []byte("{")},
		"huge_snapshot":   {Action: ActionTokenUpdated, After: []byte(`"` + strings.Repeat("a", MaxSnapshot) + `"`)},
	} {
		if _, err := l.Append(ctx, e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if l.Size() != 0 {
		t.Fatal("an invalid entry was written")
	}
}

func TestAppendCutsAndCleansStrings(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	e := grant(1)
	e.Source.UserAgent = strings.Repeat("é", 1000) + "\xff"
	e.Path = "/x\xff\xfe" + strings.Repeat("/a", 2000)
	if _, err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(e.Source.UserAgent) > MaxUserAgent || !strings.HasSuffix(e.Source.UserAgent, "…") || len(e.Path) > MaxPath {
		t.Fatalf("not cut: %d %d", len(e.Source.UserAgent), len(e.Path))
	}
	if !strings.HasPrefix(e.Path, "/x\uFFFD") {
		t.Fatalf("invalid UTF-8 not replaced: %q", e.Path[:8])
	}
}

// blockWriter holds the writer goroutine until the returned func is called.
func blockWriter(t *testing.T, l *Log) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	go l.control(context.Background(), func(reply chan error) error {
		close(held)
		<-done
		reply <- nil
		return nil
	})
	<-held
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

func TestGroupCommitBatchesConcurrentAppends(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	release := blockWriter(t, l)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := l.Append(context.Background(), grant(i))
			errs <- err
		}(i)
	}
	for len(l.queue) < 50 {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if st.Entries != 50 || st.Commits != 1 || st.LargestBatch != 50 {
		t.Fatalf("50 waiting appends should share one commit: %+v", st)
	}
}

func TestPushbackWhenTheQueueIsFull(t *testing.T) {
	l, _ := newTestLog(t, Options{QueueSize: 2})
	release := blockWriter(t, l)
	defer release()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(ctx, grant(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	for len(l.queue) < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if _, err := l.Append(ctx, grant(3)); !errors.Is(err, ErrPushback) {
		t.Fatalf("want ErrPushback, got %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("pushback took %v; it must be immediate", d)
	}
	release()
	wg.Wait()
}

func TestAppendHonoursItsContext(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	release := blockWriter(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := l.Append(ctx, grant(1)); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("want the context's error (entry withdrawn), got %v", err)
	}
	release()
	if _, err := l.Append(context.Background(), grant(2)); err != nil {
		t.Fatal(err)
	}
	if l.Size() != 1 {
		t.Fatalf("the withdrawn entry was written: size %d", l.Size())
	}
}

func TestAppendNeverWaitsLongerThanAppendTimeout(t *testing.T) {
	l, _ := newTestLog(t, Options{AppendTimeout: 40 * time.Millisecond})
	release := blockWriter(t, l)
	defer release()
	start := time.Now()
	_, err := l.Append(context.Background(), grant(1))
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFullDiskFailsFastAlertsAndRecovers fills the database (SQLite's
// max_page_count: a real SQLITE_FULL, as on a full disk): callers get an
// error at once, never a hang; Ready reports it; an alert is logged; once
// space is back, the probe makes the log writable again and nothing
// acknowledged is lost.
func TestFullDiskFailsFastAlertsAndRecovers(t *testing.T) {
	logs := &syncBuffer{}
	l, dir := newTestLog(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ProbeInterval: 300 * time.Millisecond})
	ctx := context.Background()
	pragma := func(q string) {
		t.Helper()
		if err := l.indexControl(ctx, func() error { return l.w.exec(q) }); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, l, 20)
	pragma("PRAGMA max_page_count = 1") // = the current size: no page more
	// appends are acknowledged once journaled; the database's failure
	// shows on the appends after it
	var err error
	acked := uint64(20)
	for i := 0; i < 1000 && err == nil; i++ {
		if _, err = l.Append(ctx, grant(i)); err == nil {
			acked++
		}
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("want ErrUnavailable (database or disk is full), got %v", err)
	}
	if l.Size() != acked {
		t.Fatalf("Size %d, but %d appends were acknowledged", l.Size(), acked)
	}
	if l.Ready() == nil {
		t.Fatal("Ready must report the failure")
	}
	start := time.Now()
	if _, err := l.Append(ctx, grant(0)); !errors.Is(err, ErrUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("while unavailable, Append must fail at once: %v after %v", err, time.Since(start))
	}
	if !strings.Contains(logs.String(), "AUDIT LOG CANNOT BE WRITTEN") {
		t.Fatalf("no alert in the log:\n%s", logs.String())
	}
	pragma("PRAGMA max_page_count = 1073741823")
	deadline := time.Now().Add(5 * time.Second)
	for l.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still not ready: %v", l.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	seq, err := l.Append(ctx, grant(99))
	if err != nil || seq != acked {
		t.Fatalf("after recovery: seq %d (want %d), %v", seq, acked, err)
	}
	if !strings.Contains(logs.String(), "writable again") {
		t.Fatal("no recovery notice")
	}
	l.Close()
	if res := mustVerify(t, dir, VerifyOptions{}); !res.OK() || res.Size != acked+1 {
		t.Fatalf("%+v %v", res, res.Problem)
	}
}

func TestCheckpointsWhileEntriesArriveAndAtClose(t *testing.T) {
	l, _ := newTestLog(t, Options{CheckpointInterval: 20 * time.Millisecond})
	first := l.latest.Load()
	if first.Size != 0 || !strings.HasPrefix(string(first.Note), "phigate/test-node\n0\n") {
		t.Fatalf("a new log starts with a signed checkpoint of the empty tree: %q", first.Note)
	}
	appendN(t, l, 3)
	deadline := time.Now().Add(2 * time.Second)
	for l.latest.Load().Size != 3 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint within the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close signs the rest
	l2, _ := newTestLog(t, Options{CheckpointInterval: time.Hour})
	appendN(t, l2, 5)
	if l2.latest.Load().Size != 0 {
		t.Fatal("unexpected checkpoint")
	}
	l2.Close()
	res := mustVerify(t, l2.dir, VerifyOptions{})
	if res.Covered != 5 {
		t.Fatalf("Close must sign a final checkpoint: covered %d", res.Covered)
	}
}

func TestOriginIsFixed(t *testing.T) {
	dir := t.TempDir()
	vkey, created, err := InitKeys(dir, "node-a", nil)
	if err != nil || !created || !strings.HasPrefix(vkey, "phigate/node-a+") {
		t.Fatal(vkey, created, err)
	}
	again, created, err := InitKeys(dir, "node-a", nil)
	if err != nil || created || again != vkey {
		t.Fatal("InitKeys is not idempotent", err)
	}
	if _, _, err := InitKeys(dir, "node-b", nil); err == nil {
		t.Fatal("a log's origin must not change")
	}
	if _, err := Open(context.Background(), dir, Options{Node: "node-b"}); err == nil {
		t.Fatal("Open with another node name must fail")
	}
	if _, _, err := InitKeys(t.TempDir(), "bad node", nil); err == nil {
		t.Fatal("invalid node name accepted")
	}
	fi, _ := os.Stat(dir + "/" + SigningKeyFile)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode %v", fi.Mode().Perm())
	}
	os.Chmod(dir+"/"+SigningKeyFile, 0o644)
	if _, err := Open(context.Background(), dir, Options{}); err == nil {
		t.Fatal("a group-readable signing key must be refused")
	}
	if _, err := Open(context.Background(), t.TempDir(), Options{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
}

// The crash test: a child process appends under concurrent load and prints
// every acknowledged sequence number; the parent kills it with SIGKILL in
// the middle, reopens the log and checks that every acknowledged entry is
// there, as acknowledged, and that the log verifies.

const crashEnv = "PHIGATE_AUDIT_CRASH_DIR"

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run as the crash test's child")
	}
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	for w := 0; w < 16; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				e := grant(i)
				e.RequestID = fmt.Sprintf("w%d-%d", w, i)
				seq, err := l.Append(context.Background(), e)
				if err != nil {
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", seq, e.RequestID)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	select {}
}

func TestCrashLosesNoAcknowledgedEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	if _, _, err := InitKeys(dir, "test-node", nil); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		acked := map[uint64]string{}
		killAt := 1500 + round*700
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			seq, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[seq] = f[1]
			if len(acked) == killAt && !killed {
				cmd.Process.Signal(syscall.SIGKILL) // mid-load: 16 appends in flight
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("child ended before the kill, after %d acks", len(acked))
		}
		l, err := Open(context.Background(), dir, Options{})
		if err != nil {
			t.Fatalf("reopen after kill -9: %v", err)
		}
		for seq, rid := range acked {
			e, err := l.Entry(context.Background(), seq)
			if err != nil || e.RequestID != rid {
				t.Fatalf("acknowledged entry %d (%s) lost after kill -9: %v %+v", seq, rid, err, e)
			}
		}
		size := l.Size()
		l.Close()
		res := mustVerify(t, dir, VerifyOptions{})
		if !res.OK() || res.Size != size || res.Covered != size {
			t.Fatalf("verify after crash: %+v %v", res, res.Problem)
		}
		t.Logf("round %d: %d acknowledged, %d in the log after kill -9", round, len(acked), size)
	}
}

// TestStalledCommitMakesTheLogUnavailable: a write or fsync pending for
// longer than StallTimeout (a hung disk) turns Ready and Append into
// errors at once instead of letting callers pile up.
func TestStalledCommitMakesTheLogUnavailable(t *testing.T) {
	l, _ := newTestLog(t, Options{StallTimeout: time.Second})
	for _, stalled := range []*atomic.Int64{&l.writeStart, &l.syncStart} {
		stalled.Store(time.Now().Add(-2 * time.Second).UnixNano())
		if err := l.Ready(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stalled") {
			t.Fatalf("Ready: %v", err)
		}
		if _, err := l.Append(context.Background(), grant(1)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Append: %v", err)
		}
		stalled.Store(0)
		if err := l.Ready(); err != nil {
			t.Fatal(err)
		}
	}
}
