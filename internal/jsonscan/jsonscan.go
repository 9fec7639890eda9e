// Package jsonscan reads JSON documents in place: it validates a value and
// walks the members of an object or the elements of an array as byte
// slices of the document, without decoding or allocating, for the hot
// paths that look at a few fields of large documents (FHIR Bundles). It
// imports nothing of phigate and keeps no state.
//
// A document is accepted when it is RFC 8259 JSON with at most MaxDepth
// levels of nesting, with two leniencies that cannot make it read
// otherwise than a strict parser reads it (which refuses it whole):
// invalid UTF-8 inside strings (encoding/json replaces it), and control
// characters inside a string without escapes (the price of finding its end
// with one IndexByte). Numbers are checked against the JSON grammar;
// escapes must be one of \" \\ \/ \b \f \n \r \t \uXXXX.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// MaxDepth bounds the nesting of objects and arrays.
const MaxDepth = 128

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func ws(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// Valid reports whether b is one JSON value, blanks around it allowed.
func Valid(b []byte) bool {
	end := value(b, ws(b, 0), 0)
	return end >= 0 && ws(b, end) == len(b)
}

// value returns the end of the value at b[i], or -1.
func value(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '{':
		return object(b, i, depth+1, nil)
	case c == '[':
		return array(b, i, depth+1, nil)
	case c == '"':
		return str(b, i)
	case c == 't':
		return lit(b, i, "true")
	case c == 'f':
		return lit(b, i, "false")
	case c == 'n':
		return lit(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return number(b, i)
	}
	return -1
}

func lit(b []byte, i int, s string) int {
	if len(b)-i < len(s) || string(b[i:i+len(s)]) != s {
		return -1
	}
	return i + len(s)
}

func digits(b []byte, i int) int {
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return j
}

func number(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// str returns the end of the string at b[i] (after its closing quote).
func str(b []byte, i int) int {
	// fast path: up to the next quote, when no backslash comes before it
	if j := bytes.IndexByte(b[i+1:], '"'); j >= 0 && bytes.IndexByte(b[i+1:i+1+j], '\\') < 0 {
		return i + 1 + j + 1
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
	}
	return -1
}

// object returns the end of the object at b[i]; fn, when set, is called
// with each member's key (raw, between its quotes) and value.
func object(b []byte, i, depth int, fn func(key, val []byte) bool) int {
	if depth > MaxDepth {
		return -1
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		ke := str(b, i)
		if ke < 0 {
			return -1
		}
		key := b[i+1 : ke-1]
		i = ws(b, ke)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		vs := ws(b, i+1)
		ve := value(b, vs, depth)
		if ve < 0 {
			return -1
		}
		if fn != nil && !fn(key, b[vs:ve]) {
			fn = nil // the caller is done; the rest is still validated
		}
		i = ws(b, ve)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = ws(b, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

func array(b []byte, i, depth int, fn func(val []byte) bool) int {
	if depth > MaxDepth {
		return -1
	}
	i = ws(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		ve := value(b, i, depth)
		if ve < 0 {
			return -1
		}
		if fn != nil && !fn(b[i:ve]) {
			fn = nil
		}
		i = ws(b, ve)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = ws(b, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

// Fields validates the object b (a whole document or a value from another
// call) and calls fn with each member in order, until fn returns false:
// key is the raw key between its quotes (escapes not decoded), val the
// value's bytes. It reports false when b is not a valid object.
func Fields(b []byte, fn func(key, val []byte) bool) bool {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	end := object(b, i, 1, fn)
	return end >= 0 && ws(b, end) == len(b)
}

// Elems is Fields for the elements of an array.
func Elems(b []byte, fn func(val []byte) bool) bool {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	end := array(b, i, 1, fn)
	return end >= 0 && ws(b, end) == len(b)
}

// Field returns the value of the last member of object b named key
// (exactly: an escaped key never matches), as encoding/json and most
// clients take the last of duplicates; ok is false when b is not a valid
// object or has no such member.
func Field(b []byte, key string) (val []byte, ok bool) {
	valid := Fields(b, func(k, v []byte) bool {
		if string(k) == key {
			val, ok = v, true
		}
		return true
	})
	return val, ok && valid
}

// String decodes the JSON string value v; ok is false when v is not one.
func String(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || str(v, 0) != len(v) {
		return "", false
	}
	raw := v[1 : len(v)-1]
	for _, c := range raw {
		if c == '\\' || c >= 0x80 {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(raw), true
}

// StringIs reports whether v is the JSON string want, without allocating
// when v holds no escape.
func StringIs(v []byte, want string) bool {
	if len(v) >= 2 && v[0] == '"' && str(v, 0) == len(v) {
		raw := v[1 : len(v)-1]
		plain := true
		for _, c := range raw {
			if c == '\\' || c >= 0x80 {
				plain = false
				break
			}
		}
		if plain {
			return string(raw) == want
		}
	}
	s, ok := String(v)
	return ok && s == want
}
