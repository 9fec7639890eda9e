package gateway

import (
	"net/http"
	"net/netip"
	"strings"
)

// trusted is the set of networks whose forwarding headers are believed.
type trusted []netip.Prefix

func (t trusted) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxForwardedHops bounds the X-Forwarded-For entries examined.
const maxForwardedHops = 32

// clientAddr returns the address of the client: the connection's peer,
// unless the peer is a trusted proxy; then, walking X-Forwarded-For (all
// its header lines, in order) from the right, the first address that is
// not a trusted proxy — or the leftmost one when all are. A malformed entry
// met on the way (a name, "unknown", an address with a zone, garbage), or
// more than maxForwardedHops entries, yields the zero Addr: the client is
// unknown, and tokens restricted to networks refuse it.
func clientAddr(peer netip.Addr, xff []string, tr trusted) netip.Addr {
	peer = peer.Unmap()
	if !tr.contains(peer) {
		return peer
	}
	addr := peer
	hops := 0
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for {
			var elem string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				elem, v = v[j+1:], v[:j]
			} else {
				elem, v = v, ""
			}
			elem = strings.Trim(elem, " \t")
			if elem == "" {
				if v == "" {
					break
				}
				continue // "a,,b" and trailing commas: empty list elements (RFC 9110 §5.6.1)
			}
			if hops++; hops > maxForwardedHops {
				return netip.Addr{}
			}
			a, ok := parseForwardedAddr(elem)
			if !ok {
				return netip.Addr{}
			}
			addr = a
			if !tr.contains(a) {
				return a
			}
			if v == "" {
				break
			}
		}
	}
	return addr
}

// parseForwardedAddr parses one X-Forwarded-For element: an IPv4 or IPv6
// address, optionally with a port (1.2.3.4:5, [::1]:5) or in brackets
// ([::1]). Zones are refused.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if len(s) > 64 {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := s[end+1:]; rest != "" && !validPort(rest) {
			return netip.Addr{}, false
		}
		s = s[1:end]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		// IPv4 with a port
		if !validPort(s[i:]) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[:i])
		if err != nil || !a.Is4() {
			return netip.Addr{}, false
		}
		return a, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort reports whether s is ":" and 1 to 5 digits.
func validPort(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// appendForwardedFor returns the X-Forwarded-For the gateway sends
// upstream: the client's chain when the peer is a trusted proxy (its
// X-Forwarded-For lines joined), then the peer; otherwise the peer alone.
func appendForwardedFor(peer netip.Addr, xff []string, tr trusted) string {
	p := peer.Unmap().String()
	if !tr.contains(peer) || len(xff) == 0 {
		return p
	}
	return strings.Join(xff, ", ") + ", " + p
}

// original is the request a forward-auth call asks about.
type original struct {
	method string
	// path is the escaped path, query the raw query (without "?").
	path, query string
}

// maxOriginalURI bounds the original URI of a forward-auth request.
const maxOriginalURI = 8192

// parseOriginal reads the original request of a forward-auth call:
//
//   - nginx auth_request: X-Original-Method and X-Original-URI (set in
//     the nginx configuration, see the package doc);
//   - Traefik ForwardAuth: X-Forwarded-Method and X-Forwarded-Uri;
//   - Envoy ext_authz (HTTP service, path_prefix /v1/authz): the call's own
//     method, and its path after /v1/authz with its query.
//
// Exactly one of these may be present (originalSources): a proxy passes
// the client's own headers on to the auth call (nginx, Traefik without
// authRequestHeaders, Envoy without allowed_headers), so a client could
// otherwise name a request of its choosing next to the one the proxy
// names. sub is the call's escaped path after "/v1/authz" and rawQuery its
// query. Each header must appear at most once, and a proxy's method and
// URI headers come together: the call's own method stands for the
// original one only for Envoy. ok is false when more than one source or
// nothing usable is there, one header of a pair is missing, or a value is
// malformed: a method
// that is not 1 to 20 upper-case letters, a URI that is not origin-form
// ("/…"), longer than 8 KiB, or holding a space, a control character or a
// fragment.
func parseOriginal(h http.Header, method, sub, rawQuery string) (original, bool) {
	if originalSources(h, sub) > 1 {
		return original{}, false
	}
	var m, u string
	switch {
	case has(h, "X-Original-Method", "X-Original-Uri"):
		m, u = pair(h, "X-Original-Method", "X-Original-Uri")
	case has(h, "X-Forwarded-Method", "X-Forwarded-Uri"):
		m, u = pair(h, "X-Forwarded-Method", "X-Forwarded-Uri")
	case sub != "":
		// Envoy: the call is the original request, its method included
		m, u = method, sub
		if rawQuery != "" {
			u += "?" + rawQuery
		}
	}
	if !validMethod(m) || !validOriginURI(u) {
		return original{}, false
	}
	path, query, _ := strings.Cut(u, "?")
	return original{method: m, path: path, query: query}, true
}

// has reports whether either header of a pair is present.
func has(h http.Header, method, uri string) bool { return len(h[method]) > 0 || len(h[uri]) > 0 }

// pair returns the values of a proxy's method and URI headers; both must
// be there, once each ("" otherwise, which fails validation): a URI alone
// would be decided with the auth call's own method, which is not the
// original request's (nginx's auth subrequest is a GET whatever the
// client sent).
func pair(h http.Header, method, uri string) (string, string) {
	m, okM := single(h, method)
	u, okU := single(h, uri)
	if !okM || !okU || m == "" || u == "" {
		return "", ""
	}
	return m, u
}

// originalSources counts the ways a forward-auth call names its original
// request: the nginx headers, the Traefik headers, a path after /v1/authz
// (Envoy).
func originalSources(h http.Header, sub string) int {
	n := 0
	if len(h["X-Original-Method"]) > 0 || len(h["X-Original-Uri"]) > 0 {
		n++
	}
	if len(h["X-Forwarded-Method"]) > 0 || len(h["X-Forwarded-Uri"]) > 0 {
		n++
	}
	if sub != "" {
		n++
	}
	return n
}

// single returns the one value of header name ("" when absent); ok is false
// when the header appears more than once.
func single(h http.Header, name string) (string, bool) {
	vs := h[name]
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return "", false
}

func validMethod(m string) bool {
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

func validOriginURI(u string) bool {
	if u == "" || len(u) > maxOriginalURI || u[0] != '/' || strings.HasPrefix(u, "//") {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}
