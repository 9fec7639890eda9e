package server

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/oauth"
	"github.com/phigate/phigate/internal/scope"
)

// tokenEndpointEnabled says whether the admin API serves POST
// /v1/oauth/token (SMART Backend Services, issue 17 items 4-5). While it
// does not, the metadata names no token endpoint and the gateway answers
// the SMART configuration 404. The token endpoint's wiring sets it.
func tokenEndpointEnabled(cfg *config.Config) bool { return true }

// tokenEndpointURL is the token endpoint's URL, the "aud" every client
// assertion must name: oauth.token_endpoint, else the issuer's
// /v1/oauth/token. The metadata publishes the same URL (metadataOptions).
func tokenEndpointURL(cfg *config.Config, issuer string) string {
	if cfg.OAuth.TokenEndpoint != "" {
		return cfg.OAuth.TokenEndpoint
	}
	return issuer + "/v1/oauth/token"
}

// issuerURL is the OAuth issuer: admin.issuer, else https:// and the
// admin listener's bound address (localhost for an unspecified host).
func issuerURL(cfg *config.Config, bound string) string {
	if cfg.Admin.Issuer != "" {
		return cfg.Admin.Issuer
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "https://localhost"
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		host = "localhost"
	}
	return "https://" + net.JoinHostPort(host, port)
}

// metadataOptions is what the discovery documents say of this server.
func metadataOptions(cfg *config.Config, issuer string) oauth.MetadataOptions {
	scopes := []string{scope.Introspect, scope.AdminTokens, scope.AdminAudit, scope.AdminAlerts, scope.AdminKeys}
	te := tokenEndpointEnabled(cfg)
	if te {
		// what a client-credentials grant may ask for: SMART v2 system scopes
		scopes = append(scopes, "system/*.cruds", "system/*.rs")
	}
	mo := oauth.MetadataOptions{Issuer: issuer, ScopesSupported: scopes, TokenEndpoint: te}
	if te {
		// the admin base the endpoints are published under: the token
		// endpoint's, so the metadata names exactly the aud it checks
		mo.AdminURL = strings.TrimSuffix(tokenEndpointURL(cfg, issuer), "/v1/oauth/token")
	}
	return mo
}

// audiences returns the "aud" of introspection answers: the names of the
// upstreams of gw a token with these scopes can reach — a fhir upstream
// with any SMART scope or any of its operations' scopes, an http upstream
// with any of its routes' scopes.
func audiences(gw config.Gateway) func(scope.Set) []string {
	type reach struct {
		name   string
		fhir   bool
		scopes []string
	}
	var ups []reach
	for _, u := range gw.Upstreams {
		r := reach{name: u.Name, fhir: u.Kind == config.KindFHIR}
		for _, rt := range u.Routes {
			r.scopes = append(r.scopes, rt.Scope)
		}
		for _, op := range u.Operations {
			r.scopes = append(r.scopes, op.Scope)
		}
		ups = append(ups, r)
	}
	return func(set scope.Set) []string {
		smart := false
		for s := range set.All() {
			if s.IsSMART() {
				smart = true
				break
			}
		}
		var out []string
		for _, u := range ups {
			if u.fhir && smart || slices.ContainsFunc(u.scopes, set.Has) {
				out = append(out, u.name)
			}
		}
		return out
	}
}

// liveAudiences is audiences of the gateway config in force: SIGHUP
// replaces it with the reloaded upstreams.
type liveAudiences struct {
	p atomic.Pointer[func(scope.Set) []string]
}

func (l *liveAudiences) set(gw config.Gateway) {
	f := audiences(gw)
	l.p.Store(&f)
}

func (l *liveAudiences) of(set scope.Set) []string {
	if f := l.p.Load(); f != nil {
		return (*f)(set)
	}
	return nil
}
