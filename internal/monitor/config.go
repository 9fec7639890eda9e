package monitor

import (
	"fmt"
	"time"
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Enabled: true, MaxTokens: 100_000, Queue: 4096, SnapshotEvery: 5 * time.Minute, Cooldown: 10 * time.Minute,
		NewNetwork: NewNetworkConfig{Mode: ModeAlert, Learning: 7 * 24 * time.Hour, MaxPrefixes: 16},
		RateSpike:  RateSpikeConfig{Mode: ModeAlert, K: 6, Floor1s: 20, Floor10s: 100, Alpha: 0.05},
		OffHours:   OffHoursConfig{Mode: ModeAlert, Learning: 7 * 24 * time.Hour, MaxSubjects: 100_000},
		Probing: ProbingConfig{Mode: ModeAlert, Denials: 10, Window: 10 * time.Second,
			Reasons: []string{"insufficient_scope", "compartment", "break_glass_denied", "invalid_purpose"}},
		BruteForce: BruteForceConfig{Mode: ModeBlock, SlowAfter: 5, BlockAfter: 20, Window: time.Minute,
			Delay: 500 * time.Millisecond, CoolOff: 5 * time.Minute, MaxSources: 100_000},
		Sharing:    SharingConfig{Mode: ModeAlert, Window: 10 * time.Minute, Learning: 7 * 24 * time.Hour, Margin: 1, MinSources: 4},
		BreakGlass: BreakGlassConfig{Mode: ModeAlert},
	}
}

// validate checks c (ErrConfig, naming the field).
func (c *Config) validate() error {
	bad := func(field string) error { return fmt.Errorf("%w: %s", ErrConfig, field) }
	okMode := func(m Mode, block bool) bool {
		return m == ModeOff || m == ModeAlert || (block && m == ModeBlock)
	}
	switch {
	case c.MaxTokens <= 0:
		return bad("max_tokens must be > 0")
	case c.Queue <= 0:
		return bad("queue must be > 0")
	case c.SnapshotEvery <= 0:
		return bad("snapshot_every must be > 0")
	case c.Cooldown < 0:
		return bad("cooldown must be >= 0")
	case !okMode(c.NewNetwork.Mode, true):
		return bad("new_network.mode must be off, alert or block")
	case c.NewNetwork.Learning <= 0:
		return bad("new_network.learning must be > 0")
	case c.NewNetwork.MaxPrefixes <= 0 || c.NewNetwork.MaxPrefixes > maxPrefixes:
		return bad("new_network.max_prefixes must be 1..16")
	case !okMode(c.RateSpike.Mode, false):
		return bad("rate_spike.mode must be off or alert")
	case !(c.RateSpike.K > 0) || !(c.RateSpike.Floor1s >= 1) || !(c.RateSpike.Floor10s >= 1):
		return bad("rate_spike.k must be > 0 and its floors >= 1")
	case !(c.RateSpike.Alpha > 0 && c.RateSpike.Alpha < 1):
		return bad("rate_spike.alpha must be in (0, 1)")
	case !okMode(c.OffHours.Mode, true):
		return bad("off_hours.mode must be off, alert or block")
	case c.OffHours.Learning <= 0:
		return bad("off_hours.learning must be > 0")
	case c.OffHours.MaxSubjects < 0:
		return bad("off_hours.max_subjects must be >= 0")
	case !okMode(c.Probing.Mode, false):
		return bad("probing.mode must be off or alert")
	case c.Probing.Denials <= 0 || c.Probing.Denials > maxDenials:
		return bad("probing.denials must be 1..32")
	case c.Probing.Window <= 0:
		return bad("probing.window must be > 0")
	case c.BruteForce.Mode != ModeOff && c.BruteForce.Mode != ModeBlock:
		return bad("brute_force.mode must be off or block")
	case !okMode(c.Sharing.Mode, false):
		return bad("sharing.mode must be off or alert")
	case c.Sharing.Window <= 0 || c.Sharing.Learning <= 0:
		return bad("sharing.window and sharing.learning must be > 0")
	case c.Sharing.Margin < 0 || c.Sharing.MinSources <= 1 || c.Sharing.MinSources > maxSources:
		return bad("sharing.margin must be >= 0 and sharing.min_sources 2..32")
	case !okMode(c.BreakGlass.Mode, false):
		return bad("break_glass.mode must be off or alert")
	}
	return nil
}
