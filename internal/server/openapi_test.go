package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/phigate/phigate/pkg/client"
)

// The OpenAPI contract test: every operation of GET /v1/openapi.json is
// sent to the real server (phigate server --dev, TLS on loopback), with a
// request that validates against the documented request schema; the
// status answered must be documented for the operation, and the body
// must validate against the documented schema of that status and media
// type (JSON Schema 2020-12, format assertions on). Every operation must
// be exercised at least once with a success and once with an error.
//
// santhosh-tekuri/jsonschema validates: it implements JSON Schema 2020-12
// (the dialect of OpenAPI 3.1) whole, with format assertions, is
// maintained and has no dependencies but golang.org/x/text; a validator
// of our own for the subset used here would be a second thing to test.

const docURL = "https://phigate.test/openapi.json"

// contract is the document of the live server, compiled.
type contract struct {
	t     *testing.T
	doc   map[string]any
	c     *jsonschema.Compiler
	cache map[string]*jsonschema.Schema
}

func loadContract(t *testing.T, ls *liveServer) *contract {
	t.Helper()
	a := ls.call("GET", "https://"+ls.admin+"/v1/openapi.json", "", nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %d", a.status)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(a.body))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(a.body, &m)
	return &contract{t: t, doc: m, c: c, cache: map[string]*jsonschema.Schema{}}
}

func ptrEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func (k *contract) schema(ptr string) *jsonschema.Schema {
	k.t.Helper()
	if s, ok := k.cache[ptr]; ok {
		return s
	}
	s, err := k.c.Compile(docURL + "#" + ptr)
	if err != nil {
		k.t.Fatalf("compiling %s: %v", ptr, err)
	}
	k.cache[ptr] = s
	return s
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// response returns the documented response of op for status (following
// a $ref to components/responses) and its JSON pointer.
func (k *contract) response(path, method string, status int) (map[string]any, string) {
	base := "/paths/" + ptrEscape(path) + "/" + method + "/responses/" + fmt.Sprint(status)
	r, _ := get(k.doc, "paths", path, method, "responses", fmt.Sprint(status)).(map[string]any)
	if r == nil {
		return nil, ""
	}
	if ref, ok := r["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/responses/")
		r, _ = get(k.doc, "components", "responses", name).(map[string]any)
		base = "/components/responses/" + ptrEscape(name)
	}
	return r, base
}

type apiCase struct {
	op     string // the operationId, for the coverage of cases
	method string
	// as is the documented method of the operation when method is another
	// (a 405 answer); empty: method
	as     string
	tmpl   string // the documented path
	path   string // the path sent, with its query
	bearer string
	ctype  string
	body   string
	header map[string]string
	want   int
}

// check sends c and checks the answer against the contract.
func (k *contract) check(ls *liveServer, c apiCase) {
	t := k.t
	t.Helper()
	name := fmt.Sprintf("%s %s (%s)", c.method, c.path, c.op)
	method := strings.ToLower(c.method)
	if c.as != "" {
		method = strings.ToLower(c.as)
	}
	op, _ := get(k.doc, "paths", c.tmpl, method).(map[string]any)
	if op == nil {
		t.Errorf("%s: %s %s is not documented", name, c.method, c.tmpl)
		return
	}
	if id, _ := op["operationId"].(string); id != c.op {
		t.Errorf("%s: the document calls it %q", name, id)
	}
	if c.body != "" && c.ctype == "application/json" && c.want < 300 {
		// a documented request: its body validates against the request schema
		ptr := "/paths/" + ptrEscape(c.tmpl) + "/" + method + "/requestBody/content/application~1json/schema"
		if get(k.doc, "paths", c.tmpl, method, "requestBody", "content", "application/json", "schema") == nil {
			t.Errorf("%s: sends a JSON body that is not documented", name)
		} else {
			inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(c.body))
			if err := k.schema(ptr).Validate(inst); err != nil {
				t.Errorf("%s: the request is not a documented one: %v", name, err)
			}
		}
	}
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(c.body)
	}
	req, _ := http.NewRequest(c.method, "https://"+ls.admin+c.path, rd)
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for h, v := range c.header {
		req.Header.Set(h, v)
	}
	resp, err := ls.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != c.want {
		t.Errorf("%s: %d, want %d: %.300s", name, resp.StatusCode, c.want, body)
	}
	doc, base := k.response(c.tmpl, method, resp.StatusCode)
	if doc == nil {
		t.Errorf("%s: status %d is not documented", name, resp.StatusCode)
		return
	}
	content, _ := doc["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) != 0 {
			t.Errorf("%s: %d documents no body, got %.200s", name, resp.StatusCode, body)
		}
		return
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if content[mt] == nil {
		t.Errorf("%s: %d answered %q, documented %v", name, resp.StatusCode, mt, keys(content))
		return
	}
	if mt != "application/json" {
		return
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s: the body is not JSON: %v", name, err)
		return
	}
	if err := k.schema(base + "/content/application~1json/schema").Validate(inst); err != nil {
		t.Errorf("%s: %d body does not validate: %v\n%.500s", name, resp.StatusCode, err, body)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func form(v url.Values) string { return v.Encode() }

func TestOpenAPIContractHoldsAgainstTheRealServer(t *testing.T) {
	ls := startLive(t, nil)
	k := loadContract(t, ls)
	admin := ls.adminToken

	// retiring a pepper needs one no live secret is hashed with: rotate
	// the pepper, then the admin token itself, first
	if a := ls.admin_("POST", "/v1/keys/rotate-pepper", nil); a.status != http.StatusOK {
		t.Fatalf("rotate-pepper: %d %s", a.status, a.body)
	}
	a := ls.call("POST", "https://"+ls.admin+"/v1/tokens/self/rotate", admin, nil, map[string]string{"grace": "0s"})
	if a.status != http.StatusOK {
		t.Fatalf("rotating the admin token: %d %s", a.status, a.body)
	}
	var it client.IssuedToken
	json.Unmarshal(a.body, &it)
	admin, ls.adminToken = it.Secret, it.Secret

	tok := func(req client.CreateTokenRequest) client.IssuedToken { return ls.token(req) }
	weak := tok(client.CreateTokenRequest{Subject: "svc:weak", Scopes: []string{"user/Patient.r"}}).Secret
	t1 := tok(client.CreateTokenRequest{Subject: "svc:one", Scopes: []string{"user/Patient.r"}})
	t2 := tok(client.CreateTokenRequest{Subject: "svc:two", Scopes: []string{"user/Patient.r"}})
	t3 := tok(client.CreateTokenRequest{Subject: "svc:three", Scopes: []string{"user/Patient.r"}})
	t4 := tok(client.CreateTokenRequest{Subject: "svc:four", Scopes: []string{"user/Patient.r"}})
	t5 := tok(client.CreateTokenRequest{Subject: "svc:five", Scopes: []string{"user/Patient.r"}})
	leaked := tok(client.CreateTokenRequest{Subject: "svc:leaked", Scopes: []string{"user/Patient.r"}})
	// a leak alert, for the alert endpoints
	if a := ls.admin_("POST", "/v1/tokens/leaked", map[string]any{"tokens": []client.Leak{{Token: leaked.Secret, Where: "setup"}}}); a.status != http.StatusOK {
		t.Fatalf("leak report: %d %s", a.status, a.body)
	}
	var alerts client.AlertList
	json.Unmarshal(ls.admin_("GET", "/v1/alerts", nil).body, &alerts)
	if len(alerts.Alerts) == 0 {
		t.Fatal("no alert to work with")
	}
	alert := alerts.Alerts[0].ID
	kek := filepath.Join(t.TempDir(), "next.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(kek, key, 0o600); err != nil {
		t.Fatal(err)
	}
	leak2 := tok(client.CreateTokenRequest{Subject: "svc:leaked-two", Scopes: []string{"user/Patient.r"}})

	// a SMART Backend Services client and two of its assertions
	ck, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	cset, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ck.Public(), KeyID: "k1", Use: "sig"}}})
	var oc client.OAuthClient
	if a := ls.admin_("POST", "/v1/clients", map[string]any{"name": "contract", "jwks": json.RawMessage(cset), "scopes": []string{"system/Observation.rs"}}); a.status != http.StatusCreated {
		t.Fatalf("register a client: %d %s", a.status, a.body)
	} else {
		json.Unmarshal(a.body, &oc)
	}
	gone := ls.admin_("POST", "/v1/clients", map[string]any{"name": "gone", "jwks": json.RawMessage(cset), "scopes": []string{"system/Observation.rs"}})
	var goneC client.OAuthClient
	json.Unmarshal(gone.body, &goneC)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: ck}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	assertion := func() string {
		now := ls.clk.Now() // the live server's clock
		a, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: oc.ID, Subject: oc.ID, Audience: jwt.Audience{"https://" + ls.admin + "/v1/oauth/token"},
			ID: rand.Text(), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	grant := func(a string) string {
		return form(url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
	}

	const js, fm = "application/json", "application/x-www-form-urlencoded"
	cases := []apiCase{
		{op: "registerClient", method: "POST", tmpl: "/v1/clients", path: "/v1/clients", bearer: admin, ctype: js,
			body: `{"name":"c2","jwks_url":"https://keys.example/jwks.json","scopes":["system/Observation.rs"],"cidrs":["10.0.0.0/8"],"max_ttl":"4m"}`, want: 201},
		{op: "registerClient", method: "POST", tmpl: "/v1/clients", path: "/v1/clients", bearer: admin, ctype: js, body: `{"name":"c3","jwks_url":"http://x","scopes":["system/Observation.rs"]}`, want: 400},
		{op: "registerClient", method: "POST", tmpl: "/v1/clients", path: "/v1/clients", bearer: weak, ctype: js, body: `{"name":"c4","jwks_url":"https://x","scopes":["system/Observation.rs"]}`, want: 403},
		{op: "listClients", method: "GET", tmpl: "/v1/clients", path: "/v1/clients?status=active&limit=10", bearer: admin, want: 200},
		{op: "listClients", method: "GET", tmpl: "/v1/clients", path: "/v1/clients?status=paused", bearer: admin, want: 400},
		{op: "getClient", method: "GET", tmpl: "/v1/clients/{id}", path: "/v1/clients/" + oc.ID, bearer: admin, want: 200},
		{op: "getClient", method: "GET", tmpl: "/v1/clients/{id}", path: "/v1/clients/cli_nosuch", bearer: admin, want: 404},
		{op: "oauthToken", method: "POST", tmpl: "/v1/oauth/token", path: "/v1/oauth/token", ctype: fm, body: grant(assertion()), want: 200},
		{op: "oauthToken", method: "POST", tmpl: "/v1/oauth/token", path: "/v1/oauth/token", ctype: fm, body: grant("a.b.c"), want: 401},
		{op: "oauthToken", method: "POST", tmpl: "/v1/oauth/token", path: "/v1/oauth/token", ctype: fm, body: "grant_type=password", want: 400},
		{op: "revokeClient", method: "DELETE", tmpl: "/v1/clients/{id}", path: "/v1/clients/" + goneC.ID + "?reason=contract", bearer: admin, want: 200},
		{op: "revokeClient", method: "DELETE", tmpl: "/v1/clients/{id}", path: "/v1/clients/" + goneC.ID, bearer: admin, want: 409},
		{op: "healthz", method: "GET", tmpl: "/healthz", path: "/healthz", want: 200},
		{op: "healthz", method: "POST", as: "GET", tmpl: "/healthz", path: "/healthz", want: 405},
		{op: "readyz", method: "GET", tmpl: "/readyz", path: "/readyz", want: 200},
		{op: "readyz", method: "POST", as: "GET", tmpl: "/readyz", path: "/readyz", want: 405},
		{op: "openapi", method: "GET", tmpl: "/v1/openapi.json", path: "/v1/openapi.json", want: 200},
		{op: "openapi", method: "DELETE", as: "GET", tmpl: "/v1/openapi.json", path: "/v1/openapi.json", want: 405},
		{op: "metrics", method: "GET", tmpl: "/metrics", path: "/metrics", bearer: admin, want: 200},
		{op: "metrics", method: "GET", tmpl: "/metrics", path: "/metrics", bearer: weak, want: 403},
		{op: "metrics", method: "GET", tmpl: "/metrics", path: "/metrics", want: 401},

		{op: "createToken", method: "POST", tmpl: "/v1/tokens", path: "/v1/tokens", bearer: admin, ctype: js,
			body: `{"subject":"svc:new","scopes":["patient/Observation.rs"],"ttl":"15m","cidrs":["10.0.0.0/8"],"hours":{"start":"07:00","end":"19:00","tz":"America/New_York"},"rate":{"per_second":10,"burst":20},"max_uses":100,"metadata":{"team":"lab"}}`, want: 201},
		{op: "createToken", method: "POST", tmpl: "/v1/tokens", path: "/v1/tokens", bearer: admin, ctype: js, body: `{"subject":"svc:new"}`, want: 400},
		{op: "createToken", method: "POST", tmpl: "/v1/tokens", path: "/v1/tokens", bearer: admin, ctype: "text/plain", body: `x`, want: 415},
		{op: "createToken", method: "POST", tmpl: "/v1/tokens", path: "/v1/tokens", bearer: weak, ctype: js, body: `{"subject":"svc:x","scopes":["admin:tokens"]}`, want: 403},
		{op: "listTokens", method: "GET", tmpl: "/v1/tokens", path: "/v1/tokens?limit=2", bearer: admin, want: 200},
		{op: "listTokens", method: "GET", tmpl: "/v1/tokens", path: "/v1/tokens?limit=x", bearer: admin, want: 400},
		{op: "listTokens", method: "GET", tmpl: "/v1/tokens", path: "/v1/tokens", bearer: "phi_garbage", want: 401},
		{op: "getToken", method: "GET", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/" + t1.ID, bearer: admin, want: 200},
		{op: "getToken", method: "GET", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/tok_nosuch", bearer: admin, want: 404},
		{op: "updateToken", method: "PATCH", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/" + t1.ID, bearer: admin, ctype: js, body: `{"metadata":{"team":"lab"},"idle_timeout":"30m"}`, want: 200},
		{op: "updateToken", method: "PATCH", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/" + t1.ID, bearer: admin, ctype: js, body: `{"nonsense":1}`, want: 400},
		{op: "updateToken", method: "PATCH", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/" + t1.ID, bearer: admin, ctype: js, body: `{"revision":1}`, want: 409},
		{op: "rotateToken", method: "POST", tmpl: "/v1/tokens/{id}/rotate", path: "/v1/tokens/" + t1.ID + "/rotate", bearer: admin, ctype: js, body: `{"grace":"0s"}`, header: map[string]string{"Idempotency-Key": "contract-1"}, want: 200},
		{op: "rotateToken", method: "POST", tmpl: "/v1/tokens/{id}/rotate", path: "/v1/tokens/tok_nosuch/rotate", bearer: admin, want: 404},
		{op: "suspendToken", method: "POST", tmpl: "/v1/tokens/{id}/suspend", path: "/v1/tokens/" + t4.ID + "/suspend", bearer: admin, ctype: js, body: `{"reason":"contract test"}`, want: 200},
		{op: "suspendToken", method: "POST", tmpl: "/v1/tokens/{id}/suspend", path: "/v1/tokens/tok_nosuch/suspend", bearer: admin, want: 404},
		{op: "reinstateToken", method: "POST", tmpl: "/v1/tokens/{id}/reinstate", path: "/v1/tokens/" + t4.ID + "/reinstate", bearer: admin, want: 200},
		{op: "reinstateToken", method: "POST", tmpl: "/v1/tokens/{id}/reinstate", path: "/v1/tokens/" + t4.ID + "/reinstate", bearer: weak, want: 403},
		{op: "revokeToken", method: "DELETE", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/" + t2.ID + "?cascade=true", bearer: admin, want: 200},
		{op: "revokeToken", method: "DELETE", tmpl: "/v1/tokens/{id}", path: "/v1/tokens/tok_nosuch", bearer: admin, want: 404},
		{op: "self", method: "GET", tmpl: "/v1/tokens/self", path: "/v1/tokens/self", bearer: weak, want: 200},
		{op: "self", method: "GET", tmpl: "/v1/tokens/self", path: "/v1/tokens/self", want: 401},
		{op: "rotateSelf", method: "POST", tmpl: "/v1/tokens/self/rotate", path: "/v1/tokens/self/rotate", bearer: t3.Secret, ctype: js, body: `{"ttl":"10m"}`, want: 200},
		{op: "rotateSelf", method: "POST", tmpl: "/v1/tokens/self/rotate", path: "/v1/tokens/self/rotate", bearer: t3.Secret, want: 401}, // the secret it replaced
		{op: "reportLeaked", method: "POST", tmpl: "/v1/tokens/leaked", path: "/v1/tokens/leaked", bearer: admin, ctype: js, body: `{"tokens":[{"token":"` + leak2.Secret + `","where":"ci.log:3"}],"source":"contract"}`, want: 200},
		{op: "reportLeaked", method: "POST", tmpl: "/v1/tokens/leaked", path: "/v1/tokens/leaked", bearer: admin, ctype: js, body: `{}`, want: 400},
		{op: "introspect", method: "POST", tmpl: "/v1/introspect", path: "/v1/introspect", bearer: admin, ctype: fm, body: form(url.Values{"token": {t5.Secret}}), want: 200},
		{op: "introspect", method: "POST", tmpl: "/v1/introspect", path: "/v1/introspect", bearer: admin, ctype: fm, body: form(url.Values{"token": {"phi_nothing"}}), want: 200},
		{op: "introspect", method: "POST", tmpl: "/v1/introspect", path: "/v1/introspect", bearer: admin, ctype: js, body: `{"token":"x"}`, want: 415},
		{op: "revoke", method: "POST", tmpl: "/v1/revoke", path: "/v1/revoke", bearer: t5.Secret, ctype: fm, body: form(url.Values{"token": {t5.Secret}}), want: 200},
		{op: "revoke", method: "POST", tmpl: "/v1/revoke", path: "/v1/revoke", bearer: admin, ctype: fm, body: form(url.Values{"token_type_hint": {"access_token"}}), want: 400},
		{op: "auditSearch", method: "GET", tmpl: "/v1/audit", path: "/v1/audit?action=token.created", bearer: admin, want: 200},
		{op: "auditSearch", method: "GET", tmpl: "/v1/audit", path: "/v1/audit?from=yesterday", bearer: admin, want: 400},
		{op: "auditCheckpoint", method: "GET", tmpl: "/v1/audit/checkpoint", path: "/v1/audit/checkpoint", bearer: admin, want: 200},
		{op: "auditCheckpoint", method: "GET", tmpl: "/v1/audit/checkpoint", path: "/v1/audit/checkpoint", bearer: admin, header: map[string]string{"Accept": "text/plain"}, want: 200},
		{op: "auditCheckpoint", method: "GET", tmpl: "/v1/audit/checkpoint", path: "/v1/audit/checkpoint", bearer: weak, want: 403},
		{op: "auditProof", method: "GET", tmpl: "/v1/audit/proof", path: "/v1/audit/proof?seq=0", bearer: admin, want: 200},
		{op: "auditProof", method: "GET", tmpl: "/v1/audit/proof", path: "/v1/audit/proof?seq=x", bearer: admin, want: 400},
		{op: "auditConsistency", method: "GET", tmpl: "/v1/audit/proof/consistency", path: "/v1/audit/proof/consistency?from=0&to=0", bearer: admin, want: 200},
		{op: "auditConsistency", method: "GET", tmpl: "/v1/audit/proof/consistency", path: "/v1/audit/proof/consistency?from=2&to=1", bearer: admin, want: 400},
		{op: "auditKey", method: "GET", tmpl: "/v1/audit/key", path: "/v1/audit/key", want: 200},
		{op: "auditKey", method: "POST", as: "GET", tmpl: "/v1/audit/key", path: "/v1/audit/key", want: 405},
		{op: "serverMetadata", method: "GET", tmpl: "/.well-known/oauth-authorization-server", path: "/.well-known/oauth-authorization-server", want: 200},
		{op: "serverMetadata", method: "POST", as: "GET", tmpl: "/.well-known/oauth-authorization-server", path: "/.well-known/oauth-authorization-server", want: 405},
		{op: "setSecret", method: "PUT", tmpl: "/v1/secrets/{name}", path: "/v1/secrets/ehr-token", bearer: admin, ctype: js, body: `{"value":"generated-at-test-time-` + t1.ID + `"}`, want: 200},
		{op: "setSecret", method: "PUT", tmpl: "/v1/secrets/{name}", path: "/v1/secrets/ehr-token", bearer: admin, ctype: js, body: `{}`, want: 400},
		{op: "listSecrets", method: "GET", tmpl: "/v1/secrets", path: "/v1/secrets", bearer: admin, want: 200},
		{op: "listSecrets", method: "GET", tmpl: "/v1/secrets", path: "/v1/secrets", bearer: weak, want: 403},
		{op: "rotateKEK", method: "POST", tmpl: "/v1/keys/rotate-kek", path: "/v1/keys/rotate-kek", bearer: admin, ctype: js, body: `{"new_master_key":"file:` + kek + `"}`, want: 200},
		{op: "rotateKEK", method: "POST", tmpl: "/v1/keys/rotate-kek", path: "/v1/keys/rotate-kek", bearer: admin, ctype: js, body: `{"new_master_key":"bogus:x"}`, want: 400},
		{op: "rotateDEK", method: "POST", tmpl: "/v1/keys/rotate-dek/{purpose}", path: "/v1/keys/rotate-dek/audit-fields", bearer: admin, want: 200},
		{op: "rotateDEK", method: "POST", tmpl: "/v1/keys/rotate-dek/{purpose}", path: "/v1/keys/rotate-dek/no-such-purpose", bearer: admin, want: 404},
		{op: "listPeppers", method: "GET", tmpl: "/v1/keys/peppers", path: "/v1/keys/peppers", bearer: admin, want: 200},
		{op: "listPeppers", method: "GET", tmpl: "/v1/keys/peppers", path: "/v1/keys/peppers", bearer: weak, want: 403},
		{op: "retirePepper", method: "POST", tmpl: "/v1/keys/retire-pepper/{version}", path: "/v1/keys/retire-pepper/1", bearer: admin, want: 200},
		{op: "retirePepper", method: "POST", tmpl: "/v1/keys/retire-pepper/{version}", path: "/v1/keys/retire-pepper/2", bearer: admin, want: 409},
		{op: "retirePepper", method: "POST", tmpl: "/v1/keys/retire-pepper/{version}", path: "/v1/keys/retire-pepper/x", bearer: admin, want: 400},
		{op: "rotatePepper", method: "POST", tmpl: "/v1/keys/rotate-pepper", path: "/v1/keys/rotate-pepper", bearer: admin, want: 200},
		{op: "rotatePepper", method: "POST", tmpl: "/v1/keys/rotate-pepper", path: "/v1/keys/rotate-pepper", bearer: weak, want: 403},
		{op: "listAlerts", method: "GET", tmpl: "/v1/alerts", path: "/v1/alerts?severity=high&limit=10", bearer: admin, want: 200},
		{op: "listAlerts", method: "GET", tmpl: "/v1/alerts", path: "/v1/alerts?severity=dire", bearer: admin, want: 400},
		{op: "getAlert", method: "GET", tmpl: "/v1/alerts/{id}", path: "/v1/alerts/" + alert, bearer: admin, want: 200},
		{op: "getAlert", method: "GET", tmpl: "/v1/alerts/{id}", path: "/v1/alerts/alr_nosuch", bearer: admin, want: 404},
		{op: "ackAlert", method: "POST", tmpl: "/v1/alerts/{id}/ack", path: "/v1/alerts/" + alert + "/ack", bearer: admin, ctype: js, body: `{"note":"seen"}`, want: 200},
		{op: "ackAlert", method: "POST", tmpl: "/v1/alerts/{id}/ack", path: "/v1/alerts/" + alert + "/ack", bearer: admin, ctype: js, body: `{"note":"again"}`, want: 409},
	}
	ok, bad := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		k.check(ls, c)
		if c.want < 300 {
			ok[c.op] = true
		} else {
			bad[c.op] = true
		}
	}
	// every documented operation is exercised with a success and an error
	for p, item := range k.doc["paths"].(map[string]any) {
		for m, v := range item.(map[string]any) {
			op, _ := v.(map[string]any)
			id, _ := op["operationId"].(string)
			if id == "" {
				continue
			}
			if !ok[id] || !bad[id] {
				t.Errorf("%s %s (%s): the contract test sends a success %v, an error %v; add its cases here", strings.ToUpper(m), p, id, ok[id], bad[id])
			}
		}
	}
}
