package client_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/pkg/client"
)

// newSecret generates a token-shaped secret at run time.
func newSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 20)
	rand.Read(b)
	return "phi_" + hex.EncodeToString(b)
}

// rotateCall is what the rotation server saw of one self-rotation.
type rotateCall struct{ auth, key string }

// rotationServer plays the server side of self-rotation: a token with a
// TTL that every rotation renews, and a script of failures for the next
// rotation requests.
type rotationServer struct {
	*httptest.Server
	t     *testing.T
	clock *testclock.Clock
	ttl   time.Duration

	mu      sync.Mutex
	current string
	exp     time.Time
	updated time.Time
	calls   []rotateCall
	// script: per rotation request, in order: "ok", "lost" (rotate, then
	// answer 503 as if the answer was lost), "503", "already_rotated",
	// "lifetime_ended"; empty means "ok".
	script []string
	// keys seen with the secret they rotated: a retry with the same key
	// gets the same answer (the contract of Idempotency-Key).
	done map[string][]byte
}

func newRotationServer(t *testing.T, clock *testclock.Clock, ttl time.Duration) *rotationServer {
	rs := &rotationServer{t: t, clock: clock, ttl: ttl, current: newSecret(t), done: map[string][]byte{}}
	rs.updated = clock.Now()
	rs.exp = rs.updated.Add(ttl)
	rs.Server = httptest.NewTLSServer(http.HandlerFunc(rs.serve))
	rs.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(rs.Close)
	return rs
}

func (rs *rotationServer) view() client.Token {
	return client.Token{ID: "tok_1", Subject: "svc", Status: "active", CreatedAt: rs.updated, UpdatedAt: rs.updated, ExpiresAt: rs.exp,
		TTL: rs.ttl.String(), Grace: "1m"}
}

func (rs *rotationServer) serve(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	auth := r.Header.Get("Authorization")
	if r.URL.Path == "/v1/tokens/self" {
		if auth != "Bearer "+rs.current {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"code":"invalid_token","message":"no"}}`)
			return
		}
		json.NewEncoder(w).Encode(rs.view())
		return
	}
	key := r.Header.Get(client.HeaderIdempotencyKey)
	rs.calls = append(rs.calls, rotateCall{auth, key})
	step := "ok"
	if len(rs.script) > 0 {
		step, rs.script = rs.script[0], rs.script[1:]
	}
	if b, ok := rs.done[auth+" "+key]; ok && step == "ok" {
		w.Write(b)
		return
	}
	switch step {
	case "503":
		w.WriteHeader(503)
		io.WriteString(w, `{"error":{"code":"unavailable","message":"down"}}`)
		return
	case "already_rotated":
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"already_rotated","message":"this secret was rotated"}}`)
		return
	case "idempotency_unavailable":
		if key != "" {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"code":"idempotency_unavailable","message":"no replays here"}}`)
			return
		}
	case "lifetime_ended":
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"lifetime_ended","message":"past not_after"}}`)
		return
	}
	if auth != "Bearer "+rs.current {
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"already_rotated","message":"this secret was rotated"}}`)
		return
	}
	now := rs.clock.Now()
	prev := now
	rs.current, rs.updated, rs.exp = newSecret(rs.t), now, now.Add(rs.ttl)
	b, _ := json.Marshal(client.IssuedToken{Token: rs.view(), Secret: rs.current, PreviousNotAfter: &prev})
	rs.done[auth+" "+key] = b
	if step == "lost" {
		w.WriteHeader(503)
		io.WriteString(w, `{"error":{"code":"unavailable","message":"answer lost"}}`)
		return
	}
	w.Write(b)
}

func (rs *rotationServer) secret() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.current
}

func (rs *rotationServer) rotateCalls() []rotateCall {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]rotateCall(nil), rs.calls...)
}

// fakeSleep advances the fixture's clock instead of waiting.
func fakeSleep(clock *testclock.Clock) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		clock.Add(d)
		return nil
	}
}

// runUntil runs src until stop says so after an update, and returns Run's
// error and the updates.
func runUntil(t *testing.T, src *client.RotatingSource, updates chan client.Update, stop func([]client.Update) bool) ([]client.Update, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx) }()
	var got []client.Update
	for {
		select {
		case u := <-updates:
			got = append(got, u)
			if stop(got) {
				cancel()
				<-errc
				return got, nil
			}
		case err := <-errc:
			return got, err
		}
	}
}

func newSource(t *testing.T, rs *rotationServer, clock *testclock.Clock, secret string, updates chan client.Update) *client.RotatingSource {
	t.Helper()
	src, err := client.NewRotatingSource(rs.URL, secret, client.RotatingOptions{
		Now: clock.Now, Sleep: fakeSleep(clock),
		OnUpdate: func(ctx context.Context, u client.Update) {
			select { // the source may run ahead of the test until it cancels
			case updates <- u:
			case <-ctx.Done():
			}
		},
	}, client.WithPins(pinOf(rs.Server)))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func pinOf(s *httptest.Server) string {
	return client.SPKIPin(s.Certificate())
}

func TestRotationRetriesReuseOneIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
	}{
		{"answer lost twice", []string{"lost", "503", "ok"}},
		{"already rotated, then the retry gets the answer", []string{"lost", "already_rotated", "ok"}},
		{"server down", []string{"503", "503", "503", "ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := testclock.New()
			rs := newRotationServer(t, clock, time.Hour)
			rs.script = tc.script
			updates := make(chan client.Update, 16)
			src := newSource(t, rs, clock, rs.secret(), updates)
			first := rs.secret()
			got, err := runUntil(t, src, updates, func(u []client.Update) bool { return len(u) == 2 })
			if err != nil {
				t.Fatal(err)
			}
			calls := rs.rotateCalls()
			// (the source may have begun the next rotation meanwhile)
			if len(calls) < len(tc.script) {
				t.Fatalf("%d rotation requests, want %d", len(calls), len(tc.script))
			}
			for i, c := range calls[:len(tc.script)] {
				if c.key == "" || c.key != calls[0].key {
					t.Errorf("request %d carried key %q, the first %q: a retry must reuse the attempt's key", i, c.key, calls[0].key)
				}
				if c.auth != "Bearer "+first {
					t.Errorf("request %d was not made with the secret being rotated", i)
				}
			}
			if !got[1].Rotated || got[1].Secret == first {
				t.Errorf("the source did not take the new secret")
			}
		})
	}
}

func TestNoRotationStartsFromASupersededSecret(t *testing.T) {
	clock := testclock.New()
	rs := newRotationServer(t, clock, time.Hour)
	updates := make(chan client.Update, 16)
	src := newSource(t, rs, clock, rs.secret(), updates)
	got, err := runUntil(t, src, updates, func(u []client.Update) bool { return len(u) == 4 })
	if err != nil {
		t.Fatal(err)
	}
	calls := rs.rotateCalls()
	if len(calls) < 3 {
		t.Fatalf("%d rotation requests for 3 rotations", len(calls))
	}
	keys := map[string]bool{}
	for i, c := range calls[:3] {
		if c.auth != "Bearer "+got[i].Secret {
			t.Errorf("rotation %d was not made with the newest secret", i+1)
		}
		if keys[c.key] {
			t.Errorf("rotation %d reused an earlier attempt's key", i+1)
		}
		keys[c.key] = true
	}
}

func TestRotationHappensAtAboutTwoThirdsOfThePeriod(t *testing.T) {
	clock := testclock.New()
	const ttl = time.Hour
	rs := newRotationServer(t, clock, ttl)
	updates := make(chan client.Update, 64)
	src := newSource(t, rs, clock, rs.secret(), updates)
	got, err := runUntil(t, src, updates, func(u []client.Update) bool { return len(u) == 21 })
	if err != nil {
		t.Fatal(err)
	}
	spread := map[time.Duration]bool{}
	for i := 1; i < len(got); i++ {
		d := got[i].At.Sub(got[i-1].At)
		if d < ttl*6/10 || d > ttl*74/100 {
			t.Errorf("rotation %d came %v after the previous one, want 0.6–0.74 of %v", i, d, ttl)
		}
		spread[d] = true
	}
	if len(spread) < 5 {
		t.Errorf("rotations are not jittered: %v", spread)
	}
	if st := src.State(); st.Period != ttl || st.Rotations < 20 || st.Status != "ok" {
		t.Errorf("state %+v", st)
	}
}

func TestRefusedRotationEndsTheChainWithoutRetrying(t *testing.T) {
	clock := testclock.New()
	rs := newRotationServer(t, clock, time.Hour)
	rs.script = []string{"lifetime_ended"}
	updates := make(chan client.Update, 4)
	src := newSource(t, rs, clock, rs.secret(), updates)
	_, err := runUntil(t, src, updates, func([]client.Update) bool { return false })
	if !errors.Is(err, client.ErrRotationEnded) {
		t.Fatalf("Run = %v, want ErrRotationEnded", err)
	}
	if n := len(rs.rotateCalls()); n != 1 {
		t.Errorf("%d rotation requests after a refusal", n)
	}
	if st := src.State(); st.Status != "ended" {
		t.Errorf("status %q", st.Status)
	}
	// the secret is served until it expires, then refused
	if _, err := src.Token(context.Background()); err != nil {
		t.Errorf("Token before expiry: %v", err)
	}
	clock.Add(time.Hour)
	if _, err := src.Token(context.Background()); !errors.Is(err, client.ErrTokenExpired) {
		t.Errorf("Token after expiry: %v", err)
	}
}

func TestSupersededStartingSecretIsRefusedAtStart(t *testing.T) {
	clock := testclock.New()
	rs := newRotationServer(t, clock, time.Hour)
	updates := make(chan client.Update, 4)
	src := newSource(t, rs, clock, newSecret(t), updates)
	_, err := runUntil(t, src, updates, func([]client.Update) bool { return false })
	if !errors.Is(err, client.ErrRotationEnded) {
		t.Fatalf("Run = %v", err)
	}
	if len(rs.rotateCalls()) != 0 {
		t.Error("a rotation was attempted with a secret the server refuses")
	}
}

func TestRotationGivesUpWhenTheTokenExpires(t *testing.T) {
	clock := testclock.New()
	rs := newRotationServer(t, clock, time.Hour)
	rs.script = make([]string, 1000)
	for i := range rs.script {
		rs.script[i] = "503"
	}
	updates := make(chan client.Update, 4)
	src := newSource(t, rs, clock, rs.secret(), updates)
	_, err := runUntil(t, src, updates, func([]client.Update) bool { return false })
	if !errors.Is(err, client.ErrRotationEnded) {
		t.Fatalf("Run = %v", err)
	}
	calls := rs.rotateCalls()
	if len(calls) < 5 || len(calls) > 200 {
		t.Errorf("%d attempts over the last third of an hour", len(calls))
	}
	for _, c := range calls {
		if c.key != calls[0].key {
			t.Fatal("the key changed between retries")
		}
	}
}

func TestIdempotencyKeyIsChecked(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	for _, k := range []string{"", "a b", "é", "a\n", string(long)} {
		if _, err := c.RotateSelfIdempotent(context.Background(), k, client.RotateRequest{}); !errors.Is(err, client.ErrBadIdempotencyKey) {
			t.Errorf("key %q: %v", k, err)
		}
	}
	if f.count() != 0 {
		t.Error("a bad key reached the server")
	}
	k, err := client.NewIdempotencyKey(nil)
	if err != nil || len(k) != 22 {
		t.Fatalf("NewIdempotencyKey = %q, %v", k, err)
	}
	f.answer(200, `{"id":"tok_1","token":"x"}`, nil)
	if _, err := c.RotateSelfIdempotent(context.Background(), k, client.RotateRequest{}); err != nil {
		t.Fatal(err)
	}
}

// A server that cannot replay rotations refuses the key before rotating;
// the attempt goes on without one rather than letting the token expire.
func TestRotationWithoutReplaysOnTheServerGoesOnWithoutAKey(t *testing.T) {
	clock := testclock.New()
	rs := newRotationServer(t, clock, time.Hour)
	rs.script = []string{"idempotency_unavailable", "idempotency_unavailable"}
	updates := make(chan client.Update, 16)
	src := newSource(t, rs, clock, rs.secret(), updates)
	got, err := runUntil(t, src, updates, func(u []client.Update) bool { return len(u) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	calls := rs.rotateCalls()
	if calls[0].key == "" || calls[1].key != "" || !got[1].Rotated {
		t.Fatalf("calls %+v", calls)
	}
}
