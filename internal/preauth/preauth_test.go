package preauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/testclock"
)

type memLog struct {
	mu      sync.Mutex
	entries []audit.Entry
	fail    error
}

func (m *memLog) Append(_ context.Context, e *audit.Entry) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	m.entries = append(m.entries, *e)
	return uint64(len(m.entries)), nil
}

func (m *memLog) summaries(t *testing.T) (n int, total int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if e.Target != "summary" {
			continue
		}
		var d summaryDoc
		if err := json.Unmarshal(e.After, &d); err != nil || !d.Summary {
			t.Fatalf("summary %s: %v", e.After, err)
		}
		n++
		total += d.Count
	}
	return n, total
}

func (m *memLog) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

var cfg = Config{Full: 3, Window: time.Minute, MaxGroups: 4, MaxField: 64}

func newRecorder(t *testing.T, c Config) (*Recorder, *memLog, *testclock.Clock) {
	t.Helper()
	m := &memLog{}
	ck := testclock.New()
	r, err := New(m, c, ck.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, m, ck
}

func denial(ip, reason string) *audit.Entry {
	return &audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Source: audit.Source{IP: ip}, Reason: reason, Status: 401, Path: "/fhir/Patient?" + strings.Repeat("q", 2048)}
}

func TestAnonymousDenialsAreRecordedInFullThenSummarisedPerWindow(t *testing.T) {
	r, m, ck := newRecorder(t, cfg)
	ctx := context.Background()
	for range 100 {
		if err := r.Record(ctx, denial("192.0.2.1", "missing_token")); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		r.Record(ctx, denial("192.0.2.1", "invalid_token"))
	}
	if n := m.len(); n != cfg.Full+2 {
		t.Fatalf("%d entries during the window, want %d in full", n, cfg.Full+2)
	}
	ck.Add(time.Minute)
	if err := r.Record(ctx, denial("192.0.2.1", "missing_token")); err != nil {
		t.Fatal(err)
	}
	n, total := m.summaries(t)
	if n != 1 || total != 100-cfg.Full {
		t.Fatalf("%d summaries counting %d, want 1 counting %d", n, total, 100-cfg.Full)
	}
	// the new window records in full again
	if got := m.len(); got != cfg.Full+2+1+1 {
		t.Fatalf("%d entries, want the summary and the new window's first in full", got)
	}
}

func TestSummariesAreWrittenAtClose(t *testing.T) {
	r, m, _ := newRecorder(t, cfg)
	ctx := context.Background()
	for range 10 {
		r.Record(ctx, denial("192.0.2.1", "missing_token"))
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, total := m.summaries(t); total != 10-cfg.Full {
		t.Fatalf("summary at close counts %d, want %d", total, 10-cfg.Full)
	}
	if err := r.Record(ctx, denial("192.0.2.1", "missing_token")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close: %v", err)
	}
}

func TestRunWritesSummariesAtWindowEnd(t *testing.T) {
	c := cfg
	c.Window = 40 * time.Millisecond
	m := &memLog{}
	r, _ := New(m, c, nil, nil) // the wall clock: Run's ticker is real time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for range 5 {
		r.Record(ctx, denial("192.0.2.1", "missing_token"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := m.summaries(t); n == 1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no summary at the window's end without a later Record")
}

func TestClientStringsAreCutWithAMarker(t *testing.T) {
	r, m, _ := newRecorder(t, cfg)
	e := denial("192.0.2.1", "missing_token")
	e.Source.UserAgent = strings.Repeat("é", 500)
	e.BreakGlass = strings.Repeat("x", 1000)
	e.Method = strings.Repeat("M", 300)
	if err := r.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got := m.entries[0]
	for name, s := range map[string]string{"method": got.Method, "path": got.Path, "user agent": got.Source.UserAgent, "break glass": got.BreakGlass} {
		if len(s) > cfg.MaxField || !strings.Contains(s, " bytes]") || !utf8.ValidString(s) {
			t.Errorf("%s not cut to %d with a marker: %q", name, cfg.MaxField, s)
		}
	}
	if len(e.Path) < 2048 {
		t.Error("Record changed the caller's entry")
	}
}

func TestGroupsAreBoundedAndTheOverflowIsCounted(t *testing.T) {
	c := cfg
	c.Full = 0
	r, m, _ := newRecorder(t, c)
	ctx := context.Background()
	const sources = 1000
	for i := range sources {
		r.Record(ctx, denial("10.0.0."+strconv.Itoa(i), "missing_token"))
	}
	if len(r.groups) > c.MaxGroups+1 {
		t.Fatalf("%d groups kept, more than %d and the overflow", len(r.groups), c.MaxGroups)
	}
	r.Close(ctx)
	n, total := m.summaries(t)
	if total != sources || n > c.MaxGroups+1 {
		t.Fatalf("%d summaries counting %d, want ≤ %d counting %d", n, total, c.MaxGroups+1, sources)
	}
	var overflow bool
	for _, e := range m.entries {
		overflow = overflow || e.Source.IP == "*"
	}
	if !overflow {
		t.Fatal("no overflow summary")
	}
}

func TestAnUnwrittenSummaryKeepsItsCountAndFailsClosed(t *testing.T) {
	r, m, ck := newRecorder(t, cfg)
	ctx := context.Background()
	for range 10 {
		r.Record(ctx, denial("192.0.2.1", "missing_token"))
	}
	m.fail = errors.New("disk full")
	ck.Add(time.Minute)
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded with the log failing")
	}
	m.fail = nil
	// counted into a summary that cannot be written: refused
	for range cfg.Full {
		r.Record(ctx, denial("192.0.2.1", "missing_token")) // groups carried over count as full
	}
	if err := r.Record(ctx, denial("192.0.2.1", "missing_token")); err == nil {
		t.Fatal("a denial counted while the last summary is unwritten was accepted")
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, total := m.summaries(t); total < 10-cfg.Full {
		t.Fatalf("the failed summary's count was lost: %d", total)
	}
	if err := r.Record(ctx, denial("192.0.2.1", "missing_token")); err != nil {
		t.Fatalf("after a written summary: %v", err)
	}
}

func TestAFailedAppendOfAFullEntryIsAnError(t *testing.T) {
	r, m, _ := newRecorder(t, cfg)
	m.fail = errors.New("disk full")
	if err := r.Record(context.Background(), denial("192.0.2.1", "missing_token")); err == nil {
		t.Fatal("nil error for an entry not recorded")
	}
}

func TestAnonymousIsTheDenialsBeforeAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    audit.Entry
		want bool
	}{
		{"no token", audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Reason: "missing_token"}, true},
		{"not found, no token", audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied, Reason: "not_found"}, true},
		{"revoked token", audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Reason: "token_revoked", Actor: audit.Actor{TokenID: "tok_1"}}, true},
		{"expired token", audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Reason: "token_expired", Actor: audit.Actor{TokenID: "tok_1"}}, true},
		{"scope of a valid token", audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeDenied, Reason: "insufficient_scope", Actor: audit.Actor{TokenID: "tok_1"}}, false},
		{"suspended token", audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Reason: "token_suspended", Actor: audit.Actor{TokenID: "tok_1"}}, false},
		{"a grant", audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess}, false},
		{"failure, no token", audit.Entry{Action: audit.ActionAccessDenied, Outcome: audit.OutcomeFailure, Reason: "unavailable"}, true},
		{"a token change", audit.Entry{Action: audit.ActionTokenCreated, Outcome: audit.OutcomeDenied}, false},
	} {
		if got := Anonymous(&tc.e); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"short", 64, "short"},
		{strings.Repeat("a", 100), 40, strings.Repeat("a", 25) + "…[+75 bytes]"},
		{strings.Repeat("é", 50), 40, strings.Repeat("é", 12) + "…[+76 bytes]"},
	} {
		if got := Truncate(tc.s, tc.max); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("plain", 40)
	f.Add(strings.Repeat("é", 80), 33)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = 32 + (max&0xffff)%4096
		got := Truncate(s, max)
		if len(got) > max {
			t.Fatalf("%d bytes, over %d", len(got), max)
		}
		if len(s) <= max && got != s {
			t.Fatal("a string within the limit was changed")
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatal("cut inside a character")
		}
		if len(s) > max {
			head, _, ok := strings.Cut(got, "…[+")
			if !ok || !strings.HasPrefix(s, head) || got != head+"…[+"+strconv.Itoa(len(s)-len(head))+" bytes]" {
				t.Fatalf("bad marker %q", got)
			}
		}
	})
}

func TestInvalidConfigIsRefused(t *testing.T) {
	for _, c := range []Config{{Full: -1, Window: 1, MaxGroups: 1, MaxField: 32}, {Window: 0, MaxGroups: 1, MaxField: 32}, {Window: 1, MaxGroups: 0, MaxField: 32}, {Window: 1, MaxGroups: 1, MaxField: 31}} {
		if _, err := New(&memLog{}, c, nil, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestEveryConcurrentDenialIsInAnEntryOrASummary(t *testing.T) {
	r, m, ck := newRecorder(t, cfg)
	ctx := context.Background()
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := r.Record(ctx, denial("10.0.0."+strconv.Itoa(w%3), "missing_token")); err != nil {
					t.Error(err)
				}
				if i%100 == 0 {
					ck.Add(cfg.Window / 2) // windows end while others record
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, e := range m.entries {
		if e.Target != "summary" {
			full++
		}
	}
	_, counted := m.summaries(t)
	if full+counted != workers*each {
		t.Fatalf("%d in full + %d in summaries, want %d", full, counted, workers*each)
	}
}

// A flood of anonymous denials costs the process log one line per group
// and window (the summary), never one per denial.
func TestAFloodLogsOneLinePerSummary(t *testing.T) {
	var logs bytes.Buffer
	m := &memLog{}
	ck := testclock.New()
	r, err := New(m, cfg, ck.Now, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 1000 {
		r.Record(ctx, denial("192.0.2.1", "missing_token"))
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "counted=997") || strings.Contains(lines[0], "qqqq") {
		t.Fatalf("log of a 1000-denial flood: %q", logs.String())
	}
}
