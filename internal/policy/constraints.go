package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/token"
)

// FieldError is a validation failure that names the field it is about.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Constraints is the compiled, immutable form of a token's constraints,
// evaluated without allocation.
type Constraints struct {
	cidrs    []netip.Prefix
	window   *Window
	purposes []string
	purpReq  bool
}

// Compile builds the Constraints of rec. It fails only for a record that
// would not have passed Validate (for example an unknown time zone).
func Compile(rec *token.Record) (*Constraints, error) {
	c := &Constraints{cidrs: rec.CIDRs, purposes: rec.Purposes, purpReq: rec.PurposeRequired}
	if rec.Hours != nil {
		w, err := ParseWindow(rec.Hours)
		if err != nil {
			return nil, err
		}
		c.window = w
	}
	return c, nil
}

// Network reports whether addr may use the token. Without CIDRs every
// address may. An invalid addr (unknown source) is refused when CIDRs are set.
func (c *Constraints) Network(addr netip.Addr) bool {
	if len(c.cidrs) == 0 {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, p := range c.cidrs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Hours reports whether now is inside the allowed window (true without one).
func (c *Constraints) Hours(now time.Time) bool {
	return c.window == nil || c.window.Contains(now)
}

// Purpose reports whether the request's purpose of use is acceptable: when
// the token lists purposes, a given purpose must be one of them; when it
// requires one, an empty purpose is refused.
func (c *Constraints) Purpose(p string) bool {
	if p == "" {
		return !c.purpReq
	}
	if len(c.purposes) == 0 {
		return true
	}
	for _, q := range c.purposes {
		if q == p {
			return true
		}
	}
	return false
}

// Window is a compiled Hours constraint: a set of minutes of the week in a
// location.
type Window struct {
	loc *time.Location
	// week has one bit per minute of the week, Sunday 00:00 first.
	week [(7*1440 + 63) / 64]uint64
}

const minutesPerDay = 1440

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseDay parses a weekday name ("Mon", "monday", case-insensitive).
func ParseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) >= 3 {
		if d, ok := dayNames[s[:3]]; ok && (len(s) == 3 || strings.HasPrefix(strings.ToLower(d.String()), s)) {
			return d, true
		}
	}
	return 0, false
}

// ParseClock parses "HH:MM" (24h) into minutes after midnight. "24:00" is
// accepted as the end of the day.
func ParseClock(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, errors.New("want HH:MM")
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("want HH:MM")
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, errors.New("not a time of day")
	}
	return h*60 + m, nil
}

// ParseWindow validates and compiles an Hours constraint. Errors are
// *FieldError naming hours.start, hours.end, hours.tz or hours.days.
func ParseWindow(h *token.Hours) (*Window, error) {
	start, err := ParseClock(h.Start)
	if err != nil || start == minutesPerDay {
		return nil, fieldErr("hours.start", "%q: want HH:MM between 00:00 and 23:59", h.Start)
	}
	end, err := ParseClock(h.End)
	if err != nil {
		return nil, fieldErr("hours.end", "%q: want HH:MM between 00:00 and 24:00", h.End)
	}
	if start == end {
		return nil, fieldErr("hours.end", "the window is empty (start equals end)")
	}
	if h.TZ == "" {
		return nil, fieldErr("hours.tz", "a time zone is required (for example UTC or America/New_York)")
	}
	if len(h.TZ) > 64 {
		return nil, fieldErr("hours.tz", "too long")
	}
	loc, err := time.LoadLocation(h.TZ)
	if err != nil {
		return nil, fieldErr("hours.tz", "unknown time zone %q", h.TZ)
	}
	days := uint8(0x7f)
	if len(h.Days) > 0 {
		if len(h.Days) > 7 {
			return nil, fieldErr("hours.days", "at most 7 days")
		}
		days = 0
		for _, d := range h.Days {
			wd, ok := ParseDay(d)
			if !ok {
				return nil, fieldErr("hours.days", "%q is not a weekday (Mon..Sun)", truncate(d, 16))
			}
			days |= 1 << wd
		}
	}
	w := &Window{loc: loc}
	for d := 0; d < 7; d++ {
		if days&(1<<d) == 0 {
			continue
		}
		base := d * minutesPerDay
		if start < end {
			w.set(base+start, base+end)
		} else { // crosses midnight: start..24:00 today, 00:00..end tomorrow
			w.set(base+start, base+minutesPerDay)
			next := ((d + 1) % 7) * minutesPerDay
			w.set(next, next+end)
		}
	}
	return w, nil
}

func (w *Window) set(from, to int) {
	for m := from; m < to; m++ {
		w.week[m/64] |= 1 << (m % 64)
	}
}

// Contains reports whether t falls in the window.
func (w *Window) Contains(t time.Time) bool {
	lt := t.In(w.loc)
	h, m, _ := lt.Clock()
	idx := int(lt.Weekday())*minutesPerDay + h*60 + m
	return w.week[idx/64]&(1<<(idx%64)) != 0
}

// within reports whether every minute of w is a minute of o (same location).
func (w *Window) within(o *Window) bool {
	for i := range w.week {
		if w.week[i]&^o.week[i] != 0 {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
