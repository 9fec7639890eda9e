package monitor

import "time"

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Enabled: true, MaxTokens: 100_000, Queue: 4096, SnapshotEvery: time.Minute, Cooldown: 10 * time.Minute,
		NewNetwork: NewNetworkConfig{Mode: ModeAlert, Learning: 7 * 24 * time.Hour, MaxPrefixes: 16},
		RateSpike:  RateSpikeConfig{Mode: ModeAlert, K: 6, Floor1s: 20, Floor10s: 100, Alpha: 0.05},
		OffHours:   OffHoursConfig{Mode: ModeAlert, Learning: 7 * 24 * time.Hour},
		Probing: ProbingConfig{Mode: ModeAlert, Denials: 10, Window: 10 * time.Second,
			Reasons: []string{"insufficient_scope", "compartment", "break_glass_denied", "invalid_purpose"}},
		BruteForce: BruteForceConfig{Mode: ModeBlock, SlowAfter: 5, BlockAfter: 20, Window: time.Minute,
			Delay: 500 * time.Millisecond, CoolOff: 5 * time.Minute, MaxSources: 100_000},
		Sharing:    SharingConfig{Mode: ModeAlert, Window: 10 * time.Minute, Learning: 7 * 24 * time.Hour, Margin: 1, MinSources: 4},
		BreakGlass: BreakGlassConfig{Mode: ModeAlert},
	}
}
