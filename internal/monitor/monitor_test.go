package monitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

// recorder is a Sink and a Suspender that keeps what it is given.
type recorder struct {
	mu        sync.Mutex
	alerts    []*Alert
	suspended []string
	suspErr   error
}

func (r *recorder) Raise(_ context.Context, a *Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
	return nil
}

func (r *recorder) Suspend(_ context.Context, id, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.suspErr != nil {
		return r.suspErr
	}
	r.suspended = append(r.suspended, id)
	return nil
}

func (r *recorder) take() []*Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.alerts
	r.alerts = nil
	return a
}

// memStore is a SnapshotStore in memory.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Get(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k], nil
}

func (s *memStore) Put(_ context.Context, k string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[k] = append([]byte(nil), b...)
	return nil
}

type fixture struct {
	t   testing.TB
	clk *testclock.Clock
	rec *recorder
	mon *Monitor
	st  *memStore
	seq uint64
}

// testConfig is DefaultConfig with learning periods of 12 hours (the
// working day of learnDay).
func testConfig() Config {
	c := DefaultConfig()
	c.NewNetwork.Learning = 12 * time.Hour
	c.OffHours.Learning = 12 * time.Hour
	c.Sharing.Learning = 12 * time.Hour
	return c
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{t: t, clk: testclock.New(), rec: &recorder{}, st: &memStore{}}
	fx.mon = fx.open(cfg)
	return fx
}

func (fx *fixture) open(cfg Config) *Monitor {
	fx.t.Helper()
	m, err := New(cfg, Options{Now: fx.clk.Now, Sink: fx.rec, Suspender: fx.rec, Store: fx.st})
	if err != nil {
		fx.t.Fatal(err)
	}
	return m
}

// obs builds an observation at the fixture's time.
func (fx *fixture) obs(k Kind, token, src string) *Observation {
	fx.seq++
	o := &Observation{Time: fx.clk.Now(), Kind: k, TokenID: token, Subject: "subj-" + token, AuditSeq: fx.seq}
	if src != "" {
		o.Source = netip.MustParseAddr(src)
	}
	return o
}

// use is one granted request: Check, then Observe.
func (fx *fixture) use(token, src string, p *TokenPolicy) Verdict {
	o := fx.obs(Grant, token, src)
	o.Policy = p
	v := fx.mon.Check(o)
	if v.Block {
		o.Kind, o.Reason, o.Status = Deny, v.Reason, 403
	}
	fx.mon.Observe(o)
	return v
}

func (fx *fixture) alerts() []*Alert {
	fx.mon.Drain(context.Background())
	return fx.rec.take()
}

func (fx *fixture) wantAlerts(detectors ...string) []*Alert {
	fx.t.Helper()
	as := fx.alerts()
	var got []string
	for _, a := range as {
		got = append(got, a.Detector)
	}
	if fmt.Sprint(got) != fmt.Sprint(detectors) {
		for _, a := range as {
			fx.t.Logf("alert: %s %s %s", a.Detector, a.TokenID, a.Summary)
		}
		fx.t.Fatalf("alerts %v, want %v", got, detectors)
	}
	return as
}

// learnDay uses token from src every 10 minutes between 08:00 and 18:00
// for a day, then moves the clock past the learning.
func (fx *fixture) learnDay(token, src string, p *TokenPolicy) {
	day := fx.clk.Now().Truncate(24 * time.Hour)
	for tm := day.Add(8 * time.Hour); tm.Before(day.Add(18 * time.Hour)); tm = tm.Add(10 * time.Minute) {
		fx.clk.Set(tm)
		fx.use(token, src, p)
	}
	fx.clk.Set(day.Add(24*time.Hour + 12*time.Hour)) // next day, noon
}

func TestUnknownNetworkIsBlockedWhenThePolicySaysSo(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    *TokenPolicy
		wantBlock bool
		action    Action
	}{
		{"default alerts", nil, false, None},
		{"policy blocks", &TokenPolicy{NewNetwork: ModeBlock}, true, Blocked},
		{"policy off", &TokenPolicy{NewNetwork: ModeOff}, false, None},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, testConfig())
			fx.learnDay("tok", "192.0.2.10", tc.policy)
			fx.wantAlerts()
			if v := fx.use("tok", "192.0.2.99", tc.policy); v.Block {
				t.Fatalf("the learned /24 blocked: %+v", v)
			}
			v := fx.use("tok", "198.51.100.4", tc.policy)
			if v.Block != tc.wantBlock || (v.Block && v.Reason != ReasonNewNetwork) {
				t.Fatalf("unknown network: %+v, want block %v", v, tc.wantBlock)
			}
			if tc.policy != nil && tc.policy.NewNetwork == ModeOff {
				fx.wantAlerts()
				return
			}
			a := fx.wantAlerts(DetectorNewNetwork)[0]
			if a.Source != "198.51.100.0/24" || a.Action != tc.action || a.TokenID != "tok" || a.Subject != "subj-tok" ||
				fmt.Sprint(a.Evidence["known_networks"]) != "[192.0.2.0/24]" || a.Evidence["known_count"] != 1 {
				t.Fatalf("alert %+v", a)
			}
		})
	}
}

func TestDeclaredNetworksAreEnforcedFromTheFirstUse(t *testing.T) {
	fx := newFixture(t, testConfig())
	p := &TokenPolicy{Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, NewNetwork: ModeBlock}
	if v := fx.use("tok", "10.1.200.3", p); v.Block {
		t.Fatalf("declared network blocked: %+v", v)
	}
	if v := fx.use("tok", "10.2.0.1", p); !v.Block || v.Reason != ReasonNewNetwork {
		t.Fatalf("outside the declared networks on the first day: %+v", v)
	}
	if a := fx.wantAlerts(DetectorNewNetwork)[0]; a.Evidence["declared"] != true {
		t.Fatalf("evidence %v", a.Evidence)
	}
}

func TestIPv6NetworksAreLearnedBySlash64(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.learnDay("tok", "2001:db8:1:2::10", nil)
	fx.use("tok", "2001:db8:1:2:ffff::1", nil)
	fx.wantAlerts()
	fx.use("tok", "2001:db8:1:3::10", nil)
	if a := fx.wantAlerts(DetectorNewNetwork)[0]; a.Source != "2001:db8:1:3::/64" {
		t.Fatalf("source %q", a.Source)
	}
}

func TestRateSpikeSuspendsTheToken(t *testing.T) {
	fx := newFixture(t, testConfig())
	// a steady token: 2 requests a second for ten minutes
	for range 600 {
		fx.use("svc", "192.0.2.1", nil)
		fx.clk.Add(500 * time.Millisecond)
		fx.use("svc", "192.0.2.1", nil)
		fx.clk.Add(500 * time.Millisecond)
	}
	fx.wantAlerts()
	// then 60 requests within one second
	start := fx.clk.Now()
	for i := range 60 {
		fx.clk.Set(start.Add(time.Duration(i) * 15 * time.Millisecond))
		fx.use("svc", "192.0.2.1", nil)
	}
	a := fx.wantAlerts(DetectorRateSpike)[0]
	if a.Action != Suspended || a.Severity != High || len(fx.rec.suspended) != 1 || fx.rec.suspended[0] != "svc" {
		t.Fatalf("alert %+v, suspended %v", a, fx.rec.suspended)
	}
	if a.Evidence["window"] != "1s" || a.Evidence["count"].(float64) != 21 || len(a.AuditSeqs) == 0 {
		t.Fatalf("evidence %v seqs %v", a.Evidence, a.AuditSeqs)
	}
}

func TestRateBelowTheFloorIsNotASpike(t *testing.T) {
	fx := newFixture(t, testConfig())
	// an idle token that wakes up with 15 requests in a second: above
	// any deviation of its baseline of zero, below the floor of 20
	fx.use("tok", "192.0.2.1", nil)
	fx.clk.Add(time.Hour)
	for range 15 {
		fx.use("tok", "192.0.2.1", nil)
	}
	fx.wantAlerts()
}

func TestTokenPolicyCanKeepATokenFromBeingSuspended(t *testing.T) {
	fx := newFixture(t, testConfig())
	p := &TokenPolicy{NoSuspend: true}
	for range 30 {
		fx.use("tok", "192.0.2.1", p)
	}
	if a := fx.wantAlerts(DetectorRateSpike)[0]; a.Action != None || len(fx.rec.suspended) != 0 {
		t.Fatalf("alert %+v, suspended %v", a, fx.rec.suspended)
	}
}

func TestAFailedSuspensionIsSaidInTheAlert(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.rec.suspErr = errors.New("store down")
	for range 30 {
		fx.use("tok", "192.0.2.1", nil)
	}
	if a := fx.wantAlerts(DetectorRateSpike)[0]; a.Action != None || a.Evidence["suspend_error"] != "store down" {
		t.Fatalf("alert %+v", a)
	}
}

func (fx *fixture) deny(token, src, reason string) {
	o := fx.obs(Deny, token, src)
	o.Reason, o.Status = reason, 403
	fx.mon.Observe(o)
}

func TestProbingBurstSuspendsTheToken(t *testing.T) {
	fx := newFixture(t, testConfig())
	// denials spread out are not a burst
	for range 20 {
		fx.deny("tok", "192.0.2.1", "insufficient_scope")
		fx.clk.Add(2 * time.Second)
	}
	// nor are denials of other reasons
	for range 20 {
		fx.deny("tok", "192.0.2.1", "rate_limited")
		fx.clk.Add(100 * time.Millisecond)
	}
	fx.wantAlerts()
	fx.clk.Add(time.Minute)
	for i := range 10 {
		reason := "insufficient_scope"
		if i%2 == 1 {
			reason = "compartment"
		}
		fx.deny("tok", "192.0.2.1", reason)
		fx.clk.Add(500 * time.Millisecond)
	}
	a := fx.wantAlerts(DetectorProbing)[0]
	if a.Action != Suspended || len(a.AuditSeqs) != 8 || a.AuditSeqs[0] != fx.seq {
		t.Fatalf("alert %+v", a)
	}
}

func TestBruteForceSourceIsRefusedAndAlertedOnce(t *testing.T) {
	cfg := testConfig()
	cfg.BruteForce.BlockAfter = 5
	fx := newFixture(t, cfg)
	src := netip.MustParseAddr("203.0.113.7")
	for range 12 {
		o := &Observation{Time: fx.clk.Now(), Kind: AuthFailure, Source: src, Reason: "invalid_token"}
		fx.mon.Observe(o)
	}
	v := fx.mon.Check(&Observation{Time: fx.clk.Now(), Kind: Grant, TokenID: "good", Source: src})
	if !v.Block || v.Reason != ReasonTooManyFailures || v.RetryAfter != cfg.BruteForce.CoolOff {
		t.Fatalf("verdict %+v", v)
	}
	if v := fx.mon.Check(&Observation{Time: fx.clk.Now(), Source: netip.MustParseAddr("203.0.113.8")}); v.Block {
		t.Fatalf("another source refused: %+v", v)
	}
	a := fx.wantAlerts(DetectorBruteForce)[0]
	if a.Action != IPBlocked || a.Source != "203.0.113.7" || a.TokenID != "" {
		t.Fatalf("alert %+v", a)
	}
	// through the gateway's throttle too
	th := fx.mon.Throttle()
	for range 5 {
		th.Fail(netip.MustParseAddr("2001:db8::1"))
	}
	if v := th.Check(netip.MustParseAddr("2001:db8::2")); !v.Blocked() {
		t.Fatalf("same /64 not refused: %+v", v)
	}
	if a := fx.wantAlerts(DetectorBruteForce)[0]; a.Source != "2001:db8::/64" {
		t.Fatalf("source %q", a.Source)
	}
}

func TestSharingFromMoreSourcesThanEverSuspends(t *testing.T) {
	fx := newFixture(t, testConfig())
	// learned: two addresses per window at most
	day := fx.clk.Now().Truncate(24 * time.Hour)
	for tm := day.Add(8 * time.Hour); tm.Before(day.Add(18 * time.Hour)); tm = tm.Add(5 * time.Minute) {
		fx.clk.Set(tm)
		fx.use("tok", "192.0.2.1", nil)
		fx.use("tok", "192.0.2.2", nil)
	}
	fx.clk.Set(day.Add(36 * time.Hour))
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		fx.use("tok", ip, nil)
	}
	fx.wantAlerts() // three: within max(2+1, 4-1)
	fx.use("tok", "192.0.2.4", nil)
	a := fx.wantAlerts(DetectorSharing)[0]
	if a.Action != Suspended || a.Severity != Critical || a.Evidence["distinct_sources"] != 4 || a.Evidence["most_before"] != 2 {
		t.Fatalf("alert %+v", a)
	}
	fx.use("tok", "192.0.2.5", nil)
	fx.wantAlerts() // once per window
}

func TestEveryBreakGlassUseAlerts(t *testing.T) {
	fx := newFixture(t, testConfig())
	for range 3 {
		o := fx.obs(Grant, "doc", "192.0.2.1")
		o.BreakGlass = true
		fx.mon.Check(o)
		fx.mon.Observe(o)
	}
	as := fx.wantAlerts(DetectorBreakGlass, DetectorBreakGlass, DetectorBreakGlass)
	if as[2].Severity != High || as[2].AuditSeqs[0] != fx.seq {
		t.Fatalf("alert %+v", as[2])
	}
}

func TestOffHoursAreDeclaredOrLearned(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	for _, tc := range []struct {
		name      string
		policy    *TokenPolicy
		hour      int // UTC, next day
		wantAlert bool
		wantBlock bool
	}{
		{"learned, within", nil, 13, false, false},
		{"learned, the hour after", nil, 18, false, false},
		{"learned, at night", nil, 3, true, false},
		{"declared block, at night", &TokenPolicy{Hours: 0xFF00, OffHours: ModeBlock}, 3, true, true}, // 08..15 UTC
		{"declared block, within", &TokenPolicy{Hours: 0xFF00, OffHours: ModeBlock}, 9, false, false},
		{"declared in a zone", &TokenPolicy{Hours: 0xFF00, Loc: est, OffHours: ModeBlock}, 9, true, true}, // 04:00 EST
		{"off", &TokenPolicy{OffHours: ModeOff}, 3, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, testConfig())
			fx.learnDay("tok", "192.0.2.1", nil)
			fx.wantAlerts()
			day := fx.clk.Now().Truncate(24 * time.Hour)
			fx.clk.Set(day.Add(time.Duration(tc.hour)*time.Hour + 30*time.Minute))
			v := fx.use("tok", "192.0.2.1", tc.policy)
			if v.Block != tc.wantBlock || (v.Block && v.Reason != ReasonOffHours) {
				t.Fatalf("verdict %+v, want block %v", v, tc.wantBlock)
			}
			if !tc.wantAlert {
				fx.wantAlerts()
				return
			}
			if a := fx.wantAlerts(DetectorOffHours)[0]; (a.Action == Blocked) != tc.wantBlock {
				t.Fatalf("alert %+v", a)
			}
		})
	}
}

func TestAlertsOfOneDetectorAreCooledDownButBlockingIsNot(t *testing.T) {
	fx := newFixture(t, testConfig())
	p := &TokenPolicy{NewNetwork: ModeBlock}
	fx.learnDay("tok", "192.0.2.1", p)
	for range 5 {
		if v := fx.use("tok", "198.51.100.1", p); !v.Block {
			t.Fatal("not blocked")
		}
		fx.clk.Add(time.Minute)
	}
	fx.wantAlerts(DetectorNewNetwork)
	fx.clk.Add(10 * time.Minute)
	fx.use("tok", "198.51.100.1", p)
	fx.wantAlerts(DetectorNewNetwork)
}

func TestTrackedTokensAreBoundedAndTheLeastRecentlyUsedGoesFirst(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTokens = nShards // one per shard
	fx := newFixture(t, cfg)
	for i := range 10 * nShards {
		fx.use(fmt.Sprintf("tok-%d", i), "192.0.2.1", nil)
	}
	if n := fx.mon.Stats().Tokens; n > nShards {
		t.Fatalf("%d tokens tracked, bound %d", n, nShards)
	}
	// within a shard, the token used last stays
	sh := fx.mon.shard("keep")
	var other string
	for i := 0; ; i++ {
		if id := fmt.Sprintf("x-%d", i); fx.mon.shard(id) == sh {
			other = id
			break
		}
	}
	fx.use("keep", "192.0.2.1", nil)
	fx.use(other, "192.0.2.1", nil)
	if sh.m["keep"] != nil || sh.m[other] == nil || len(sh.m) != 1 {
		t.Fatalf("shard holds %d, keep %v other %v", len(sh.m), sh.m["keep"] != nil, sh.m[other] != nil)
	}
}

func TestFullQueueDropsFindingsAndNeverBlocks(t *testing.T) {
	cfg := testConfig()
	cfg.Queue = 2
	fx := newFixture(t, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10 {
			o := fx.obs(Grant, "doc", "192.0.2.1")
			o.BreakGlass = true
			fx.mon.Observe(o)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Observe blocked on a full queue")
	}
	if s := fx.mon.Stats(); s.Dropped != 8 {
		t.Fatalf("dropped %d, want 8", s.Dropped)
	}
	fx.wantAlerts(DetectorBreakGlass, DetectorBreakGlass)
}

func TestRunActsWithinASecond(t *testing.T) {
	fx := newFixture(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fx.mon.Run(ctx)
	for range 30 {
		fx.use("tok", "192.0.2.1", nil)
	}
	deadline := time.Now().Add(time.Second) // a network-style deadline: the goroutine, not the clock
	for {
		fx.rec.mu.Lock()
		n := len(fx.rec.suspended)
		fx.rec.mu.Unlock()
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not suspended within a second")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDisabledMonitorDoesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Enabled = false
	fx := newFixture(t, cfg)
	for range 100 {
		o := fx.obs(Grant, "doc", "192.0.2.1")
		o.BreakGlass = true
		fx.mon.Check(o)
		fx.mon.Observe(o)
		fx.mon.Observe(&Observation{Kind: AuthFailure, Source: o.Source})
	}
	fx.wantAlerts()
	if s := fx.mon.Stats(); s.Tokens != 0 || s.Sources != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestConfigOutOfRangeIsRefused(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"max tokens":        func(c *Config) { c.MaxTokens = 0 },
		"queue":             func(c *Config) { c.Queue = 0 },
		"block rate":        func(c *Config) { c.RateSpike.Mode = ModeBlock },
		"k":                 func(c *Config) { c.RateSpike.K = 0 },
		"alpha":             func(c *Config) { c.RateSpike.Alpha = 1 },
		"denials":           func(c *Config) { c.Probing.Denials = 33 },
		"prefixes":          func(c *Config) { c.NewNetwork.MaxPrefixes = 17 },
		"min sources":       func(c *Config) { c.Sharing.MinSources = 40 },
		"brute force alert": func(c *Config) { c.BruteForce.Mode = ModeAlert },
		"brute force block": func(c *Config) { c.BruteForce.BlockAfter = 0 },
		"learning":          func(c *Config) { c.OffHours.Learning = 0 },
		"unknown mode":      func(c *Config) { c.NewNetwork.Mode = 9 },
	} {
		c := DefaultConfig()
		mut(&c)
		if _, err := New(c, Options{Now: testclock.New().Now}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if _, err := New(DefaultConfig(), Options{}); !errors.Is(err, ErrConfig) {
		t.Errorf("no clock: %v", err)
	}
}

func TestConcurrentUseWhileRunningAndSnapshotting(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTokens = 128
	cfg.SnapshotEvery = time.Millisecond
	fx := newFixture(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { fx.mon.Run(ctx); close(ran) }()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := fx.clk.Now()
			for i := range 5000 {
				o := &Observation{Time: base.Add(time.Duration(i) * time.Millisecond), Kind: Grant,
					TokenID: fmt.Sprintf("tok-%d", (i*7+g)%300), Source: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
					BreakGlass: i%500 == 0, AuditSeq: uint64(i)}
				fx.mon.Check(o)
				fx.mon.Observe(o)
				if i%3 == 0 {
					o.Kind, o.Reason = Deny, "insufficient_scope"
					fx.mon.Observe(o)
				}
				if i%50 == 0 {
					fx.mon.Observe(&Observation{Kind: AuthFailure, Source: o.Source})
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-ran
	if err := fx.mon.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := fx.mon.Stats().Tokens; n > cfg.MaxTokens+nShards {
		t.Fatalf("%d tokens tracked", n)
	}
	m := fx.open(cfg)
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestANewTokenIsHeldToItsSubjectsHours(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxSubjects int
		hour        int
		wantAlert   bool
	}{
		{"at night", 100, 3, true},
		{"in the subject's hours", 100, 11, false},
		{"subjects off", 0, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.OffHours.MaxSubjects = tc.maxSubjects
			fx := newFixture(t, cfg)
			fx.learnDay("session-1", "192.0.2.1", nil) // subject subj-session-1
			fx.wantAlerts()
			day := fx.clk.Now().Truncate(24 * time.Hour)
			fx.clk.Set(day.Add(time.Duration(tc.hour)*time.Hour + 5*time.Minute))
			o := fx.obs(Grant, "session-2", "192.0.2.1")
			o.Subject = "subj-session-1" // the same person's next token
			fx.mon.Check(o)
			fx.mon.Observe(o)
			if !tc.wantAlert {
				fx.wantAlerts()
				return
			}
			if a := fx.wantAlerts(DetectorOffHours)[0]; a.TokenID != "session-2" || a.Subject != "subj-session-1" {
				t.Fatalf("alert %+v", a)
			}
		})
	}
}

func TestAStillLearningSubjectHoldsNoTokenToItsHours(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.use("a", "192.0.2.1", nil) // subject subj-a starts learning at noon
	fx.clk.Add(2 * time.Hour)
	o := fx.obs(Grant, "b", "192.0.2.1")
	o.Subject = "subj-a"
	fx.mon.Check(o)
	fx.mon.Observe(o)
	fx.wantAlerts()
}

func TestSubjectTableIsBoundedAndForgetsTheLeastRecentlyUsed(t *testing.T) {
	tab := newSubjectTable(nShards * 2) // two slots a stripe
	now := testclock.Start()
	for i := range 10_000 {
		tab.learn(subjectKey(fmt.Sprint("s", i)), 9, now.Add(time.Duration(i)), time.Hour)
	}
	n := 0
	tab.each(func(subjectSlot) { n++ })
	if n > nShards*2 {
		t.Fatalf("%d subjects kept, bound %d", n, nShards*2)
	}
	// the last one learned is kept, and learns until its learning is over
	tab.learn(subjectKey("s9999"), 10, now.Add(time.Hour), time.Hour)
	if h, ok := tab.hours(subjectKey("s9999"), now.Add(2*time.Hour), time.Hour); !ok || h != 1<<9|1<<10 {
		t.Fatalf("hours %b, learned %v", h, ok)
	}
}

func TestANewNetworkIsAlertedOnceWhenItIsNotBlocked(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.learnDay("tok", "192.0.2.1", nil)
	for range 3 {
		fx.use("tok", "198.51.100.1", nil)
		fx.clk.Add(time.Hour) // past any cooldown
	}
	fx.use("tok", "198.51.100.200", nil) // the same /24
	fx.wantAlerts(DetectorNewNetwork)
	fx.use("tok", "203.0.113.1", nil) // another one
	fx.wantAlerts(DetectorNewNetwork)
}

// slowStore is a SnapshotStore whose Put waits until it is released.
type slowStore struct {
	memStore
	release chan struct{}
}

func (s *slowStore) Put(ctx context.Context, k string, b []byte) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.memStore.Put(ctx, k, b)
}

func TestASlowSnapshotStoreDoesNotDelaySuspensions(t *testing.T) {
	cfg := testConfig()
	cfg.SnapshotEvery = time.Millisecond
	fx := newFixture(t, cfg)
	slow := &slowStore{release: make(chan struct{})}
	m, err := New(cfg, Options{Now: fx.clk.Now, Sink: fx.rec, Suspender: fx.rec, Store: slow})
	if err != nil {
		t.Fatal(err)
	}
	fx.mon = m
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { m.Run(ctx); close(ran) }()
	defer func() { close(slow.release); cancel(); <-ran }()
	time.Sleep(10 * time.Millisecond) // a snapshot is now stuck in Put
	for range 30 {
		fx.use("tok", "192.0.2.1", nil)
	}
	deadline := time.Now().Add(time.Second)
	for {
		fx.rec.mu.Lock()
		n := len(fx.rec.suspended)
		fx.rec.mu.Unlock()
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not suspended within a second while a snapshot is stuck")
		}
		time.Sleep(time.Millisecond)
	}
}
