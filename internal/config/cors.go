package config

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// CORS lets browser apps served from Origins call an upstream through the
// gateway (see internal/gateway: preflights answered without a token,
// Access-Control-Allow-Origin on the answers to those origins only, never
// with credentials).
type CORS struct {
	// Origins are the exact origins allowed, each scheme://host[:port]
	// as a browser sends it in Origin: lower case, no default port, no
	// path, no "*".
	Origins []string `yaml:"origins"`
	// MaxAge is how long a browser may cache a preflight answer (default
	// DefaultCORSMaxAge, at most MaxCORSMaxAge).
	MaxAge Duration `yaml:"max_age"`
}

// CORS bounds.
const (
	DefaultCORSMaxAge = 10 * time.Minute
	MaxCORSMaxAge     = 24 * time.Hour
	MaxCORSOrigins    = 64
)

// ErrBadOrigin: not an origin in its serialized form.
var ErrBadOrigin = errors.New("not an origin scheme://host[:port] in its serialized form (lower case, no default port, no path, no wildcard)")

// ParseOrigin checks that s is an origin as browsers serialize it (RFC
// 6454 §6.2): "http" or "https", "://", a lower-case host name (letters,
// digits, "-" and ".") or an IP address (IPv6 in brackets), and a port
// other than the scheme's default; nothing else (no path, query, user
// info, trailing dot, "*" or "null"). It returns s, so that a request's
// Origin header can be compared byte for byte with it.
func ParseOrigin(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "https" && scheme != "http") || rest == "" || len(s) > 300 {
		return "", ErrBadOrigin
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", ErrBadOrigin
		}
		a, err := netip.ParseAddr(rest[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" || a.String() != rest[1:end] {
			return "", ErrBadOrigin
		}
		host, rest = rest[:end+1], rest[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", ErrBadOrigin
			}
			port = rest[1:]
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return "", ErrBadOrigin
		}
	}
	if port != "" || strings.HasSuffix(rest, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port ||
			(scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
			return "", ErrBadOrigin
		}
	}
	if !strings.HasPrefix(host, "[") && !validHostName(host) {
		return "", ErrBadOrigin
	}
	return s, nil
}

// validHostName: dot-separated labels of lower-case letters, digits and
// "-" (not at either end), or a dotted IPv4 address in its canonical form.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Is4() && a.String() == h
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	// a name whose last label is all digits would be read as an address
	last := h[strings.LastIndexByte(h, '.')+1:]
	return strings.Trim(last, "0123456789") != ""
}

// cors validates an upstream's cors section.
func (ps *problems) cors(at string, c *CORS) {
	if !c.Enabled() && c.MaxAge == 0 {
		return
	}
	if len(c.Origins) == 0 {
		ps.add(at+".cors.origins", "required: the origins of the browser apps allowed")
	}
	if len(c.Origins) > MaxCORSOrigins {
		ps.add(at+".cors.origins", "at most %d origins", MaxCORSOrigins)
	}
	seen := map[string]bool{}
	for i, o := range c.Origins {
		p := at + ".cors.origins[" + strconv.Itoa(i) + "]"
		if _, err := ParseOrigin(o); err != nil {
			ps.add(p, "%q is %v", o, err)
		} else if seen[o] {
			ps.add(p, "%q is listed twice", o)
		}
		seen[o] = true
	}
	if c.MaxAge < 0 || c.MaxAge.Duration() > MaxCORSMaxAge {
		ps.add(at+".cors.max_age", "must be between 0 (the default, %s) and %s", DefaultCORSMaxAge, MaxCORSMaxAge)
	}
}

// Enabled reports whether the section lists origins (CORS is off without).
func (c *CORS) Enabled() bool { return len(c.Origins) > 0 }

// EffectiveMaxAge is MaxAge, or the default for 0.
func (c *CORS) EffectiveMaxAge() time.Duration {
	if c.MaxAge == 0 {
		return DefaultCORSMaxAge
	}
	return c.MaxAge.Duration()
}
