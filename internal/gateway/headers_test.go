package gateway

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
)

// rawReply sends one raw request on a new TLS connection to the gateway
// (net/http's client would merge or refuse what these tests send) and
// reads its answer; status 0 when the server closed the connection without
// one.
func (fx *fixture) rawReply(t *testing.T, data string) reply {
	t.Helper()
	c := fx.dial(t)
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return reply{}
	}
	return readReply(resp)
}

// rawRequest builds a request head (Host: gw, Connection: close) with the
// header lines given ("Name: value"), and body with its Content-Length
// unless a line sets framing itself.
func rawRequest(method, target string, body string, lines ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n")
	framed := false
	for _, l := range lines {
		if hasPrefixFold(l, "Content-Length:") || hasPrefixFold(l, "Transfer-Encoding:") {
			framed = true
		}
		b.WriteString(l + "\r\n")
	}
	if !framed && body != "" {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// wantRefusedUnauthenticated checks that r is a 400 with code, recorded
// as a denial before any token was looked at, and that nothing reached an
// upstream.
func (fx *fixture) wantRefusedUnauthenticated(t *testing.T, name string, r reply, code string, upstreamCalls int64) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.code != code && r.body != "" { // (a HEAD answer has no body: the event says the code)
		t.Errorf("%s: %d %s, want 400 %s", name, r.status, r.body, code)
		return
	}
	evs := fx.rec.byRequest(t, r.rid, 1)
	if len(evs) != 1 || evs[0].Kind != KindDeny || evs[0].Reason != code || evs[0].Status != http.StatusBadRequest {
		t.Errorf("%s: events %+v", name, evs)
	} else if evs[0].TokenID != "" || evs[0].Subject != "" {
		t.Errorf("%s: refused after authentication (token %q)", name, evs[0].TokenID)
	}
	if n := fx.fhir.count.Load() + fx.api.count.Load(); n != upstreamCalls {
		t.Errorf("%s: the request reached an upstream", name)
	}
}

// The attack of issue 13: a form Content-Type, then a JSON one. The gateway
// read the first and decided on the form body (patient=pat-1); a server
// keeping the last ignores the body and searches every patient.
func TestRepeatedContentTypeIsRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{PatientID: "pat-1", Scopes: []string{"patient/Observation.rs"}})
	auth := "Authorization: Bearer " + s
	for name, lines := range map[string][]string{
		"form then JSON": {auth, "Content-Type: application/x-www-form-urlencoded", "Content-Type: application/json"},
		"JSON then form": {auth, "Content-Type: application/json", "Content-Type: application/x-www-form-urlencoded"},
		"same twice":     {auth, "Content-Type: application/x-www-form-urlencoded", "content-type: application/x-www-form-urlencoded"},
		"one line, two":  {auth, "Content-Type: application/x-www-form-urlencoded, application/json"},
	} {
		r := fx.rawReply(t, rawRequest("POST", "/fhir/Observation/_search", "patient=pat-1", lines...))
		fx.wantRefusedUnauthenticated(t, name, r, CodeInvalidRequest, 0)
	}
	// sent once, the same search is allowed
	r := fx.rawReply(t, rawRequest("POST", "/fhir/Observation/_search", "patient=pat-1", auth, "Content-Type: application/x-www-form-urlencoded"))
	if r.status != http.StatusOK || fx.fhir.count.Load() != 1 {
		t.Fatalf("the form search alone: %d %s", r.status, r.body)
	}
	// a quoted "," in a parameter is one media type
	r = fx.rawReply(t, rawRequest("POST", "/fhir/Observation/_search", "patient=pat-1", auth, `Content-Type: application/x-www-form-urlencoded; x="a,b"`))
	if r.status != http.StatusOK {
		t.Errorf("a quoted comma: %d %s", r.status, r.body)
	}
}

// Every header a decision or an upstream reads as a single value is
// refused when it comes twice, before authentication (a bad token is
// answered 400 like a good one), and the refusal is recorded.
func TestRepeatedSingleValuedHeadersAreRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.cruds", "records:read", "billing:*"},
		Purposes: []string{"TREAT", "HPAYMT"}})
	auth := "Authorization: Bearer " + s
	search := "/fhir/Observation?patient=p1"
	authz := "/v1/authz"
	nginx := []string{"X-Original-Method: GET", "X-Original-URI: /records/r/1"}
	for name, c := range map[string]struct {
		method, target, body string
		lines                []string
	}{
		"Authorization":        {"GET", search, "", []string{auth, auth}},
		"Authorization, other": {"GET", search, "", []string{auth, "Authorization: Bearer phi_other"}},
		"X-Purpose-Of-Use":     {"GET", search, "", []string{auth, "X-Purpose-Of-Use: TREAT", "X-Purpose-Of-Use: HPAYMT"}},
		"X-Break-Glass":        {"GET", search, "", []string{auth, "X-Break-Glass: a", "X-Break-Glass: b"}},
		"Prefer":               {"GET", search, "", []string{auth, "Prefer: handling=strict", "Prefer: handling=lenient"}},
		"If-Match":             {"PUT", "/fhir/Observation/o1", `{}`, []string{auth, "Content-Type: application/fhir+json", `If-Match: W/"1"`, `If-Match: W/"2"`}},
		"If-None-Match":        {"GET", search, "", []string{auth, `If-None-Match: W/"1"`, `If-None-Match: W/"2"`}},
		"If-None-Exist":        {"POST", "/fhir/Observation", `{}`, []string{auth, "Content-Type: application/fhir+json", "If-None-Exist: patient=p1", "If-None-Exist: patient=p2"}},
		"Content-Encoding":     {"POST", "/billing/upload", "x", []string{auth, "Content-Encoding: identity", "Content-Encoding: gzip"}},
		"Content-Length":       {"POST", "/billing/upload", "hello", []string{auth, "Content-Length: 5", "Content-Length: 5"}},
		"X-Original-URI":       {"GET", authz, "", append([]string{auth, "X-Original-URI: /records/r/2"}, nginx...)},
		"X-Original-Method":    {"GET", authz, "", append([]string{auth, "X-Original-Method: DELETE"}, nginx...)},
		"X-Original-Host":      {"GET", authz, "", append([]string{auth, "X-Original-Host: a", "X-Original-Host: b"}, nginx...)},
		"X-Forwarded-Method":   {"GET", authz, "", []string{auth, "X-Forwarded-Method: GET", "X-Forwarded-Method: DELETE", "X-Forwarded-Uri: /records/r/1"}},
		"X-Forwarded-Uri":      {"GET", authz, "", []string{auth, "X-Forwarded-Method: GET", "X-Forwarded-Uri: /records/r/1", "X-Forwarded-Uri: /records/r/2"}},
		"Content-Type, authz":  {"GET", authz, "", append([]string{auth, "Content-Type: a/b", "Content-Type: c/d"}, nginx...)},
		"a bad token too":      {"GET", search, "", []string{"Authorization: Bearer phi_nonsense", "Prefer: a", "Prefer: b"}},
	} {
		r := fx.rawReply(t, rawRequest(c.method, c.target, c.body, c.lines...))
		fx.wantRefusedUnauthenticated(t, name, r, CodeInvalidRequest, 0)
	}
	// net/http refuses two Host lines itself (plain text, before the handler)
	if r := fx.rawReply(t, "GET "+search+" HTTP/1.1\r\nHost: gw\r\nHost: other\r\n"+auth+"\r\nConnection: close\r\n\r\n"); r.status != http.StatusBadRequest {
		t.Errorf("two Host lines: %d %s", r.status, r.body)
	}
	if n := fx.fhir.count.Load() + fx.api.count.Load(); n != 0 {
		t.Errorf("%d requests reached an upstream", n)
	}
	// each of them once is fine
	for name, c := range map[string]struct {
		target string
		lines  []string
	}{
		"proxy": {search, []string{auth, "X-Purpose-Of-Use: TREAT", "Prefer: return=minimal, handling=lenient", `If-None-Match: W/"1", W/"2"`}},
		"authz": {authz, append([]string{auth, "X-Original-Host: a"}, nginx...)},
	} {
		if r := fx.rawReply(t, rawRequest("GET", c.target, "", c.lines...)); r.status != http.StatusOK {
			t.Errorf("%s, each header once: %d %s", name, r.status, r.body)
		}
	}
}

// A single-valued header naming two values on one line is not decided one
// way and read another.
func TestCommaJoinedSingleValuesAreRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "records:read"}, Purposes: []string{"TREAT", "HPAYMT"}})
	auth := "Authorization: Bearer " + s
	for name, c := range map[string]struct {
		target string
		lines  []string
		code   string
	}{
		"X-Purpose-Of-Use":  {"/fhir/Observation?code=x", []string{auth, "X-Purpose-Of-Use: TREAT, HPAYMT"}, CodeInvalidPurpose},
		"X-Original-Method": {"/v1/authz", []string{auth, "X-Original-Method: GET, DELETE", "X-Original-URI: /records/r/1"}, CodeInvalidRequest},
		"Host":              {"/fhir/Observation?code=x", []string{auth, "X-Forwarded-Host: x"}, CodeInvalidRequest},
	} {
		data := rawRequest("GET", c.target, "", c.lines...)
		if name == "Host" {
			data = strings.Replace(data, "Host: gw", "Host: gw,evil.example", 1)
		}
		r := fx.rawReply(t, data)
		if r.status != http.StatusBadRequest || r.code != c.code {
			t.Errorf("%s: %d %s, want 400 %s", name, r.status, r.body, c.code)
		}
	}
	if n := fx.fhir.count.Load(); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}

// A GET or HEAD is decided on its URL: one with a body is refused rather
// than forwarded with bytes nobody checked.
func TestBodyOnGetIsRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "billing:read"}})
	auth := "Authorization: Bearer " + s
	for name, c := range map[string]struct {
		method, target, body string
		lines                []string
	}{
		"GET, Content-Length": {"GET", "/fhir/Observation?code=x", `{"query":"all"}`, []string{auth}},
		"GET, chunked":        {"GET", "/billing/invoices/1", "5\r\nhello\r\n0\r\n\r\n", []string{auth, "Transfer-Encoding: chunked"}},
		"GET, empty chunked":  {"GET", "/billing/invoices/1", "0\r\n\r\n", []string{auth, "Transfer-Encoding: chunked"}},
		"HEAD":                {"HEAD", "/billing/invoices/1", "x", []string{auth}},
		"forward auth":        {"GET", "/v1/authz/fhir/Observation?code=x", "x", []string{auth}},
	} {
		r := fx.rawReply(t, rawRequest(c.method, c.target, c.body, c.lines...))
		fx.wantRefusedUnauthenticated(t, name, r, CodeInvalidRequest, 0)
	}
	if r := fx.rawReply(t, rawRequest("GET", "/billing/invoices/1", "", auth, "Content-Length: 0")); r.status != http.StatusOK {
		t.Errorf("GET with Content-Length: 0: %d %s", r.status, r.body)
	}
}

// The gateway reads a form _search as UTF-8; another charset is refused.
func TestFormSearchMustBeUTF8(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	for ct, want := range map[string]int{
		formType:                          http.StatusOK,
		formType + "; charset=utf-8":      http.StatusOK,
		formType + "; charset=UTF-8":      http.StatusOK,
		formType + "; charset=utf-16":     http.StatusUnsupportedMediaType,
		formType + "; charset=iso-8859-1": http.StatusUnsupportedMediaType,
		formType + "; charset=utf-7":      http.StatusUnsupportedMediaType,
		formType + "; charset=":           http.StatusUnsupportedMediaType,
	} {
		r := fx.do(t, call{method: "POST", path: "/fhir/Observation/_search", secret: s, contentType: ct, body: "patient=p1"})
		if r.status != want {
			t.Errorf("%q: %d %s, want %d", ct, r.status, r.body, want)
		}
		if want != http.StatusOK && r.code != CodeUnsupportedMedia {
			t.Errorf("%q: code %q", ct, r.code)
		}
	}
}

// FuzzUnquotedComma checks unquotedComma against its definition: a ","
// outside a quoted-string. Removing every quoted-string (with its escapes)
// leaves a "," exactly when unquotedComma says so, and a value without ","
// never has one.
func FuzzUnquotedComma(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		got := unquotedComma(s)
		if !strings.Contains(s, ",") && got {
			t.Fatalf("%q: a comma found where there is none", s)
		}
		var outside strings.Builder
		for rest := s; rest != ""; {
			i := strings.IndexByte(rest, '"')
			if i < 0 {
				outside.WriteString(rest)
				break
			}
			outside.WriteString(rest[:i])
			rest = rest[i+1:]
			// skip the quoted-string: up to the next unescaped quote
			for rest != "" && rest[0] != '"' {
				if rest[0] == '\\' && len(rest) > 1 {
					rest = rest[1:]
				}
				rest = rest[1:]
			}
			if rest != "" {
				rest = rest[1:]
			}
		}
		if want := strings.Contains(outside.String(), ","); got != want {
			t.Fatalf("%q: unquotedComma %v, want %v", s, got, want)
		}
	})
}

// BenchmarkCheckHeaders is the header check every request goes through,
// on the headers of a typical FHIR client.
func BenchmarkCheckHeaders(b *testing.B) {
	r, _ := http.NewRequest(http.MethodGet, "https://gw/fhir/Observation?patient=p1", nil)
	for k, v := range map[string]string{"Authorization": "Bearer x", "Accept": "application/fhir+json", "User-Agent": "client/1.0",
		"X-Purpose-Of-Use": "TREAT", "Accept-Encoding": "gzip", "X-Request-Id": "abc", "Prefer": "return=representation"} {
		r.Header.Set(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if dn := checkHeaders(r); dn != nil {
			b.Fatal(dn.msg)
		}
	}
}
