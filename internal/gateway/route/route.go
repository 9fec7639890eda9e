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

// MatchFold is Match with the pattern's literal segments compared without
// regard to letter case, as servers that route case-insensitively
// (ASP.NET Core, Express by default) would: runes match when they or their
// upper or lower cases are equal ("ſ" matches "s").
func (p *Pattern) MatchFold(method, path string) bool { return p.match(method, path, true) }

func (p *Pattern) match(method, path string, fold bool) bool {
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
		if s.kind == segLiteral && !equalDecoded(seg, s.lit, fold) {
			return false
		}
		rest = after
		if !more {
			// no more path: match if this was the last segment (and the
			// pattern has no trailing slash), or only a "**" is left
			if i == len(p.segs)-1 {
				return !p.trailing
			}
			return i == len(p.segs)-2 && p.segs[i+1].kind == segRest
		}
	}
	// path had a "/" after the last matched segment
	return rest == "" && p.trailing
}

// equalDecoded reports whether the percent-encoded segment seg decodes to
// lit (fold: ignoring ASCII letter case).
func equalDecoded(seg, lit string, fold bool) bool {
	if fold {
		d, err := url.PathUnescape(seg)
		return err == nil && foldEqual(d, lit)
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

// foldEqual compares a and b rune by rune as servers that ignore case do:
// runes are equal when they are, or their upper or lower cases are
// (ASP.NET's OrdinalIgnoreCase takes "ſ" for "s" and "ı" for "i").
func foldEqual(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb && unicode.ToUpper(ra) != unicode.ToUpper(rb) && unicode.ToLower(ra) != unicode.ToLower(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b == ""
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
