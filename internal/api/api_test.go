package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

type env struct {
	t      testing.TB
	srv    *httptest.Server
	auth   *authority.Authority
	admin  string
	hc     *http.Client
	logBuf *bytes.Buffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	a, st, secret := testAuthority(t)
	logBuf := &bytes.Buffer{}
	s := New(a, Options{Ready: st.Ping, Logger: newTestLogger(logBuf)})
	srv := httptest.NewTLSServer(s) // real TLS on loopback
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: logBuf}
}

// with returns a copy of e reporting to t (fuzz targets must not use the F).
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// testAuthority returns an authority over a fresh SQLite store and the
// secret of its root admin token (generated now).
func testAuthority(t testing.TB) (*authority.Authority, *sqlite.Store, string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "api.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	h, _ := token.NewHasherKey(1, key)
	a := authority.New(st, h, authority.Config{ReplaySealer: newTestSealer(t)})
	secret, _, err := a.Bootstrap(ctx, "root", 3*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a, st, secret
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, bearer, ctype string, body []byte) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	r, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, b}
}

func (e *env) json(method, path, bearer string, v any) resp {
	e.t.Helper()
	var b []byte
	if v != nil {
		b, _ = json.Marshal(v)
	}
	return e.do(method, path, bearer, "application/json", b)
}

func (e *env) create(req client.CreateTokenRequest) client.IssuedToken {
	e.t.Helper()
	r := e.json("POST", "/v1/tokens", e.admin, req)
	if r.status != 201 {
		e.t.Fatalf("create: %d %s", r.status, r.body)
	}
	var it client.IssuedToken
	json.Unmarshal(r.body, &it)
	return it
}

func errCode(t testing.TB, r resp) (code, field string) {
	t.Helper()
	var eb client.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		// the OAuth endpoints answer in the RFC 6749 form
		var ob OAuthError
		if err := json.Unmarshal(r.body, &ob); err != nil || ob.Error == "" {
			t.Fatalf("error body is not JSON: %q", r.body)
		}
		eb.Error.Code, eb.Error.RequestID, eb.Error.Field = ob.Code, ob.RequestID, ob.Field
	}
	if eb.Error.RequestID == "" || r.header.Get("X-Request-Id") != eb.Error.RequestID {
		t.Fatalf("error without matching request id: %s", r.body)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatal("error content type")
	}
	return eb.Error.Code, eb.Error.Field
}

func TestCreateShowListRevoke(t *testing.T) {
	e := newEnv(t)
	it := e.create(client.CreateTokenRequest{Subject: "lab-app", Scopes: []string{"patient/Observation.read"}, TTL: "10m",
		CIDRs: []string{"127.0.0.1"}, Metadata: map[string]string{"team": "lab"}})
	if token.Check(it.Secret) != nil || !token.ValidID(it.ID) {
		t.Fatal("bad issued token")
	}
	if it.Scopes[0] != "patient/Observation.rs" {
		t.Fatalf("scope not normalised: %v", it.Scopes)
	}
	if it.CIDRs[0] != "127.0.0.1/32" {
		t.Fatalf("cidr %v", it.CIDRs)
	}
	r := e.json("GET", "/v1/tokens/"+it.ID, e.admin, nil)
	if r.status != 200 || bytes.Contains(r.body, []byte(it.Secret)) {
		t.Fatalf("show: %d (or the secret leaked)", r.status)
	}
	r = e.json("GET", "/v1/tokens?subject=lab-app", e.admin, nil)
	var list client.TokenList
	json.Unmarshal(r.body, &list)
	if len(list.Tokens) != 1 || list.Tokens[0].ID != it.ID {
		t.Fatalf("list: %s", r.body)
	}
	// the token itself can look itself up
	r = e.json("GET", "/v1/tokens/self", it.Secret, nil)
	if r.status != 200 {
		t.Fatalf("self: %d %s", r.status, r.body)
	}
	// but cannot manage tokens
	r = e.json("GET", "/v1/tokens", it.Secret, nil)
	if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `scope="admin:tokens"`) {
		t.Fatalf("list as plain token: %d %s %q", r.status, r.body, r.header.Get("WWW-Authenticate"))
	}
	r = e.json("DELETE", "/v1/tokens/"+it.ID, e.admin, nil)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r = e.json("GET", "/v1/tokens/self", it.Secret, nil)
	if code, _ := errCode(t, r); r.status != 401 || code != "token_revoked" ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("after revoke: %d %s", r.status, r.body)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	big := `{"subject":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"unknown_field", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"sopes":[]}`, 400, "invalid_request", "sopes"},
		{"bad_scope", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["patient/Observation.sr"]}`, 400, "invalid_request", "scopes"},
		{"ttl_above_max", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"ttl":"48h"}`, 400, "invalid_request", "ttl"},
		{"ttl_garbage", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"ttl":"soon"}`, 400, "invalid_request", "ttl"},
		{"bad_cidr", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"cidrs":["10.0.0.300/8"]}`, 400, "invalid_request", "cidrs[0]"},
		{"cidr_host_bits", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"cidrs":["10.0.0.1/8"]}`, 400, "invalid_request", "cidrs[0]"},
		{"bad_tz", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"hours":{"start":"07:00","end":"19:00","tz":"Mars/Olympus"}}`, 400, "invalid_request", "hours.tz"},
		{"bad_purpose", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"purposes":["FUN"]}`, 400, "invalid_request", "purposes[0]"},
		{"wrong_type", "POST", "/v1/tokens", "application/json", `{"subject":5,"scopes":["billing:read"]}`, 400, "invalid_request", "subject"},
		{"missing_subject", "POST", "/v1/tokens", "application/json", `{"scopes":["billing:read"]}`, 400, "invalid_request", "subject"},
		{"no_scopes", "POST", "/v1/tokens", "application/json", `{"subject":"a"}`, 400, "invalid_request", "scopes"},
		{"malformed_json", "POST", "/v1/tokens", "application/json", `{"subject":`, 400, "invalid_request", ""},
		{"trailing_data", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"]} {}`, 400, "invalid_request", ""},
		{"wrong_content_type", "POST", "/v1/tokens", "text/plain", `{"subject":"a","scopes":["billing:read"]}`, 415, "unsupported_media_type", ""},
		{"too_large", "POST", "/v1/tokens", "application/json", big, 413, "payload_too_large", ""},
		{"metadata_too_many", "POST", "/v1/tokens", "application/json", `{"subject":"a","scopes":["billing:read"],"metadata":{` + manyMeta(17) + `}}`, 400, "invalid_request", "metadata"},
		{"unknown_clear", "PATCH", "/v1/tokens/tok_x", "application/json", `{"clear":["everything"]}`, 400, "invalid_request", "clear[0]"},
		{"not_found", "GET", "/v1/tokens/tok_0000000000000000000000", "", "", 404, "not_found", ""},
		{"bad_id", "GET", "/v1/tokens/..%2f..", "", "", 404, "not_found", ""},
		{"bad_limit", "GET", "/v1/tokens?limit=0", "", "", 400, "invalid_request", "limit"},
		{"bad_status", "GET", "/v1/tokens?status=zombie", "", "", 400, "invalid_request", "status"},
		{"method_not_allowed", "PUT", "/v1/tokens", "", "", 405, "method_not_allowed", ""},
		{"no_route", "GET", "/v2/nothing", "", "", 404, "not_found", ""},
		{"introspect_json", "POST", "/v1/introspect", "application/json", `{"token":"x"}`, 415, "unsupported_media_type", ""},
		{"introspect_no_token", "POST", "/v1/introspect", "application/x-www-form-urlencoded", ``, 400, "invalid_request", "token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, e.admin, c.ctype, []byte(c.body))
			code, field := errCode(t, r)
			if r.status != c.status || code != c.code || field != c.field {
				t.Fatalf("got %d %s field %q: %s", r.status, code, field, truncate(string(r.body), 300))
			}
		})
	}
}

func manyMeta(n int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, `"k`+strings.Repeat("x", i)+`":"v"`)
	}
	return strings.Join(parts, ",")
}

// otherChar returns a base62 character other than c.
func otherChar(c byte) string {
	if c == 'x' {
		return "y"
	}
	return "x"
}

func TestAuthFailures(t *testing.T) {
	e := newEnv(t)
	good, _ := token.Generate(nil)
	cases := []struct {
		name, auth string
		status     int
		code       string
	}{
		{"missing", "", 401, "missing_token"},
		{"basic_scheme", "Basic dXNlcjpwYXNz", 401, "invalid_token"},
		{"malformed", "Bearer phi_nope", 401, "invalid_token"},
		{"bad_checksum", "Bearer " + e.admin[:len(e.admin)-1] + otherChar(e.admin[len(e.admin)-1]), 401, "invalid_token"},
		{"unknown", "Bearer " + good, 401, "invalid_token"},
		{"lowercase_scheme", "bearer " + e.admin, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/v1/tokens/self", nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			r, err := e.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != c.status {
				t.Fatalf("got %d: %s", r.StatusCode, b)
			}
			if c.status == 401 {
				if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Bearer realm="phigate"`) {
					t.Fatalf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
				}
				if code, _ := errCode(t, resp{r.StatusCode, r.Header, b}); code != c.code {
					t.Fatalf("code %s", code)
				}
				if strings.Contains(string(b), e.admin) || strings.Contains(string(b), good) {
					t.Fatal("secret echoed")
				}
			}
		})
	}
	if strings.Contains(e.logBuf.String(), e.admin) || strings.Contains(e.logBuf.String(), good) {
		t.Fatal("a secret reached the log")
	}
}

func TestRateLimitedAnswers429WithRetryAfter(t *testing.T) {
	e := newEnv(t)
	it := e.create(client.CreateTokenRequest{Subject: "s", Scopes: []string{"billing:read"}, Rate: &client.Rate{PerSecond: 0.5, Burst: 1}})
	if r := e.json("GET", "/v1/tokens/self", it.Secret, nil); r.status != 200 {
		t.Fatal(r.status)
	}
	r := e.json("GET", "/v1/tokens/self", it.Secret, nil)
	if code, _ := errCode(t, r); r.status != 429 || code != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s retry=%q", r.status, r.body, r.header.Get("Retry-After"))
	}
}

func TestIntrospectionRFC7662(t *testing.T) {
	e := newEnv(t)
	rs := e.create(client.CreateTokenRequest{Subject: "fhir-server", Scopes: []string{"introspect"}})
	subj := e.create(client.CreateTokenRequest{Subject: "dr-who", Scopes: []string{"patient/Observation.rs"}, PatientID: "p123"})
	form := func(tok string) []byte { return []byte(url.Values{"token": {tok}}.Encode()) }
	r := e.do("POST", "/v1/introspect", rs.Secret, "application/x-www-form-urlencoded", form(subj.Secret))
	var in client.Introspection
	json.Unmarshal(r.body, &in)
	if r.status != 200 || !in.Active || in.Sub != "dr-who" || in.Scope != "patient/Observation.rs" || in.Jti != subj.ID || in.PatientID != "p123" || in.Exp == 0 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for name, tok := range map[string]string{"garbage": "nonsense", "bad_checksum": subj.Secret[:len(subj.Secret)-1] + otherChar(subj.Secret[len(subj.Secret)-1])} {
		r = e.do("POST", "/v1/introspect", rs.Secret, "application/x-www-form-urlencoded", form(tok))
		if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"active":false}` {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
	}
	// a plain token may not introspect
	r = e.do("POST", "/v1/introspect", subj.Secret, "application/x-www-form-urlencoded", form(rs.Secret))
	if r.status != 403 {
		t.Fatalf("introspect without scope: %d", r.status)
	}
	// RFC 7009: the holder revokes; introspection then says inactive
	r = e.do("POST", "/v1/revoke", subj.Secret, "application/x-www-form-urlencoded", form(subj.Secret))
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/introspect", rs.Secret, "application/x-www-form-urlencoded", form(subj.Secret))
	if strings.TrimSpace(string(r.body)) != `{"active":false}` {
		t.Fatalf("after revoke: %s", r.body)
	}
	// RFC 7009 answers 200 for an unknown token too
	r = e.do("POST", "/v1/revoke", rs.Secret, "application/x-www-form-urlencoded", form("phi_whatever"))
	if r.status != 200 {
		t.Fatalf("revoke unknown: %d", r.status)
	}
}

func TestUpdateRotateSuspendCascade(t *testing.T) {
	e := newEnv(t)
	parent := e.create(client.CreateTokenRequest{Subject: "issuer", Scopes: []string{"admin:tokens", "patient/*.rs"}, TTL: "1h"})
	r := e.json("POST", "/v1/tokens", parent.Secret, client.CreateTokenRequest{Subject: "child", Scopes: []string{"patient/Observation.r"}, Grace: "1m"})
	if r.status != 201 {
		t.Fatalf("child: %d %s", r.status, r.body)
	}
	var child client.IssuedToken
	json.Unmarshal(r.body, &child)
	// escalation refused, naming the field
	r = e.json("POST", "/v1/tokens", parent.Secret, client.CreateTokenRequest{Subject: "x", Scopes: []string{"patient/Observation.cruds"}})
	if code, field := errCode(t, r); r.status != 403 || code != "attenuation" || field != "scopes" {
		t.Fatalf("escalation: %d %s", r.status, r.body)
	}
	// permission change
	scopes := []string{"patient/Observation.rs"}
	r = e.json("PATCH", "/v1/tokens/"+child.ID, parent.Secret, client.UpdateTokenRequest{Scopes: &scopes, Clear: []string{"metadata"}})
	var upd client.Token
	json.Unmarshal(r.body, &upd)
	if r.status != 200 || upd.Scopes[0] != "patient/Observation.rs" || upd.Revision != child.Revision+1 {
		t.Fatalf("update %s: %d %s", child.ID, r.status, r.body)
	}
	r = e.json("PATCH", "/v1/tokens/"+child.ID, parent.Secret, client.UpdateTokenRequest{Scopes: &scopes, Revision: child.Revision})
	if code, _ := errCode(t, r); r.status != 409 || code != "conflict" {
		t.Fatalf("stale revision: %d %s", r.status, r.body)
	}
	// rotate with grace
	r = e.json("POST", "/v1/tokens/"+child.ID+"/rotate", parent.Secret, client.RotateRequest{Grace: "1m"})
	var rot client.IssuedToken
	json.Unmarshal(r.body, &rot)
	if r.status != 200 || rot.Secret == "" || rot.Secret == child.Secret || rot.PreviousNotAfter == nil {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	for _, s := range []string{child.Secret, rot.Secret} {
		if r := e.json("GET", "/v1/tokens/self", s, nil); r.status != 200 {
			t.Fatalf("secret after rotation with grace: %d", r.status)
		}
	}
	// self rotate with zero grace: the old one stops
	r = e.json("POST", "/v1/tokens/self/rotate", rot.Secret, map[string]string{"grace": "0s"})
	var rot2 client.IssuedToken
	json.Unmarshal(r.body, &rot2)
	if r.status != 200 {
		t.Fatalf("self rotate: %d %s", r.status, r.body)
	}
	if r := e.json("GET", "/v1/tokens/self", rot.Secret, nil); r.status != 401 {
		t.Fatalf("old secret after zero-grace rotation: %d", r.status)
	}
	// suspend and reinstate
	r = e.json("POST", "/v1/tokens/"+child.ID+"/suspend", parent.Secret, client.StatusRequest{Reason: "investigating"})
	if r.status != 200 {
		t.Fatal(r.status)
	}
	if r := e.json("GET", "/v1/tokens/self", rot2.Secret, nil); r.status != 401 {
		t.Fatalf("suspended: %d", r.status)
	}
	r = e.do("POST", "/v1/tokens/"+child.ID+"/reinstate", parent.Secret, "", nil)
	if r.status != 200 {
		t.Fatal(r.status, string(r.body))
	}
	// cascade revoke from the root
	r = e.json("DELETE", "/v1/tokens/"+parent.ID+"?cascade=true", e.admin, nil)
	var rr client.RevokeResult
	json.Unmarshal(r.body, &rr)
	if r.status != 200 || len(rr.Revoked) != 2 {
		t.Fatalf("cascade: %d %s", r.status, r.body)
	}
	if r := e.json("GET", "/v1/tokens/self", rot2.Secret, nil); r.status != 401 {
		t.Fatalf("child after cascade: %d", r.status)
	}
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	if r := e.do("GET", "/healthz", "", "", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if r := e.do("GET", "/readyz", "", "", nil); r.status != 200 {
		t.Fatal(r.status)
	}
}

// FuzzCreateBody sends arbitrary bodies to the creation handler: never a
// panic, never a 5xx, always a JSON answer.
func FuzzCreateBody(f *testing.F) {
	e := newEnv(f)
	for _, s := range []string{`{}`, `{"subject":"a","scopes":["billing:read"]}`, `{"subject":"a","scopes":["patient/*.rs"],"hours":{"start":"22:00","end":"06:00","tz":"UTC"}}`,
		`{"subject":"a","scopes":["billing:read"],"rate":{"per_second":1e308,"burst":-1}}`, `[`, `null`, `{"metadata":{"":""}}`,
		`{"subject":"a/b","scopes":["billing:read"],"subject_prefix":"a/","max_lifetime":"2h"}`, `{"subject":"a","scopes":["billing:read"],"subject_prefix":" \u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		for _, path := range []string{"/v1/tokens"} {
			r := e.do("POST", path, e.admin, "application/json", body)
			if r.status >= 500 {
				t.Fatalf("%s: %d %s", path, r.status, r.body)
			}
			if !json.Valid(r.body) {
				t.Fatalf("not JSON: %q", r.body)
			}
		}
	})
}

// FuzzUpdateBody does the same for PATCH.
func FuzzUpdateBody(f *testing.F) {
	e := newEnv(f)
	it := e.create(client.CreateTokenRequest{Subject: "s", Scopes: []string{"billing:read"}})
	for _, s := range []string{`{}`, `{"scopes":["billing:*"]}`, `{"clear":["hours","rate"]}`, `{"ttl":"1m","cidrs":["::1"]}`, `{"expires_at":"2000-01-01T00:00:00Z"}`,
		`{"subject_prefix":"s/"}`, `{"subject_prefix":""}`, `{"expires_at":"2200-01-01T00:00:00Z"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		r := e.do("PATCH", "/v1/tokens/"+it.ID, e.admin, "application/json", body)
		if r.status >= 500 || !json.Valid(r.body) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

// FuzzIntrospectForm fuzzes the form decoding of RFC 7662 and 7009.
func FuzzIntrospectForm(f *testing.F) {
	e := newEnv(f)
	for _, s := range []string{"token=abc", "token=%zz", "token_type_hint=access_token&token=", "a=b;c=d", "token=" + strings.Repeat("x", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		for _, path := range []string{"/v1/introspect", "/v1/revoke"} {
			r := e.do("POST", path, e.admin, "application/x-www-form-urlencoded", body)
			if r.status >= 500 {
				t.Fatalf("%s: %d %s", path, r.status, r.body)
			}
		}
	})
}

// FuzzRotateAndStatusBodies fuzzes the optional bodies of rotate, suspend,
// reinstate and revoke on a throwaway token.
func FuzzRotateAndStatusBodies(f *testing.F) {
	e := newEnv(f)
	it := e.create(client.CreateTokenRequest{Subject: "s", Scopes: []string{"billing:read"}, TTL: "1h"})
	for _, s := range []string{``, `{}`, `{"grace":"5m"}`, `{"grace":"-1s"}`, `{"ttl":"99999h"}`, `{"reason":"x"}`, `{"reason":` + strings.Repeat(`"a`, 10) + `}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		for _, p := range []string{"/rotate", "/suspend", "/reinstate"} {
			r := e.do("POST", "/v1/tokens/"+it.ID+p, e.admin, "application/json", body)
			if r.status >= 500 || !json.Valid(r.body) {
				t.Fatalf("%s: %d %s", p, r.status, r.body)
			}
		}
	})
}
