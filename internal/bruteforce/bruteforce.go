// Package bruteforce slows and then refuses the sources that keep
// presenting invalid credentials, in bounded memory.
//
// A Guard counts failures (a credential that is malformed or unknown) per
// source within a window. From Config.SlowAfter failures in the window each
// further attempt of that source is delayed by Config.Delay before it is
// checked; from Config.BlockAfter failures the source is refused outright
// (Check reports Blocked, with the time left) until Config.CoolOff has
// passed since the failure that blocked it. A success does not reset the
// count: an attacker holding one valid token must not clear its guesses.
//
// Sources are IPv4 addresses and IPv6 /64 networks (one host usually holds
// a whole /64); a request without a known source address counts as one
// source of its own. At most Config.MaxSources sources are tracked; when
// the table is full, sources whose window is over are dropped first, then
// a source that is not blocked, so that a crowd of new sources cannot
// unblock one that is. When every source examined is blocked, a new source
// is not tracked (it is refused later, if it keeps failing, once room is
// made). Memory is therefore O(MaxSources) whatever the number of sources.
//
// Eviction alone would let an attacker hide among a crowd: every new
// source of a flood may evict the entry of the one that keeps guessing,
// which then starts counting from zero again. With Config.SketchWidth a
// count-min sketch of fixed size counts every source's failures in the
// current window (windows aligned on Window), and a source that enters the
// table starts from the sketch's estimate when that is at least half of
// BlockAfter. The estimate is at least the true count, more only when the
// sketch is crowded: with 1<<17 counters a row (conservative update), a
// million failures of distinct sources in one window leave the estimate of
// an innocent source at 6 or less, below half of BlockAfter's default, so
// it starts from zero as without the sketch; a guesser evicted by the
// flood keeps its count once it has made BlockAfter/2 failures.
//
// Guard reads the time only from the clock it is given. It is the
// brute-force detector of internal/monitor, which builds its Guard from
// monitor.Config.BruteForce and raises an alert when FailBlocking reports
// the failure that blocked a source; its interface is Check before a
// credential is verified and Fail (or FailBlocking) after one was refused.
package bruteforce

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Config are the thresholds of a Guard.
type Config struct {
	// SlowAfter is the number of failures in Window from which every
	// further attempt is delayed by Delay; 0: never slowed.
	SlowAfter int
	// BlockAfter is the number of failures in Window from which the
	// source is refused for CoolOff; > 0.
	BlockAfter int
	// Window is the span failures are counted over; > 0.
	Window time.Duration
	// Delay is the wait of a slowed attempt; >= 0.
	Delay time.Duration
	// CoolOff is how long a blocked source stays refused; > 0.
	CoolOff time.Duration
	// MaxSources bounds the sources tracked at once; > 0.
	MaxSources int
	// SketchWidth, when > 0, adds a count-min sketch of 4 rows of
	// SketchWidth 16-bit counters (8 × SketchWidth bytes, allocated at
	// New; 1024..1<<24) that counts the failures of every source in the
	// window, tracked or not: a source that enters the table (again) starts
	// from the sketch's count once that is BlockAfter/2 or more, so a flood
	// of new sources that evicts it does not reset the count of one that
	// keeps failing. 0: no sketch.
	SketchWidth int
}

// Defaults.
const (
	DefaultSlowAfter  = 5
	DefaultBlockAfter = 20
	DefaultWindow     = time.Minute
	DefaultDelay      = 500 * time.Millisecond
	DefaultCoolOff    = 5 * time.Minute
	DefaultMaxSources = 100_000
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{SlowAfter: DefaultSlowAfter, BlockAfter: DefaultBlockAfter, Window: DefaultWindow,
		Delay: DefaultDelay, CoolOff: DefaultCoolOff, MaxSources: DefaultMaxSources}
}

// ErrConfig is returned by New for thresholds out of range.
var ErrConfig = errors.New("bruteforce: invalid config")

// Verdict is what a Guard says of a source's next attempt.
type Verdict struct {
	// Delay: wait this long before checking the credential (slowed).
	Delay time.Duration
	// RetryAfter > 0: refused, for this long still (blocked).
	RetryAfter time.Duration
}

// Blocked reports whether the attempt must be refused.
func (v Verdict) Blocked() bool { return v.RetryAfter > 0 }

// Guard counts failures per source. Its methods are safe for concurrent
// use.
type Guard struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Prefix]*source
	sketch  *sketch // nil: none
	swept   time.Time
	n       atomic.Int64 // len(sources), for Check's fast path
}

type source struct {
	start    time.Time // of the window
	failures int
	until    time.Time // blocked until
}

// maxExamine bounds the entries looked at to make room in a full table.
const maxExamine = 8

// New returns a Guard with cfg, reading the time from now (nil: time.Now).
func New(cfg Config, now func() time.Time) (*Guard, error) {
	if cfg.BlockAfter <= 0 || cfg.Window <= 0 || cfg.CoolOff <= 0 || cfg.MaxSources <= 0 || cfg.Delay < 0 || cfg.SlowAfter < 0 ||
		cfg.SketchWidth != 0 && (cfg.SketchWidth < 1024 || cfg.SketchWidth > 1<<24) {
		return nil, ErrConfig
	}
	if now == nil {
		now = time.Now
	}
	g := &Guard{cfg: cfg, now: now, sources: make(map[netip.Prefix]*source)}
	if cfg.SketchWidth > 0 {
		g.sketch = newSketch(cfg.SketchWidth, cfg.Window)
	}
	return g, nil
}

// key is the source a Guard counts for a: the address (IPv4) or its /64
// (IPv6); the zero Prefix for an unknown address.
func key(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return netip.Prefix{}
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	default:
		p, _ := a.WithZone("").Prefix(64)
		return p
	}
}

// Check says how the next attempt of a may proceed: at once, after a
// delay, or not at all.
func (g *Guard) Check(a netip.Addr) Verdict {
	if g.n.Load() == 0 {
		return Verdict{}
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sources[key(a)]
	if s == nil {
		return Verdict{}
	}
	return g.verdict(s, now)
}

func (g *Guard) verdict(s *source, now time.Time) Verdict {
	if now.Before(s.until) {
		return Verdict{RetryAfter: s.until.Sub(now)}
	}
	if now.Sub(s.start) >= g.cfg.Window {
		return Verdict{}
	}
	if g.cfg.SlowAfter > 0 && s.failures >= g.cfg.SlowAfter {
		return Verdict{Delay: g.cfg.Delay}
	}
	return Verdict{}
}

// Fail counts a refused credential of a and returns the verdict for its
// next attempt.
func (g *Guard) Fail(a netip.Addr) Verdict {
	v, _ := g.FailBlocking(a)
	return v
}

// FailBlocking is Fail that also reports whether this failure is the one
// that blocked the source (once per cooling-off), so that the block is
// alerted on once.
func (g *Guard) FailBlocking(a netip.Addr) (Verdict, bool) {
	now := g.now()
	k := key(a)
	g.mu.Lock()
	defer g.mu.Unlock()
	est := 0
	if g.sketch != nil {
		est = g.sketch.add(k, now)
	}
	s := g.sources[k]
	if s == nil {
		if len(g.sources) >= g.cfg.MaxSources && !g.makeRoom(now) {
			return Verdict{}, false
		}
		s = &source{start: now}
		if est >= max(2, g.cfg.BlockAfter/2) {
			// failures it made while not tracked (this one excluded): the
			// sketch's estimate, once it is too high to be the crowd's
			s.failures = min(est, g.cfg.BlockAfter) - 1
		}
		g.sources[k] = s
		g.n.Store(int64(len(g.sources)))
	}
	if now.Sub(s.start) >= g.cfg.Window {
		s.start, s.failures = now, 0
	}
	s.failures++
	blocked := false
	if s.failures >= g.cfg.BlockAfter && !now.Before(s.until) {
		s.until = now.Add(g.cfg.CoolOff)
		// a new window after the cooling-off: the count starts again
		s.start, s.failures = s.until, 0
		blocked = true
	}
	return g.verdict(s, now), blocked
}

// makeRoom frees one entry of the full table and reports whether it did:
// at most once per Window it drops every source whose window and
// cooling-off are over; otherwise it evicts one of maxExamine sources
// that is not blocked.
func (g *Guard) makeRoom(now time.Time) bool {
	if now.Sub(g.swept) >= g.cfg.Window {
		g.swept = now
		for k, s := range g.sources {
			if g.idle(s, now) {
				delete(g.sources, k)
			}
		}
		if len(g.sources) < g.cfg.MaxSources {
			return true
		}
	}
	i := 0
	for k, s := range g.sources {
		if !now.Before(s.until) {
			delete(g.sources, k)
			return true
		}
		if i++; i >= maxExamine {
			break
		}
	}
	return false
}

func (g *Guard) idle(s *source, now time.Time) bool {
	return !now.Before(s.until) && now.Sub(s.start) >= g.cfg.Window
}

// Len is the number of sources tracked.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources)
}
