package api

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/bruteforce"
	"github.com/phigate/phigate/internal/testclock"
)

type lowDisk struct{ low atomic.Bool }

func (l *lowDisk) Low() error {
	if l.low.Load() {
		return errors.New("low disk space: /data has 10.0 MiB free, below the watermark of 1.0 GiB")
	}
	return nil
}

// recorded is an Options.Record that keeps entries, or fails.
type recorded struct {
	mu      sync.Mutex
	entries []audit.Entry
	fail    atomic.Bool
}

func (rc *recorded) record(_ context.Context, e *audit.Entry) error {
	if rc.fail.Load() {
		return errors.New("disk full")
	}
	rc.mu.Lock()
	rc.entries = append(rc.entries, *e)
	rc.mu.Unlock()
	return nil
}

func newProtectedEnv(t *testing.T, o func(*Options)) *env {
	t.Helper()
	a, st, secret := testAuthority(t)
	opts := Options{Ready: st.Ping, Logger: newTestLogger(&bytes.Buffer{})}
	o(&opts)
	srv := httptest.NewTLSServer(New(a, opts))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: &bytes.Buffer{}}
}

func TestAnAdminDenialThatCannotBeRecordedIsAnswered503(t *testing.T) {
	rc := &recorded{}
	e := newProtectedEnv(t, func(o *Options) { o.Record = rc.record })
	rc.fail.Store(true)
	for name, bearer := range map[string]string{"no token": "", "invalid token": "phi_nope"} {
		r := e.do("GET", "/v1/tokens", bearer, "", nil)
		if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %s, want 503 audit_unavailable: a denial was answered unrecorded", name, r.status, code)
		}
	}
	rc.fail.Store(false)
	if r := e.do("GET", "/v1/tokens", "", "", nil); r.status != 401 {
		t.Fatalf("with the log back: %d", r.status)
	}
	if len(rc.entries) != 1 || rc.entries[0].Reason != "missing_token" || rc.entries[0].Action != audit.ActionAuthFailed {
		t.Fatalf("entries %+v, want one auth.failed missing_token", rc.entries)
	}
}

func TestLowSpaceRefusesAdminRequestsAndReadyzSaysWhy(t *testing.T) {
	disk := &lowDisk{}
	rc := &recorded{}
	e := newProtectedEnv(t, func(o *Options) { o.Storage, o.Record = disk, rc.record })
	disk.low.Store(true)
	for _, path := range []string{"/v1/tokens", "/v1/tokens/self", "/nowhere"} {
		r := e.do("GET", path, e.admin, "", nil)
		if code, _ := errCode(t, r); r.status != 503 || code != "storage_low" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s while low: %d %s, want 503 storage_low", path, r.status, code)
		}
	}
	r := e.do("GET", "/readyz", "", "", nil)
	if code, _ := errCode(t, r); r.status != 503 || code != "storage_low" || !strings.Contains(string(r.body), "below the watermark") {
		t.Errorf("/readyz while low: %d %s, want 503 saying why", r.status, r.body)
	}
	if r := e.do("GET", "/healthz", "", "", nil); r.status != 200 {
		t.Errorf("/healthz while low: %d", r.status)
	}
	if len(rc.entries) != 0 {
		t.Fatalf("%d entries recorded while low", len(rc.entries))
	}
	disk.low.Store(false)
	if r := e.do("GET", "/readyz", "", "", nil); r.status != 200 {
		t.Fatalf("/readyz after space returned: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/tokens", e.admin, "", nil); r.status != 200 {
		t.Fatalf("after space returned: %d %s", r.status, r.body)
	}
}

func TestRepeatedInvalidTokensOnTheAdminAPIAreRefused(t *testing.T) {
	clk := testclock.New()
	g, err := bruteforce.New(bruteforce.Config{BlockAfter: 3, Window: time.Minute, CoolOff: time.Minute, MaxSources: 10}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	rc := &recorded{}
	e := newProtectedEnv(t, func(o *Options) { o.Throttle, o.Record = g, rc.record })
	for range 3 {
		if r := e.do("GET", "/v1/tokens", "phi_nope", "", nil); r.status != 401 {
			t.Fatalf("%d, want 401", r.status)
		}
	}
	r := e.do("GET", "/v1/tokens", e.admin, "", nil)
	if code, _ := errCode(t, r); r.status != 429 || code != "too_many_failures" || r.header.Get("Retry-After") != "60" {
		t.Fatalf("blocked source with a valid token: %d %s Retry-After %q, want 429 too_many_failures 60", r.status, code, r.header.Get("Retry-After"))
	}
	if last := rc.entries[len(rc.entries)-1]; last.Reason != "too_many_failures" {
		t.Fatalf("the refusal was not recorded: %+v", last)
	}
	clk.Add(time.Minute)
	if r := e.do("GET", "/v1/tokens", e.admin, "", nil); r.status != 200 {
		t.Fatalf("after the cool-off: %d", r.status)
	}
}
