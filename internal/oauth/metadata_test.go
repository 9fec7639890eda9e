package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// smartCapabilities is the list of capability names SMART App Launch 2
// defines (conformance.html, "Capabilities"); a server publishes no other.
var smartCapabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect",
	"context-banner", "context-style",
	"context-ehr-patient", "context-ehr-encounter",
	"context-standalone-patient", "context-standalone-encounter",
	"permission-offline", "permission-online", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
	"smart-app-state",
}

// smartField is one member of the SMART .well-known document with the
// rule SMART App Launch 2 gives it.
type smartField struct {
	name     string
	kind     string // "string", "url", "array"
	required bool
}

// smartFields lists the members of SMART App Launch 2's configuration
// ("Metadata": REQUIRED, CONDITIONAL, OPTIONAL) with their JSON types.
var smartFields = []smartField{
	{"issuer", "url", false},                 // CONDITIONAL (sso-openid-connect)
	{"jwks_uri", "url", false},               // CONDITIONAL (sso-openid-connect)
	{"authorization_endpoint", "url", false}, // CONDITIONAL (launch-ehr, launch-standalone)
	{"grant_types_supported", "array", true},
	{"token_endpoint", "url", true},
	{"token_endpoint_auth_methods_supported", "array", false},
	{"registration_endpoint", "url", false},
	{"associated_endpoints", "array", false},
	{"user_access_brand_bundle", "url", false},
	{"user_access_brand_identifier", "string", false},
	{"scopes_supported", "array", false},
	{"response_types_supported", "array", false},
	{"management_endpoint", "url", false},
	{"introspection_endpoint", "url", false},
	{"revocation_endpoint", "url", false},
	{"capabilities", "array", true},
	{"code_challenge_methods_supported", "array", false}, // CONDITIONAL (authorization_endpoint)
	{"token_endpoint_auth_signing_alg_values_supported", "array", false},
}

// validateSMART checks doc against SMART App Launch 2: required members
// present, known members of the right JSON type, URLs absolute https,
// capabilities from the spec's list, the conditional members consistent
// with the capabilities, PKCE S256 only (never plain) where present, and
// the Backend Services members SMART names for client_credentials.
func validateSMART(raw []byte) (problems []string) {
	t := &collector{}
	defer func() { problems = t.problems }()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Errorf("not a JSON object: %v", err)
		return
	}
	known := map[string]smartField{}
	for _, f := range smartFields {
		known[f.name] = f
		if _, ok := doc[f.name]; f.required && !ok {
			t.Errorf("required member %s missing", f.name)
		}
	}
	strs := func(name string) []string {
		var out []string
		arr, _ := doc[name].([]any)
		for _, v := range arr {
			s, ok := v.(string)
			if !ok {
				t.Errorf("%s: element %v is not a string", name, v)
			}
			out = append(out, s)
		}
		return out
	}
	for name, v := range doc {
		f, ok := known[name]
		if !ok {
			t.Errorf("member %s is not one SMART App Launch 2 defines", name)
			continue
		}
		switch f.kind {
		case "array":
			if _, ok := v.([]any); !ok {
				t.Errorf("%s: not an array", name)
			}
		case "url":
			s, ok := v.(string)
			u, err := url.Parse(s)
			if !ok || err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
				t.Errorf("%s: %v is not an absolute https URL", name, v)
			}
		case "string":
			if _, ok := v.(string); !ok {
				t.Errorf("%s: not a string", name)
			}
		}
	}
	if len(t.problems) > 0 {
		return
	}
	caps := strs("capabilities")
	for _, c := range caps {
		if !slices.Contains(smartCapabilities, c) {
			t.Errorf("capability %q is not in SMART's list", c)
		}
	}
	has := func(c string) bool { return slices.Contains(caps, c) }
	if (has("launch-ehr") || has("launch-standalone")) != (doc["authorization_endpoint"] != nil) {
		t.Error("authorization_endpoint must be present exactly when a launch capability is")
	}
	if has("sso-openid-connect") && (doc["issuer"] == nil || doc["jwks_uri"] == nil) {
		t.Error("sso-openid-connect needs issuer and jwks_uri")
	}
	if doc["code_challenge_methods_supported"] != nil {
		m := strs("code_challenge_methods_supported")
		if !slices.Contains(m, "S256") || slices.Contains(m, "plain") {
			t.Errorf("code_challenge_methods_supported %q: S256 SHALL be in it, plain SHALL NOT", m)
		}
	}
	if doc["authorization_endpoint"] != nil && doc["code_challenge_methods_supported"] == nil {
		t.Error("an authorization endpoint needs code_challenge_methods_supported")
	}
	if len(strs("grant_types_supported")) == 0 {
		t.Error("grant_types_supported is empty")
	}
	if slices.Contains(strs("grant_types_supported"), "client_credentials") {
		// Backend Services: asymmetric client authentication with RS384
		// and ES384 (SMART's "Advertising server conformance")
		if !has("client-confidential-asymmetric") {
			t.Error("client_credentials without client-confidential-asymmetric")
		}
		if doc["token_endpoint_auth_methods_supported"] == nil || !slices.Contains(strs("token_endpoint_auth_methods_supported"), "private_key_jwt") {
			t.Error("client_credentials without private_key_jwt")
		}
		algs := strs("token_endpoint_auth_signing_alg_values_supported")
		if !slices.Contains(algs, "RS384") || !slices.Contains(algs, "ES384") {
			t.Errorf("signing algs %q: SMART requires RS384 and ES384", algs)
		}
	}
	return
}

// collector gathers the problems validateSMART finds.
type collector struct{ problems []string }

func (c *collector) Errorf(format string, a ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, a...))
}
func (c *collector) Error(a ...any) { c.problems = append(c.problems, fmt.Sprint(a...)) }

func testOptions() MetadataOptions {
	return MetadataOptions{Issuer: "https://phigate.example:8443", ScopesSupported: []string{"system/*.rs", "system/*.cruds"}, TokenEndpoint: true}
}

func TestSMARTConfigurationValidates(t *testing.T) {
	doc, err := SMARTConfiguration(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	raw := JSON(doc)
	if p := validateSMART(raw); len(p) > 0 {
		t.Fatalf("does not validate against SMART App Launch 2: %q\n%s", p, raw)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	want := map[string]any{
		"issuer":                 "https://phigate.example:8443",
		"token_endpoint":         "https://phigate.example:8443/v1/oauth/token",
		"introspection_endpoint": "https://phigate.example:8443/v1/introspect",
		"revocation_endpoint":    "https://phigate.example:8443/v1/revoke",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if got := doc.Capabilities; !slices.Equal(got, []string{"client-confidential-asymmetric", "permission-v2"}) {
		t.Errorf("capabilities %q", got)
	}
	if _, ok := m["code_challenge_methods_supported"]; ok {
		t.Error("PKCE published without an authorization endpoint")
	}
}

// TestValidateSMARTCatchesMutations: the validator above refuses each
// mutation of a valid document (so that it can fail).
func TestValidateSMARTCatchesMutations(t *testing.T) {
	base, _ := SMARTConfiguration(testOptions())
	mutations := map[string]func(m map[string]any){
		"no_token_endpoint": func(m map[string]any) { delete(m, "token_endpoint") },
		"no_capabilities":   func(m map[string]any) { delete(m, "capabilities") },
		"no_grant_types":    func(m map[string]any) { delete(m, "grant_types_supported") },
		"unknown_capability": func(m map[string]any) {
			m["capabilities"] = []any{"permission-v2", "client-confidential-asymmetric", "magic"}
		},
		"launch_without_endpoint": func(m map[string]any) {
			m["capabilities"] = []any{"permission-v2", "client-confidential-asymmetric", "launch-ehr"}
		},
		"token_endpoint_http": func(m map[string]any) { m["token_endpoint"] = "http://x/token" },
		"capabilities_string": func(m map[string]any) { m["capabilities"] = "permission-v2" },
		"pkce_plain":          func(m map[string]any) { m["code_challenge_methods_supported"] = []any{"S256", "plain"} },
		"unknown_member":      func(m map[string]any) { m["jwks"] = "x" },
		"no_es384":            func(m map[string]any) { m["token_endpoint_auth_signing_alg_values_supported"] = []any{"RS384"} },
		"no_asymmetric_cap":   func(m map[string]any) { m["capabilities"] = []any{"permission-v2"} },
	}
	for name, mut := range mutations {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			json.Unmarshal(JSON(base), &m)
			mut(m)
			raw, _ := json.Marshal(m)
			if len(validateSMART(raw)) == 0 {
				t.Fatalf("validator accepted %s", raw)
			}
		})
	}
}

func TestSMARTConfigurationNeedsTokenEndpoint(t *testing.T) {
	o := testOptions()
	o.TokenEndpoint = false
	if _, err := SMARTConfiguration(o); !errors.Is(err, ErrNoTokenEndpoint) {
		t.Fatalf("err %v, want ErrNoTokenEndpoint", err)
	}
}

func TestServerMetadata(t *testing.T) {
	o := testOptions()
	o.AdminURL = "https://admin.example/"
	d, err := ServerMetadata(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(JSON(d), &m)
	// RFC 8414 §2: issuer and response_types_supported are REQUIRED
	if m["issuer"] != o.Issuer || m["response_types_supported"] == nil {
		t.Fatalf("issuer/response_types_supported: %v", m)
	}
	if m["token_endpoint"] != "https://admin.example/v1/oauth/token" || m["introspection_endpoint"] != "https://admin.example/v1/introspect" {
		t.Fatalf("endpoints below the admin URL: %v", m)
	}
	for _, k := range []string{"introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		got := d.IntrospectionEndpointAuthMethodsSupported
		if k == "revocation_endpoint_auth_methods_supported" {
			got = d.RevocationEndpointAuthMethodsSupported
		}
		if !slices.Equal(got, []string{"client_secret_basic", "client_secret_post", AuthBearer}) || slices.Contains(got, "none") {
			t.Errorf("%s = %q", k, got)
		}
	}
	if _, ok := m["jwks_uri"]; ok {
		t.Error("jwks_uri published though phigate signs nothing for clients")
	}
	o.TokenEndpoint = false
	d, _ = ServerMetadata(o)
	if s := string(JSON(d)); strings.Contains(s, "token_endpoint\"") || strings.Contains(s, "grant_types") {
		t.Fatalf("token endpoint published while disabled: %s", s)
	}
}

func TestServerMetadataRefusesBadIssuer(t *testing.T) {
	for _, iss := range []string{"", "phigate", "http://h", "https://", "https://h/?q=1", "https://h/#f", "https://u:p@h", "ftp://h"} {
		if _, err := ServerMetadata(MetadataOptions{Issuer: iss}); !errors.Is(err, ErrBadIssuer) {
			t.Errorf("issuer %q: err %v, want ErrBadIssuer", iss, err)
		}
	}
}
