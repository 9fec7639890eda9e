package scope

import (
	"slices"
	"strings"
	"unicode/utf8"
)

func parsePlain(s string) (Scope, error) {
	wild, f := checkPlain(s)
	if !f.ok() {
		return Scope{}, faultError(s, f)
	}
	return Scope{str: s, kind: kindPlain, wild: wild, root: s == Root}, nil
}

// checkPlain validates s against the plain-scope grammar without
// allocating, and reports whether it ends in ":*".
func checkPlain(s string) (wild bool, f fault) {
	switch {
	case s == "":
		return false, fault{0, "empty scope"}
	case len(s) > MaxPlainLen:
		return false, fault{MaxPlainLen, "plain scope longer than 128 bytes"}
	case s == "*":
		return false, fault{0, `"*" alone is not a scope`}
	}
	start := 0 // first byte of the current segment
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ':' {
			continue
		}
		seg := s[start:i]
		switch {
		case seg == "":
			return false, fault{start, "empty segment"}
		case seg == "*":
			if i != len(s) {
				return false, fault{start, `"*" is allowed only as the last segment`}
			}
			wild = true
		case !isLowerDigit(seg[0]):
			return false, fault{start, "segment must start with a lower-case letter or digit"}
		default:
			for j := 1; j < len(seg); j++ {
				if c := seg[j]; !isLowerDigit(c) && c != '_' && c != '.' && c != '-' {
					return false, fault{start + j, "character not allowed in a plain scope (want a-z 0-9 _ . -)"}
				}
			}
		}
		start = i + 1
	}
	return wild, fault{}
}

func isLowerDigit(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
func isUpper(c byte) bool      { return 'A' <= c && c <= 'Z' }
func isAlpha(c byte) bool      { return isUpper(c) || 'a' <= c && c <= 'z' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }

// checkResource validates a resource type name, or "*", without allocating.
// at is the offset of r within the scope.
func checkResource(r string, at int) fault {
	switch {
	case r == "*":
		return fault{}
	case r == "":
		return fault{at, "empty resource type"}
	case len(r) > maxResourceLen:
		return fault{at + maxResourceLen, "resource type longer than 64 bytes"}
	case !isUpper(r[0]):
		return fault{at, `resource type must be "*" or start with an upper-case letter`}
	}
	for i := 1; i < len(r); i++ {
		if !isAlpha(r[i]) {
			return fault{at + i, "resource type must be letters only"}
		}
	}
	return fault{}
}

// parsePerms parses a permission string, v2 or v1. at is its offset.
func parsePerms(p string, at int) (Perms, fault) {
	switch p {
	case "":
		return 0, fault{at, `empty permissions (want a subset of "cruds", "read", "write" or "*")`}
	case "read":
		return 1<<1 | 1<<4, fault{}
	case "write":
		return 1<<0 | 1<<2 | 1<<3, fault{}
	case "*":
		return allPerms, fault{}
	}
	var perms Perms
	last := -1
	for i := 0; i < len(p); i++ {
		k := strings.IndexByte(permLetters, p[i])
		switch {
		case k < 0:
			return 0, fault{at + i, `unknown permission (want a subset of "cruds", "read", "write" or "*")`}
		case k == last:
			return 0, fault{at + i, "repeated permission"}
		case k < last:
			return 0, fault{at + i, "permissions out of order (want c, r, u, d, s in that order)"}
		}
		last = k
		perms |= 1 << k
	}
	return perms, fault{}
}

func parseSMART(s string) (Scope, error) {
	slash := strings.IndexByte(s, '/')
	var ctx Context
	switch s[:slash] {
	case "patient":
		ctx = Patient
	case "user":
		ctx = User
	case "system":
		ctx = System
	default:
		return Scope{}, newError(s, `unknown context (want "patient", "user" or "system")`)
	}
	head, query, restricted := strings.Cut(s[slash+1:], "?")
	dot := strings.IndexByte(head, '.')
	if dot < 0 {
		return Scope{}, newError(s, `missing "." between resource type and permissions`)
	}
	resAt := slash + 1
	res, permStr := head[:dot], head[dot+1:]
	if f := checkResource(res, resAt); !f.ok() {
		return Scope{}, faultError(s, f)
	}
	perms, f := parsePerms(permStr, resAt+dot+1)
	if !f.ok() {
		return Scope{}, faultError(s, f)
	}
	var params []Param
	if restricted {
		if params, f = parseParams(query, len(s)-len(query)); !f.ok() {
			return Scope{}, faultError(s, f)
		}
	}

	// Build the canonical form; keep s itself when it already is canonical.
	var buf [MaxLen + 8]byte
	b := append(buf[:0], s[:slash+1+len(res)+1]...)
	b = appendPerms(b, perms)
	for i, p := range params {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		b = append(b, p.Name...)
		b = append(b, '=')
		b = appendValue(b, p.Value)
	}
	if len(b) > MaxLen {
		return Scope{}, newError(s, "canonical form longer than 256 bytes")
	}
	str := s
	if string(b) != s {
		str = string(b)
	}
	return Scope{
		str:    str,
		kind:   kindSMART,
		ctx:    ctx,
		res:    str[resAt : resAt+len(res)],
		perms:  perms,
		params: params,
	}, nil
}

func appendPerms(b []byte, p Perms) []byte {
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b = append(b, permLetters[i])
		}
	}
	return b
}

// parseParams parses the restrictions after "?", at offset at; it returns
// them sorted by Name then Value without duplicates.
func parseParams(q string, at int) ([]Param, fault) {
	if q == "" {
		return nil, fault{at, `no restriction after "?"`}
	}
	params := make([]Param, 0, strings.Count(q, "&")+1)
	for piece := range strings.SplitSeq(q, "&") {
		if piece == "" {
			return nil, fault{at, "empty restriction"}
		}
		name, value, ok := strings.Cut(piece, "=")
		if !ok {
			return nil, fault{at, `restriction without "=" (want name=value)`}
		}
		if f := checkParamName(name, at); !f.ok() {
			return nil, f
		}
		if value == "" {
			return nil, fault{at + len(name) + 1, "empty restriction value"}
		}
		v, f := decodeValue(value, at+len(name)+1)
		if !f.ok() {
			return nil, f
		}
		params = append(params, Param{Name: name, Value: v})
		at += len(piece) + 1
	}
	slices.SortFunc(params, comparePar)
	return slices.Compact(params), fault{}
}

func checkParamName(n string, at int) fault {
	switch {
	case n == "":
		return fault{at, "empty restriction name"}
	case len(n) > maxParamNameLen:
		return fault{at + maxParamNameLen, "restriction name longer than 64 bytes"}
	case !isAlpha(n[0]) && n[0] != '_':
		return fault{at, "restriction name must start with a letter or _"}
	}
	for i := 1; i < len(n); i++ {
		if c := n[i]; !isAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != ':' {
			return fault{at + i, "character not allowed in a restriction name (want A-Z a-z 0-9 _ - . :)"}
		}
	}
	return fault{}
}

// rawValue marks the bytes a restriction value may hold unencoded, and
// that its canonical form writes unencoded.
var rawValue = func() (t [256]bool) {
	for c := range 256 {
		t[c] = isAlpha(byte(c)) || isDigit(byte(c))
	}
	for _, c := range []byte("-._~!$'()*,;:/@|") {
		t[c] = true
	}
	return t
}()

// decodeValue percent-decodes a restriction value found at offset at.
func decodeValue(v string, at int) (string, fault) {
	if strings.IndexByte(v, '%') < 0 {
		for i := 0; i < len(v); i++ {
			if !rawValue[v[i]] {
				return "", fault{at + i, "character not allowed in a restriction value (percent-encode it)"}
			}
		}
		return v, fault{}
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '%':
			if i+2 >= len(v) || unhex(v[i+1]) < 0 || unhex(v[i+2]) < 0 {
				return "", fault{at + i, `"%" not followed by two hex digits`}
			}
			d := byte(unhex(v[i+1])<<4 | unhex(v[i+2]))
			if d < 0x20 || d == 0x7f {
				return "", fault{at + i, "control character in a restriction value"}
			}
			b = append(b, d)
			i += 2
		case rawValue[c]:
			b = append(b, c)
		default:
			return "", fault{at + i, "character not allowed in a restriction value (percent-encode it)"}
		}
	}
	if !utf8.Valid(b) {
		return "", fault{at, "restriction value is not valid UTF-8 once decoded"}
	}
	return string(b), fault{}
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

// appendValue appends the canonical encoding of a decoded restriction value.
func appendValue(b []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		if c := v[i]; rawValue[c] {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		}
	}
	return b
}
