package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// oauthEnv is an admin API with recorded denials and an Audiences
// function, over real TLS.
type oauthEnv struct {
	*env
	d *denials
}

type denials struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func newOAuthEnv(t testing.TB) *oauthEnv {
	t.Helper()
	a, st, secret := testAuthority(t)
	o := &oauthEnv{d: &denials{}}
	record := func(_ context.Context, e *audit.Entry) error {
		o.d.mu.Lock()
		o.d.entries = append(o.d.entries, *e)
		o.d.mu.Unlock()
		return nil
	}
	aud := func(set scope.Set) []string {
		var out []string
		if set.Allows("Observation", scope.OpRead) {
			out = append(out, "ehr")
		}
		if set.Has("billing:read") {
			out = append(out, "billing")
		}
		return out
	}
	s := New(a, Options{Ready: st.Ping, Record: record, Audiences: aud, Issuer: "https://phigate.test"})
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	o.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: &bytes.Buffer{}}
	return o
}

func (o *oauthEnv) last() audit.Entry {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	if len(o.d.entries) == 0 {
		o.t.Fatal("no denial recorded")
	}
	return o.d.entries[len(o.d.entries)-1]
}

func (o *oauthEnv) recorded() int {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	return len(o.d.entries)
}

// post sends form to path with the Authorization header auth (if any).
func (o *oauthEnv) post(path, auth string, form url.Values) resp {
	o.t.Helper()
	req, _ := http.NewRequest("POST", o.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	r, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, b}
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func oauthErr(t *testing.T, r resp) OAuthError {
	t.Helper()
	var ob OAuthError
	if err := json.Unmarshal(r.body, &ob); err != nil || ob.Error == "" {
		t.Fatalf("not an RFC 6749 error body: %d %q", r.status, r.body)
	}
	if ob.RequestID == "" || ob.RequestID != r.header.Get("X-Request-Id") {
		t.Fatalf("error without matching request id: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("error without Cache-Control: no-store")
	}
	return ob
}

// TestIntrospectClientAuthentication: each client authentication method
// works with the right credentials, and each mutation of them is refused
// with the RFC 6749 §5.2 error it names, recorded in the audit log.
func TestIntrospectClientAuthentication(t *testing.T) {
	o := newOAuthEnv(t)
	rs := o.create(client.CreateTokenRequest{Subject: "fhir-server", Scopes: []string{"introspect"}})
	other := o.create(client.CreateTokenRequest{Subject: "other-rs", Scopes: []string{"introspect"}})
	plain := o.create(client.CreateTokenRequest{Subject: "app", Scopes: []string{"billing:read"}})
	subj := o.create(client.CreateTokenRequest{Subject: "dr-who", Scopes: []string{"patient/Observation.rs"}, PatientID: "p123"})
	tok := url.Values{"token": {subj.Secret}}
	with := func(extra url.Values) url.Values {
		v := url.Values{"token": {subj.Secret}}
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
	// the id percent-encoded in Basic: a server that does not decode it
	// (RFC 6749 §2.3.1) would not find the token
	encodedID := "Basic " + base64.StdEncoding.EncodeToString([]byte(strings.Replace(rs.ID, "_", "%5F", 1)+":"+rs.Secret))
	cases := []struct {
		name      string
		auth      string
		form      url.Values
		status    int
		oauth     string // error, "" for success
		basicChal bool
		audit     string // reason recorded, "" for none
	}{
		{"basic", basicAuth(rs.ID, rs.Secret), tok, 200, "", false, ""},
		{"basic_percent_encoded_id", encodedID, tok, 200, "", false, ""},
		{"basic_with_matching_client_id_member", basicAuth(rs.ID, rs.Secret), with(url.Values{"client_id": {rs.ID}}), 200, "", false, ""},
		{"post", "", with(url.Values{"client_id": {rs.ID}, "client_secret": {rs.Secret}}), 200, "", false, ""},
		{"bearer", "Bearer " + rs.Secret, tok, 200, "", false, ""},
		{"basic_secret_of_another_token", basicAuth(rs.ID, other.Secret), tok, 401, "invalid_client", true, "client_id_mismatch"},
		{"basic_wrong_secret", basicAuth(rs.ID, rs.Secret[:len(rs.Secret)-1]+otherChar(rs.Secret[len(rs.Secret)-1])), tok, 401, "invalid_client", true, "invalid_token"},
		{"basic_unknown_secret", basicAuth(rs.ID, "phi_"+strings.Repeat("A", 40)), tok, 401, "invalid_client", true, ""},
		{"basic_not_base64", "Basic !!!", tok, 401, "invalid_client", true, "invalid_client"},
		{"basic_no_colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(rs.ID)), tok, 401, "invalid_client", true, "invalid_client"},
		{"basic_bad_percent", "Basic " + base64.StdEncoding.EncodeToString([]byte(rs.ID+":%zz")), tok, 401, "invalid_client", true, "invalid_client"},
		{"post_secret_of_another_token", "", with(url.Values{"client_id": {rs.ID}, "client_secret": {other.Secret}}), 401, "invalid_client", false, "client_id_mismatch"},
		{"post_id_not_a_token_id", "", with(url.Values{"client_id": {"rs"}, "client_secret": {rs.Secret}}), 401, "invalid_client", false, "client_id_mismatch"},
		{"post_without_id", "", with(url.Values{"client_secret": {rs.Secret}}), 401, "invalid_client", false, "invalid_client"},
		{"none_client_id_alone", "", with(url.Values{"client_id": {rs.ID}}), 401, "invalid_client", false, "invalid_client"},
		{"no_credentials", "", tok, 401, "invalid_client", true, "missing_token"},
		{"basic_and_post", basicAuth(rs.ID, rs.Secret), with(url.Values{"client_id": {rs.ID}, "client_secret": {rs.Secret}}), 400, "invalid_request", false, "invalid_request"},
		{"bearer_and_post", "Bearer " + rs.Secret, with(url.Values{"client_id": {rs.ID}, "client_secret": {rs.Secret}}), 400, "invalid_request", false, "invalid_request"},
		{"basic_with_other_client_id_member", basicAuth(rs.ID, rs.Secret), with(url.Values{"client_id": {other.ID}}), 400, "invalid_request", false, "invalid_request"},
		{"post_twice", "", with(url.Values{"client_id": {rs.ID, rs.ID}, "client_secret": {rs.Secret, rs.Secret}}), 400, "invalid_request", false, "invalid_request"},
		{"basic_without_scope", basicAuth(plain.ID, plain.Secret), tok, 403, "insufficient_scope", false, "insufficient_scope"},
		{"post_without_scope", "", with(url.Values{"client_id": {plain.ID}, "client_secret": {plain.Secret}}), 403, "insufficient_scope", false, "insufficient_scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &oauthEnv{env: o.env.with(t), d: o.d}
			before := o.recorded()
			r := o.post("/v1/introspect", c.auth, c.form)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.oauth == "" {
				var in client.Introspection
				json.Unmarshal(r.body, &in)
				if !in.Active || in.Sub != "dr-who" {
					t.Fatalf("not the active answer: %s", r.body)
				}
				if o.recorded() != before {
					t.Fatal("a success was recorded as a denial")
				}
				return
			}
			ob := oauthErr(t, r)
			if ob.Error != c.oauth {
				t.Fatalf("error %q, want %q: %s", ob.Error, c.oauth, r.body)
			}
			chal := r.header.Values("WWW-Authenticate")
			hasBasic := slices.ContainsFunc(chal, func(v string) bool { return strings.HasPrefix(v, "Basic ") })
			if hasBasic != c.basicChal {
				t.Fatalf("Basic challenge %v, want %v: %q", hasBasic, c.basicChal, chal)
			}
			if o.recorded() != before+1 {
				t.Fatalf("denial recorded %d times, want once", o.recorded()-before)
			}
			if c.audit != "" {
				if got := o.last().Reason; got != c.audit {
					t.Fatalf("recorded reason %q, want %q", got, c.audit)
				}
			}
		})
	}
}

// TestBadBodyStillAuthenticatedFirst: a body that is not a form is
// refused after the credential is checked (a wrong one is what the answer
// says), and without any credential it is recorded.
func TestBadBodyStillAuthenticatedFirst(t *testing.T) {
	o := newOAuthEnv(t)
	rs := o.create(client.CreateTokenRequest{Subject: "rs", Scopes: []string{"introspect"}})
	send := func(auth string) resp {
		req, _ := http.NewRequest("POST", o.srv.URL+"/v1/introspect", strings.NewReader(`{"token":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r, err := o.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return resp{r.StatusCode, r.Header, b}
	}
	if r := send(basicAuth(rs.ID, rs.Secret)); r.status != 415 || oauthErr(t, r).Code != "unsupported_media_type" {
		t.Fatalf("valid client, JSON body: %d %s", r.status, r.body)
	}
	before := o.recorded()
	if r := send(basicAuth(rs.ID, "phi_"+strings.Repeat("d", 44))); r.status != 401 || oauthErr(t, r).Error != "invalid_client" {
		t.Fatalf("wrong secret, JSON body: %d %s", r.status, r.body)
	}
	if r := send(""); r.status != 415 || o.recorded() != before+2 {
		t.Fatalf("no credential, JSON body: %d %s, %d recorded", r.status, r.body, o.recorded()-before)
	}
}

// TestClientIDMismatchIndistinguishable: a secret of another token under
// a client id answers byte for byte (but the request id) what a wrong
// secret answers, so the answer does not tell whose secret it is.
func TestClientIDMismatchIndistinguishable(t *testing.T) {
	o := newOAuthEnv(t)
	rs := o.create(client.CreateTokenRequest{Subject: "rs", Scopes: []string{"introspect"}})
	other := o.create(client.CreateTokenRequest{Subject: "other", Scopes: []string{"introspect"}})
	nobody, err := token.Generate(rand.Reader) // well formed, no token's
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"token": {rs.Secret}}
	strip := func(r resp) (OAuthError, []string) {
		ob := oauthErr(t, r)
		ob.RequestID = ""
		return ob, r.header.Values("WWW-Authenticate")
	}
	mismatch, mh := strip(o.post("/v1/introspect", basicAuth(rs.ID, other.Secret), form))
	wrong, wh := strip(o.post("/v1/introspect", basicAuth(rs.ID, nobody), form))
	if mismatch.Error != "invalid_client" || mismatch != wrong || !slices.Equal(mh, wh) {
		t.Fatalf("mismatch %+v %q differs from a wrong secret %+v %q", mismatch, mh, wrong, wh)
	}
}

// TestRevokeClientAuthentication: RFC 7009 with client_secret_basic and
// client_secret_post; the revoked token then introspects inactive.
func TestRevokeClientAuthentication(t *testing.T) {
	o := newOAuthEnv(t)
	rs := o.create(client.CreateTokenRequest{Subject: "rs", Scopes: []string{"introspect"}})
	for _, method := range []string{"basic", "post"} {
		subj := o.create(client.CreateTokenRequest{Subject: "victim", Scopes: []string{"patient/Observation.rs"}})
		form, auth := url.Values{"token": {subj.Secret}}, ""
		if method == "basic" {
			auth = basicAuth(rs.ID, rs.Secret)
		} else {
			form.Set("client_id", rs.ID)
			form.Set("client_secret", rs.Secret)
		}
		if r := o.post("/v1/revoke", auth, form); r.status != 200 {
			t.Fatalf("%s: revoke %d %s", method, r.status, r.body)
		}
		r := o.post("/v1/introspect", basicAuth(rs.ID, rs.Secret), url.Values{"token": {subj.Secret}})
		if strings.TrimSpace(string(r.body)) != `{"active":false}` {
			t.Fatalf("%s: after revoke: %s", method, r.body)
		}
	}
	// a wrong secret on revoke is refused the same way, in the RFC 6749 form
	r := o.post("/v1/revoke", basicAuth(rs.ID, "phi_"+strings.Repeat("c", 44)), url.Values{"token": {rs.Secret}})
	if ob := oauthErr(t, r); r.status != 401 || ob.Error != "invalid_client" {
		t.Fatalf("wrong secret on revoke: %d %s", r.status, r.body)
	}
}

// TestIntrospectionMembers: client_id, aud, iat, nbf, token_type,
// patient and fhirUser are answered where they apply; a fhirUser that is
// no relative reference to a user resource is left out.
func TestIntrospectionMembers(t *testing.T) {
	o := newOAuthEnv(t)
	rs := o.create(client.CreateTokenRequest{Subject: "rs", Scopes: []string{"introspect"}})
	cases := []struct {
		name     string
		req      client.CreateTokenRequest
		aud      []string
		fhirUser string
	}{
		{"patient_token", client.CreateTokenRequest{Subject: "p", Scopes: []string{"patient/Observation.rs"}, PatientID: "p1",
			Metadata: map[string]string{"fhirUser": "Patient/p1"}}, []string{"ehr"}, "Patient/p1"},
		{"practitioner_both_upstreams", client.CreateTokenRequest{Subject: "dr", Scopes: []string{"user/*.rs", "billing:read"},
			Metadata: map[string]string{"fhirUser": "Practitioner/123"}}, []string{"ehr", "billing"}, "Practitioner/123"},
		{"fhirUser_absolute_url_dropped", client.CreateTokenRequest{Subject: "x", Scopes: []string{"billing:read"},
			Metadata: map[string]string{"fhirUser": "https://evil.example/Practitioner/1"}}, []string{"billing"}, ""},
		{"fhirUser_wrong_type_dropped", client.CreateTokenRequest{Subject: "x", Scopes: []string{"billing:read"},
			Metadata: map[string]string{"fhirUser": "Observation/1"}}, []string{"billing"}, ""},
		{"no_upstream", client.CreateTokenRequest{Subject: "x", Scopes: []string{"introspect"}}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			it := o.env.with(t).create(c.req)
			r := o.post("/v1/introspect", basicAuth(rs.ID, rs.Secret), url.Values{"token": {it.Secret}})
			var in client.Introspection
			if err := json.Unmarshal(r.body, &in); err != nil || !in.Active {
				t.Fatalf("%d %s", r.status, r.body)
			}
			created := it.CreatedAt.Unix()
			if in.TokenType != "Bearer" || in.Iat != created || in.Nbf != created || in.Iss != "https://phigate.test" || in.Jti != it.ID {
				t.Fatalf("token_type/iat/nbf/iss/jti: %s (created %d)", r.body, created)
			}
			if in.ClientID != it.CreatedBy || in.ClientID == "" {
				t.Fatalf("client_id %q, want the creating token %q", in.ClientID, it.CreatedBy)
			}
			if !slices.Equal(in.Aud, c.aud) {
				t.Fatalf("aud %q, want %q", in.Aud, c.aud)
			}
			if in.FHIRUser != c.fhirUser || in.PatientID != c.req.PatientID {
				t.Fatalf("fhirUser %q patient %q: %s", in.FHIRUser, in.PatientID, r.body)
			}
		})
	}
}

func TestValidFHIRUser(t *testing.T) {
	for v, want := range map[string]bool{
		"Practitioner/123": true, "PractitionerRole/a.b-c": true, "Patient/p1": true, "RelatedPerson/x": true, "Person/y": true,
		"": false, "Practitioner": false, "Practitioner/": false, "Observation/1": false, "practitioner/1": false,
		"Practitioner/1/_history/2": false, "https://x/Practitioner/1": false, "Practitioner/" + strings.Repeat("a", 65): false,
		"Practitioner/a b": false,
	} {
		if got := ValidFHIRUser(v); got != want {
			t.Errorf("ValidFHIRUser(%q) = %v, want %v", v, got, want)
		}
	}
}

// FuzzBasicCredentials: parseBasic never panics, and what it accepts
// round-trips through the RFC 6749 encoding.
func FuzzBasicCredentials(f *testing.F) {
	for _, s := range []string{"", "!!!", base64.StdEncoding.EncodeToString([]byte("tok_a:phi_b")),
		base64.StdEncoding.EncodeToString([]byte("tok%5Fa:phi%2Bb")), base64.StdEncoding.EncodeToString([]byte(":")),
		base64.StdEncoding.EncodeToString([]byte("a:%zz"))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, secret, ok := parseBasic(v)
		if !ok {
			return
		}
		if id == "" || secret == "" {
			t.Fatalf("accepted empty parts of %q", v)
		}
		again, s2, ok2 := parseBasic(strings.TrimPrefix(basicAuth(id, secret), "Basic "))
		if !ok2 || again != id || s2 != secret {
			t.Fatalf("round trip of %q: %q %q", v, again, s2)
		}
	})
}
