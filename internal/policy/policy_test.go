package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

func mustWindow(t *testing.T, h token.Hours) *Window {
	t.Helper()
	w, err := ParseWindow(&h)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWindowContains(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	sat := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC) // a Saturday
	cases := []struct {
		name string
		h    token.Hours
		at   time.Time
		want bool
	}{
		{"inside", token.Hours{Start: "07:00", End: "19:00", TZ: "UTC"}, sat.Add(8 * time.Hour), true},
		{"start_inclusive", token.Hours{Start: "07:00", End: "19:00", TZ: "UTC"}, sat.Add(7 * time.Hour), true},
		{"end_exclusive", token.Hours{Start: "07:00", End: "19:00", TZ: "UTC"}, sat.Add(19 * time.Hour), false},
		{"before", token.Hours{Start: "07:00", End: "19:00", TZ: "UTC"}, sat.Add(6*time.Hour + 59*time.Minute), false},
		{"other_zone", token.Hours{Start: "07:00", End: "19:00", TZ: "America/New_York"}, time.Date(2026, 11, 28, 8, 0, 0, 0, ny), true},
		{"other_zone_outside", token.Hours{Start: "07:00", End: "19:00", TZ: "America/New_York"}, sat.Add(8 * time.Hour), false}, // 03:00 in New York
		{"midnight_late", token.Hours{Start: "22:00", End: "06:00", TZ: "UTC"}, sat.Add(23 * time.Hour), true},
		{"midnight_early", token.Hours{Start: "22:00", End: "06:00", TZ: "UTC"}, sat.Add(5 * time.Hour), true},
		{"midnight_day", token.Hours{Start: "22:00", End: "06:00", TZ: "UTC"}, sat.Add(12 * time.Hour), false},
		{"weekday_only_on_saturday", token.Hours{Start: "00:00", End: "24:00", TZ: "UTC", Days: []string{"Mon", "Fri"}}, sat.Add(time.Hour), false},
		{"saturday_night_spills_to_sunday", token.Hours{Start: "23:00", End: "02:00", TZ: "UTC", Days: []string{"Sat"}}, sat.Add(25 * time.Hour), true},
		{"saturday_window_not_on_sunday_night", token.Hours{Start: "23:00", End: "02:00", TZ: "UTC", Days: []string{"Sat"}}, sat.Add(24*time.Hour + 23*time.Hour + 30*time.Minute), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mustWindow(t, c.h).Contains(c.at); got != c.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestParseWindowRejects(t *testing.T) {
	for name, h := range map[string]token.Hours{
		"empty_window": {Start: "07:00", End: "07:00", TZ: "UTC"},
		"bad_clock":    {Start: "7:00", End: "19:00", TZ: "UTC"},
		"minute_60":    {Start: "07:60", End: "19:00", TZ: "UTC"},
		"hour_25":      {Start: "07:00", End: "25:00", TZ: "UTC"},
		"start_24":     {Start: "24:00", End: "01:00", TZ: "UTC"},
		"no_zone":      {Start: "07:00", End: "19:00"},
		"unknown_zone": {Start: "07:00", End: "19:00", TZ: "Mars/Olympus"},
		"bad_day":      {Start: "07:00", End: "19:00", TZ: "UTC", Days: []string{"Funday"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseWindow(&h)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLimiter(2, 3, t0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow(t0); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.Allow(t0)
	if ok || wait < 400*time.Millisecond || wait > 600*time.Millisecond {
		t.Fatalf("4th: ok=%v wait=%v (want ~500ms)", ok, wait)
	}
	if ok, _ := l.Allow(t0.Add(500 * time.Millisecond)); !ok {
		t.Fatal("refill after 500ms at 2/s")
	}
	// never more than the burst after a long pause
	n := 0
	for ; n < 10; n++ {
		if ok, _ := l.Allow(t0.Add(time.Hour)); !ok {
			break
		}
	}
	if n != 3 {
		t.Fatalf("after a long pause %d allowed, want the burst 3", n)
	}
}

func TestConstraints(t *testing.T) {
	rec := &token.Record{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		Purposes: []string{"TREAT", "ETREAT"}, PurposeRequired: true}
	c, err := Compile(rec)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "2001:db8::1": true, "11.0.0.1": false, "::1": false} {
		if got := c.Network(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Network(%s) = %v", addr, got)
		}
	}
	if c.Network(netip.Addr{}) {
		t.Error("an unknown source passed a CIDR restriction")
	}
	if c.Purpose("") || c.Purpose("HPAYMT") || !c.Purpose("TREAT") {
		t.Error("purpose")
	}
	if n := testing.AllocsPerRun(100, func() { c.Network(netip.MustParseAddr("10.1.2.3")); c.Purpose("TREAT") }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func TestWithinRules(t *testing.T) {
	now := time.Now()
	// the parent was created 10h ago with an 11h max lifetime: it ends in 3h
	parent := &token.Record{ExpiresAt: now.Add(time.Hour), Kind: token.KindService, IdleTimeout: time.Hour,
		MaxLifetime: 11 * time.Hour, NotAfter: now.Add(3 * time.Hour), SubjectPrefix: "team-a/",
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Purposes: []string{"TREAT"}, PatientID: "p1"}
	ok := &token.Record{Subject: "team-a/lab", ExpiresAt: now.Add(time.Minute), Kind: token.KindUser, IdleTimeout: time.Minute,
		MaxLifetime: 2 * time.Hour, NotAfter: now.Add(2 * time.Hour), SubjectPrefix: "team-a/lab/",
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, Purposes: []string{"TREAT"}, PatientID: "p1"}
	if err := Within(ok, parent); err != nil {
		t.Fatalf("narrower child refused: %v", err)
	}
	for name, mut := range map[string]func(*token.Record){
		"later_expiry":  func(r *token.Record) { r.ExpiresAt = now.Add(2 * time.Hour) },
		"no_idle":       func(r *token.Record) { r.IdleTimeout = 0 },
		"longer_idle":   func(r *token.Record) { r.IdleTimeout = 2 * time.Hour },
		"ipv6_cidr":     func(r *token.Record) { r.CIDRs = []netip.Prefix{netip.MustParsePrefix("::/0")} },
		"other_purpose": func(r *token.Record) { r.Purposes = []string{"HPAYMT"} },
		"other_patient": func(r *token.Record) { r.PatientID = "p2" },
		"no_patient":    func(r *token.Record) { r.PatientID = "" },
		"admin_kind":    func(r *token.Record) { r.Kind = token.KindAdmin },
		"break_glass":   func(r *token.Record) { r.BreakGlass = true },
		// a shorter max lifetime that still ends after the parent's end
		"later_not_after": func(r *token.Record) { r.MaxLifetime = time.Hour; r.NotAfter = now.Add(4 * time.Hour) },
		// no not_after: the expiry is the end, and it is after the parent's
		"no_not_after_later_expiry": func(r *token.Record) { r.NotAfter = time.Time{}; r.ExpiresAt = now.Add(2 * time.Hour) },
		"subject_outside_prefix":    func(r *token.Record) { r.Subject = "team-b/lab" },
		"subject_prefix_of_prefix":  func(r *token.Record) { r.Subject = "team-a" },
		"wider_subject_prefix":      func(r *token.Record) { r.SubjectPrefix = "team-" },
		"no_subject_prefix":         func(r *token.Record) { r.SubjectPrefix = "" },
		"uses_unlimited":            func(r *token.Record) {},
		// a break-glass parent's scopes are emergency scopes
		"not_break_glass": func(r *token.Record) {},
	} {
		t.Run(name, func(t *testing.T) {
			c := ok.Clone()
			mut(c)
			p := parent
			switch name {
			case "uses_unlimited":
				n := int64(5)
				p = parent.Clone()
				p.RemainingUses = &n
			case "not_break_glass":
				p = parent.Clone()
				p.BreakGlass = true
			}
			var fe *FieldError
			if err := Within(c, p); !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FieldError", err)
			}
		})
	}
}

func TestReasonsAreStable(t *testing.T) {
	if ReasonNone.Allowed() || !OK.Allowed() {
		t.Fatal("the zero reason must not allow")
	}
	for r := ReasonNone; r <= Unavailable; r++ {
		if r.Code() == "" || r.Message() == "" {
			t.Fatalf("reason %d has no code or message", r)
		}
	}
	if Reason(200).Code() != "denied" {
		t.Fatal("unknown reasons must read as denied")
	}
}

func FuzzParseWindow(f *testing.F) {
	f.Add("07:00", "19:00", "UTC", "Mon")
	f.Add("22:00", "06:00", "America/New_York", "Sat")
	f.Add("00:00", "24:00", "Europe/Paris", "")
	f.Fuzz(func(t *testing.T, start, end, tz, day string) {
		h := &token.Hours{Start: start, End: end, TZ: tz}
		if day != "" {
			h.Days = []string{day}
		}
		w, err := ParseWindow(h)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("not a FieldError: %v", err)
			}
			return
		}
		// a valid window contains its own start, every day it is open on
		s, _ := ParseClock(start)
		loc, _ := time.LoadLocation(tz)
		at := time.Date(2026, 11, 30, s/60, s%60, 0, 0, loc) // a Monday
		for i := 0; i < 7; i++ {
			d := at.AddDate(0, 0, i)
			if len(h.Days) == 0 && d.Hour()*60+d.Minute() == s && !w.Contains(d) {
				t.Fatalf("window %v does not contain its start on %v", h, d)
			}
		}
	})
}

func TestInvalidSubjectPrefixIsRefused(t *testing.T) {
	now := testclock.Start()
	valid := func() *token.Record {
		return &token.Record{Subject: "team-a/lab", Kind: token.KindUser, ExpiresAt: now.Add(time.Hour), NotAfter: now.Add(time.Hour)}
	}
	for _, p := range []string{"", "team-a/", "svc:", "ü/", strings.Repeat("a", token.MaxSubject)} {
		r := valid()
		r.SubjectPrefix = p
		if err := Validate(r); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
	for name, p := range map[string]string{
		"too_long":           strings.Repeat("a", token.MaxSubject+1),
		"control":            "team\x00a/",
		"newline":            "team-a/\n",
		"invalid_utf8":       "team-\xff/",
		"leading_space":      " team-a/",
		"trailing_space":     "team-a/ ",
		"only_white":         "   ",
		"tab_is_unprintable": "team\ta",
	} {
		r := valid()
		r.SubjectPrefix = p
		var fe *FieldError
		if err := Validate(r); !errors.As(err, &fe) || fe.Field != "subject_prefix" {
			t.Errorf("%s: got %v, want a FieldError on subject_prefix", name, err)
		}
	}
}

func TestExpiryAfterNotAfterIsRefused(t *testing.T) {
	now := testclock.Start()
	r := &token.Record{Subject: "s", Kind: token.KindUser, ExpiresAt: now.Add(time.Hour), NotAfter: now.Add(time.Hour - 1)}
	var fe *FieldError
	if err := Validate(r); !errors.As(err, &fe) || fe.Field != "expires_at" {
		t.Fatalf("got %v, want a FieldError on expires_at", err)
	}
}
