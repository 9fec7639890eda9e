package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// adminToken stands for a bearer token; it is deliberately not token-shaped.
const adminToken = "phi_admin-token-for-cli-tests-must-not-leak"

type seen struct {
	Method, Path, Query, Auth, ContentType string
	Body                                   []byte
}

// fakeAPI is a TLS server that records each request and answers with a
// canned status and body chosen per "METHOD path".
type fakeAPI struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	answers map[string]func(r *http.Request) (int, string)
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{answers: map[string]func(*http.Request) (int, string){}}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
		ans := f.answers[r.Method+" "+r.URL.Path]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if ans == nil {
			w.WriteHeader(404)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such route in the fake","request_id":"req_404"}}`)
			return
		}
		status, body := ans(r)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	f.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) on(method, path string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = func(*http.Request) (int, string) { return status, body }
}

func (f *fakeAPI) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fakeAPI) last(t *testing.T) seen {
	t.Helper()
	r := f.requests()
	if len(r) == 0 {
		t.Fatal("no request reached the server")
	}
	return r[len(r)-1]
}

func (f *fakeAPI) env() map[string]string {
	sum := sha256.Sum256(f.Certificate().RawSubjectPublicKeyInfo)
	return map[string]string{
		"PHIGATE_ADDR":  f.URL,
		"PHIGATE_TOKEN": adminToken,
		"PHIGATE_PIN":   "sha256//" + base64.StdEncoding.EncodeToString(sum[:]),
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb, func(k string) string { return env[k] })
	code := execute(context.Background(), root, args, strings.NewReader(stdin), &errb)
	r := result{out.String(), errb.String(), code}
	for _, s := range []string{out.String(), errb.String()} {
		if strings.Contains(s, adminToken) {
			t.Errorf("phigate %v: output contains the admin token:\n%s", args, s)
		}
	}
	return r
}

func jsonBodyEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

const tokenJSON = `{"id":"tok_abc","subject":"alice","kind":"user","scopes":["patient/Observation.rs"],"status":"active",
"created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:19:05Z","not_after":"2026-01-02T05:04:05Z","updated_at":"2026-01-02T03:04:05Z","revision":3,
"subject_prefix":"team-a/","rate":{"per_second":10,"burst":20},"hours":{"start":"07:00","end":"19:00","tz":"America/New_York","days":["Mon","Tue"]},
"metadata":{"team":"lab","evil":"\u001b[2Jx"}}`

const issuedJSON = `{"id":"tok_new","subject":"alice","kind":"user","scopes":["patient/Observation.rs"],"status":"active",
"created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:19:05Z","updated_at":"2026-01-02T03:04:05Z","revision":1,
"token":"phi_theNewSecret"}`

func TestCommandsSendTheRightRequest(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST", "/v1/tokens", 201, issuedJSON)
	f.on("GET", "/v1/tokens", 200, `{"tokens":[`+tokenJSON+`]}`)
	f.on("GET", "/v1/tokens/tok_abc", 200, tokenJSON)
	f.on("PATCH", "/v1/tokens/tok_abc", 200, tokenJSON)
	f.on("DELETE", "/v1/tokens/tok_abc", 200, `{"revoked":["tok_abc","tok_kid"]}`)
	f.on("POST", "/v1/tokens/tok_abc/rotate", 200, `{"id":"tok_abc","token":"phi_rotatedSecret","expires_at":"2026-01-02T04:00:00Z","previous_not_after":"2026-01-02T03:10:00Z"}`)
	f.on("POST", "/v1/tokens/tok_abc/suspend", 200, `{"id":"tok_abc","status":"suspended"}`)
	f.on("POST", "/v1/tokens/tok_abc/reinstate", 200, `{"id":"tok_abc","status":"active"}`)
	f.on("GET", "/v1/tokens/self", 200, tokenJSON)
	f.on("POST", "/v1/tokens/self/rotate", 200, issuedJSON)
	clientJSON := `{"id":"cli_abc","name":"lab","subject":"client:cli_abc","jwks_url":"https://keys.example/jwks","scopes":["system/Observation.rs"],"max_ttl":"5m0s","created_by":"tok_root","status":"active","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`
	f.on("POST", "/v1/clients", 201, clientJSON)
	f.on("GET", "/v1/clients", 200, `{"clients":[`+clientJSON+`]}`)
	f.on("GET", "/v1/clients/cli_abc", 200, clientJSON)
	f.on("DELETE", "/v1/clients/cli_abc", 200, `{"id":"cli_abc","status":"revoked","revoked_tokens":["tok_1","tok_2"]}`)
	f.on("POST", "/v1/introspect", 200, `{"active":true,"sub":"alice","scope":"patient/Observation.rs","jti":"tok_abc","exp":1767323945}`)

	tests := []struct {
		name     string
		args     []string
		stdin    string
		method   string
		path     string
		query    string
		body     string // JSON; "-" for none
		form     string
		stdout   []string // substrings of stdout
		noStdout []string
	}{
		{
			name: "client register",
			args: []string{"client", "register", "--name", "lab", "--jwks-url", "https://keys.example/jwks", "--scope", "system/Observation.rs",
				"--cidr", "10.1.0.0/16", "--rate", "10/s", "--burst", "5", "--purpose", "TREAT", "--ttl", "4m"},
			method: "POST", path: "/v1/clients",
			body:   `{"name":"lab","jwks_url":"https://keys.example/jwks","scopes":["system/Observation.rs"],"cidrs":["10.1.0.0/16"],"rate":{"per_second":10,"burst":5},"purposes":["TREAT"],"max_ttl":"4m"}`,
			stdout: []string{"registered client cli_abc", "system/Observation.rs"},
		},
		{name: "client list", args: []string{"client", "list"}, method: "GET", path: "/v1/clients", query: "limit=1000", body: "-", stdout: []string{"cli_abc", "lab", "active"}},
		{name: "client show", args: []string{"client", "show", "cli_abc"}, method: "GET", path: "/v1/clients/cli_abc", body: "-", stdout: []string{"client:cli_abc", "https://keys.example/jwks"}},
		{name: "client revoke", args: []string{"client", "revoke", "cli_abc", "--reason", "retired"}, method: "DELETE", path: "/v1/clients/cli_abc", query: "reason=retired", body: "-", stdout: []string{"revoked client cli_abc and 2 of its tokens"}},
		{
			name:   "create minimal",
			args:   []string{"token", "create", "--subject", "alice", "--scope", "patient/Observation.rs", "--ttl", "15m"},
			method: "POST", path: "/v1/tokens",
			body:   `{"subject":"alice","scopes":["patient/Observation.rs"],"ttl":"15m"}`,
			stdout: []string{"Token created.", "id:", "tok_new", "expires_at:", "2026-01-02T03:19:05Z", "shown only this once", "\nphi_theNewSecret\n"},
		},
		{
			name: "create with every constraint",
			args: []string{"token", "create", "--subject", "svc:labs", "--kind", "service",
				"--scope", "system/Observation.rs", "--scope", "system/Patient.r",
				"--ttl", "1h", "--idle", "10m", "--grace", "5m", "--max-lifetime", "720h",
				"--cidr", "10.1.0.0/16", "--cidr", "192.168.0.0/24,172.16.0.0/12",
				"--hours", "7:00-19:00", "--tz", "America/New_York", "--days", "Mon-Wed", "--days", "fri",
				"--rate", "600/m", "--burst", "20", "--max-uses", "100",
				"--purpose", "TREAT", "--purpose", "ETREAT", "--purpose-required",
				"--patient", "pat-1", "--break-glass", "--meta", "team=lab", "--meta", "ticket=A=1"},
			method: "POST", path: "/v1/tokens",
			body: `{"subject":"svc:labs","kind":"service","scopes":["system/Observation.rs","system/Patient.r"],
				"ttl":"1h","idle_timeout":"10m","max_lifetime":"720h","grace":"5m",
				"cidrs":["10.1.0.0/16","192.168.0.0/24","172.16.0.0/12"],
				"hours":{"start":"07:00","end":"19:00","tz":"America/New_York","days":["Mon","Tue","Wed","Fri"]},
				"rate":{"per_second":10,"burst":20},"max_uses":100,
				"purposes":["TREAT","ETREAT"],"purpose_required":true,"patient_id":"pat-1","break_glass":true,
				"metadata":{"team":"lab","ticket":"A=1"}}`,
		},
		{
			name:   "create with a subject prefix",
			args:   []string{"token", "create", "--subject", "team-a-admin", "--scope", "admin:tokens", "--subject-prefix", "team-a/"},
			method: "POST", path: "/v1/tokens",
			body: `{"subject":"team-a-admin","scopes":["admin:tokens"],"subject_prefix":"team-a/"}`,
		},
		{
			name:   "create rate default burst",
			args:   []string{"token", "create", "--subject", "a", "--scope", "s", "--rate", "3600/h"},
			method: "POST", path: "/v1/tokens",
			body: `{"subject":"a","scopes":["s"],"rate":{"per_second":1,"burst":1}}`,
		},
		{
			name: "create json", args: []string{"--json", "token", "create", "--subject", "a", "--scope", "s"},
			method: "POST", path: "/v1/tokens", body: `{"subject":"a","scopes":["s"]}`,
			stdout: []string{`"token": "phi_theNewSecret"`, `"id": "tok_new"`},
		},
		{
			name: "list", args: []string{"token", "list", "--subject", "alice", "--status", "active", "--parent", "tok_p", "--limit", "5"},
			method: "GET", path: "/v1/tokens", query: "limit=5&parent=tok_p&status=active&subject=alice", body: "-",
			stdout: []string{"ID", "SUBJECT", "STATUS", "tok_abc", "alice", "active", "patient/Observation.rs"},
		},
		{
			name: "show", args: []string{"token", "show", "tok_abc"},
			method: "GET", path: "/v1/tokens/tok_abc", body: "-",
			stdout: []string{"id:", "tok_abc", "subject:", "alice", "rate:", "10/s burst 20", "hours:", "07:00-19:00 America/New_York Mon,Tue",
				`evil="\x1b[2Jx"`, "team=lab", "revision:", "3", "not_after:", "2026-01-02T05:04:05Z", "subject_prefix:", "team-a/"},
			noStdout: []string{"\x1b"},
		},
		{
			name: "show json", args: []string{"token", "show", "tok_abc", "--json"},
			method: "GET", path: "/v1/tokens/tok_abc", body: "-",
			stdout: []string{`"id": "tok_abc"`, `"per_second": 10`},
		},
		{
			name: "update grace", args: []string{"token", "update", "tok_abc", "--grace", "2m"},
			method: "PATCH", path: "/v1/tokens/tok_abc", body: `{"grace":"2m"}`,
			stdout: []string{"id:", "tok_abc"},
		},
		{
			name: "update some flags",
			args: []string{"token", "update", "tok_abc", "--scope", "patient/Observation.r", "--rate", "5/s", "--purpose-required=false",
				"--clear", "cidr", "--clear", "metadata", "--revision", "3"},
			method: "PATCH", path: "/v1/tokens/tok_abc",
			body:   `{"scopes":["patient/Observation.r"],"rate":{"per_second":5,"burst":5},"purpose_required":false,"clear":["cidrs","metadata"],"revision":3}`,
			stdout: []string{"id:", "tok_abc"},
		},
		{
			name:   "update narrows the subject prefix",
			args:   []string{"token", "update", "tok_abc", "--subject-prefix", "team-a/lab/"},
			method: "PATCH", path: "/v1/tokens/tok_abc",
			body: `{"subject_prefix":"team-a/lab/"}`,
		},
		{
			name:   "update hours and meta",
			args:   []string{"token", "update", "tok_abc", "--hours", "22:00-06:00", "--tz", "UTC", "--meta", "a=b", "--max-uses", "7", "--expires-at", "2026-03-01T17:00:00+01:00"},
			method: "PATCH", path: "/v1/tokens/tok_abc",
			body: `{"hours":{"start":"22:00","end":"06:00","tz":"UTC"},"metadata":{"a":"b"},"max_uses":7,"expires_at":"2026-03-01T16:00:00Z"}`,
		},
		{
			name: "revoke cascade", args: []string{"token", "revoke", "tok_abc", "--cascade", "--reason", "left"},
			method: "DELETE", path: "/v1/tokens/tok_abc", query: "cascade=true", body: `{"reason":"left"}`,
			stdout: []string{"revoked tok_abc\nrevoked tok_kid\n"},
		},
		{
			name: "revoke plain", args: []string{"token", "revoke", "tok_abc"},
			method: "DELETE", path: "/v1/tokens/tok_abc", body: "-",
		},
		{
			name: "rotate", args: []string{"token", "rotate", "tok_abc", "--grace", "5m", "--ttl", "1h"},
			method: "POST", path: "/v1/tokens/tok_abc/rotate", body: `{"grace":"5m","ttl":"1h"}`,
			stdout: []string{"Token rotated.", "previous_secret_until:", "2026-01-02T03:10:00Z", "\nphi_rotatedSecret\n"},
		},
		{
			name: "rotate self", args: []string{"token", "rotate", "self"},
			method: "POST", path: "/v1/tokens/self/rotate", body: `{}`,
			stdout: []string{"phi_theNewSecret"},
		},
		{
			name: "suspend", args: []string{"token", "suspend", "tok_abc", "--reason", "investigating"},
			method: "POST", path: "/v1/tokens/tok_abc/suspend", body: `{"reason":"investigating"}`,
			stdout: []string{"tok_abc: suspended"},
		},
		{
			name: "reinstate", args: []string{"token", "reinstate", "tok_abc"},
			method: "POST", path: "/v1/tokens/tok_abc/reinstate", body: `{}`,
			stdout: []string{"tok_abc: active"},
		},
		{
			name: "self", args: []string{"token", "self"},
			method: "GET", path: "/v1/tokens/self", body: "-",
			stdout: []string{"subject:", "alice"},
		},
		{
			name: "introspect", args: []string{"introspect"}, stdin: "phi_toCheck\n",
			method: "POST", path: "/v1/introspect", form: "token=phi_toCheck",
			stdout:   []string{"active:", "true", "sub:", "alice", "exp:", "2026-01-02T03:19:05Z"},
			noStdout: []string{"phi_toCheck"},
		},
		{
			name: "introspect json", args: []string{"introspect", "--json"}, stdin: "  phi_toCheck  ",
			method: "POST", path: "/v1/introspect", form: "token=phi_toCheck",
			stdout: []string{`"active": true`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.requests())
			r := runCLI(t, f.env(), tt.stdin, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			reqs := f.requests()
			if len(reqs) != before+1 {
				t.Fatalf("%d requests, want 1", len(reqs)-before)
			}
			got := reqs[len(reqs)-1]
			if got.Method != tt.method || got.Path != tt.path || got.Query != tt.query {
				t.Errorf("request %s %s?%s, want %s %s?%s", got.Method, got.Path, got.Query, tt.method, tt.path, tt.query)
			}
			if got.Auth != "Bearer "+adminToken {
				t.Errorf("Authorization = %q", got.Auth)
			}
			switch {
			case tt.form != "":
				if string(got.Body) != tt.form || got.ContentType != "application/x-www-form-urlencoded" {
					t.Errorf("form %q (%s), want %q", got.Body, got.ContentType, tt.form)
				}
			case tt.body == "-":
				if len(got.Body) != 0 {
					t.Errorf("body %q, want none", got.Body)
				}
			case tt.body != "":
				if got.ContentType != "application/json" {
					t.Errorf("Content-Type = %q", got.ContentType)
				}
				jsonBodyEqual(t, got.Body, tt.body)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tt.noStdout {
				if strings.Contains(r.stdout, s) {
					t.Errorf("stdout contains %q:\n%s", s, r.stdout)
				}
			}
		})
	}
}

func TestSecretPrintedOnceOnItsOwnLine(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST", "/v1/tokens", 201, issuedJSON)
	r := runCLI(t, f.env(), "", "token", "create", "--subject", "a", "--scope", "s")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if n := strings.Count(r.stdout, "phi_theNewSecret"); n != 1 {
		t.Errorf("secret printed %d times", n)
	}
	lines := strings.Split(r.stdout, "\n")
	found := false
	for i, l := range lines {
		if l == "phi_theNewSecret" {
			found = i > 0 && strings.Contains(strings.ToLower(lines[i-1]), "secret")
		}
	}
	if !found {
		t.Errorf("secret not alone on a labelled line:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "phi_theNewSecret") {
		t.Error("secret on stderr")
	}
}

func TestListAllFollowsCursor(t *testing.T) {
	f := newFakeAPI(t)
	f.mu.Lock()
	f.answers["GET /v1/tokens"] = func(r *http.Request) (int, string) {
		if r.URL.Query().Get("after") == "" {
			return 200, `{"tokens":[{"id":"tok_1","subject":"a"}],"next":"c1"}`
		}
		return 200, `{"tokens":[{"id":"tok_2","subject":"b"}]}`
	}
	f.mu.Unlock()

	r := runCLI(t, f.env(), "", "token", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "tok_1") || strings.Contains(r.stdout, "tok_2") || !strings.Contains(r.stderr, "--after c1") {
		t.Errorf("one page: %+v", r)
	}
	r = runCLI(t, f.env(), "", "token", "list", "--all", "--json")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	var list struct {
		Tokens []struct{ ID string } `json:"tokens"`
		Next   string                `json:"next"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tokens) != 2 || list.Tokens[1].ID != "tok_2" || list.Next != "" {
		t.Errorf("--all --json = %s", r.stdout)
	}
	q := f.last(t).Query
	if q != "after=c1" {
		t.Errorf("second page query = %q", q)
	}
}

func TestUsageErrorsExit2WithoutRequest(t *testing.T) {
	f := newFakeAPI(t)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`},
		{"unknown token command", []string{"token", "bogus"}, `unknown command "bogus"`},
		{"unknown flag", []string{"token", "list", "--nope"}, "unknown flag: --nope"},
		{"show without id", []string{"token", "show"}, "token show needs a token ID"},
		{"show two ids", []string{"token", "show", "a", "b"}, "one token ID"},
		{"create no subject", []string{"token", "create", "--scope", "s"}, "--subject is required"},
		{"create no scope", []string{"token", "create", "--subject", "a"}, "--scope is required"},
		{"bad rate", []string{"token", "create", "--subject", "a", "--scope", "s", "--rate", "10/d"}, `--rate "10/d"`},
		{"rate zero", []string{"token", "create", "--subject", "a", "--scope", "s", "--rate", "0/s"}, "--rate"},
		{"burst without rate", []string{"token", "create", "--subject", "a", "--scope", "s", "--burst", "3"}, "--burst qualifies --rate"},
		{"empty subject prefix", []string{"token", "create", "--subject", "a", "--scope", "s", "--subject-prefix", " "}, "--subject-prefix: give the prefix"},
		{"clearing the subject prefix", []string{"token", "update", "tok_abc", "--subject-prefix", ""}, "--subject-prefix: give the prefix"},
		{"bad hours", []string{"token", "create", "--subject", "a", "--scope", "s", "--hours", "25:00-26:00", "--tz", "UTC"}, `--hours "25:00-26:00"`},
		{"hours without tz", []string{"token", "create", "--subject", "a", "--scope", "s", "--hours", "07:00-19:00"}, "--hours needs --tz"},
		{"bad tz", []string{"token", "create", "--subject", "a", "--scope", "s", "--hours", "07:00-19:00", "--tz", "Mars/Olympus"}, `--tz "Mars/Olympus"`},
		{"tz without hours", []string{"token", "create", "--subject", "a", "--scope", "s", "--tz", "UTC"}, "give --hours too"},
		{"bad days", []string{"token", "create", "--subject", "a", "--scope", "s", "--hours", "07:00-19:00", "--tz", "UTC", "--days", "Funday"}, `--days "Funday"`},
		{"bad meta", []string{"token", "create", "--subject", "a", "--scope", "s", "--meta", "novalue"}, `--meta "novalue": want key=value`},
		{"dup meta", []string{"token", "create", "--subject", "a", "--scope", "s", "--meta", "a=1", "--meta", "a=2"}, "given twice"},
		{"bad kind", []string{"token", "create", "--subject", "a", "--scope", "s", "--kind", "root"}, "--kind"},
		{"bad ttl", []string{"token", "create", "--subject", "a", "--scope", "s", "--ttl", "15 minutes"}, "--ttl"},
		{"kind on update", []string{"token", "update", "tok_abc", "--kind", "admin"}, "unknown flag: --kind"},
		{"empty update", []string{"token", "update", "tok_abc"}, "nothing to update"},
		{"bad clear", []string{"token", "update", "tok_abc", "--clear", "scopes"}, "--clear"},
		{"clear and set", []string{"token", "update", "tok_abc", "--clear", "rate", "--rate", "1/s"}, "contradict"},
		{"ttl and expires-at", []string{"token", "update", "tok_abc", "--ttl", "1h", "--expires-at", "2026-01-01T00:00:00Z"}, "give one"},
		{"bad grace", []string{"token", "rotate", "tok_abc", "--grace", "soon"}, "--grace"},
		{"bad create grace", []string{"token", "create", "--subject", "a", "--scope", "s", "--grace", "soon"}, "--grace"},
		{"introspect argv", []string{"introspect", "phi_secretOnArgv"}, "takes no arguments"},
		{"introspect empty stdin", []string{"introspect"}, "stdin was empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, f.env(), "", tt.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "phigate: ") || !strings.Contains(r.stderr, tt.msg) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.msg)
			}
			if strings.Contains(r.stderr, "phigate: phigate") {
				t.Errorf("doubled prefix: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent for usage errors", n)
	}
}

func TestErrorsExit1(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/tokens/tok_x", 403, `{"error":{"code":"insufficient_scope","message":"tokens:read needed","request_id":"req_7"}}`)
	r := runCLI(t, f.env(), "", "token", "show", "tok_x")
	if r.code != 1 || !strings.Contains(r.stderr, "phigate: 403 insufficient_scope: tokens:read needed [request req_7]") {
		t.Errorf("%+v", r)
	}

	env := f.env()
	delete(env, "PHIGATE_TOKEN")
	r = runCLI(t, env, "", "token", "self")
	if r.code != 1 || !strings.Contains(r.stderr, "PHIGATE_TOKEN is not set") {
		t.Errorf("no token: %+v", r)
	}

	env = f.env()
	env["PHIGATE_PIN"] = base64.StdEncoding.EncodeToString(make([]byte, 32))
	r = runCLI(t, env, "", "token", "self")
	if r.code != 1 || !strings.Contains(r.stderr, "PHIGATE_PIN") || !strings.Contains(r.stderr, strings.TrimPrefix(f.env()["PHIGATE_PIN"], "sha256//")) {
		t.Errorf("pin mismatch: %+v", r)
	}

	env = f.env()
	env["PHIGATE_ADDR"] = strings.Replace(f.URL, "https", "http", 1)
	r = runCLI(t, env, "", "token", "self")
	if r.code != 1 || !strings.Contains(r.stderr, "https") {
		t.Errorf("http address: %+v", r)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestHelpExit0(t *testing.T) {
	for _, args := range [][]string{nil, {"--help"}, {"token"}, {"token", "create", "--help"}} {
		r := runCLI(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("phigate %v: %+v", args, r)
		}
	}
	r := runCLI(t, nil, "", "--help")
	// (server and init are the lead's; while they are stubs cobra lists them
	// as help topics.)
	for _, c := range []string{"server", "init", "token", "introspect"} {
		if !strings.Contains(r.stdout, c+" ") {
			t.Errorf("root help lacks %s:\n%s", c, r.stdout)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"token", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "create") {
		t.Errorf("run: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("run bogus: exit %d", code)
	}
}
