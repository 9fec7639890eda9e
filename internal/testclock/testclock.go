// Package testclock is the clock phigate's test fixtures run on, so that no
// test depends on the calendar.
//
// A fixture takes its time from one Clock and hands Clock.Now to every
// component it builds (the authority, the store, the vault, the audit log,
// the gateway): nothing it builds reads the wall clock for a decision. The
// clock starts at Start, a fixed instant (Monday 2026-11-30, 12:00 UTC, so
// that tests of allowed hours and days have a known weekday and time of
// day), moved by the environment variable PHIGATE_TEST_CLOCK_OFFSET.
//
// # PHIGATE_TEST_CLOCK_OFFSET
//
// The offset is a whole number of weeks, so the weekday and the time of day
// of Start stay the same: "520w" (520 weeks, about ten years ahead), "-52w",
// or years as "10y" (one year here is 52 weeks, 364 days). Empty means no
// offset. Any other value makes Start panic with a message naming the
// variable: a guard that silently ran on the default date would prove
// nothing.
//
// CI runs the packages with fixtures once more with the offset set years
// ahead and years behind: a test that mixes the fixture's date with
// time.Now (directly, or through a component left on its default clock)
// then fails at once instead of on the day the calendar catches up with it.
package testclock

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvOffset is the environment variable that moves Start.
const EnvOffset = "PHIGATE_TEST_CLOCK_OFFSET"

// base is Start without an offset: a Monday, noon UTC.
var base = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const (
	week     = 7 * 24 * time.Hour
	maxWeeks = 5200
)

// Start is the instant fixtures start at: a Monday, 12:00 UTC, moved by
// PHIGATE_TEST_CLOCK_OFFSET. It panics if the variable is malformed.
func Start() time.Time {
	off, err := ParseOffset(os.Getenv(EnvOffset))
	if err != nil {
		panic(fmt.Sprintf("testclock: %s: %v", EnvOffset, err))
	}
	return base.Add(off)
}

// ParseOffset parses an offset as PHIGATE_TEST_CLOCK_OFFSET holds it: ""
// (none), "<n>w" weeks or "<n>y" years of 52 weeks, n a signed integer of
// at most 4 digits; the offset is at most 100 years (5200 weeks) either way.
func ParseOffset(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) < 2 {
		return 0, fmt.Errorf("%q is not <n>w or <n>y", s)
	}
	num, unit := s[:len(s)-1], s[len(s)-1]
	digits := strings.TrimPrefix(strings.TrimPrefix(num, "-"), "+")
	if digits == "" || len(digits) > 4 || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not <n>w or <n>y with n of at most 4 digits", s)
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	switch unit {
	case 'w':
	case 'y':
		n *= 52
	default:
		return 0, fmt.Errorf("%q: the unit is w (weeks) or y (52 weeks), not %q", s, unit)
	}
	if n > maxWeeks || n < -maxWeeks {
		return 0, fmt.Errorf("%q is more than 100 years", s)
	}
	return time.Duration(n) * week, nil
}

// Clock is a settable clock, safe for concurrent use. The zero value is not
// usable: make one with New or At.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock at Start.
func New() *Clock { return At(Start()) }

// At returns a clock at t. Tests that need another instant derive it from
// Start (Start().Add(…)), never from a calendar date of their own.
func At(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; it is the func() time.Time that options of
// phigate's components take.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Add moves the clock by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}
