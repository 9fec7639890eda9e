package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/bruteforce"
)

// lowDisk is a Storage whose answer the test sets.
type lowDisk struct{ low atomic.Bool }

func (l *lowDisk) Low() error {
	if l.low.Load() {
		return errors.New("low disk space: 10 MiB free, below the watermark of 1 GiB")
	}
	return nil
}

func TestADenialThatCannotBeRecordedIsAnswered503(t *testing.T) {
	fx := newFixture(t)
	secret, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	fx.rec.fail.Store(true)
	for name, c := range map[string]call{
		"no token":           {path: "/fhir/Patient/1"},
		"invalid token":      {path: "/fhir/Patient/1", secret: "phi_notatoken"},
		"insufficient scope": {path: "/billing/invoices/secret", secret: secret},
		"no upstream":        {path: "/nowhere/1", secret: secret},
		"forward auth":       {path: "/v1/authz", header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/1"}},
	} {
		r := fx.do(t, c)
		if r.status != http.StatusServiceUnavailable || r.code != CodeAuditUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %s (Retry-After %q), want 503 %s: a denial was answered unrecorded", name, r.status, r.code, r.header.Get("Retry-After"), CodeAuditUnavailable)
		}
	}
	fx.rec.fail.Store(false)
	if r := fx.do(t, call{path: "/fhir/Patient/1"}); r.status != http.StatusUnauthorized {
		t.Fatalf("with the recorder back: %d, want 401", r.status)
	}
}

func TestLowSpaceRefusesEveryRequestBeforeAnythingIsWritten(t *testing.T) {
	disk := &lowDisk{}
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Storage = disk }})
	secret, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	disk.low.Store(true)
	for name, c := range map[string]call{
		"granted":      {path: "/billing/invoices/1", secret: secret},
		"no token":     {path: "/billing/invoices/1"},
		"forward auth": {path: "/v1/authz", secret: secret, header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/1"}},
		"trace":        {method: http.MethodTrace, path: "/billing/invoices/1"},
	} {
		r := fx.do(t, c)
		if r.status != http.StatusServiceUnavailable || r.code != CodeStorageLow || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %s, want 503 %s with Retry-After", name, r.status, r.code, CodeStorageLow)
		}
	}
	if r := fx.do(t, call{path: "/healthz"}); r.status != http.StatusOK {
		t.Errorf("/healthz while low: %d", r.status)
	}
	fx.rec.mu.Lock()
	n := len(fx.rec.events)
	fx.rec.mu.Unlock()
	if n != 0 || fx.api.count.Load() != 0 {
		t.Fatalf("while low: %d events recorded, %d requests forwarded; want none", n, fx.api.count.Load())
	}
	disk.low.Store(false) // space returns: no restart
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: secret}); r.status != http.StatusOK {
		t.Fatalf("after space returned: %d %s, want 200", r.status, r.code)
	}
}

func TestRepeatedInvalidTokensAreRefusedForTheCoolOff(t *testing.T) {
	var guard *bruteforce.Guard
	cfg := bruteforce.Config{SlowAfter: 0, BlockAfter: 3, Window: time.Minute, CoolOff: 5 * time.Minute, MaxSources: 100}
	fx := newFixture(t, fixtureOpts{options: func(fx *fixture, o *Options) {
		var err error
		if guard, err = bruteforce.New(cfg, fx.clk.Now); err != nil {
			t.Fatal(err)
		}
		o.Throttle = guard
	}})
	secret, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	bad := "phi_" + "0123456789abcdef0123456789abcdef0123456789abcdefX" // well formed? no: its checksum fails
	for i := range cfg.BlockAfter {
		if r := fx.do(t, call{path: "/billing/invoices/1", secret: bad}); r.status != http.StatusUnauthorized {
			t.Fatalf("invalid token %d: %d, want 401", i+1, r.status)
		}
	}
	for name, c := range map[string]call{
		"invalid token":            {path: "/billing/invoices/1", secret: bad},
		"valid token, same source": {path: "/billing/invoices/1", secret: secret},
		"forward auth":             {path: "/v1/authz", secret: secret, header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/records/r/1"}},
	} {
		r := fx.do(t, c)
		if r.status != http.StatusTooManyRequests || r.code != CodeTooManyFailures || r.header.Get("Retry-After") != "300" {
			t.Errorf("%s while blocked: %d %s Retry-After %q, want 429 %s 300", name, r.status, r.code, r.header.Get("Retry-After"), CodeTooManyFailures)
		}
	}
	evs := fx.rec.byRequest(t, fx.do(t, call{path: "/billing/invoices/1", secret: bad}).rid, 1)
	if len(evs) != 1 || evs[0].Reason != CodeTooManyFailures || evs[0].Status != http.StatusTooManyRequests {
		t.Fatalf("the refusal is not recorded as one: %+v", evs)
	}
	fx.clk.Add(cfg.CoolOff)
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: secret}); r.status != http.StatusOK {
		t.Fatalf("after the cool-off: %d %s, want 200", r.status, r.code)
	}
}

func TestAValidTokenDoesNotCountAsAFailure(t *testing.T) {
	cfg := bruteforce.Config{BlockAfter: 2, Window: time.Minute, CoolOff: time.Minute, MaxSources: 10}
	fx := newFixture(t, fixtureOpts{options: func(fx *fixture, o *Options) {
		g, _ := bruteforce.New(cfg, fx.clk.Now)
		o.Throttle = g
	}})
	secret, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	for range 5 {
		// granted, and refused for scope: neither is a guess
		fx.do(t, call{path: "/billing/invoices/1", secret: secret})
		fx.do(t, call{path: "/billing/invoices/secret", secret: secret})
	}
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: secret}); r.status != http.StatusOK {
		t.Fatalf("%d %s, want 200", r.status, r.code)
	}
}

func TestSlowedAttemptsWaitBeforeTheirTokenIsChecked(t *testing.T) {
	const delay = 300 * time.Millisecond
	cfg := bruteforce.Config{SlowAfter: 1, BlockAfter: 100, Window: time.Minute, Delay: delay, CoolOff: time.Minute, MaxSources: 10}
	fx := newFixture(t, fixtureOpts{options: func(fx *fixture, o *Options) {
		g, _ := bruteforce.New(cfg, fx.clk.Now)
		o.Throttle = g
	}})
	fx.do(t, call{path: "/billing/invoices/1", secret: "phi_nope"})
	start := time.Now()
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: "phi_nope"}); r.status != http.StatusUnauthorized {
		t.Fatalf("%d, want 401", r.status)
	}
	if d := time.Since(start); d < delay {
		t.Fatalf("a slowed attempt took %v, less than %v", d, delay)
	}
}

// Anyone can cause a denial before authentication, so such a denial costs
// the process log no line at the default level; a token's denial does.
func TestAnonymousDenialsWriteNoLogLineEach(t *testing.T) {
	var logs lockedBuffer
	fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	for range 20 {
		if r := fx.do(t, call{path: "/billing/invoices/1"}); r.status != http.StatusUnauthorized {
			t.Fatalf("no token: %d", r.status)
		}
	}
	if strings.Contains(logs.String(), "request denied") {
		t.Fatalf("anonymous denials were logged one by one:\n%s", logs.String())
	}
	secret, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	if r := fx.do(t, call{path: "/billing/invoices/secret", secret: secret}); r.status != http.StatusForbidden {
		t.Fatalf("a token without the scope: %d", r.status)
	}
	if n := strings.Count(logs.String(), "request denied"); n != 1 {
		t.Fatalf("a token's denial logged %d times, want once:\n%s", n, logs.String())
	}
}
