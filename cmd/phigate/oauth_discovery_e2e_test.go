package main

// `phigate server --dev` with the stock OAuth client openid-client
// (testdata/openid-client/discovery.mjs): RFC 8414 discovery, RFC 7662
// introspection with client_secret_basic and client_secret_post, and
// RFC 7009 revocation, over HTTPS.

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

const openidClientDir = "testdata/openid-client"

// openidClient runs script in testdata/openid-client with input on stdin,
// trusting caFile, or skips (outside CI) or fails (CI=true) when Node or
// openid-client is missing.
func openidClient(t *testing.T, caFile, script string, input any) map[string]struct {
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
	Code  string          `json:"code"`
	Cause string          `json:"cause"`
} {
	t.Helper()
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	out := runNodeScript(t, openidClientDir, "openid-client", script, caFile, in)
	var res map[string]struct {
		OK    bool            `json:"ok"`
		Value json.RawMessage `json:"value"`
		Error string          `json:"error"`
		Code  string          `json:"code"`
		Cause string          `json:"cause"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s output (%v): %s", script, err, out)
	}
	return res
}

func TestStockOAuthClientDiscoveryIntrospectionRevocation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startDev(t, dir)
	var rs, app client.IssuedToken
	s.mustJSON(t, s.adm, &rs, "token", "create", "--subject", "fhir-server", "--scope", "introspect", "--ttl", "10m")
	s.mustJSON(t, s.adm, &app, "token", "create", "--subject", "dr-who", "--scope", "patient/Observation.rs",
		"--patient", "pat-1", "--meta", "fhirUser=Practitioner/123", "--ttl", "10m")
	issuer := "https://" + s.addr
	res := openidClient(t, filepath.Join(dir, "tls", tlsutil.SelfSignedCertName), "discovery.mjs",
		map[string]string{"issuer": issuer, "client_id": rs.ID, "client_secret": rs.Secret, "token": app.Secret})
	if len(res) != 6 {
		t.Fatalf("steps: %+v", res)
	}

	d := res["discovery"]
	var meta map[string]any
	json.Unmarshal(d.Value, &meta)
	if !d.OK || meta["issuer"] != issuer || meta["introspection_endpoint"] != issuer+"/v1/introspect" || meta["revocation_endpoint"] != issuer+"/v1/revoke" {
		t.Fatalf("discovery: %+v", d)
	}
	for _, name := range []string{"introspect_basic", "introspect_post"} {
		r := res[name]
		var in client.Introspection
		json.Unmarshal(r.Value, &in)
		if !r.OK || !in.Active || in.Sub != "dr-who" || in.Scope != "patient/Observation.rs" || in.Jti != app.ID ||
			in.PatientID != "pat-1" || in.FHIRUser != "Practitioner/123" || in.TokenType != "Bearer" || in.Iss != issuer ||
			in.ClientID != app.CreatedBy || in.Nbf == 0 || in.Iat == 0 || in.Exp == 0 {
			t.Errorf("%s: %+v %s", name, r, r.Value)
		}
	}
	if r := res["revoke"]; !r.OK {
		t.Errorf("revoke: %+v", r)
	}
	if r := res["introspect_after_revoke"]; !r.OK || string(bytes.TrimSpace(r.Value)) != `{"active":false}` {
		t.Errorf("after revoke: %+v %s", r, r.Value)
	}
	// a wrong secret: openid-client reports the Basic challenge of the 401
	// (it reads WWW-Authenticate before the RFC 6749 body)
	if r := res["introspect_wrong_secret"]; r.OK || r.Code != "OAUTH_WWW_AUTHENTICATE_CHALLENGE" ||
		!bytes.Contains([]byte(r.Cause), []byte(`"scheme":"basic","parameters":{"realm":"phigate"`)) {
		t.Errorf("wrong secret: %+v", r)
	}
}
