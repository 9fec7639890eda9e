package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/token"
)

func readEvents(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func TestFileRecorderIsDurableAndSharesFsyncs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "gateway-audit.jsonl")
	r, err := NewFileRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- r.Record(context.Background(), &Event{Kind: KindGrant, RequestID: "r" + string(rune('a'+i%26)), Method: "GET", Path: "/x"})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// every Record returned after its line was written: all are there now
	if got := len(readEvents(t, path)); got != n {
		t.Fatalf("%d lines, want %d", got, n)
	}
	if s := r.syncs.Load(); s >= n || s < 1 {
		t.Errorf("%d fsyncs for %d concurrent records: no group commit", s, n)
	} else {
		t.Logf("%d records in %d fsyncs", n, s)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(context.Background(), &Event{}); !errors.Is(err, ErrRecorderClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestFileRecorderRepairsATornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	os.WriteFile(path, []byte(`{"kind":"grant","request_id":"a"}`+"\n"+`{"kind":"gra`), 0o600)
	r, err := NewFileRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Record(context.Background(), &Event{Kind: KindDeny, RequestID: "b"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	data, _ := os.ReadFile(path)
	want := `{"kind":"grant","request_id":"a"}` + "\n" + `{"kind":"gra` + "\n"
	if string(data[:len(want)]) != want {
		t.Fatalf("file %q", data)
	}
	var e Event
	if err := json.Unmarshal(data[len(want):], &e); err != nil || e.RequestID != "b" {
		t.Errorf("appended line %q: %v", data[len(want):], err)
	}
}

func TestFileRecorderFailsClosedAfterAWriteError(t *testing.T) {
	r, err := NewFileRecorder(filepath.Join(t.TempDir(), "a.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	r.f.Close() // the disk goes away
	for i := range 3 {
		if err := r.Record(context.Background(), &Event{Kind: KindGrant}); err == nil {
			t.Fatalf("record %d succeeded on a closed file", i)
		}
	}
}

func TestFileRecorderHonoursContext(t *testing.T) {
	r, err := NewFileRecorder(filepath.Join(t.TempDir(), "a.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// either durable (nil) or refused (error): never a nil before the write
	if err := r.Record(ctx, &Event{Kind: KindGrant}); err == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedact(t *testing.T) {
	secret, err := token.Generate(nil) // made now: no token-shaped literal in the repository
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"":                           "",
		"plain":                      "plain",
		"phi_short":                  "phi_short",
		"a=" + secret + "&b=1":       "a=phi_[REDACTED]&b=1",
		secret + secret:              "phi_[REDACTED]phi_[REDACTED]",
		"phi_" + secret:              "phi_phi_[REDACTED]",
		"x" + secret[:len(secret)-1]: "xphi_[REDACTED]",
		"phi_0123456789abcde":        "phi_0123456789abcde",
		"phi_0123456789abcdef/x":     "phi_[REDACTED]/x",
		"phi_phi_phi_":               "phi_phi_phi_",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	for _, ev := range []Event{
		{},
		{Kind: KindGrant, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), RequestID: "r", Via: "proxy", TokenID: "tok_1", Subject: "a\"b\\c<d>&e",
			SourceIP: "::1", Method: "GET", Upstream: "u", Path: "/p\n\t\x01", Query: "q=\u2028\u2029é\xff", Interaction: "read", Resource: "Patient",
			Scope: "user/*.r", Purpose: "TREAT", Patient: "p1", BreakGlass: true, Justification: "x", Reason: "r", Status: 200, BytesIn: 1, BytesOut: -2, Duration: 3},
		{Kind: KindComplete, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), Status: 502},
	} {
		want, err := marshalNoHTML(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.AppendJSON(nil); string(got) != string(want) {
			t.Errorf("AppendJSON\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("/p", "q=1", "just", "sub", 200, int64(5))
	f.Add("\xff\xfe", "\u2028<>&", "\x00\x1f\"\\", "é", -1, int64(-1))
	f.Fuzz(func(t *testing.T, path, query, just, subject string, status int, n int64) {
		ev := Event{Kind: KindDeny, Time: time.Unix(n%1e10, n%1e9).UTC(), RequestID: subject, Via: "authz", Subject: subject, Method: "GET",
			Path: path, Query: query, Justification: just, Status: status, BytesIn: n, Duration: time.Duration(n)}
		want, err := marshalNoHTML(&ev)
		if err != nil {
			return
		}
		if got := ev.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}

func marshalNoHTML(ev *Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func TestFileRecorderWaitsForCompanyOnlyUnderConcurrency(t *testing.T) {
	r, err := NewFileRecorder(filepath.Join(t.TempDir(), "a.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 3 {
		if err := r.Record(context.Background(), &Event{Kind: KindGrant}); err != nil {
			t.Fatal(err)
		}
	}
	if g := r.fillGoal(); g != 1 {
		t.Fatalf("a lone client waits for %d Records", g)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() { r.Record(context.Background(), &Event{Kind: KindGrant}) })
	}
	wg.Wait()
	if g := r.fillGoal(); g < 2 || g > commitTarget {
		t.Errorf("under concurrency the goal is %d", g)
	}
	r.adaptGoal(8, 3, false)
	if g := r.fillGoal(); g != 3 {
		t.Errorf("after a window closed with 3 Records the goal is %d", g)
	}
	r.adaptGoal(3, 10, true)
	if g := r.fillGoal(); g != 15 {
		t.Errorf("after an overflowing batch the goal is %d", g)
	}
}

// A recorder whose file was removed or replaced under it (a rotation)
// fails closed: what it wrote would be lost with the old file.
func TestFileRecorderFailsClosedWhenItsFileGoes(t *testing.T) {
	for name, change := range map[string]func(p string) error{
		"removed":  os.Remove,
		"replaced": func(p string) error { return os.Rename(p+".new", p) },
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "decisions.jsonl")
			r, err := NewFileRecorder(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			if err := r.Record(ctx, &Event{Kind: KindGrant, RequestID: "a"}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+".new", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := change(p); err != nil {
				t.Fatal(err)
			}
			if err := r.Record(ctx, &Event{Kind: KindGrant, RequestID: "b"}); err == nil {
				t.Fatal("recorded into a file no longer at its path")
			}
			if err := r.Record(ctx, &Event{Kind: KindGrant, RequestID: "c"}); err == nil {
				t.Fatal("recorded after failing")
			}
		})
	}
}
