// Package route is the grammar of the gateway's HTTP route patterns and
// their matching. It is a package of its own so that the configuration can
// check patterns (with line numbers) without depending on the gateway.
//
// # Grammar
//
// A pattern is a method, one space, and a path pattern, at most [MaxLen]
// bytes:
//
//	pattern  = method SP path
//	method   = "*" / 1*20( %x41-5A )             ; GET, POST, ... (upper case) or any
//	path     = "/" / 1*( "/" segment ) [ "/" ]
//	segment  = "*" / "**" / 1*literal
//	literal  = ALPHA / DIGIT / "-" / "." / "_" / "~" / "!" / "$" / "&" / "'" /
//	           "(" / ")" / "+" / "," / ";" / "=" / ":" / "@"
//
// Further rules: a segment "." or ".." is an error; "**" may only be the last
// segment, and not followed by "/"; a literal segment never contains "*".
//
// # Matching
//
// A pattern matches a request when the method is the pattern's ("*": any;
// "GET" also matches HEAD) and the path matches segment by segment: a literal
// equals the request's percent-decoded segment (case-sensitive), "*" matches
// exactly one non-empty segment, and a final "**" matches zero or more
// segments. A pattern ending in "/" matches only a request path ending in
// "/". So "GET /invoices/*" matches /invoices/42 but neither /invoices,
// /invoices/ nor /invoices/42/pdf.
//
// The request path is expected canonical (the gateway refuses anything else
// before routing): no empty segment except a final one, no "." or ".."
// segment, no encoded "/" or "\".
//
// # Lenient matching
//
// Some upstreams route more loosely than Match: a path that matches one
// pattern exactly may reach the handler of another. MatchLenient matches as
// the loosest of them would, each literal segment being compared with the
// request's percent-decoded segment
//
//   - without regard to letter case (ASP.NET Core, Express by default):
//     runes match when they, or their upper or lower cases, are equal ("ſ"
//     matches "s");
//   - with blanks (Unicode white space) around it ignored: Spring's
//     AntPathMatcher trims each segment, so /invoices/secret%20 reaches
//     "/invoices/secret";
//   - for the path's last segment, with anything from a "." on ignored:
//     Spring MVC's suffix pattern matching and Rails' optional (.:format)
//     serve /invoices/secret.json (also secret%2Ejson, secret.tar.gz) from
//     "/invoices/secret";
//
// and a trailing "/" ignored on either side (Spring's trailing-slash
// match, Rails): /invoices/secret/ reaches "/invoices/secret". Match
// implies MatchLenient.
//
// The gateway refuses a path whose most specific lenient match is another
// pattern, needing another scope, than its most specific exact match.
//
// # Specificity
//
// When several patterns match, the most specific wins, whatever the order
// in which they were written ([Compare]): comparing the segments from the
// left, at the first position where they differ in kind, a literal beats
// "*", which beats "**"; then the pattern with more segments, a final "**"
// not counting ("/a" beats "/a/**"); then one without "**"; then a trailing
// "/"; then a named method beats "*". Two patterns that compare equal are
// the same pattern and a configuration must not hold both.
package route

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest pattern in bytes.
const MaxLen = 512

// maxSegments bounds the number of segments of a pattern.
const maxSegments = 64

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("invalid route pattern")

type segKind uint8

const (
	segLiteral segKind = iota
	segStar            // exactly one segment
	segRest            // zero or more segments (last only)
)

type segment struct {
	kind segKind
	lit  string
}

// Pattern is a parsed route pattern. The zero Pattern matches nothing.
type Pattern struct {
	str      string
	method   string // "" for any
	segs     []segment
	trailing bool // ends in "/" (after at least one segment)
	valid    bool
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.str }

// Method returns the pattern's method, or "*" for any.
func (p Pattern) Method() string {
	if p.method == "" {
		return "*"
	}
	return p.method
}

// Parse parses a pattern. Errors wrap ErrInvalid and say what is wrong.
func Parse(s string) (Pattern, error) {
	if len(s) > MaxLen {
		return Pattern{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	method, path, ok := strings.Cut(s, " ")
	if !ok {
		return Pattern{}, fmt.Errorf("%w: want METHOD /path, such as \"GET /invoices/*\"", ErrInvalid)
	}
	p := Pattern{str: s, valid: true}
	switch {
	case method == "*":
	case method == "" || len(method) > 20:
		return Pattern{}, fmt.Errorf("%w: the method must be 1 to 20 upper-case letters or *", ErrInvalid)
	default:
		for i := 0; i < len(method); i++ {
			if c := method[i]; c < 'A' || c > 'Z' {
				return Pattern{}, fmt.Errorf("%w: the method must be 1 to 20 upper-case letters or *", ErrInvalid)
			}
		}
		p.method = method
	}
	if path == "" || path[0] != '/' {
		return Pattern{}, fmt.Errorf("%w: the path must start with /", ErrInvalid)
	}
	if path == "/" {
		p.trailing = true
		return p, nil
	}
	rest := path[1:]
	for rest != "" {
		var seg string
		seg, rest, ok = strings.Cut(rest, "/")
		if ok && rest == "" {
			p.trailing = true
		}
		switch {
		case seg == "":
			return Pattern{}, fmt.Errorf("%w: empty segment (//)", ErrInvalid)
		case seg == "." || seg == "..":
			return Pattern{}, fmt.Errorf("%w: %q segments are not allowed", ErrInvalid, seg)
		case seg == "*":
			p.segs = append(p.segs, segment{kind: segStar})
		case seg == "**":
			if ok {
				return Pattern{}, fmt.Errorf("%w: ** must be the last segment", ErrInvalid)
			}
			p.segs = append(p.segs, segment{kind: segRest})
		default:
			for i := 0; i < len(seg); i++ {
				if !isLiteral(seg[i]) {
					return Pattern{}, fmt.Errorf("%w: character %q not allowed in a path segment (* stands alone as a segment)", ErrInvalid, seg[i])
				}
			}
			p.segs = append(p.segs, segment{kind: segLiteral, lit: seg})
		}
		if len(p.segs) > maxSegments {
			return Pattern{}, fmt.Errorf("%w: more than %d segments", ErrInvalid, maxSegments)
		}
	}
	return p, nil
}

func isLiteral(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()+,;=:@", c) >= 0
}

// Match reports whether p matches method and the canonical path (see the
// package doc); decode percent-decodes one segment, or reports false when
// it is not valid. Match does not allocate when no segment needs decoding.
func (p *Pattern) Match(method, path string) bool { return p.match(method, path, false) }

// MatchLenient is Match as an upstream that routes leniently could read
// the path (see Lenient matching in the package doc). Match implies
// MatchLenient.
func (p *Pattern) MatchLenient(method, path string) bool { return p.match(method, path, true) }

func (p *Pattern) match(method, path string, lenient bool) bool {
	if !p.valid {
		return false
	}
	if p.method != "" && p.method != method && !(p.method == "GET" && method == "HEAD") {
		return false
	}
	if path == "" || path[0] != '/' {
		return false
	}
	rest := path[1:]
	for i, s := range p.segs {
		if s.kind == segRest {
			return i == len(p.segs)-1
		}
		if rest == "" {
			return false
		}
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" {
			return false
		}
		// the path's last segment, a trailing "/" aside (lenient)
		last := !more || lenient && after == ""
		if s.kind == segLiteral && !equalDecoded(seg, s.lit, lenient, last) {
			return false
		}
		rest = after
		if !more {
			// no more path: match if this was the last segment (and the
			// pattern has no trailing slash, unless lenient), or only a
			// "**" is left
			if i == len(p.segs)-1 {
				return !p.trailing || lenient
			}
			return i == len(p.segs)-2 && p.segs[i+1].kind == segRest
		}
	}
	// path had a "/" after the last matched segment
	return rest == "" && (p.trailing || lenient)
}

// equalDecoded reports whether the percent-encoded segment seg decodes to
// lit; lenient: as lenientEqual reads it (last: it is the path's last
// segment).
func equalDecoded(seg, lit string, lenient, last bool) bool {
	if lenient {
		d, err := url.PathUnescape(seg)
		return err == nil && lenientEqual(d, lit, last)
	}
	if strings.IndexByte(seg, '%') < 0 {
		return seg == lit
	}
	j := 0
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' {
			if i+2 >= len(seg) {
				return false
			}
			h, l := unhex(seg[i+1]), unhex(seg[i+2])
			if h < 0 || l < 0 {
				return false
			}
			c = byte(h<<4 | l)
			i += 2
		}
		if j >= len(lit) || lit[j] != c {
			return false
		}
		j++
	}
	return j == len(lit)
}

// lenientEqual reports whether the decoded segment d reads as the literal
// lit to a lenient upstream: with blanks around it dropped, letter case
// ignored (foldRune) and, for the path's last segment, anything from a
// "." on dropped as well (then blanks before that "."). One walk: lit,
// rune by rune, must be a prefix of d without its leading blanks, and
// what follows only blanks, then the end or (last) a ".".
func lenientEqual(d, lit string, last bool) bool {
	d = trimLeftBlank(d)
	for lit != "" {
		if d == "" {
			return false
		}
		if a, b := d[0], lit[0]; a < utf8.RuneSelf && b < utf8.RuneSelf {
			// both ASCII (the usual case): equal, or letters that differ
			// in case only; no other ASCII pair folds together
			if a != b && !(a|0x20 == b|0x20 && 'a' <= a|0x20 && a|0x20 <= 'z') {
				return false
			}
			d, lit = d[1:], lit[1:]
			continue
		}
		rd, nd := utf8.DecodeRuneInString(d)
		rl, nl := utf8.DecodeRuneInString(lit)
		if !foldRune(rd, rl) {
			return false
		}
		d, lit = d[nd:], lit[nl:]
	}
	d = trimLeftBlank(d)
	return d == "" || last && d[0] == '.'
}

// trimLeftBlank is strings.TrimLeftFunc(s, unicode.IsSpace), without a
// call per byte for ASCII.
func trimLeftBlank(s string) string {
	for s != "" {
		if c := s[0]; c < utf8.RuneSelf {
			if c != ' ' && (c < '\t' || c > '\r') {
				return s
			}
			s = s[1:]
			continue
		}
		r, n := utf8.DecodeRuneInString(s)
		if !unicode.IsSpace(r) {
			return s
		}
		s = s[n:]
	}
	return s
}

// foldRune reports whether runes a and b are equal as servers that ignore
// case compare them: they are, or their upper or lower cases are
// (ASP.NET's OrdinalIgnoreCase takes "ſ" for "s" and "ı" for "i").
func foldRune(a, b rune) bool {
	return a == b || unicode.ToUpper(a) == unicode.ToUpper(b) || unicode.ToLower(a) == unicode.ToLower(b)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (p *Pattern) rest() bool { return len(p.segs) > 0 && p.segs[len(p.segs)-1].kind == segRest }

func (p *Pattern) effLen() int {
	if p.rest() {
		return len(p.segs) - 1
	}
	return len(p.segs)
}

// Compare orders patterns by specificity (see the package doc): negative
// when a is more specific than b, positive when less, zero when they are
// equally specific (the same pattern, for patterns that both match a path).
func Compare(a, b *Pattern) int {
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		ka, kb := a.segs[i].kind, b.segs[i].kind
		if ka != kb {
			return int(ka) - int(kb)
		}
		if ka == segLiteral && a.segs[i].lit != b.segs[i].lit {
			return strings.Compare(a.segs[i].lit, b.segs[i].lit)
		}
	}
	// more segments is more specific, but a final "**" counts for nothing:
	// "/a" beats "/a/**"
	if la, lb := a.effLen(), b.effLen(); la != lb {
		return lb - la
	}
	if ra, rb := a.rest(), b.rest(); ra != rb {
		if rb {
			return -1
		}
		return 1
	}
	if a.trailing != b.trailing {
		if a.trailing {
			return -1
		}
		return 1
	}
	if (a.method == "") != (b.method == "") {
		if a.method != "" {
			return -1
		}
		return 1
	}
	return strings.Compare(a.method, b.method)
}
