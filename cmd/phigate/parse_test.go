package main

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	good := []struct {
		in   string
		want float64
	}{
		{"10/s", 10},
		{"600/m", 10},
		{"3600/h", 1},
		{"1/m", 1.0 / 60},
		{"0.5/s", 0.5},
		{" 30 / min ", 0.5},
		{"7200/hour", 2},
		{"5/SEC", 5},
		{"1000000/s", 1e6},
	}
	for _, tt := range good {
		got, err := parseRate(tt.in)
		if err != nil || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("parseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	bad := map[string]string{
		"no unit":         "10",
		"unknown unit":    "10/d",
		"empty number":    "/s",
		"zero":            "0/s",
		"negative":        "-1/s",
		"plus sign":       "+1/s",
		"exponent":        "1e3/s",
		"hex float":       "0x10p0/s",
		"infinity":        "Inf/s",
		"nan":             "NaN/s",
		"underscore":      "1_000/s",
		"two dots":        "1.2.3/s",
		"lone dot":        "./s",
		"two slashes":     "10/s/s",
		"over the bound":  "1000001/s",
		"tiny to zero":    "0.0000000000000000000000000000001/h",
		"empty":           "",
		"comma decimal":   "1,5/s",
		"unit with space": "10/ s x",
	}
	for name, in := range bad {
		if got, err := parseRate(in); err == nil {
			t.Errorf("%s: parseRate(%q) = %v, want an error", name, in, got)
		} else if !strings.Contains(err.Error(), "--rate") {
			t.Errorf("%s: error %q does not name the flag", name, err)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for ps, want := range map[float64]string{10: "10/s", 1.0 / 60: "1/m", 0.5: "30/m", 1.0 / 3600: "1/h", 2.5: "150/m", 1.0 / 7200: "0.000138889/s"} {
		if got := formatRate(ps); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", ps, got, want)
		}
	}
}

func TestDefaultBurst(t *testing.T) {
	for ps, want := range map[float64]int{10: 10, 0.1: 1, 2.5: 3, 1: 1} {
		if got := defaultBurst(ps); got != want {
			t.Errorf("defaultBurst(%v) = %d, want %d", ps, got, want)
		}
	}
}

func TestParseHours(t *testing.T) {
	good := map[string][2]string{
		"07:00-19:00":   {"07:00", "19:00"},
		"7:00-19:00":    {"07:00", "19:00"},
		" 22:00 - 6:00": {"22:00", "06:00"},
		"00:00-24:00":   {"00:00", "24:00"},
		"23:59-00:00":   {"23:59", "00:00"},
	}
	for in, want := range good {
		s, e, err := parseHours(in)
		if err != nil || s != want[0] || e != want[1] {
			t.Errorf("parseHours(%q) = %q, %q, %v; want %q", in, s, e, err, want)
		}
	}
	bad := map[string]string{
		"no dash":         "07:00",
		"start 24:00":     "24:00-07:00",
		"hour 25":         "25:00-07:00",
		"minute 60":       "07:60-08:00",
		"24:30":           "07:00-24:30",
		"empty window":    "07:00-07:00",
		"no colon":        "0700-1900",
		"three digit hr":  "007:00-19:00",
		"one digit min":   "07:0-19:00",
		"letters":         "ab:cd-19:00",
		"sign":            "+7:00-19:00",
		"seconds":         "07:00:00-19:00:00",
		"two dashes":      "07:00-12:00-19:00",
		"empty":           "",
		"am/pm":           "7am-7pm",
		"unicode digits":  "٠٧:٠٠-19:00",
		"fullwidth colon": "07：00-19:00",
	}
	for name, in := range bad {
		if _, _, err := parseHours(in); err == nil {
			t.Errorf("%s: parseHours(%q) accepted", name, in)
		} else if !strings.Contains(err.Error(), "--hours") {
			t.Errorf("%s: error %q does not name the flag", name, err)
		}
	}
}

func TestParseDays(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"Mon", "tue"}, []string{"Mon", "Tue"}},
		{[]string{"Mon-Fri"}, []string{"Mon", "Tue", "Wed", "Thu", "Fri"}},
		{[]string{"fri-mon"}, []string{"Mon", "Fri", "Sat", "Sun"}},
		{[]string{"sunday", "Sun", "SAT"}, []string{"Sat", "Sun"}},
		{[]string{"wednes"}, []string{"Wed"}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := parseDays(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseDays(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"Mo", "Funday", "Mon-", "Mon-Fri-Sat", "mondays", "1"} {
		if _, err := parseDays([]string{in}); err == nil {
			t.Errorf("parseDays(%q) accepted", in)
		}
	}
}

func TestParseMeta(t *testing.T) {
	m, err := parseMeta([]string{"team=lab", "ticket=A=1", "empty="})
	want := map[string]string{"team": "lab", "ticket": "A=1", "empty": ""}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("parseMeta = %v, %v", m, err)
	}
	for _, in := range [][]string{{"novalue"}, {"=v"}, {" =v"}, {"a=1", "a=2"}} {
		if _, err := parseMeta(in); err == nil {
			t.Errorf("parseMeta(%q) accepted", in)
		}
	}
}

func TestSafe(t *testing.T) {
	if safe("alice smith") != "alice smith" {
		t.Error("printable text changed")
	}
	for _, s := range []string{"a\x1b[2J", "a\nb", "a\rb", "a\u202eb", "bad\xff"} {
		if got := safe(s); got == s || strings.ContainsAny(got, "\x1b\n\r\u202e") {
			t.Errorf("safe(%q) = %q", s, got)
		}
	}
}

// FuzzParseRate: never panics; an accepted rate is positive, finite and
// within the bound, and formats back to a rate that parses to the same
// value.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10/s", "600/m", "3600/h", "0.5/s", "1/hour", "0/s", "1e3/s", "NaN/s", "", "/", "9999999999999999999999/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parseRate(s)
		if err != nil {
			if ps != 0 {
				t.Errorf("error with value %v", ps)
			}
			return
		}
		if !(ps > 0) || math.IsInf(ps, 0) || ps > maxRatePerSecond {
			t.Fatalf("parseRate(%q) = %v", s, ps)
		}
		if b := defaultBurst(ps); b < 1 {
			t.Fatalf("defaultBurst(%v) = %d", ps, b)
		}
		back, err := parseRate(formatRate(ps))
		if err != nil {
			t.Fatalf("formatRate(%v) = %q does not parse: %v", ps, formatRate(ps), err)
		}
		if math.Abs(back-ps) > 1e-5*ps {
			t.Fatalf("round trip %q -> %v -> %q -> %v", s, ps, formatRate(ps), back)
		}
	})
}

// FuzzParseHours: never panics; an accepted window is canonical HH:MM
// within the day, start != end, and parses back to itself.
func FuzzParseHours(f *testing.F) {
	for _, s := range []string{"07:00-19:00", "22:00-06:00", "0:00-24:00", "24:00-01:00", "07:00-07:00", "7-19", "", "-", "99:99-99:99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseHours(s)
		if err != nil {
			return
		}
		sm, ok1 := parseClock(start)
		em, ok2 := parseClock(end)
		if !ok1 || !ok2 || len(start) != 5 || len(end) != 5 || sm >= 24*60 || em > 24*60 || sm == em {
			t.Fatalf("parseHours(%q) = %q, %q", s, start, end)
		}
		s2, e2, err := parseHours(start + "-" + end)
		if err != nil || s2 != start || e2 != end {
			t.Fatalf("not canonical: %q -> %q-%q -> %q-%q, %v", s, start, end, s2, e2, err)
		}
	})
}
