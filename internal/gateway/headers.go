package gateway

import (
	"net/http"
	"strings"
)

// checkHeaders refuses, before anything is authenticated, a request that
// could be decided one way and read another way by the upstream (or by the
// application behind a forward-auth proxy):
//
//   - a header that a decision or an upstream reads as a single value,
//     sent on more than one line (singleValued). Servers disagree on which
//     line counts: the gateway reads the first, Werkzeug and others keep
//     the last, and a POST _search with a form Content-Type then a JSON one
//     would be decided on its form body and served without it;
//   - a Content-Type or a Host holding a "," outside a quoted string: one
//     line naming two values, which parsers split differently;
//   - a GET or HEAD with a body (Content-Length above 0, or
//     Transfer-Encoding): the gateway decides a GET on its URL, and an
//     upstream that reads the body (a GraphQL or search endpoint, some FHIR
//     servers) would act on bytes nobody checked.
//
// (net/http itself refuses several Host lines and differing
// Content-Lengths, and merges equal Content-Lengths into one line before
// the handler runs; the framing guard notes those: checkFraming.)
func checkHeaders(r *http.Request) *denial {
	for k, vs := range r.Header {
		if len(vs) > 1 && singleValued(k) {
			return badRequest("send " + k + " once: the request carries it more than once, and servers disagree on which one counts")
		}
	}
	if vs := r.Header["Content-Type"]; len(vs) == 1 && unquotedComma(vs[0]) {
		return badRequest("Content-Type must name one media type (no \",\" outside a quoted parameter)")
	}
	if strings.IndexByte(r.Host, ',') >= 0 {
		return badRequest("Host must name one host (no \",\")")
	}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.ContentLength != 0 {
		return badRequest("a " + r.Method + " request must not carry a body (the gateway decides it on its URL alone)")
	}
	return nil
}

// singleValued reports whether k (a canonical header name) is one that the
// gateway's decision or an upstream reads as a single value: the framing
// and the media type of the body, the Host, the caller's credential,
// purpose of use and break-glass justification, the FHIR preferences and
// conditions, and the forward-auth descriptions of the original request
// (every X-Original-* header, and Traefik's X-Forwarded-Method and
// X-Forwarded-Uri).
func singleValued(k string) bool {
	switch k {
	case "Authorization", "Content-Type", "Content-Length", "Content-Encoding", "Host",
		"X-Purpose-Of-Use", "X-Break-Glass", "Prefer", "If-Match", "If-None-Match", "If-None-Exist",
		"X-Forwarded-Method", "X-Forwarded-Uri":
		return true
	}
	return strings.HasPrefix(k, "X-Original-")
}

// unquotedComma reports whether s holds a "," outside a quoted-string
// (RFC 9110 §5.6.4; a backslash escapes the next byte inside one).
func unquotedComma(s string) bool {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			return true
		}
	}
	return false
}
