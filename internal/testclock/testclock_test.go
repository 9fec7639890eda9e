package testclock

import (
	"testing"
	"time"
)

func TestOffsetKeepsWeekdayAndTimeOfDay(t *testing.T) {
	for _, s := range []string{"", "1w", "-1w", "520w", "10y", "-10y", "+3y"} {
		d, err := ParseOffset(s)
		if err != nil {
			t.Fatalf("ParseOffset(%q): %v", s, err)
		}
		at := base.Add(d)
		if at.Weekday() != time.Monday || at.Hour() != 12 || at.Minute() != 0 {
			t.Errorf("offset %q: %v is not a Monday noon", s, at)
		}
	}
	if d, _ := ParseOffset("10y"); d != 520*week {
		t.Errorf("10y = %v, want 520 weeks", d)
	}
}

func TestMalformedOffsetIsRefused(t *testing.T) {
	for _, s := range []string{"w", "1", "1d", "1h", "1.5w", "10000w", "--1w", "1 w", "١w", "0x1w", "101y", "5201w"} {
		if _, err := ParseOffset(s); err == nil {
			t.Errorf("ParseOffset(%q) accepted", s)
		}
	}
}

func TestStartPanicsOnAMalformedOffset(t *testing.T) {
	t.Setenv(EnvOffset, "3d")
	defer func() {
		if recover() == nil {
			t.Fatal("Start did not panic on a malformed offset")
		}
	}()
	Start()
}

func TestStartHonoursTheOffset(t *testing.T) {
	t.Setenv(EnvOffset, "2w")
	if got, want := Start(), base.Add(2*week); !got.Equal(want) {
		t.Fatalf("Start = %v, want %v", got, want)
	}
}

func TestClockMoves(t *testing.T) {
	c := At(base)
	if got := c.Add(time.Minute); !got.Equal(base.Add(time.Minute)) || !c.Now().Equal(got) {
		t.Fatalf("Add: %v, Now %v", got, c.Now())
	}
	c.Set(base)
	if !c.Now().Equal(base) {
		t.Fatal("Set")
	}
}

func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"", "520w", "-10y", "1d", "99999w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseOffset(s)
		if err != nil {
			return
		}
		if d%week != 0 {
			t.Fatalf("ParseOffset(%q) = %v, not whole weeks", s, d)
		}
		if d > maxWeeks*week || d < -maxWeeks*week {
			t.Fatalf("ParseOffset(%q) = %v out of bounds", s, d)
		}
	})
}
