package main

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/pkg/client"
)

// Parsers for the constraint flags that are cheap to check before a
// request: a bad value gets a clear message here instead of a round trip.
// The server validates everything again.

// maxRatePerSecond bounds --rate: a bound far above any real limit, that
// keeps the value finite and meaningful.
const maxRatePerSecond = 1e6

var rateUnits = map[string]float64{
	"s": 1, "sec": 1, "second": 1,
	"m": 60, "min": 60, "minute": 60,
	"h": 3600, "hr": 3600, "hour": 3600,
}

// parseRate parses a --rate value "N/s", "N/m" or "N/h" (N a positive
// decimal number such as 10 or 0.5) into requests per second.
func parseRate(s string) (float64, error) {
	bad := fmt.Errorf("--rate %s: want N/s, N/m or N/h with N a positive number (for example 10/s or 600/m)", quote(s))
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, bad
	}
	per, ok := rateUnits[strings.ToLower(strings.TrimSpace(unit))]
	if !ok {
		return 0, bad
	}
	num = strings.TrimSpace(num)
	if !isDecimal(num) {
		return 0, bad
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, bad
	}
	ps := n / per
	if ps <= 0 || math.IsInf(ps, 0) || ps > maxRatePerSecond {
		return 0, fmt.Errorf("--rate %s: must be above zero and at most %g/s", quote(s), float64(maxRatePerSecond))
	}
	return ps, nil
}

// isDecimal reports whether s is digits with at most one dot among them
// (no sign, exponent, hex, underscore, Inf or NaN).
func isDecimal(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// defaultBurst is the burst of a --rate given without --burst: one
// second's worth of requests, at least one.
func defaultBurst(perSecond float64) int {
	b := math.Ceil(perSecond)
	if b < 1 {
		return 1
	}
	return int(b)
}

// formatRate prints a rate in the largest unit that keeps it a whole
// number: 10/s, 10/m, 3/h (or N/s with decimals).
func formatRate(ps float64) string {
	for _, u := range []struct {
		name string
		mul  float64
	}{{"s", 1}, {"m", 60}, {"h", 3600}} {
		v := ps * u.mul
		if r := math.Round(v); r >= 1 && math.Abs(v-r) < 1e-9*math.Max(1, v) {
			return strconv.FormatFloat(r, 'f', -1, 64) + "/" + u.name
		}
	}
	return strconv.FormatFloat(ps, 'g', 6, 64) + "/s"
}

// parseHours parses a --hours value "HH:MM-HH:MM" (24-hour clock; a single
// digit hour is accepted) into the canonical "HH:MM" start and end. The
// start is 00:00..23:59, the end 00:00..24:00, and they differ; an end
// before the start crosses midnight.
func parseHours(s string) (start, end string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("--hours %s: %s (want HH:MM-HH:MM, for example 07:00-19:00)", quote(s), why)
	}
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return bad("no '-' between start and end")
	}
	sm, ok := parseClock(strings.TrimSpace(a))
	if !ok || sm >= 24*60 {
		return bad("the start is not a time between 00:00 and 23:59")
	}
	em, ok := parseClock(strings.TrimSpace(b))
	if !ok {
		return bad("the end is not a time between 00:00 and 24:00")
	}
	if sm == em {
		return bad("the window is empty (start equals end)")
	}
	return clock(sm), clock(em), nil
}

// parseClock parses "H:MM" or "HH:MM" into minutes after midnight; "24:00"
// is the end of the day.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, false
	}
	hh, mm := 0, 0
	for i := 0; i < len(h); i++ {
		if h[i] < '0' || h[i] > '9' {
			return 0, false
		}
		hh = hh*10 + int(h[i]-'0')
	}
	for i := 0; i < 2; i++ {
		if m[i] < '0' || m[i] > '9' {
			return 0, false
		}
		mm = mm*10 + int(m[i]-'0')
	}
	if mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

func clock(min int) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

var weekdays = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// parseDay parses a weekday ("Mon", "monday", case-insensitive) into its
// index in weekdays.
func parseDay(s string) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < 3 {
		return 0, false
	}
	for i, d := range weekdays {
		full := strings.ToLower(time.Weekday(i).String())
		if s[:3] == strings.ToLower(d) && strings.HasPrefix(full, s) {
			return i, true
		}
	}
	return 0, false
}

// parseDays parses --days values (each "Mon" or a range "Mon-Fri"; a range
// may wrap, as Fri-Mon) into the canonical, de-duplicated names in week
// order starting Monday.
func parseDays(vals []string) ([]string, error) {
	var set [7]bool
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		a, b, isRange := strings.Cut(v, "-")
		from, ok1 := parseDay(a)
		to := from
		ok2 := true
		if isRange {
			to, ok2 = parseDay(b)
		}
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("--days %s: want weekdays such as Mon,Wed or a range such as Mon-Fri", quote(v))
		}
		for d := from; ; d = (d + 1) % 7 {
			set[d] = true
			if d == to {
				break
			}
		}
	}
	var out []string
	for _, d := range []int{1, 2, 3, 4, 5, 6, 0} {
		if set[d] {
			out = append(out, weekdays[d])
		}
	}
	return out, nil
}

// parseHoursFlags builds the Hours constraint of --hours, --tz and --days.
func parseHoursFlags(hours, tz string, days []string) (*client.Hours, error) {
	start, end, err := parseHours(hours)
	if err != nil {
		return nil, err
	}
	tz = strings.TrimSpace(tz)
	if tz == "" {
		return nil, errors.New("--hours needs --tz, the time zone of the window (for example --tz America/New_York, or --tz UTC)")
	}
	if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
		return nil, fmt.Errorf("--tz %s: not an IANA time zone (for example America/New_York or UTC)", quote(tz))
	}
	d, err := parseDays(days)
	if err != nil {
		return nil, err
	}
	return &client.Hours{Start: start, End: end, TZ: tz, Days: d}, nil
}

// parseMeta parses --meta k=v values into a map. Keys are not empty and
// not repeated; values may be empty and may contain '='.
func parseMeta(vals []string) (map[string]string, error) {
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta %s: want key=value", quote(v))
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--meta: key %s given twice", quote(k))
		}
		m[k] = val
	}
	return m, nil
}

// formatMeta prints metadata as sorted k=v pairs.
func formatMeta(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = safe(k) + "=" + safe(m[k])
	}
	return strings.Join(parts, " ")
}

// quote shows a user's value in a message, bounded and with control
// characters escaped.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.QuoteToGraphic(s)
}

// safe returns s for a terminal: as is when it is printable, quoted
// (escapes visible) otherwise, so that a value from the server cannot move
// the cursor or rewrite earlier output.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.QuoteToGraphic(s)
	}
	for _, r := range s {
		if !strconv.IsGraphic(r) {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}
