package monitor

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestTokenPolicyIsReadFromMonitorMetadata(t *testing.T) {
	p, err := ParsePolicy(map[string]string{
		"team":                  "cardiology", // not ours
		"monitor.networks":      "10.1.0.0/16, 2001:db8::/48",
		"monitor.network":       "block",
		"monitor.hours":         "07:00-12:00,13:00-19:00",
		"monitor.tz":            "UTC",
		"monitor.off_hours":     "alert",
		"monitor.rate_k":        "4.5",
		"monitor.rate_floor":    "50",
		"monitor.probe_denials": "5",
		"monitor.max_sources":   "3",
		"monitor.suspend":       "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := uint32(0)
	for h := 7; h < 19; h++ {
		if h != 12 {
			want |= 1 << h
		}
	}
	if len(p.Networks) != 2 || p.Networks[1] != netip.MustParsePrefix("2001:db8::/48") || p.NewNetwork != ModeBlock ||
		p.Hours != want || p.Loc == nil || p.OffHours != ModeAlert || p.RateK != 4.5 || p.RateFloor != 50 ||
		p.ProbeDenials != 5 || p.MaxSources != 3 || !p.NoSuspend {
		t.Fatalf("%+v", p)
	}
	if p, err := ParsePolicy(map[string]string{"team": "x"}); p != nil || err != nil {
		t.Fatalf("no monitor keys: %+v, %v", p, err)
	}
}

func TestHoursWrapMidnightAndCoverTheWholeDay(t *testing.T) {
	for in, want := range map[string]uint32{
		"22:00-06:00": 0b111111 | 0b11<<22,
		"00:00-24:00": 1<<24 - 1,
		"23:00-00:00": 1 << 23,
		"09:00-10:00": 1 << 9,
	} {
		if got, err := parseHours(in); err != nil || got != want {
			t.Errorf("%s: %024b, %v; want %024b", in, got, err, want)
		}
	}
}

func TestMalformedTokenPolicyIsRefusedNamingTheKey(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"monitor.netwrok", "block"}, // a typo must not leave the token unwatched
		{"monitor.network", "deny"},
		{"monitor.networks", "10.0.0.0/33"},
		{"monitor.networks", strings.Repeat("10.0.0.0/8,", 17) + "10.0.0.0/8"},
		{"monitor.hours", "07:30-19:00"},
		{"monitor.hours", "07:00-07:00"},
		{"monitor.hours", "25:00-07:00"},
		{"monitor.hours", "24:00-07:00"},
		{"monitor.hours", "7:00-19:00"},
		{"monitor.tz", "Mars/Olympus"},
		{"monitor.tz", "Local"},
		{"monitor.rate_k", "NaN"},
		{"monitor.rate_k", "0.5"},
		{"monitor.rate_floor", "1e9"},
		{"monitor.probe_denials", "33"},
		{"monitor.max_sources", "32"},
		{"monitor.suspend", "no"},
		{"monitor.off_hours", strings.Repeat("a", 300)},
	} {
		_, err := ParsePolicy(map[string]string{tc.key: tc.value})
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%q: %v, want ErrPolicy naming the key", tc.key, tc.value, err)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"07:00-19:00", "22:00-06:00,10:00-11:00", "10.0.0.0/8,::/0", "block", "4.5", "America/New_York", ""} {
		f.Add("hours", s)
		f.Add("networks", s)
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		p, err := ParsePolicy(map[string]string{PolicyPrefix + key: value})
		if err != nil {
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("error %v is not ErrPolicy", err)
			}
			return
		}
		if p == nil || p.Hours>>24 != 0 || len(p.Networks) > MaxPolicyNetworks || p.ProbeDenials > maxDenials || p.MaxSources >= maxSources {
			t.Fatalf("%q=%q: %+v", key, value, p)
		}
	})
}
