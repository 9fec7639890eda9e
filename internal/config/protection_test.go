package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestProtectionDefaults(t *testing.T) {
	c := Default()
	if a := c.Audit.Anonymous; a.FullPerWindow != 10 || a.Window.Duration() != time.Minute || a.MaxGroups != 10_000 || a.MaxFieldBytes != 256 {
		t.Errorf("audit.anonymous defaults: %+v", a)
	}
	if b := c.BruteForce; b.SlowAfter != 5 || b.BlockAfter != 20 || b.Window.Duration() != time.Minute || b.Delay.Duration() != 500*time.Millisecond || b.CoolOff.Duration() != 5*time.Minute || b.MaxSources != 100_000 {
		t.Errorf("bruteforce defaults: %+v", b)
	}
	if s := c.Storage; s.MinFreeBytes != 1<<30 || s.MinFreePercent != 5 || s.CheckInterval.Duration() != time.Second {
		t.Errorf("storage defaults: %+v", s)
	}
}

func TestProtectionKeysAreValidatedWithTheirLine(t *testing.T) {
	base := "data_dir: /d\ntls:\n  cert_file: /c\n  key_file: /k\n"
	for _, tc := range []struct {
		doc, want string
	}{
		{"audit:\n  anonymous:\n    full_per_window: -1\n", "line 7, column 22: audit.anonymous.full_per_window: must not be negative"},
		{"audit:\n  anonymous:\n    window: 0s\n", "line 7, column 13: audit.anonymous.window: must be greater than zero"},
		{"audit:\n  anonymous:\n    max_groups: 0\n", "line 7, column 17: audit.anonymous.max_groups"},
		{"audit:\n  anonymous:\n    max_field_bytes: 8\n", "line 7, column 22: audit.anonymous.max_field_bytes: must be from 32 to 4096"},
		{"bruteforce:\n  block_after: 0\n", "line 6, column 16: bruteforce.block_after"},
		{"bruteforce:\n  slow_after: 20\n", "line 6, column 15: bruteforce.slow_after: must be less than bruteforce.block_after (20)"},
		{"bruteforce:\n  delay: 1m\n", "line 6, column 10: bruteforce.delay: must be from 0 to 10s"},
		{"bruteforce:\n  cool_off: 0s\n", "line 6, column 13: bruteforce.cool_off"},
		{"bruteforce:\n  window: 0s\n", "line 6, column 11: bruteforce.window"},
		{"bruteforce:\n  max_sources: -3\n", "line 6, column 16: bruteforce.max_sources"},
		{"storage:\n  min_free_bytes: -1\n", "line 6, column 19: storage.min_free_bytes: must not be negative"},
		{"storage:\n  min_free_percent: 101\n", "line 6, column 21: storage.min_free_percent: must be from 0 to 100"},
		{"storage:\n  check_interval: 0s\n", "line 6, column 19: storage.check_interval"},
		{"storage:\n  min_free: 1\n", "line 6"},
	} {
		_, err := Parse([]byte(base + tc.doc))
		var ce *Error
		if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestStorageWatermarkCanBeTurnedOff(t *testing.T) {
	base := "data_dir: /d\ntls:\n  cert_file: /c\n  key_file: /k\n"
	c, err := Parse([]byte(base + "storage:\n  min_free_bytes: 0\n  min_free_percent: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.MinFreeBytes != 0 || c.Storage.MinFreePercent != 0 {
		t.Fatalf("%+v", c.Storage)
	}
}
