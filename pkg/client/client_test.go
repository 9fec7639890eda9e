package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// testToken stands for a bearer token; it is deliberately not token-shaped.
const testToken = "phi_test-bearer-that-must-never-leak"

// recorded is what the test server saw of one request.
type recorded struct {
	Method, Path, RawQuery, Auth, ContentType, UA string
	Body                                          []byte
}

// fakeServer answers every request with the next canned answer and records
// the request.
type fakeServer struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	status int
	header http.Header
	body   string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{status: 200, body: `{}`}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"),
			r.Header.Get("Content-Type"), r.Header.Get("User-Agent"), b})
		status, header, body := f.status, f.header, f.body
		f.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) answer(status int, body string, header http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.header = status, body, header
}

func (f *fakeServer) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeServer) pin() string {
	sum := sha256.Sum256(f.Certificate().RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (f *fakeServer) client(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(f.URL, append([]client.Option{client.WithToken(testToken), client.WithPins(f.pin())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// jsonEqual compares a request body with the expected JSON text.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	if want == "" {
		if len(got) != 0 {
			t.Errorf("body = %s, want none", got)
		}
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s, want %s", got, want)
	}
}

const tokenJSON = `{"id":"tok_abc","subject":"alice","kind":"user","scopes":["patient/Observation.rs"],"status":"active",
"created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:19:05Z","updated_at":"2026-01-02T03:04:05Z","revision":3}`

const issuedJSON = `{"id":"tok_abc","subject":"alice","kind":"user","scopes":["patient/Observation.rs"],"status":"active",
"created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:19:05Z","updated_at":"2026-01-02T03:04:05Z","revision":1,
"token":"phi_newSecret","previous_not_after":"2026-01-02T03:09:05Z"}`

func TestCallsSendTheContractRequest(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx := context.Background()
	maxUses := int64(5)
	scopes := []string{"patient/Observation.r"}

	tests := []struct {
		name      string
		call      func() (any, error)
		answer    string
		method    string
		path      string
		query     string
		ctype     string
		body      string // JSON, or form text when ctype is a form
		noAuth    bool
		checkResp func(t *testing.T, v any)
	}{
		{
			name: "CreateToken",
			call: func() (any, error) {
				return c.CreateToken(ctx, client.CreateTokenRequest{Subject: "alice", Scopes: []string{"patient/Observation.rs"},
					TTL: "15m", MaxUses: &maxUses, Rate: &client.Rate{PerSecond: 10, Burst: 20},
					Hours: &client.Hours{Start: "07:00", End: "19:00", TZ: "America/New_York"}})
			},
			answer: issuedJSON, method: "POST", path: "/v1/tokens", ctype: "application/json",
			body: `{"subject":"alice","scopes":["patient/Observation.rs"],"ttl":"15m","max_uses":5,
				"rate":{"per_second":10,"burst":20},"hours":{"start":"07:00","end":"19:00","tz":"America/New_York"}}`,
			checkResp: func(t *testing.T, v any) {
				it := v.(*client.IssuedToken)
				if it.Secret != "phi_newSecret" || it.ID != "tok_abc" || it.PreviousNotAfter == nil {
					t.Errorf("decoded %+v", it)
				}
			},
		},
		{
			name: "ListTokens",
			call: func() (any, error) {
				return c.ListTokens(ctx, client.ListOptions{Subject: "alice", Status: "active", Parent: "tok_p", After: "cur", Limit: 10})
			},
			answer: `{"tokens":[` + tokenJSON + `],"next":"cur2"}`, method: "GET", path: "/v1/tokens",
			query: "after=cur&limit=10&parent=tok_p&status=active&subject=alice",
			checkResp: func(t *testing.T, v any) {
				l := v.(*client.TokenList)
				if len(l.Tokens) != 1 || l.Next != "cur2" || l.Tokens[0].Revision != 3 {
					t.Errorf("decoded %+v", l)
				}
			},
		},
		{
			name:   "Token",
			call:   func() (any, error) { return c.Token(ctx, "tok_abc") },
			answer: tokenJSON, method: "GET", path: "/v1/tokens/tok_abc",
			checkResp: func(t *testing.T, v any) {
				if tk := v.(*client.Token); tk.Subject != "alice" || !tk.ExpiresAt.Equal(time.Date(2026, 1, 2, 3, 19, 5, 0, time.UTC)) {
					t.Errorf("decoded %+v", tk)
				}
			},
		},
		{
			name: "UpdateToken",
			call: func() (any, error) {
				return c.UpdateToken(ctx, "tok_abc", client.UpdateTokenRequest{Scopes: &scopes, Revision: 3, Clear: []string{"rate"}})
			},
			answer: tokenJSON, method: "PATCH", path: "/v1/tokens/tok_abc", ctype: "application/json",
			body: `{"scopes":["patient/Observation.r"],"revision":3,"clear":["rate"]}`,
		},
		{
			name:   "RevokeToken cascade with reason",
			call:   func() (any, error) { return c.RevokeToken(ctx, "tok_abc", true, "left the hospital") },
			answer: `{"revoked":["tok_abc","tok_child"]}`, method: "DELETE", path: "/v1/tokens/tok_abc", query: "cascade=true",
			ctype: "application/json", body: `{"reason":"left the hospital"}`,
			checkResp: func(t *testing.T, v any) {
				if r := v.(*client.RevokeResult); len(r.Revoked) != 2 {
					t.Errorf("decoded %+v", r)
				}
			},
		},
		{
			name:   "RevokeToken plain",
			call:   func() (any, error) { return c.RevokeToken(ctx, "tok_abc", false, "") },
			answer: `{"revoked":["tok_abc"]}`, method: "DELETE", path: "/v1/tokens/tok_abc",
		},
		{
			name: "RotateToken",
			call: func() (any, error) {
				return c.RotateToken(ctx, "tok_abc", client.RotateRequest{Grace: "5m", TTL: "1h"})
			},
			answer: issuedJSON, method: "POST", path: "/v1/tokens/tok_abc/rotate", ctype: "application/json",
			body: `{"grace":"5m","ttl":"1h"}`,
		},
		{
			name:   "SuspendToken",
			call:   func() (any, error) { return c.SuspendToken(ctx, "tok_abc", "investigating") },
			answer: tokenJSON, method: "POST", path: "/v1/tokens/tok_abc/suspend", ctype: "application/json",
			body: `{"reason":"investigating"}`,
		},
		{
			name:   "ReinstateToken",
			call:   func() (any, error) { return c.ReinstateToken(ctx, "tok_abc", "") },
			answer: tokenJSON, method: "POST", path: "/v1/tokens/tok_abc/reinstate", ctype: "application/json", body: `{}`,
		},
		{
			name:   "Self",
			call:   func() (any, error) { return c.Self(ctx) },
			answer: tokenJSON, method: "GET", path: "/v1/tokens/self",
		},
		{
			name:   "RotateSelf",
			call:   func() (any, error) { return c.RotateSelf(ctx, client.RotateRequest{Grace: "1m"}) },
			answer: issuedJSON, method: "POST", path: "/v1/tokens/self/rotate", ctype: "application/json", body: `{"grace":"1m"}`,
		},
		{
			name:   "Introspect",
			call:   func() (any, error) { return c.Introspect(ctx, "phi_other+/=") },
			answer: `{"active":true,"scope":"patient/Observation.rs","sub":"alice","exp":1767323945,"jti":"tok_abc","phigate_kind":"user"}`,
			method: "POST", path: "/v1/introspect", ctype: "application/x-www-form-urlencoded", body: "token=phi_other%2B%2F%3D",
			checkResp: func(t *testing.T, v any) {
				if in := v.(*client.Introspection); !in.Active || in.Sub != "alice" || in.Kind != "user" || in.Exp != 1767323945 {
					t.Errorf("decoded %+v", in)
				}
			},
		},
		{
			name:   "Revoke",
			call:   func() (any, error) { return nil, c.Revoke(ctx, "phi_other") },
			answer: ``, method: "POST", path: "/v1/revoke", ctype: "application/x-www-form-urlencoded", body: "token=phi_other",
		},
		{
			name:   "Health",
			call:   func() (any, error) { return nil, c.Health(ctx) },
			answer: `{"status":"ok"}`, method: "GET", path: "/healthz", noAuth: true,
		},
		{
			name:   "Ready",
			call:   func() (any, error) { return nil, c.Ready(ctx) },
			answer: `{"status":"ok"}`, method: "GET", path: "/readyz", noAuth: true,
		},
		{
			name:   "id is path-escaped",
			call:   func() (any, error) { return c.Token(ctx, "a/b?c") },
			answer: tokenJSON, method: "GET", path: "/v1/tokens/a/b?c",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(200, tt.answer, nil)
			v, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			r := f.last(t)
			if r.Method != tt.method || r.Path != tt.path || r.RawQuery != tt.query {
				t.Errorf("request %s %s?%s, want %s %s?%s", r.Method, r.Path, r.RawQuery, tt.method, tt.path, tt.query)
			}
			wantAuth := "Bearer " + testToken
			if tt.noAuth {
				wantAuth = ""
			}
			if r.Auth != wantAuth {
				t.Errorf("Authorization = %q, want %q", r.Auth, wantAuth)
			}
			if r.ContentType != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", r.ContentType, tt.ctype)
			}
			if r.UA != client.DefaultUserAgent {
				t.Errorf("User-Agent = %q", r.UA)
			}
			if strings.HasPrefix(tt.ctype, "application/x-www-form-urlencoded") {
				if string(r.Body) != tt.body {
					t.Errorf("form = %q, want %q", r.Body, tt.body)
				}
			} else {
				jsonEqual(t, r.Body, tt.body)
			}
			if tt.checkResp != nil {
				tt.checkResp(t, v)
			}
		})
	}
}

func TestEscapedIDStaysOneSegment(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	var rawPath string
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rawPath = r.URL.EscapedPath()
		io.WriteString(w, tokenJSON)
	})
	if _, err := c.Token(context.Background(), "../x"); err != nil {
		t.Fatal(err)
	}
	if rawPath != "/v1/tokens/..%2Fx" {
		t.Errorf("escaped path = %q", rawPath)
	}
}

func TestEmptyIDRefusedWithoutRequest(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx := context.Background()
	calls := map[string]func() error{
		"Token":   func() error { _, err := c.Token(ctx, ""); return err },
		"Update":  func() error { _, err := c.UpdateToken(ctx, "", client.UpdateTokenRequest{}); return err },
		"Revoke":  func() error { _, err := c.RevokeToken(ctx, "", false, ""); return err },
		"Rotate":  func() error { _, err := c.RotateToken(ctx, "", client.RotateRequest{}); return err },
		"Susp":    func() error { _, err := c.SuspendToken(ctx, "", ""); return err },
		"Rein":    func() error { _, err := c.ReinstateToken(ctx, "", ""); return err },
		"Intro":   func() error { _, err := c.Introspect(ctx, ""); return err },
		"RFC7009": func() error { return c.Revoke(ctx, "") },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s with empty id: no error", name)
		}
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestAllTokensFollowsCursor(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("after") {
		case "":
			fmt.Fprintf(w, `{"tokens":[{"id":"tok_1"},{"id":"tok_2"}],"next":"c1"}`)
		case "c1":
			fmt.Fprintf(w, `{"tokens":[{"id":"tok_3"}]}`)
		default:
			w.WriteHeader(400)
		}
	})
	var ids []string
	for tk, err := range c.AllTokens(context.Background(), client.ListOptions{Subject: "alice"}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	if strings.Join(ids, ",") != "tok_1,tok_2,tok_3" {
		t.Errorf("ids = %v", ids)
	}
}

func TestAllTokensStopsOnRepeatedCursor(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	f.answer(200, `{"tokens":[{"id":"tok_1"}],"next":"same"}`, nil)
	var err error
	n := 0
	for _, e := range c.AllTokens(context.Background(), client.ListOptions{}) {
		if e != nil {
			err = e
			break
		}
		if n++; n > 10 {
			t.Fatal("no end")
		}
	}
	if err == nil {
		t.Fatal("a repeated cursor was followed forever")
	}
}

func TestAPIErrorDecoding(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	tests := []struct {
		name   string
		status int
		body   string
		header http.Header
		want   client.APIError
	}{
		{"error body", 400, `{"error":{"code":"invalid_request","message":"ttl: too long","request_id":"req_1","field":"ttl"}}`, nil,
			client.APIError{Status: 400, Code: "invalid_request", Message: "ttl: too long", RequestID: "req_1", Field: "ttl"}},
		{"challenge only", 401, ``, http.Header{"Www-Authenticate": {`Bearer realm="phigate", error="invalid_token"`}},
			client.APIError{Status: 401, Code: "invalid_token"}},
		{"body wins over challenge", 403, `{"error":{"code":"insufficient_scope","message":"no"}}`,
			http.Header{"Www-Authenticate": {`Bearer error="insufficient_scope"`}},
			client.APIError{Status: 403, Code: "insufficient_scope", Message: "no"}},
		{"html from a proxy", 502, `<html>bad gateway</html>`, http.Header{"X-Request-Id": {"req_9"}},
			client.APIError{Status: 502, RequestID: "req_9"}},
		{"control characters", 409, `{"error":{"code":"conflict","message":"a\nb"}}`, nil,
			client.APIError{Status: 409, Code: "conflict", Message: "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.status, tt.body, tt.header)
			_, err := c.Token(context.Background(), "tok_abc")
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if *ae != tt.want {
				t.Errorf("got %+v, want %+v", *ae, tt.want)
			}
			if !strings.HasPrefix(ae.Error(), fmt.Sprintf("phigate: %d", tt.status)) {
				t.Errorf("Error() = %q", ae.Error())
			}
		})
	}
}

func TestBearerTokenNeverInErrors(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx := context.Background()
	secret := "phi_introspected-secret-also-secret"
	check := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", name)
			return
		}
		for _, s := range []string{testToken, secret, testToken[4:]} {
			for _, form := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
				if strings.Contains(form, s) {
					t.Errorf("%s: error %q contains a secret", name, form)
				}
			}
		}
	}
	// A server that echoes the credentials it was given.
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("WWW-Authenticate", `Bearer error="`+r.Header.Get("Authorization")+`"`)
		w.WriteHeader(401)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{
			"code": "invalid_token", "message": "bad " + r.Header.Get("Authorization") + " " + r.PostForm.Get("token"),
			"request_id": r.Header.Get("Authorization"), "field": r.PostForm.Get("token"),
		}})
	})
	_, err := c.Self(ctx)
	check("Self", err)
	_, err = c.Introspect(ctx, secret)
	check("Introspect", err)
	check("Revoke", c.Revoke(ctx, secret))
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+r.Header.Get("Authorization")[7:]+`"`)
		w.WriteHeader(401)
	})
	_, err = c.Self(ctx)
	check("challenge", err)

	// Transport failures.
	bad, err := client.New(f.URL, client.WithToken(testToken), client.WithPins(base64.StdEncoding.EncodeToString(make([]byte, 32))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Self(ctx)
	check("pin mismatch", err)
	closed := httptest.NewTLSServer(http.NotFoundHandler())
	addr := closed.URL
	closed.Close()
	c2, _ := client.New(addr, client.WithToken(testToken), client.WithPins(f.pin()))
	_, err = c2.Self(ctx)
	check("connection refused", err)

	// Options and environment.
	_, err = client.New(f.URL, client.WithToken(testToken+"\n"))
	check("token with newline", err)
	_, err = client.FromEnvFunc(func(k string) string {
		return map[string]string{"PHIGATE_ADDR": f.URL, "PHIGATE_TOKEN": "phi_a b" + testToken, "PHIGATE_PIN": f.pin()}[k]
	})
	check("env token with space", err)
	_, err = client.FromEnvFunc(func(k string) string {
		return map[string]string{"PHIGATE_ADDR": f.URL, "PHIGATE_PIN": testToken}[k]
	})
	check("token pasted into PHIGATE_PIN", err)

	// The client itself prints without its token.
	for _, form := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", *c)} {
		if strings.Contains(form, testToken) {
			t.Errorf("client prints its token: %q", form)
		}
	}
}

func TestPinMatch(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	for _, pin := range []string{f.pin(), "sha256//" + f.pin()} {
		c, err := client.New(f.URL, client.WithToken(testToken), client.WithPins(base64.StdEncoding.EncodeToString(make([]byte, 32)), pin))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Self(context.Background()); err != nil {
			t.Errorf("pin %q: %v", pin, err)
		}
	}
}

func TestPinMismatchIsHardFailure(t *testing.T) {
	f := newFakeServer(t)
	other := base64.StdEncoding.EncodeToString(make([]byte, 32))
	c, err := client.New(f.URL, client.WithToken(testToken), client.WithPins(other))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Self(context.Background())
	var pe *client.PinMismatchError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want *PinMismatchError", err, err)
	}
	if pe.Presented != f.pin() {
		t.Errorf("Presented = %q, want %q", pe.Presented, f.pin())
	}
	for _, s := range []string{"PHIGATE_PIN", f.pin()} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d requests reached a server whose pin did not match", n)
	}
}

func TestPinAndCAMustBothHold(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	c, err := client.New(f.URL, client.WithToken(testToken), client.WithCAFile(caFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Self(ctx); err != nil {
		t.Errorf("CA only: %v", err)
	}
	c, _ = client.New(f.URL, client.WithToken(testToken), client.WithCAFile(caFile), client.WithPins(f.pin()))
	if _, err := c.Self(ctx); err != nil {
		t.Errorf("CA and matching pin: %v", err)
	}
	c, _ = client.New(f.URL, client.WithToken(testToken), client.WithCAFile(caFile), client.WithPins(base64.StdEncoding.EncodeToString(make([]byte, 32))))
	var pe *client.PinMismatchError
	if _, err := c.Self(ctx); !errors.As(err, &pe) {
		t.Errorf("CA and wrong pin: err = %v, want *PinMismatchError", err)
	}
	// The CA file is verified against the name: a wrong server name fails.
	c, _ = client.New(f.URL, client.WithToken(testToken), client.WithCAFile(caFile), client.WithServerName("not-the-server.test"))
	if _, err := c.Self(ctx); err == nil {
		t.Error("CA with a wrong server name: no error")
	}
	// Without pin or CA, the system roots do not know the test server.
	c, _ = client.New(f.URL, client.WithToken(testToken))
	if _, err := c.Self(ctx); err == nil {
		t.Error("no pin, no CA: the test server's self-signed certificate was accepted")
	}
}

func TestBadTLSOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for name, opts := range map[string][]client.Option{
		"short pin":            {client.WithPins("abcd")},
		"non-base64 pin":       {client.WithPins("!!!!")},
		"missing CA file":      {client.WithCAFile(filepath.Join(dir, "none.pem"))},
		"CA file not PEM":      {client.WithCAFile(notPEM)},
		"pins and transport":   {client.WithPins(base64.StdEncoding.EncodeToString(make([]byte, 32))), client.WithTransport(http.DefaultTransport)},
		"client and transport": {client.WithHTTPClient(&http.Client{}), client.WithTransport(http.DefaultTransport)},
		"empty token":          {client.WithToken("")},
	} {
		if _, err := client.New("https://127.0.0.1:1", opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParsePins(t *testing.T) {
	a := base64.StdEncoding.EncodeToString(make([]byte, 32))
	b := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("b", 32)))
	got, err := client.ParsePins(" sha256//" + a + ",\t" + b + "  ")
	if err != nil || len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("ParsePins = %v, %v", got, err)
	}
	if _, err := client.ParsePins(a + " nope"); err == nil || !strings.Contains(err.Error(), "#2") || strings.Contains(err.Error(), "nope") {
		t.Errorf("bad pin error = %v", err)
	}
}

func TestNonHTTPSRefused(t *testing.T) {
	for _, addr := range []string{"http://127.0.0.1:8443", "http://phigate.example.org", "ftp://x", "https://user:pw@host", "https://host/?q=1", "https://"} {
		_, err := client.New(addr, client.WithToken(testToken))
		if err == nil {
			t.Errorf("New(%q): no error", addr)
			continue
		}
		if strings.Contains(err.Error(), "pw") {
			t.Errorf("New(%q): error %q shows the password", addr, err)
		}
	}
	_, err := client.New("http://127.0.0.1:8443")
	if err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("http error %v does not say to use https", err)
	}
	// Allowed explicitly, and only to loopback.
	if _, err := client.New("http://127.0.0.1:8443", client.WithInsecureHTTP()); err != nil {
		t.Error(err)
	}
	if _, err := client.New("http://[::1]:8443", client.WithInsecureHTTP()); err != nil {
		t.Error(err)
	}
	if _, err := client.New("http://phigate.example.org", client.WithInsecureHTTP()); err == nil {
		t.Error("plain http to a remote host allowed")
	}
	c, err := client.New("127.0.0.1:8443")
	if err != nil || c.Addr() != "https://127.0.0.1:8443" {
		t.Errorf("bare host:port: %v, %v", c, err)
	}
}

func TestInsecureHTTPForTests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tokenJSON) }))
	defer srv.Close()
	c, err := client.New(srv.URL, client.WithToken(testToken), client.WithInsecureHTTP())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Self(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPathPrefixKept(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	c, err := client.New(f.URL+"/phigate/", client.WithToken(testToken), client.WithPins(f.pin()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(context.Background(), "tok_abc"); err != nil {
		t.Fatal(err)
	}
	if p := f.last(t).Path; p != "/phigate/v1/tokens/tok_abc" {
		t.Errorf("path = %q", p)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	f := newFakeServer(t)
	var hits int
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer target.Close()
	f.answer(302, "", http.Header{"Location": {target.URL + "/steal"}})
	c := f.client(t)
	_, err := c.Self(context.Background())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 302 {
		t.Errorf("err = %v, want an APIError 302", err)
	}
	if hits != 0 {
		t.Error("redirect followed")
	}
}

func TestAnswerSizeBounded(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"tokens":[],"next":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < 5*16; i++ { // 5 MiB
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `"}`)
	})
	if _, err := c.ListTokens(context.Background(), client.ListOptions{}); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("err = %v, want an over-size error", err)
	}
}

func TestTimeout(t *testing.T) {
	f := newFakeServer(t)
	release := make(chan struct{})
	defer close(release)
	f.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := f.client(t, client.WithTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := c.Self(context.Background())
	if err == nil {
		t.Fatal("no timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

type rotatingSource struct{ n int }

func (s *rotatingSource) Token(context.Context) (string, error) {
	s.n++
	return fmt.Sprintf("phi_source%d", s.n), nil
}

func TestTokenSource(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	c, err := client.New(f.URL, client.WithTokenSource(&rotatingSource{}), client.WithPins(f.pin()))
	if err != nil {
		t.Fatal(err)
	}
	c.Self(context.Background())
	c.Self(context.Background())
	if a := f.last(t).Auth; a != "Bearer phi_source2" {
		t.Errorf("Authorization = %q", a)
	}
}

func TestFromEnv(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	env := map[string]string{
		"PHIGATE_ADDR":  f.URL,
		"PHIGATE_TOKEN": testToken + "\n", // as read from a file
		"PHIGATE_PIN":   base64.StdEncoding.EncodeToString(make([]byte, 32)) + ", sha256//" + f.pin(),
	}
	c, err := client.FromEnvFunc(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Self(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := f.last(t).Auth; a != "Bearer "+testToken {
		t.Errorf("Authorization = %q", a)
	}
	c, err = client.FromEnvFunc(func(string) string { return "" })
	if err != nil || c.Addr() != client.DefaultAddr {
		t.Errorf("default address: %v, %v", c, err)
	}
	_, err = client.FromEnvFunc(func(k string) string { return map[string]string{"PHIGATE_ADDR": "http://10.0.0.1"}[k] })
	if err == nil {
		t.Error("http PHIGATE_ADDR accepted")
	}
}
