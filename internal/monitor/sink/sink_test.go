package sink

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/testclock"
)

func secret(t testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleAlert(clk *testclock.Clock) *monitor.Alert {
	return &monitor.Alert{
		Detector: monitor.DetectorRateSpike, Severity: monitor.High,
		TokenID: "tok_0000000000000000000000", Subject: "svc:lab",
		Summary:   "rate spike: 120 requests in 1s against a baseline of 2",
		Evidence:  map[string]any{"count_1s": 120, "baseline": 2.0},
		AuditSeqs: []uint64{41, 42}, Action: monitor.Suspended, At: clk.Now(),
	}
}

type fakeAudit struct {
	mu      sync.Mutex
	entries []audit.Entry
	err     error
}

func (f *fakeAudit) Append(_ context.Context, e *audit.Entry) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.entries = append(f.entries, *e)
	return uint64(len(f.entries)), nil
}

type fakeStore struct{ alerts []*store.Alert }

func (f *fakeStore) CreateAlert(_ context.Context, a *store.Alert) error {
	f.alerts = append(f.alerts, a)
	return nil
}

func TestRecorderAuditsThenStores(t *testing.T) {
	clk := testclock.New()
	aud, st := &fakeAudit{}, &fakeStore{}
	r := &Recorder{Audit: aud, Store: st}
	a := sampleAlert(clk)
	a.Action, a.Source = monitor.IPBlocked, "198.51.100.7"
	if err := r.Raise(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ID, IDPrefix) || len(st.alerts) != 1 || st.alerts[0].ID != a.ID {
		t.Fatalf("id %q, stored %v", a.ID, st.alerts)
	}
	if len(aud.entries) != 2 || aud.entries[0].Action != audit.ActionAlertRaised || aud.entries[1].Action != audit.ActionIPBlocked {
		t.Fatalf("audit entries = %+v, want alert.raised then ip.blocked", aud.entries)
	}
	if e := aud.entries[0]; e.Target != a.ID || e.Reason != monitor.DetectorRateSpike || e.Source.IP != "198.51.100.7" ||
		e.Actor != (audit.Actor{}) || !strings.Contains(string(e.After), a.TokenID) {
		t.Errorf("alert.raised = %+v", e)
	}
	got := st.alerts[0]
	if got.Severity != store.SeverityHigh || got.Action != "ip_blocked" || string(got.Evidence) != `{"baseline":2,"count_1s":120}` || len(got.AuditSeqs) != 2 {
		t.Errorf("stored %+v", got)
	}
}

func TestAlertThatCannotBeAuditedIsNotStored(t *testing.T) {
	clk := testclock.New()
	st := &fakeStore{}
	r := &Recorder{Audit: &fakeAudit{err: audit.ErrUnavailable}, Store: st}
	err := r.Raise(t.Context(), sampleAlert(clk))
	if !errors.Is(err, audit.ErrUnavailable) || len(st.alerts) != 0 {
		t.Fatalf("Raise = %v, stored %d; want ErrUnavailable and nothing stored", err, len(st.alerts))
	}
}

type memSink struct{ got []*monitor.Alert }

func (m *memSink) Raise(_ context.Context, a *monitor.Alert) error {
	m.got = append(m.got, a)
	return nil
}

func TestAlertThatCannotBeRecordedIsStillDelivered(t *testing.T) {
	clk := testclock.New()
	st, out := &fakeStore{}, &memSink{}
	f := &Fanout{Record: &Recorder{Audit: &fakeAudit{err: audit.ErrUnavailable}, Store: st}, Deliver: []monitor.Sink{out}}
	err := f.Raise(t.Context(), sampleAlert(clk))
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("Raise = %v, want the recording's error", err)
	}
	if len(out.got) != 1 || out.got[0].Evidence["recorded"] != false || out.got[0].ID == "" {
		t.Fatalf("delivered %+v, want the alert, with its id and recorded: false", out.got)
	}
	ok := &Fanout{Record: &Recorder{Audit: &fakeAudit{}, Store: st}, Deliver: []monitor.Sink{out}}
	if err := ok.Raise(t.Context(), sampleAlert(clk)); err != nil {
		t.Fatal(err)
	}
	if _, set := out.got[1].Evidence["recorded"]; set || len(st.alerts) != 1 {
		t.Errorf("a recorded alert: evidence %v, stored %d", out.got[1].Evidence, len(st.alerts))
	}
}

func TestAlertIDsSortByTime(t *testing.T) {
	clk := testclock.New()
	a, _ := NewID(nil, clk.Now())
	b, _ := NewID(nil, clk.Add(time.Millisecond))
	if !(a < b) || len(a) != len(b) {
		t.Errorf("ids %q then %q do not sort by time", a, b)
	}
}

// receiver is a real HTTPS webhook receiver that checks every delivery
// the way the README tells receivers to.
type receiver struct {
	srv    *httptest.Server
	got    chan Payload
	status atomic.Int32 // answer to give (0: 204)
	calls  atomic.Int32
	bad    atomic.Int32
}

func newReceiver(t *testing.T, key []byte, now func() time.Time) *receiver {
	r := &receiver{got: make(chan Payload, 16)}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		if st := r.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		body, _ := io.ReadAll(req.Body)
		if err := Verify(key, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, now()); err != nil {
			r.bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p Payload
		if err := json.Unmarshal(body, &p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.got <- p
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func startWebhook(t *testing.T, o WebhookOptions) *Webhook {
	w, err := NewWebhook(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func TestWebhookDeliversASignedAlertOverHTTPS(t *testing.T) {
	clk := testclock.New()
	key := secret(t)
	rcv := newReceiver(t, key, clk.Now)
	w := startWebhook(t, WebhookOptions{URL: rcv.srv.URL, Secret: key, Client: rcv.srv.Client(), Now: clk.Now})
	a := sampleAlert(clk)
	a.ID = "alr_test"
	if err := w.Raise(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-rcv.got:
		if p.ID != "alr_test" || p.Detector != "rate_spike" || p.Severity != "high" || p.Action != "suspended" {
			t.Errorf("payload %+v", p)
		}
		if !strings.HasPrefix(p.Text, "[phigate] HIGH rate_spike: ") || !strings.Contains(p.Text, "tok_0000000000000000000000") {
			t.Errorf("text %q is not the one-line summary", p.Text)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no delivery within 2s")
	}
}

func TestWebhookRetriesWithBackoffThenDelivers(t *testing.T) {
	clk := testclock.New()
	key := secret(t)
	rcv := newReceiver(t, key, clk.Now)
	rcv.status.Store(http.StatusServiceUnavailable)
	w := startWebhook(t, WebhookOptions{URL: rcv.srv.URL, Secret: key, Client: rcv.srv.Client(), Now: clk.Now,
		Backoff: 10 * time.Millisecond, Attempts: 10})
	a := sampleAlert(clk)
	a.ID = "alr_retry"
	if err := w.Raise(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	for rcv.calls.Load() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	rcv.status.Store(0)
	select {
	case p := <-rcv.got:
		if p.ID != "alr_retry" {
			t.Errorf("payload %+v", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("not delivered after the receiver recovered")
	}
}

func TestWebhookGivesUpOnAClientError(t *testing.T) {
	clk := testclock.New()
	key := secret(t)
	rcv := newReceiver(t, key, clk.Now)
	rcv.status.Store(http.StatusForbidden)
	w := startWebhook(t, WebhookOptions{URL: rcv.srv.URL, Secret: key, Client: rcv.srv.Client(), Now: clk.Now,
		Backoff: time.Millisecond, Attempts: 5})
	a := sampleAlert(clk)
	a.ID = "alr_refused"
	_ = w.Raise(t.Context(), a)
	deadline := time.Now().Add(time.Second)
	for {
		if _, failed, _ := w.Stats(); failed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("delivery not given up")
		}
		time.Sleep(time.Millisecond)
	}
	if n := rcv.calls.Load(); n != 1 {
		t.Errorf("a 403 was retried: %d calls", n)
	}
}

func TestFullWebhookQueueDropsWithoutBlocking(t *testing.T) {
	clk := testclock.New()
	// Not started: nothing drains the queue.
	w, err := NewWebhook(WebhookOptions{URL: "https://127.0.0.1:1/", Secret: secret(t), Now: clk.Now, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	a := sampleAlert(clk)
	a.ID = "alr_q"
	for i := range 5 {
		err := w.Raise(t.Context(), a)
		if (i < 2) != (err == nil) || (i >= 2 && !errors.Is(err, ErrQueueFull)) {
			t.Errorf("Raise #%d = %v", i, err)
		}
	}
	if _, _, dropped := w.Stats(); dropped != 3 {
		t.Errorf("dropped = %d, want 3", dropped)
	}
}

func TestVerifyRejectsEveryMutation(t *testing.T) {
	clk := testclock.New()
	key := secret(t)
	body := []byte(`{"id":"alr_x","text":"hi"}`)
	ts := clk.Now().Unix()
	sig := Sign(key, ts, body)
	tsS := strconv.FormatInt(ts, 10)
	if err := Verify(key, tsS, sig, body, clk.Now()); err != nil {
		t.Fatalf("valid delivery refused: %v", err)
	}
	for _, tc := range []struct {
		name          string
		ts, sig, body string
		now           time.Time
		key           []byte
	}{
		{"TimestampOlderThan5Min", tsS, sig, string(body), clk.Now().Add(MaxAge + time.Second), key},
		{"TimestampInTheFuture", tsS, sig, string(body), clk.Now().Add(-MaxAge - time.Second), key},
		{"TimestampChanged", strconv.FormatInt(ts+1, 10), sig, string(body), clk.Now(), key},
		{"TimestampNotANumber", "x" + tsS, sig, string(body), clk.Now(), key},
		{"TimestampEmpty", "", sig, string(body), clk.Now(), key},
		{"BodyChanged", tsS, sig, string(body) + " ", clk.Now(), key},
		{"SignatureWithoutScheme", tsS, strings.TrimPrefix(sig, "sha256="), string(body), clk.Now(), key},
		{"SignatureUppercase", tsS, strings.ToUpper(sig), string(body), clk.Now(), key},
		{"OtherSecret", tsS, sig, string(body), clk.Now(), secret(t)},
	} {
		if err := Verify(tc.key, tc.ts, tc.sig, []byte(tc.body), tc.now); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", tc.name, err)
		}
	}
	for i := range sig {
		m := []byte(sig)
		m[i] ^= 1
		if Verify(key, tsS, string(m), body, clk.Now()) == nil {
			t.Errorf("signature with byte %d flipped accepted", i)
		}
	}
}

func FuzzVerify(f *testing.F) {
	key := []byte("fuzz-key-not-a-secret-of-any-deployment")
	f.Add("1700000000", "sha256=00", []byte(`{}`))
	f.Add("", "", []byte(nil))
	f.Add("-1", "sha256=", []byte(`{"id":"alr_x"}`))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		now := time.Unix(1700000000, 0)
		err := Verify(key, ts, sig, body, now)
		if err == nil {
			n, _ := strconv.ParseInt(ts, 10, 64)
			if Sign(key, n, body) != sig {
				t.Fatalf("accepted a signature that is not Sign's")
			}
		}
	})
}
