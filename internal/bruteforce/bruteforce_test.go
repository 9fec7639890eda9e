package bruteforce

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

func newGuard(t *testing.T, cfg Config) (*Guard, *testclock.Clock) {
	t.Helper()
	c := testclock.New()
	g, err := New(cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

var small = Config{SlowAfter: 2, BlockAfter: 4, Window: time.Minute, Delay: 100 * time.Millisecond, CoolOff: 5 * time.Minute, MaxSources: 4}

func TestRepeatedFailuresAreSlowedThenRefusedForTheCoolOff(t *testing.T) {
	g, c := newGuard(t, small)
	a := netip.MustParseAddr("192.0.2.7")
	want := []Verdict{{}, {Delay: small.Delay}, {Delay: small.Delay}, {RetryAfter: small.CoolOff}}
	for i, w := range want {
		if got := g.Fail(a); got != w {
			t.Fatalf("after failure %d: %+v, want %+v", i+1, got, w)
		}
	}
	c.Add(time.Minute)
	if v := g.Check(a); !v.Blocked() || v.RetryAfter != 4*time.Minute {
		t.Fatalf("a minute into the cool-off: %+v, want blocked for 4m", v)
	}
	if v := g.Check(netip.MustParseAddr("192.0.2.8")); v != (Verdict{}) {
		t.Fatalf("another source: %+v, want nothing", v)
	}
	c.Add(4 * time.Minute)
	if v := g.Check(a); v != (Verdict{}) {
		t.Fatalf("after the cool-off: %+v, want a fresh start", v)
	}
	if v := g.Fail(a); v != (Verdict{}) {
		t.Fatalf("first failure after the cool-off: %+v, want none", v)
	}
}

func TestFailuresOutsideTheWindowAreForgotten(t *testing.T) {
	g, c := newGuard(t, small)
	a := netip.MustParseAddr("2001:db8::1")
	for range 3 {
		g.Fail(a)
		c.Add(31 * time.Second) // two failures never share a window of 1m... except neighbours
	}
	if v := g.Check(a); v.Blocked() {
		t.Fatalf("spread failures blocked: %+v", v)
	}
}

func TestAnIPv6HostCannotEscapeByChangingItsInterfaceID(t *testing.T) {
	g, _ := newGuard(t, small)
	for i := range small.BlockAfter {
		g.Fail(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
	}
	if v := g.Check(netip.MustParseAddr("2001:db8::ffff")); !v.Blocked() {
		t.Fatalf("the /64 is not blocked: %+v", v)
	}
	if v := g.Check(netip.MustParseAddr("2001:db8:0:1::1")); v.Blocked() {
		t.Fatalf("another /64 is blocked: %+v", v)
	}
}

func TestMemoryIsBoundedAndBlockedSourcesAreNotEvicted(t *testing.T) {
	g, c := newGuard(t, small)
	blocked := netip.MustParseAddr("198.51.100.1")
	for range small.BlockAfter {
		g.Fail(blocked)
	}
	for i := range 10_000 {
		g.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if i%1000 == 0 {
			c.Add(time.Second)
		}
	}
	if n := g.Len(); n > small.MaxSources {
		t.Fatalf("%d sources tracked, more than %d", n, small.MaxSources)
	}
	if v := g.Check(blocked); !v.Blocked() {
		t.Fatalf("a crowd of new sources unblocked a blocked one: %+v", v)
	}
}

func TestAFullTableOfBlockedSourcesTracksNoNewOne(t *testing.T) {
	g, _ := newGuard(t, small)
	for i := range small.MaxSources {
		for range small.BlockAfter {
			g.Fail(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
		}
	}
	if v := g.Fail(netip.MustParseAddr("10.0.1.1")); v != (Verdict{}) {
		t.Fatalf("untracked source: %+v", v)
	}
	if n := g.Len(); n != small.MaxSources {
		t.Fatalf("%d sources, want %d", n, small.MaxSources)
	}
}

func TestUnknownSourceIsOneSource(t *testing.T) {
	g, _ := newGuard(t, small)
	for range small.BlockAfter {
		g.Fail(netip.Addr{})
	}
	if !g.Check(netip.Addr{}).Blocked() {
		t.Fatal("the unknown source is not blocked")
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"no block":      func(c *Config) { c.BlockAfter = 0 },
		"no window":     func(c *Config) { c.Window = 0 },
		"no cool-off":   func(c *Config) { c.CoolOff = 0 },
		"no sources":    func(c *Config) { c.MaxSources = 0 },
		"negative wait": func(c *Config) { c.Delay = -1 },
	} {
		cfg := DefaultConfig()
		mut(&cfg)
		if _, err := New(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	g, _ := New(DefaultConfig(), nil)
	g.Fail(netip.MustParseAddr("192.0.2.1"))
	a := netip.MustParseAddr("192.0.2.2")
	b.ReportAllocs()
	for b.Loop() {
		g.Check(a)
	}
}

func TestOnlyTheFailureThatBlocksASourceSaysSo(t *testing.T) {
	g, c := newGuard(t, small)
	a := netip.MustParseAddr("192.0.2.9")
	var blocks []int
	for i := range 3 * small.BlockAfter {
		if _, blocked := g.FailBlocking(a); blocked {
			blocks = append(blocks, i+1)
		}
	}
	if len(blocks) != 1 || blocks[0] != small.BlockAfter {
		t.Fatalf("blocking failures %v, want only the %dth", blocks, small.BlockAfter)
	}
	// it kept failing through the cool-off: its first failure after it
	// blocks it again, and says so once more
	c.Add(small.CoolOff)
	if _, blocked := g.FailBlocking(a); !blocked {
		t.Fatal("the failure that blocks again after the cool-off does not say so")
	}
	if _, blocked := g.FailBlocking(a); blocked {
		t.Fatal("a failure while blocked says it blocked")
	}
}

func randomSource(r *rand.Rand) netip.Addr {
	if r.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	for j := 2; j < 8; j++ {
		b[j] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(b)
}

func TestAFloodOfNewSourcesDoesNotResetAPersistentGuesser(t *testing.T) {
	cfg := Config{BlockAfter: 20, Window: time.Minute, CoolOff: 5 * time.Minute, MaxSources: 100, SketchWidth: 1 << 12}
	g, c := newGuard(t, cfg)
	r := rand.New(rand.NewPCG(7, 7))
	guesser := netip.MustParseAddr("203.0.113.66")
	for range cfg.BlockAfter {
		g.Fail(guesser)
		for range 500 { // enough new sources to evict it every time
			g.Fail(randomSource(r))
		}
		c.Add(time.Second)
	}
	if v := g.Check(guesser); !v.Blocked() {
		t.Fatalf("a source that failed %d times within the window, among a flood, is not refused: %+v", cfg.BlockAfter, v)
	}
}

func TestACrowdedSketchDoesNotBlockAnInnocentSource(t *testing.T) {
	if testing.Short() {
		t.Skip("300,000 failures")
	}
	// 300,000 failures of distinct sources in one window over 1<<15
	// counters a row: the load of a million over the default 1<<17
	cfg := Config{SlowAfter: 5, BlockAfter: 20, Window: time.Minute, Delay: time.Second, CoolOff: 5 * time.Minute,
		MaxSources: 100_000, SketchWidth: 1 << 15}
	g, _ := newGuard(t, cfg)
	r := rand.New(rand.NewPCG(8, 8))
	for range 300_000 {
		g.Fail(randomSource(r))
	}
	slowed := 0
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		v := g.Fail(a)
		if v.Blocked() {
			t.Fatalf("an innocent source's first failure blocks it: %+v", v)
		}
		if v.Delay > 0 {
			slowed++
		}
	}
	t.Logf("%d of 10,000 innocent sources slowed after one failure", slowed)
	if slowed > 10 {
		t.Fatalf("%d of 10,000 innocent sources slowed after one failure", slowed)
	}
}
