package config

import "time"

// AnonymousDenials sets how the denials of requests that never
// authenticated are recorded (see internal/preauth): per source, reason
// and window, the first FullPerWindow in full, then one summary entry.
type AnonymousDenials struct {
	// FullPerWindow is the number recorded one by one per group and
	// window; >= 0.
	FullPerWindow int `yaml:"full_per_window"`
	// Window is the span of a summary entry; > 0.
	Window Duration `yaml:"window"`
	// MaxGroups bounds the groups (source, reason) kept per window; more
	// are counted together under source "*"; > 0.
	MaxGroups int `yaml:"max_groups"`
	// MaxFieldBytes bounds each string a client chose (path and query,
	// User-Agent, justification) in such an entry; 32..4096.
	MaxFieldBytes int `yaml:"max_field_bytes"`
}

// BruteForce sets how sources that keep presenting malformed or unknown
// tokens are slowed, then refused (429 with Retry-After), on the gateway
// and the admin API (see internal/bruteforce).
type BruteForce struct {
	// SlowAfter is the number of failures in Window from which each
	// attempt is delayed by Delay; 0: never slowed; < block_after.
	SlowAfter int `yaml:"slow_after"`
	// BlockAfter is the number of failures in Window from which the
	// source is refused for CoolOff; > 0.
	BlockAfter int `yaml:"block_after"`
	// Window is the span failures are counted over; > 0.
	Window Duration `yaml:"window"`
	// Delay is the wait of a slowed attempt; 0..10s.
	Delay Duration `yaml:"delay"`
	// CoolOff is how long a blocked source is refused; > 0.
	CoolOff Duration `yaml:"cool_off"`
	// MaxSources bounds the sources tracked (memory); > 0.
	MaxSources int `yaml:"max_sources"`
}

// Storage is the low-space watermark on the data directory's filesystem:
// below it /readyz says why and every request is refused with 503 before
// anything is written; service resumes by itself when space returns.
type Storage struct {
	// MinFreeBytes: low below this many bytes available; >= 0 (0: only
	// the percentage counts).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// MinFreePercent: low below this share of the filesystem; 0..100 (0:
	// only the bytes count). The watermark is the smaller of the two.
	MinFreePercent int `yaml:"min_free_percent"`
	// CheckInterval is how often the free space is measured; > 0.
	CheckInterval Duration `yaml:"check_interval"`
}

// Defaults of the protections against floods.
const (
	DefaultAnonymousFull      = 10
	DefaultAnonymousWindow    = time.Minute
	DefaultAnonymousMaxGroups = 10_000
	DefaultAnonymousMaxField  = 256

	DefaultBruteForceSlowAfter  = 5
	DefaultBruteForceBlockAfter = 20
	DefaultBruteForceWindow     = time.Minute
	DefaultBruteForceDelay      = 500 * time.Millisecond
	DefaultBruteForceCoolOff    = 5 * time.Minute
	DefaultBruteForceMaxSources = 100_000

	DefaultStorageMinFreeBytes   = 1 << 30
	DefaultStorageMinFreePercent = 5
	DefaultStorageCheckInterval  = time.Second
)

func defaultProtections(c *Config) {
	c.Audit.Anonymous = AnonymousDenials{
		FullPerWindow: DefaultAnonymousFull, Window: Duration(DefaultAnonymousWindow),
		MaxGroups: DefaultAnonymousMaxGroups, MaxFieldBytes: DefaultAnonymousMaxField,
	}
	c.BruteForce = BruteForce{
		SlowAfter: DefaultBruteForceSlowAfter, BlockAfter: DefaultBruteForceBlockAfter,
		Window: Duration(DefaultBruteForceWindow), Delay: Duration(DefaultBruteForceDelay),
		CoolOff: Duration(DefaultBruteForceCoolOff), MaxSources: DefaultBruteForceMaxSources,
	}
	c.Storage = Storage{
		MinFreeBytes: DefaultStorageMinFreeBytes, MinFreePercent: DefaultStorageMinFreePercent,
		CheckInterval: Duration(DefaultStorageCheckInterval),
	}
}

// maxBruteForceDelay bounds a slowed attempt's wait (a goroutine and a
// connection are held meanwhile).
const maxBruteForceDelay = 10 * time.Second

func (ps *problems) protections(c *Config) {
	a := c.Audit.Anonymous
	if a.FullPerWindow < 0 {
		ps.add("audit.anonymous.full_per_window", "must not be negative (got %d)", a.FullPerWindow)
	}
	ps.positive("audit.anonymous.window", a.Window)
	if a.MaxGroups <= 0 {
		ps.add("audit.anonymous.max_groups", "must be greater than zero (got %d)", a.MaxGroups)
	}
	if a.MaxFieldBytes < 32 || a.MaxFieldBytes > 4096 {
		ps.add("audit.anonymous.max_field_bytes", "must be from 32 to 4096 (got %d)", a.MaxFieldBytes)
	}

	b := c.BruteForce
	if b.BlockAfter <= 0 {
		ps.add("bruteforce.block_after", "must be greater than zero (got %d)", b.BlockAfter)
	}
	switch {
	case b.SlowAfter < 0:
		ps.add("bruteforce.slow_after", "must not be negative (got %d)", b.SlowAfter)
	case b.BlockAfter > 0 && b.SlowAfter >= b.BlockAfter:
		ps.add("bruteforce.slow_after", "must be less than bruteforce.block_after (%d)", b.BlockAfter)
	}
	ps.positive("bruteforce.window", b.Window)
	if b.Delay < 0 || b.Delay.Duration() > maxBruteForceDelay {
		ps.add("bruteforce.delay", "must be from 0 to %s (got %s)", Duration(maxBruteForceDelay), b.Delay)
	}
	ps.positive("bruteforce.cool_off", b.CoolOff)
	if b.MaxSources <= 0 {
		ps.add("bruteforce.max_sources", "must be greater than zero (got %d)", b.MaxSources)
	}

	s := c.Storage
	if s.MinFreeBytes < 0 {
		ps.add("storage.min_free_bytes", "must not be negative (got %d)", s.MinFreeBytes)
	}
	if s.MinFreePercent < 0 || s.MinFreePercent > 100 {
		ps.add("storage.min_free_percent", "must be from 0 to 100 (got %d)", s.MinFreePercent)
	}
	ps.positive("storage.check_interval", s.CheckInterval)
}
