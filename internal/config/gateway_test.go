package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// validGateway is a complete gateway section; the invalid cases below each
// mutate one line of it. Line numbers are in the comments of the table.
const validGateway = `data_dir: /var/lib/phigate
tls: {cert_file: /etc/phigate/tls.crt, key_file: /etc/phigate/tls.key}
gateway:
  listen: 127.0.0.1:9443
  trusted_proxies: [10.0.0.0/8, 192.168.1.7, "2001:db8::/32"]
  limits:
    max_body_bytes: 33554432
    max_inspect_bytes: 1048576
    max_bundle_entries: 100
  upstreams:
    - name: ehr
      url: https://ehr.internal:8443/fhir/R4
      prefix: /fhir/
      kind: fhir
      tls:
        ca_file: /etc/phigate/ehr-ca.pem
        pins: ["sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
        server_name: ehr.internal
      timeouts: {connect: 2s, response: 20s, idle: 1m}
      credential:
        type: bearer
        value: env:EHR_TOKEN
      operations:
        - name: $everything
          resource: Patient
          scope: user/Patient.r
    - name: billing
      url: http://127.0.0.1:8080
      allow_plain_http: true
      prefix: /billing/
      kind: http
      credential: {type: header, header: X-Api-Key, value: file:/etc/phigate/billing.key}
      routes:
        - match: GET /invoices/*
          scope: billing:read
        - match: POST /invoices/
          scope: billing:write
    - name: legacy
      prefix: /legacy/
      kind: http
      routes: [{match: "* /**", scope: "legacy:*"}]
`

func TestParseReadsTheGateway(t *testing.T) {
	c, err := Parse([]byte(validGateway))
	if err != nil {
		t.Fatal(err)
	}
	want := Gateway{
		Listen:         "127.0.0.1:9443",
		TrustedProxies: []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"},
		Limits:         GatewayLimits{MaxBodyBytes: 32 << 20, MaxInspectBytes: 1 << 20, MaxBundleEntries: 100},
		Upstreams: []Upstream{
			{
				Name: "ehr", URL: "https://ehr.internal:8443/fhir/R4", Prefix: "/fhir/", Kind: "fhir",
				TLS:        UpstreamTLS{CAFile: "/etc/phigate/ehr-ca.pem", Pins: []string{"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, ServerName: "ehr.internal"},
				Timeouts:   UpstreamTimeouts{Connect: Duration(2 * time.Second), Response: Duration(20 * time.Second), Idle: Duration(time.Minute)},
				Credential: Credential{Type: "bearer", Value: "env:EHR_TOKEN"},
				Operations: []Operation{{Name: "$everything", Resource: "Patient", Scope: "user/Patient.r"}},
			},
			{
				Name: "billing", URL: "http://127.0.0.1:8080", AllowPlainHTTP: true, Prefix: "/billing/", Kind: "http",
				Credential: Credential{Type: "header", Header: "X-Api-Key", Value: "file:/etc/phigate/billing.key"},
				Routes:     []Route{{"GET /invoices/*", "billing:read"}, {"POST /invoices/", "billing:write"}},
			},
			{Name: "legacy", Prefix: "/legacy/", Kind: "http", Routes: []Route{{"* /**", "legacy:*"}}},
		},
		Metadata: PublicMetadata{PerMinute: 60, Burst: 10, MaxSources: 10_000, MaxBytes: 4 << 20},
	}
	if !reflect.DeepEqual(c.Gateway, want) {
		t.Errorf("got  %+v\nwant %+v", c.Gateway, want)
	}
	if got := c.Gateway.Upstreams[1].Timeouts.WithDefaults(); got.Connect.Duration() != 5*time.Second || got.Response.Duration() != 30*time.Second || got.Idle.Duration() != 90*time.Second {
		t.Errorf("timeout defaults: %+v", got)
	}
}

func TestParseRejectsGateway(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		wantLine int
		wantErr  string
	}{
		{"trusted proxy with host bits", "10.0.0.0/8", "10.0.0.1/8", 5, "gateway.trusted_proxies[0]: \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)"},
		{"trusted proxy not an address", "192.168.1.7", "proxy.internal", 5, "gateway.trusted_proxies[1]: \"proxy.internal\" is neither"},
		{"trusted proxies as a string", "trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"2001:db8::/32\"]", "trusted_proxies: 10.0.0.0/8", 5, "gateway.trusted_proxies: must be a list"},
		{"zero max_body_bytes", "max_body_bytes: 33554432", "max_body_bytes: 0", 7, "gateway.limits.max_body_bytes: must be greater than zero"},
		{"negative max_inspect_bytes", "max_inspect_bytes: 1048576", "max_inspect_bytes: -1", 8, "gateway.limits.max_inspect_bytes: must be greater than zero"},
		{"too many bundle entries", "max_bundle_entries: 100", "max_bundle_entries: 10001", 9, "gateway.limits.max_bundle_entries: must be between 1 and 10000"},
		{"upstreams as a mapping", "  upstreams:\n    - name: ehr", "  upstreams:\n    x: 1\n  upstream:\n    - name: ehr", 11, "gateway.upstreams: must be a list"},
		{"name with capitals", "- name: ehr", "- name: EHR", 11, "gateway.upstreams[0].name: required: 1 to 64 characters"},
		{"duplicate name", "- name: billing", "- name: ehr", 27, "gateway.upstreams[1].name: \"ehr\" is already the name of gateway.upstreams[0]"},
		{"name missing", "    - name: legacy\n      prefix: /legacy/", "    - prefix: /legacy/", 38, "gateway.upstreams[2].name: required"},
		{"plain http without allow", "      allow_plain_http: true\n", "", 28, "gateway.upstreams[1].url: plain http:// sends PHI"},
		{"allow_plain_http not a bool", "allow_plain_http: true", "allow_plain_http: yes", 29, "gateway.upstreams[1].allow_plain_http: must be true or false"},
		{"ftp url", "url: https://ehr.internal:8443/fhir/R4", "url: ftp://ehr.internal/", 12, "gateway.upstreams[0].url: scheme must be https"},
		{"url with credentials", "url: https://ehr.internal:8443/fhir/R4", "url: https://u:p@ehr.internal/", 12, "must not hold credentials"},
		{"url with query", "url: https://ehr.internal:8443/fhir/R4", "url: https://ehr.internal/?a=1", 12, "must not have a query"},
		{"url without host", "url: https://ehr.internal:8443/fhir/R4", "url: https:///fhir", 12, "a host is required"},
		{"url with dot segment", "url: https://ehr.internal:8443/fhir/R4", "url: https://ehr.internal/a/../b", 12, "must not hold . or .. segments"},
		{"prefix without slash", "prefix: /fhir/", "prefix: /fhir", 13, "gateway.upstreams[0].prefix: must start and end with /"},
		{"prefix with star", "prefix: /fhir/", "prefix: /fhir/*/", 13, "must be a literal path"},
		{"prefix with dot-dot", "prefix: /fhir/", "prefix: /fhir/../", 13, "gateway.upstreams[0].prefix:"},
		{"prefix under authz", "prefix: /fhir/", "prefix: /v1/authz/x/", 13, "lies under /v1/authz"},
		{"prefix under well-known", "prefix: /fhir/", "prefix: /.well-known/fhir/", 13, "lies under /.well-known/"},
		{"duplicate prefix", "prefix: /billing/", "prefix: /fhir/", 30, "gateway.upstreams[1].prefix: \"/fhir/\" is already the prefix"},
		{"unknown kind", "kind: fhir", "kind: soap", 14, "gateway.upstreams[0].kind: must be fhir or http"},
		{"patient scope on an http route", "scope: billing:read", "scope: patient/DocumentReference.r", 35, "gateway.upstreams[1].routes[0].scope: a route of an http upstream cannot need a patient/ scope"},
		{"kind missing", "      kind: fhir\n", "", 11, "gateway.upstreams[0].kind: required"},
		{"bad pin", "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sha256//AAAA", 17, "gateway.upstreams[0].tls.pins: invalid pin 1"},
		{"tls on plain http", "      allow_plain_http: true\n", "      allow_plain_http: true\n      tls: {ca_file: x.pem}\n", 30, "gateway.upstreams[1].tls: only for an https url"},
		{"bad server name", "server_name: ehr.internal", "server_name: ehr_internal", 18, "gateway.upstreams[0].tls.server_name"},
		{"negative max_checked_body", "      kind: fhir\n", "      kind: fhir\n      max_checked_body: -1\n", 15, "gateway.upstreams[0].max_checked_body: must be between 0"},
		{"huge max_checked_body", "      kind: fhir\n", "      kind: fhir\n      max_checked_body: 1073741824\n", 15, "gateway.upstreams[0].max_checked_body: must be between 0"},
		{"continuation_ttl too long", "      kind: fhir\n", "      kind: fhir\n      continuation_ttl: 48h\n", 15, "gateway.upstreams[0].continuation_ttl: must be between 0"},
		{"cors wildcard origin", "      kind: fhir\n", "      kind: fhir\n      cors:\n        origins: [\"*\"]\n", 16, "gateway.upstreams[0].cors.origins[0]: \"*\" is not an origin"},
		{"cors origin with a path", "      kind: fhir\n", "      kind: fhir\n      cors:\n        origins: [\"https://app.example/x\"]\n", 16, "gateway.upstreams[0].cors.origins[0]:"},
		{"cors without origins", "      kind: fhir\n", "      kind: fhir\n      cors:\n        max_age: 5m\n", 15, "gateway.upstreams[0].cors.origins: required"},
		{"cors max_age too long", "      kind: fhir\n", "      kind: fhir\n      cors:\n        origins: [\"https://app.example\"]\n        max_age: 48h\n", 17, "gateway.upstreams[0].cors.max_age: must be between"},
		{"hide_existence on http", "      kind: http\n      credential:", "      kind: http\n      hide_existence: true\n      credential:", 27, "gateway.upstreams[1]: max_checked_body, hide_existence and continuation_ttl are only for kind fhir"},
		{"negative timeout", "connect: 2s", "connect: -2s", 19, "gateway.upstreams[0].timeouts.connect: must not be negative"},
		{"unknown credential type", "type: bearer", "type: oauth", 21, "gateway.upstreams[0].credential.type: must be none, bearer, basic or header"},
		{"credential in the file", "value: env:EHR_TOKEN", "value: s3cr3t", 22, "gateway.upstreams[0].credential.value: must be env:NAME, file:PATH or secret:NAME"},
		{"credential value missing", "        value: env:EHR_TOKEN\n", "", 20, "gateway.upstreams[0].credential.value: required"},
		{"bad env name", "value: env:EHR_TOKEN", "value: env:EHR-TOKEN", 22, "env: wants an environment variable name"},
		{"basic without username", "type: bearer", "type: basic", 20, "gateway.upstreams[0].credential.username: required for basic"},
		{"header without name", "{type: header, header: X-Api-Key,", "{type: header,", 32, "credential.header: required for type header"},
		{"header reserved", "header: X-Api-Key", "header: X-Phigate-Subject", 32, "X-Phigate-Subject is set by the gateway itself"},
		{"header reserved with _", "header: X-Api-Key", "header: X_Phigate_Subject", 32, "X_Phigate_Subject is set by the gateway itself"},
		{"header Prefer", "header: X-Api-Key", "header: Prefer", 32, "Prefer is set by the gateway itself"},
		{"header Expect", "header: X-Api-Key", "header: Expect", 32, "Expect is set by the gateway itself"},
		{"header Authorization", "header: X-Api-Key", "header: authorization", 32, "is set by the gateway itself"},
		{"header invalid", "header: X-Api-Key", "header: \"X Api\"", 32, "is not a header name"},
		{"username on bearer", "        type: bearer\n", "        type: bearer\n        username: u\n", 22, "credential.username: only for type basic"},
		{"routes on fhir", "      operations:\n", "      routes: [{match: GET /x, scope: a}]\n      operations:\n", 23, "gateway.upstreams[0].routes: only for kind http"},
		{"operations on http", "      routes:\n        - match: GET /invoices/*", "      operations: [{name: $x, scope: a}]\n      routes:\n        - match: GET /invoices/*", 33, "gateway.upstreams[1].operations: only for kind fhir"},
		{"http without routes", "      routes: [{match: \"* /**\", scope: \"legacy:*\"}]\n", "", 38, "gateway.upstreams[2].routes: required for kind http"},
		{"bad route pattern", "match: GET /invoices/*", "match: get /invoices/*", 34, "gateway.upstreams[1].routes[0].match: invalid route pattern: the method"},
		{"route pattern with dot-dot", "match: GET /invoices/*", "match: GET /invoices/../*", 34, "routes[0].match: invalid route pattern"},
		{"duplicate route", "match: POST /invoices/", "match: GET /invoices/*", 36, "gateway.upstreams[1].routes[1].match: \"GET /invoices/*\" repeats"},
		{"route scope malformed", "scope: billing:read", "scope: Billing:Read", 35, "gateway.upstreams[1].routes[0].scope:"},
		{"route scope missing", "          scope: billing:read\n", "", 34, "gateway.upstreams[1].routes[0].scope: required"},
		{"operation without $", "name: $everything", "name: everything", 24, "gateway.upstreams[0].operations[0].name: must be $ and a name"},
		{"operation bad resource", "resource: Patient", "resource: patient", 25, "operations[0].resource: must be a FHIR resource type"},
		{"operation bad scope", "scope: user/Patient.r", "scope: user/Patient.x", 26, "operations[0].scope:"},
		{"unknown upstream key", "      kind: fhir\n", "      kind: fhir\n      kinds: fhir\n", 15, "gateway.upstreams[0].kinds: unknown key; expected one of: name, url, prefix, kind"},
		{"unknown gateway key", "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  upstream: []\n", 5, "gateway.upstream: unknown key"},
		{"identity alg unknown", "      kind: fhir\n", "      kind: fhir\n      identity: {alg: RS256}\n", 15, "gateway.upstreams[0].identity.alg: must be EdDSA or HS256"},
		{"identity HS256 without key", "      kind: fhir\n", "      kind: fhir\n      identity: {alg: HS256}\n", 15, "gateway.upstreams[0].identity.key: required"},
		{"identity key in the file", "      kind: fhir\n", "      kind: fhir\n      identity: {alg: HS256, key: s3cr3t}\n", 15, "gateway.upstreams[0].identity.key: must be env:NAME, file:PATH or secret:NAME"},
		{"identity key for EdDSA", "      kind: fhir\n", "      kind: fhir\n      identity: {alg: EdDSA, key: env:K}\n", 15, "gateway.upstreams[0].identity.key: only for alg HS256"},
		{"gateway identity key without alg", "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  identity: {key: env:K}\n", 5, "gateway.identity.key: only for alg HS256"},
		{"route as a string", "      routes: [{match: \"* /**\", scope: \"legacy:*\"}]", "      routes: [\"* /**\"]", 41, "gateway.upstreams[2].routes[0]: must be a mapping of keys: match, scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(validGateway, tt.old) {
				t.Fatalf("%q is not in the valid document", tt.old)
			}
			doc := strings.Replace(validGateway, tt.old, tt.new, 1)
			c, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted: %+v", c.Gateway)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Line != tt.wantLine {
				t.Errorf("line %d, want %d: %v", e.Line, tt.wantLine, err)
			}
			if !strings.HasPrefix(err.Error(), "config: line ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not read config: line N: …%s", err, tt.wantErr)
			}
		})
	}
}

func TestGatewayAcceptsForms(t *testing.T) {
	for name, doc := range map[string]string{
		"secret reference": strings.Replace(validGateway, "value: env:EHR_TOKEN", "value: secret:ehr-token", 1),
		"basic":            strings.Replace(validGateway, "        type: bearer\n", "        type: basic\n        username: phigate\n", 1),
		"no credential":    strings.Replace(validGateway, "      credential:\n        type: bearer\n        value: env:EHR_TOKEN\n", "", 1),
		"none credential":  strings.Replace(validGateway, "        type: bearer\n        value: env:EHR_TOKEN\n", "        type: none\n", 1),
		"no upstreams":     "data_dir: d\ntls: {cert_file: c, key_file: k}\ngateway:\n  upstreams: []\n",
		"root prefix":      strings.Replace(validGateway, "prefix: /legacy/", "prefix: /", 1),
		"IPv4-mapped":      strings.Replace(validGateway, "192.168.1.7", "\"::ffff:10.1.0.0/112\"", 1),
		"HS256 upstream":   strings.Replace(validGateway, "      kind: fhir\n", "      kind: fhir\n      identity: {alg: HS256, key: secret:ehr-identity}\n", 1),
		"HS256 gateway":    strings.Replace(validGateway, "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  identity: {alg: HS256, key: env:GW_IDENTITY_KEY}\n", 1),
		"EdDSA explicit":   strings.Replace(validGateway, "      kind: fhir\n", "      kind: fhir\n      identity: {alg: EdDSA}\n", 1),
		"response checks":  strings.Replace(validGateway, "      kind: fhir\n", "      kind: fhir\n      max_checked_body: 1048576\n      hide_existence: true\n      continuation_ttl: 30m\n", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(doc)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8": "10.0.0.0/8", "192.168.1.7": "192.168.1.7/32", "::1": "::1/128",
		"::ffff:10.1.0.0/112": "10.1.0.0/16", "::ffff:10.1.2.3": "10.1.2.3/32",
	} {
		p, err := ParseTrustedProxy(in)
		if err != nil || p != netip.MustParsePrefix(want) {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1/8", "fe80::1%eth0", "10.0.0.0/33", "host"} {
		if _, err := ParseTrustedProxy(in); err == nil {
			t.Errorf("ParseTrustedProxy(%q) accepted", in)
		}
	}
}

func TestCheckSecretRef(t *testing.T) {
	// secret: takes every name the vault stores (phigate secret set)
	for _, ok := range []string{"env:X", "env:_A1", "file:/a/b", "file:rel", "secret:ehr-token", "secret:UPPER", "secret:EHR-api", "secret:ehr.api", "secret:Ehr_Token"} {
		if err := CheckSecretRef(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "X", "env:", "env:1X", "env:A-B", "file:", "secret:", "secret:-x", "secret:.x", "secret:a b", "vault:x", "phi_abc"} {
		if err := CheckSecretRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestMetadataLimitsAreValidated: each gateway.metadata key out of its
// range is refused with its name and line; 0 (or absent) takes the
// default.
func TestMetadataLimitsAreValidated(t *testing.T) {
	for _, c := range []struct{ line, wantErr string }{
		{"per_minute: -1", "gateway.metadata.per_minute: must be from 1 to 60000"},
		{"per_minute: 60001", "gateway.metadata.per_minute: must be from 1 to 60000"},
		{"burst: -3", "gateway.metadata.burst: must be from 1 to 1000"},
		{"burst: 1001", "gateway.metadata.burst: must be from 1 to 1000"},
		{"max_sources: -1", "gateway.metadata.max_sources: must be from 1 to 1000000"},
		{"max_sources: 1000001", "gateway.metadata.max_sources: must be from 1 to 1000000"},
		{"max_bytes: 1023", "gateway.metadata.max_bytes: must be from 1024 to 67108864"},
		{"max_bytes: 67108865", "gateway.metadata.max_bytes: must be from 1024 to 67108864"},
		{"max_bytes: -1", "gateway.metadata.max_bytes: must be from 1024"},
		{"per_minutes: 5", "gateway.metadata.per_minutes"},
	} {
		doc := strings.Replace(validGateway, "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  metadata: {"+c.line+"}\n", 1)
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "line 5") {
			t.Errorf("%s: %v, want %q at line 5", c.line, err, c.wantErr)
		}
	}
	doc := strings.Replace(validGateway, "  listen: 127.0.0.1:9443\n", "  listen: 127.0.0.1:9443\n  metadata: {per_minute: 0, burst: 1, max_bytes: 1024}\n", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Gateway.Metadata.WithDefaults(); got != (PublicMetadata{PerMinute: 60, Burst: 1, MaxSources: 10_000, MaxBytes: 1024}) {
		t.Errorf("with defaults: %+v", got)
	}
	if got := (PublicMetadata{PerMinute: 120}).Interval(); got != 500*time.Millisecond {
		t.Errorf("interval %s", got)
	}
}
