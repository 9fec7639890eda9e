package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The synthetic hospital: day-shift and night-shift clinicians, a few
// with declared hours and networks, and services that run around the
// clock, each from its usual addresses, with a diurnal load, the odd
// denial and the odd expired token.

type synthToken struct {
	id       string
	pool     []netip.Addr // its usual addresses
	from, to int          // working hours (UTC unless policy.Loc), to may wrap
	perMin   float64      // mean requests per minute at the peak of its day
	policy   *TokenPolicy
}

type synthEvent struct {
	at      time.Time
	kind    Kind
	token   string
	subject string // "" : "s-" + token
	src     netip.Addr
	reason  string
	bg      bool
	policy  *TokenPolicy
	anomaly bool
}

func hospital() []*synthToken {
	var ts []*synthToken
	r := rand.New(rand.NewPCG(15, 1))
	for i := range 24 { // day shift
		t := &synthToken{id: fmt.Sprintf("user-%02d", i), from: 7 + i%3, to: 16 + i%4, perMin: 0.5 + r.Float64()}
		n := 1 + i%3
		if i < 2 {
			n = 1
		}
		for h := range n {
			t.pool = append(t.pool, netip.AddrFrom4([4]byte{10, byte(i), 1, byte(20 + h)}))
		}
		ts = append(ts, t)
	}
	for i := range 6 { // night shift, across midnight
		t := &synthToken{id: fmt.Sprintf("night-%d", i), from: 19, to: 7, perMin: 0.4 + r.Float64()/2,
			pool: []netip.Addr{netip.AddrFrom4([4]byte{10, 100, byte(i), 9})}}
		ts = append(ts, t)
	}
	// declared: hours 08:00-18:00 in UTC-5, networks 10.200.0.0/16, block
	est := time.FixedZone("UTC-5", -5*3600)
	for i := range 2 {
		t := &synthToken{id: fmt.Sprintf("declared-%d", i), from: 13, to: 23, perMin: 1,
			pool: []netip.Addr{netip.AddrFrom4([4]byte{10, 200, byte(i), 5})},
			policy: &TokenPolicy{Networks: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}, NewNetwork: ModeBlock,
				Hours: hoursMask(8, 18), Loc: est, OffHours: ModeBlock}}
		ts = append(ts, t)
	}
	for i := range 6 { // services, all day, some over IPv6
		t := &synthToken{id: fmt.Sprintf("svc-%d", i), from: 0, to: 24, perMin: 6 + 12*r.Float64()}
		if i%2 == 0 {
			t.pool = []netip.Addr{netip.AddrFrom4([4]byte{10, 250, 0, byte(i)}), netip.AddrFrom4([4]byte{10, 250, 0, byte(i + 100)})}
		} else {
			t.pool = []netip.Addr{netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::10", i)), netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::11", i))}
		}
		ts = append(ts, t)
	}
	return ts
}

func hoursMask(from, to int) uint32 {
	var m uint32
	for h := from; h != to; h = (h + 1) % 24 {
		m |= 1 << h
		if to == 24 && h == 23 {
			break
		}
	}
	return m
}

// load is the share of a token's peak load at hour h of its day: zero
// outside its hours, rising to 1 in the middle of its shift.
func (t *synthToken) load(h int) float64 {
	span := (t.to - t.from + 24) % 24
	if span == 0 {
		span = 24
	}
	pos := (h - t.from + 24) % 24
	if pos >= span {
		return 0
	}
	x := (float64(pos) + 0.5) / float64(span)
	return 0.3 + 0.7*math.Sin(math.Pi*x)
}

func poisson(r *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// minute generates the ordinary traffic of one minute.
func minute(r *rand.Rand, ts []*synthToken, at time.Time, out []synthEvent) []synthEvent {
	h := at.UTC().Hour()
	for _, t := range ts {
		for range poisson(r, t.perMin*t.load(h)) {
			e := synthEvent{at: at.Add(time.Duration(r.Int64N(int64(time.Minute)))), kind: Grant, token: t.id,
				src: t.pool[r.IntN(len(t.pool))], policy: t.policy}
			if r.IntN(200) == 0 {
				e.kind, e.reason = Deny, "insufficient_scope"
			}
			out = append(out, e)
		}
	}
	if r.IntN(20) == 0 { // an expired token somewhere in the hospital
		src := netip.AddrFrom4([4]byte{172, 16, byte(r.IntN(256)), byte(r.IntN(256))})
		for range 1 + r.IntN(3) {
			out = append(out, synthEvent{at: at.Add(time.Duration(r.Int64N(int64(time.Minute)))), kind: AuthFailure, src: src, reason: "invalid_token"})
		}
	}
	return out
}

type anomaly struct {
	name   string
	events func(day time.Time) []synthEvent
	// the one alert it must raise
	detector, token, source string
	action                  Action
	block                   string // the reason of the verdict that must block one of its events
}

const learningDays = 7 // DefaultConfig's learning periods

// replay runs the week of learning of DefaultConfig and one ordinary day
// through a monitor, with the anomaly's events mixed in on the last day,
// and returns the alerts and the verdicts that blocked with the events
// they blocked.
func replay(t *testing.T, a *anomaly) ([]*Alert, []Verdict, []synthEvent) {
	fx := newFixture(t, DefaultConfig())
	r := rand.New(rand.NewPCG(20261130, 15))
	ts := hospital()
	start := fx.clk.Now().Truncate(24 * time.Hour)
	last := start.Add(learningDays * 24 * time.Hour)
	var extra []synthEvent
	if a != nil {
		extra = a.events(last)
	}
	var alerts []*Alert
	var blocks []Verdict
	var blocked []synthEvent
	var evs []synthEvent
	for m := start; m.Before(last.Add(24 * time.Hour)); m = m.Add(time.Minute) {
		evs = minute(r, ts, m, evs[:0])
		for _, e := range extra {
			if !e.at.Before(m) && e.at.Before(m.Add(time.Minute)) {
				evs = append(evs, e)
			}
		}
		slices.SortStableFunc(evs, func(a, b synthEvent) int { return a.at.Compare(b.at) })
		for i := range evs {
			e := &evs[i]
			fx.clk.Set(e.at)
			fx.seq++
			subj := e.subject
			if subj == "" && e.token != "" {
				subj = "s-" + e.token
			}
			o := Observation{Time: e.at, Kind: e.kind, TokenID: e.token, Subject: subj, Source: e.src,
				Reason: e.reason, BreakGlass: e.bg, AuditSeq: fx.seq, Policy: e.policy}
			if o.Kind == Grant {
				if v := fx.mon.Check(&o); v.Block {
					blocks = append(blocks, v)
					blocked = append(blocked, *e)
					o.Kind, o.Reason, o.Status = Deny, v.Reason, 403
					if v.RetryAfter > 0 {
						o.Status = 429
					}
				}
			}
			fx.mon.Observe(&o)
		}
		fx.mon.Drain(context.Background())
		alerts = append(alerts, fx.rec.take()...)
	}
	return alerts, blocks, blocked
}

func burst(n int, every time.Duration, at time.Time, f func(i int, at time.Time) synthEvent) []synthEvent {
	var evs []synthEvent
	for i := range n {
		e := f(i, at.Add(time.Duration(i)*every))
		e.anomaly = true
		evs = append(evs, e)
	}
	return evs
}

func TestADayOfOrdinaryTrafficRaisesNoAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("replays eight days")
	}
	alerts, blocks, blocked := replay(t, nil)
	for _, a := range alerts {
		t.Errorf("false alarm: %s %s %s", a.Detector, a.TokenID, a.Summary)
	}
	for i, v := range blocks {
		t.Errorf("ordinary request blocked: %+v %+v", blocked[i], v)
	}
}

func TestEachAnomalyRaisesExactlyItsAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("replays eight days per anomaly")
	}
	u := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i), 1, 20}) }
	for _, a := range []anomaly{
		{name: "new network", detector: DetectorNewNetwork, token: "user-00", source: "203.0.113.0/24",
			events: func(d time.Time) []synthEvent {
				return burst(1, 0, d.Add(14*time.Hour), func(int, time.Time) synthEvent {
					return synthEvent{at: d.Add(14 * time.Hour), kind: Grant, token: "user-00", src: netip.MustParseAddr("203.0.113.50")}
				})
			}},
		{name: "new network outside the declared ones blocks", detector: DetectorNewNetwork, token: "declared-0",
			source: "192.0.2.0/24", action: Blocked, block: ReasonNewNetwork,
			events: func(d time.Time) []synthEvent {
				p := hospital()[30].policy
				return burst(3, time.Second, d.Add(14*time.Hour), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "declared-0", src: netip.MustParseAddr("192.0.2.1"), policy: p}
				})
			}},
		{name: "rate spike", detector: DetectorRateSpike, token: "svc-0", action: Suspended,
			events: func(d time.Time) []synthEvent {
				return burst(200, 4*time.Millisecond, d.Add(14*time.Hour), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "svc-0", src: netip.AddrFrom4([4]byte{10, 250, 0, 0})}
				})
			}},
		{name: "off hours", detector: DetectorOffHours, token: "user-01", source: "10.1.1.20",
			events: func(d time.Time) []synthEvent {
				return burst(3, time.Minute, d.Add(21*time.Hour+10*time.Minute), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "user-01", src: u(1)}
				})
			}},
		{name: "off hours of a new token of a known subject", detector: DetectorOffHours, token: "user-06-next", source: "10.6.1.20",
			events: func(d time.Time) []synthEvent {
				return burst(2, time.Minute, d.Add(22*time.Hour), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "user-06-next", subject: "s-user-06", src: u(6)}
				})
			}},
		{name: "probing", detector: DetectorProbing, token: "user-02", action: Suspended,
			events: func(d time.Time) []synthEvent {
				return burst(12, 300*time.Millisecond, d.Add(14*time.Hour), func(i int, at time.Time) synthEvent {
					reason := [2]string{"insufficient_scope", "compartment"}[i%2]
					return synthEvent{at: at, kind: Deny, token: "user-02", src: u(2), reason: reason}
				})
			}},
		{name: "brute force", detector: DetectorBruteForce, source: "198.51.100.66", action: IPBlocked, block: ReasonTooManyFailures,
			events: func(d time.Time) []synthEvent {
				evs := burst(25, time.Second, d.Add(14*time.Hour), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: AuthFailure, src: netip.MustParseAddr("198.51.100.66"), reason: "invalid_token"}
				})
				// then a valid token from there: refused, cooling off
				return append(evs, synthEvent{at: d.Add(14*time.Hour + time.Minute), kind: Grant, token: "user-05",
					src: netip.MustParseAddr("198.51.100.66"), anomaly: true})
			}},
		{name: "sharing", detector: DetectorSharing, token: "user-03", action: Suspended,
			events: func(d time.Time) []synthEvent {
				return burst(8, 5*time.Second, d.Add(14*time.Hour), func(i int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "user-03", src: netip.AddrFrom4([4]byte{10, 3, 1, byte(200 + i)})}
				})
			}},
		{name: "break glass", detector: DetectorBreakGlass, token: "user-04", source: "10.4.1.20",
			events: func(d time.Time) []synthEvent {
				return burst(1, 0, d.Add(14*time.Hour), func(_ int, at time.Time) synthEvent {
					return synthEvent{at: at, kind: Grant, token: "user-04", src: u(4), bg: true}
				})
			}},
	} {
		t.Run(a.name, func(t *testing.T) {
			alerts, blocks, blocked := replay(t, &a)
			if len(alerts) != 1 {
				for _, x := range alerts {
					t.Logf("alert: %s %s %s", x.Detector, x.TokenID, x.Summary)
				}
				t.Fatalf("%d alerts, want exactly one %s", len(alerts), a.detector)
			}
			x := alerts[0]
			if x.Detector != a.detector || x.TokenID != a.token || (a.source != "" && x.Source != a.source) || x.Action != a.action {
				t.Fatalf("alert %s token %q source %q action %s; want %s %q %q %s", x.Detector, x.TokenID, x.Source, x.Action,
					a.detector, a.token, a.source, a.action)
			}
			if b, err := json.Marshal(x); err != nil || x.Summary == "" || len(x.Evidence) == 0 && x.Detector != DetectorBreakGlass {
				t.Fatalf("alert does not encode or says nothing: %s, %v", b, err)
			}
			for i, v := range blocks {
				if !blocked[i].anomaly || v.Reason != a.block {
					t.Errorf("blocked %+v: %+v", blocked[i], v)
				}
			}
			if a.block != "" && len(blocks) == 0 {
				t.Errorf("nothing blocked, want %s", a.block)
			}
		})
	}
}
