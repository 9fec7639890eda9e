package oauth

// Discovery documents: RFC 8414 authorization server metadata and the
// SMART App Launch 2 configuration, as pure functions of MetadataOptions.
//
// ServerMetadata is served at GET /.well-known/oauth-authorization-server
// on the admin listener; SMARTConfiguration at GET
// {prefix}.well-known/smart-configuration on the gateway, for each fhir
// upstream. Both are public (discovery comes before any credential) and
// the same for every caller.
//
// What they publish, and why:
//
//   - issuer: MetadataOptions.Issuer, the exact URL clients use for
//     discovery (RFC 8414 §3.3: a client MUST refuse a document whose
//     issuer differs from the URL it started from; openid-client compares
//     the parsed URLs, so "https://h:8443" and "https://h:8443/" are the
//     same, "https://h" and "https://h:443" are not).
//   - introspection_endpoint, revocation_endpoint (RFC 7662, RFC 7009) and
//     their auth methods: client_secret_basic, client_secret_post (client
//     id = a token id tok_…, secret = its phi_… secret) and
//     "phigate_bearer" (Authorization: Bearer phi_…, phigate's own; no
//     registered name exists for it). "none" is not supported.
//   - token_endpoint (<admin base>/v1/oauth/token) with grant_types
//     client_credentials, auth method private_key_jwt, algs RS384 and
//     ES384 (SMART Backend Services): only when the token endpoint is
//     enabled (MetadataOptions.TokenEndpoint).
//   - response_types_supported: [] — RFC 8414 makes the member REQUIRED,
//     and phigate has no authorization endpoint (no browser redirect
//     flows: tokens are issued by the admin API and by client
//     credentials), so it supports no response type. For the same reason
//     there is no authorization_endpoint and no
//     code_challenge_methods_supported (PKCE protects an authorization
//     code, and there is none).
//   - jwks_uri is omitted (optional in RFC 8414): phigate signs no JWT for
//     its clients (its access tokens are opaque phi_… secrets and
//     introspection answers are plain JSON), so a client has no signature
//     to verify with it. The audit checkpoint key is a note key, not a
//     JWK, and is published at /v1/audit/key for auditors.
//   - capabilities (SMART): permission-v2 (SMART v2 scopes are what the
//     gateway enforces) and, with the token endpoint,
//     client-confidential-asymmetric. No launch-*, sso-openid-connect,
//     context-* or client-public: phigate does none of them.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Endpoint paths below MetadataOptions.AdminURL.
const (
	TokenPath         = "/v1/oauth/token"
	IntrospectionPath = "/v1/introspect"
	RevocationPath    = "/v1/revoke"
)

// AuthBearer is the name published for phigate's own endpoint
// authentication (Authorization: Bearer phi_…), which has no registered
// name.
const AuthBearer = "phigate_bearer"

// ErrNoTokenEndpoint: the SMART configuration needs a token endpoint and
// none is enabled (the gateway then answers 404).
var ErrNoTokenEndpoint = errors.New("oauth: no token endpoint enabled, so no SMART configuration")

// ErrBadIssuer: the issuer is not an https URL without query or fragment.
var ErrBadIssuer = errors.New("oauth: issuer must be an https URL without query or fragment")

// MetadataOptions is what the discovery documents are made of.
type MetadataOptions struct {
	// Issuer is the issuer identifier: an https URL without query or
	// fragment, exactly as clients are told to use it.
	Issuer string
	// AdminURL is the base of the admin API's endpoints (empty: Issuer).
	AdminURL string
	// ScopesSupported lists scopes_supported (nil: the member is left out).
	ScopesSupported []string
	// TokenEndpoint says whether POST /v1/oauth/token is enabled.
	TokenEndpoint bool
}

// ServerMetadataDoc is the RFC 8414 document.
type ServerMetadataDoc struct {
	Issuer                                     string   `json:"issuer"`
	TokenEndpoint                              string   `json:"token_endpoint,omitempty"`
	GrantTypesSupported                        []string `json:"grant_types_supported,omitempty"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
}

// SMARTConfigurationDoc is the SMART App Launch 2 .well-known document.
type SMARTConfigurationDoc struct {
	Issuer                                     string   `json:"issuer"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	Capabilities                               []string `json:"capabilities"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
}

// endpointAuth is how the introspection and revocation endpoints
// authenticate their callers.
var endpointAuth = []string{"client_secret_basic", "client_secret_post", AuthBearer}

func (o MetadataOptions) base() (issuer, admin string, err error) {
	if err := checkHTTPS(o.Issuer); err != nil {
		return "", "", fmt.Errorf("%w: %q", ErrBadIssuer, o.Issuer)
	}
	admin = o.AdminURL
	if admin == "" {
		admin = o.Issuer
	} else if err := checkHTTPS(admin); err != nil {
		return "", "", fmt.Errorf("oauth: admin URL %q: %w", admin, err)
	}
	return o.Issuer, strings.TrimSuffix(admin, "/"), nil
}

func checkHTTPS(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") || strings.Contains(s, "?") || u.User != nil {
		return ErrBadIssuer
	}
	return nil
}

// ServerMetadata returns the RFC 8414 document for o.
func ServerMetadata(o MetadataOptions) (ServerMetadataDoc, error) {
	iss, admin, err := o.base()
	if err != nil {
		return ServerMetadataDoc{}, err
	}
	d := ServerMetadataDoc{
		Issuer:                 iss,
		ScopesSupported:        slices.Clone(o.ScopesSupported),
		ResponseTypesSupported: []string{},
		IntrospectionEndpoint:  admin + IntrospectionPath, IntrospectionEndpointAuthMethodsSupported: slices.Clone(endpointAuth),
		RevocationEndpoint: admin + RevocationPath, RevocationEndpointAuthMethodsSupported: slices.Clone(endpointAuth),
	}
	if o.TokenEndpoint {
		d.TokenEndpoint = admin + TokenPath
		d.GrantTypesSupported = []string{"client_credentials"}
		d.TokenEndpointAuthMethodsSupported = []string{"private_key_jwt"}
		d.TokenEndpointAuthSigningAlgValuesSupported = []string{"RS384", "ES384"}
	}
	return d, nil
}

// SMARTConfiguration returns the SMART configuration for o, or
// ErrNoTokenEndpoint when the token endpoint (REQUIRED by SMART) is off.
func SMARTConfiguration(o MetadataOptions) (SMARTConfigurationDoc, error) {
	if !o.TokenEndpoint {
		return SMARTConfigurationDoc{}, ErrNoTokenEndpoint
	}
	m, err := ServerMetadata(o)
	if err != nil {
		return SMARTConfigurationDoc{}, err
	}
	return SMARTConfigurationDoc{
		Issuer: m.Issuer, TokenEndpoint: m.TokenEndpoint, GrantTypesSupported: m.GrantTypesSupported,
		TokenEndpointAuthMethodsSupported:          m.TokenEndpointAuthMethodsSupported,
		TokenEndpointAuthSigningAlgValuesSupported: m.TokenEndpointAuthSigningAlgValuesSupported,
		ScopesSupported:                            m.ScopesSupported, ResponseTypesSupported: []string{},
		Capabilities:          []string{"client-confidential-asymmetric", "permission-v2"},
		IntrospectionEndpoint: m.IntrospectionEndpoint, RevocationEndpoint: m.RevocationEndpoint,
	}, nil
}

// JSON encodes a document of this package (strings and string slices
// only: the encoding cannot fail).
func JSON[D ServerMetadataDoc | SMARTConfigurationDoc](doc D) []byte {
	b, _ := json.Marshal(doc)
	return b
}
