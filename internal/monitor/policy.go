package monitor

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrPolicy is returned by ParsePolicy for a monitor.* metadata entry it
// does not accept.
var ErrPolicy = errors.New("monitor: invalid token policy")

// PolicyPrefix starts the metadata keys of a TokenPolicy.
const PolicyPrefix = "monitor."

// Limits of a TokenPolicy.
const (
	MaxPolicyNetworks = 16
	maxPolicyValue    = 256
)

// ParsePolicy reads a token's monitoring policy from its metadata: the
// entries whose key starts with "monitor." (others are ignored). It
// returns nil, nil when there is none. Keys and values:
//
//	monitor.networks       CIDR[,CIDR...]   declared networks (at most 16)
//	monitor.network        off|alert|block  use from an unknown network
//	monitor.hours          HH:00-HH:00[,...] declared normal hours, whole hours,
//	                                        a range may wrap midnight (22:00-06:00)
//	monitor.tz             IANA zone        zone of the hours (default UTC)
//	monitor.off_hours      off|alert|block  use outside the normal hours
//	monitor.rate_k         1..100           rate spike: deviations
//	monitor.rate_floor     1..1000000       rate spike: requests per second floor
//	                                        (the 10 s floor scales with it)
//	monitor.probe_denials  1..32            denials that make a probing burst
//	monitor.max_sources    1..31            distinct sources per sharing window
//	monitor.suspend        true|false       false: alert but never suspend
//
// Any other monitor.* key, or a value out of its grammar, is an error
// naming the key (ErrPolicy): a typo must not silently leave a token
// unwatched. Parse once per token record, not per request.
func ParsePolicy(meta map[string]string) (*TokenPolicy, error) {
	var p *TokenPolicy
	var hours string
	for k, v := range meta {
		name, ok := strings.CutPrefix(k, PolicyPrefix)
		if !ok {
			continue
		}
		if p == nil {
			p = &TokenPolicy{}
		}
		bad := func(want string) error { return fmt.Errorf("%w: %s: want %s", ErrPolicy, k, want) }
		if len(v) > maxPolicyValue {
			return nil, bad("at most 256 characters")
		}
		var err error
		switch name {
		case "networks":
			for _, s := range strings.Split(v, ",") {
				n, e := netip.ParsePrefix(strings.TrimSpace(s))
				if e != nil || len(p.Networks) >= MaxPolicyNetworks {
					return nil, bad("a comma-separated list of at most 16 CIDRs")
				}
				p.Networks = append(p.Networks, n.Masked())
			}
		case "network":
			p.NewNetwork, err = parseMode(v, bad)
		case "off_hours":
			p.OffHours, err = parseMode(v, bad)
		case "hours":
			hours = v
		case "tz":
			if v == "" || v == "Local" {
				return nil, bad("an IANA time zone")
			}
			if p.Loc, err = time.LoadLocation(v); err != nil {
				return nil, bad("an IANA time zone")
			}
		case "rate_k":
			p.RateK, err = parseFloat(v, 1, 100, bad)
		case "rate_floor":
			p.RateFloor, err = parseFloat(v, 1, 1e6, bad)
		case "probe_denials":
			p.ProbeDenials, err = parseInt(v, 1, maxDenials, bad)
		case "max_sources":
			p.MaxSources, err = parseInt(v, 1, maxSources-1, bad)
		case "suspend":
			switch v {
			case "true":
			case "false":
				p.NoSuspend = true
			default:
				err = bad("true or false")
			}
		default:
			err = fmt.Errorf("%w: unknown key %s", ErrPolicy, k)
		}
		if err != nil {
			return nil, err
		}
	}
	if hours != "" {
		h, err := parseHours(hours)
		if err != nil {
			return nil, fmt.Errorf("%w: %shours: want HH:00-HH:00[,HH:00-HH:00...]", ErrPolicy, PolicyPrefix)
		}
		p.Hours = h
	}
	return p, nil
}

func parseMode(v string, bad func(string) error) (Mode, error) {
	switch v {
	case "off":
		return ModeOff, nil
	case "alert":
		return ModeAlert, nil
	case "block":
		return ModeBlock, nil
	}
	return 0, bad("off, alert or block")
}

func parseFloat(v string, lo, hi float64, bad func(string) error) (float64, error) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || !(x >= lo && x <= hi) {
		return 0, bad(fmt.Sprintf("a number in %g..%g", lo, hi))
	}
	return x, nil
}

func parseInt(v string, lo, hi int, bad func(string) error) (int, error) {
	x, err := strconv.Atoi(v)
	if err != nil || x < lo || x > hi {
		return 0, bad(fmt.Sprintf("an integer in %d..%d", lo, hi))
	}
	return x, nil
}

// parseHours reads HH:00-HH:00[,...] into a mask of hours: a range covers
// its start hour up to, not including, its end hour; 00:00-24:00 is the
// whole day; start == end is refused.
func parseHours(s string) (uint32, error) {
	var mask uint32
	for _, r := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(r), "-")
		if !ok {
			return 0, ErrPolicy
		}
		from, err1 := parseHour(a)
		to, err2 := parseHour(b)
		if err1 != nil || err2 != nil || from == to || from == 24 {
			return 0, ErrPolicy
		}
		for h := from; h != to; h = (h + 1) % 24 {
			mask |= 1 << h
			if to == 24 && h == 23 {
				break
			}
		}
	}
	return mask, nil
}

func parseHour(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' || s[3:] != "00" || s[0] < '0' || s[0] > '2' || s[1] < '0' || s[1] > '9' {
		return 0, ErrPolicy
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	if h > 24 {
		return 0, ErrPolicy
	}
	return h, nil
}
