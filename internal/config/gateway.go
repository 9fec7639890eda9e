package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/phigate/phigate/internal/fhir"
	"github.com/phigate/phigate/internal/gateway/route"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/vault"
)

// ReservedGatewayPaths are served by the gateway itself; no upstream prefix
// may lie under them, and they win over a prefix above them (such as "/").
var ReservedGatewayPaths = []string{"/v1/authz", "/.well-known/", "/healthz"}

// Credential types.
const (
	CredentialNone   = "none"
	CredentialBearer = "bearer"
	CredentialBasic  = "basic"
	CredentialHeader = "header"
)

// Upstream kinds.
const (
	KindFHIR = "fhir"
	KindHTTP = "http"
)

// WithDefaults returns t with every zero timeout replaced by its default.
func (t UpstreamTimeouts) WithDefaults() UpstreamTimeouts {
	if t.Connect == 0 {
		t.Connect = Duration(DefaultUpstreamConnect)
	}
	if t.Response == 0 {
		t.Response = Duration(DefaultUpstreamResponse)
	}
	if t.Idle == 0 {
		t.Idle = Duration(DefaultUpstreamIdle)
	}
	return t
}

// ParseTrustedProxy parses one entry of gateway.trusted_proxies: a network
// in CIDR notation without host bits, or a single address.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network such as 10.0.0.0/8", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr())), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a network in CIDR notation", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

func (ps *problems) gateway(g *Gateway, rt scope.ResourceTypes) {
	for i, s := range g.TrustedProxies {
		if _, err := ParseTrustedProxy(s); err != nil {
			ps.add(fmt.Sprintf("gateway.trusted_proxies[%d]", i), "%s", err)
		}
	}
	l := g.Limits
	if l.MaxBodyBytes <= 0 {
		ps.add("gateway.limits.max_body_bytes", "must be greater than zero (got %d)", l.MaxBodyBytes)
	}
	if l.MaxInspectBytes <= 0 {
		ps.add("gateway.limits.max_inspect_bytes", "must be greater than zero (got %d)", l.MaxInspectBytes)
	}
	if l.MaxBundleEntries <= 0 || l.MaxBundleEntries > 10000 {
		ps.add("gateway.limits.max_bundle_entries", "must be between 1 and 10000 (got %d)", l.MaxBundleEntries)
	}
	ps.identity("gateway.identity", &g.Identity)
	ps.metadata(g.Metadata)
	names := map[string]int{}
	prefixes := map[string]int{}
	for i := range g.Upstreams {
		u := &g.Upstreams[i]
		at := fmt.Sprintf("gateway.upstreams[%d]", i)
		if first, dup := names[u.Name]; dup && u.Name != "" {
			ps.add(at+".name", "%q is already the name of gateway.upstreams[%d]", u.Name, first)
		} else {
			names[u.Name] = i
		}
		if first, dup := prefixes[u.Prefix]; dup && u.Prefix != "" {
			ps.add(at+".prefix", "%q is already the prefix of gateway.upstreams[%d]", u.Prefix, first)
		} else {
			prefixes[u.Prefix] = i
		}
		ps.upstream(at, u, rt)
	}
}

func (ps *problems) upstream(at string, u *Upstream, rt scope.ResourceTypes) {
	ps.cors(at, &u.CORS)
	if !validName(u.Name) {
		ps.add(at+".name", "required: 1 to 64 characters a-z 0-9 - _, starting with a letter or digit (got %q)", truncate(u.Name, 70))
	}
	ps.prefix(at+".prefix", u.Prefix)
	switch u.Kind {
	case KindFHIR, KindHTTP:
	case "":
		ps.add(at+".kind", "required: fhir or http")
	default:
		ps.add(at+".kind", "must be fhir or http (got %q)", truncate(u.Kind, 20))
	}
	https := ps.upstreamURL(at+".url", u.URL, u.AllowPlainHTTP)
	if !https && (u.TLS.CAFile != "" || len(u.TLS.Pins) > 0 || u.TLS.ServerName != "") {
		ps.add(at+".tls", "only for an https url")
	}
	if len(u.TLS.Pins) > 0 {
		if _, err := tlsutil.ParsePins(strings.Join(u.TLS.Pins, ",")); err != nil {
			ps.add(at+".tls.pins", "%s", strings.TrimPrefix(err.Error(), "tlsutil: "))
		}
	}
	if u.TLS.ServerName != "" && !isHostname(u.TLS.ServerName) {
		ps.add(at+".tls.server_name", "%q is not a host name", truncate(u.TLS.ServerName, 70))
	}
	for _, t := range []struct {
		name string
		d    Duration
	}{{"connect", u.Timeouts.Connect}, {"response", u.Timeouts.Response}, {"idle", u.Timeouts.Idle}} {
		if t.d < 0 {
			ps.add(at+".timeouts."+t.name, "must not be negative (got %s; absent or 0 takes the default)", t.d)
		}
	}
	ps.credential(at+".credential", &u.Credential)
	ps.identity(at+".identity", &u.Identity)

	if u.Kind == KindFHIR && len(u.Routes) > 0 {
		ps.add(at+".routes", "only for kind http: a fhir upstream's scopes follow from the FHIR interaction (use operations for $operations)")
	}
	if u.Kind == KindHTTP && len(u.Operations) > 0 {
		ps.add(at+".operations", "only for kind fhir")
	}
	if u.MaxCheckedBody < 0 || u.MaxCheckedBody > MaxMaxCheckedBody {
		ps.add(at+".max_checked_body", "must be between 0 (the default, %d) and %d bytes (got %d)", DefaultMaxCheckedBody, MaxMaxCheckedBody, u.MaxCheckedBody)
	}
	if u.ContinuationTTL < 0 || u.ContinuationTTL.Duration() > MaxContinuationTTL {
		ps.add(at+".continuation_ttl", "must be between 0 (the default, %s) and %s (got %s)", DefaultContinuationTTL, MaxContinuationTTL, u.ContinuationTTL)
	}
	if u.Kind == KindHTTP && (u.MaxCheckedBody != 0 || u.HideExistence || u.ContinuationTTL != 0) {
		ps.add(at, "max_checked_body, hide_existence and continuation_ttl are only for kind fhir")
	}
	if u.Kind == KindHTTP && len(u.Routes) == 0 {
		ps.add(at+".routes", "required for kind http: at least one route (a path no route covers is denied)")
	}
	var seen []route.Pattern
	for j, r := range u.Routes {
		rat := fmt.Sprintf("%s.routes[%d]", at, j)
		p, err := route.Parse(r.Match)
		if err != nil {
			ps.add(rat+".match", "%s (got %q)", err, truncate(r.Match, 70))
		} else {
			for k := range seen {
				if route.Compare(&seen[k], &p) == 0 {
					ps.add(rat+".match", "%q repeats %s.routes[%d]", r.Match, at, k)
				}
			}
		}
		seen = append(seen, p)
		ps.scope(rat+".scope", r.Scope, rt)
		if sc, err := scope.Parse(r.Scope); err == nil && sc.Context() == scope.Patient {
			// an http route has no patient compartment the gateway could
			// check: a token bound to one patient would reach them all
			ps.add(rat+".scope", "a route of an http upstream cannot need a patient/ scope (the gateway cannot tell whose data an http path holds); use user/ or a plain scope")
		}
	}
	ops := map[string]int{}
	for j, o := range u.Operations {
		oat := fmt.Sprintf("%s.operations[%d]", at, j)
		if !validOperation(o.Name) {
			ps.add(oat+".name", "must be $ and a name, such as $everything (got %q)", truncate(o.Name, 70))
		}
		res := o.Resource
		if res == "" {
			res = "*"
		}
		switch {
		case res != "*" && !validResourceType(res):
			ps.add(oat+".resource", "must be a FHIR resource type such as Patient, or * (got %q)", truncate(o.Resource, 70))
		case !rt.Known(res):
			ps.add(oat+".resource", "%s", unknownType(res, rt))
		}
		if k, dup := ops[o.Name+" "+res]; dup {
			ps.add(oat+".name", "%s on %s repeats %s.operations[%d]", o.Name, res, at, k)
		} else {
			ops[o.Name+" "+res] = j
		}
		ps.scope(oat+".scope", o.Scope, rt)
	}
}

// scope checks a scope a route or operation needs: its grammar, and that
// it names a resource type of rt (a typo would make the route need a scope
// no token can be given).
func (ps *problems) scope(path, s string, rt scope.ResourceTypes) {
	if s == "" {
		ps.add(path, "required: the scope a token needs, such as billing:read or user/Patient.r")
		return
	}
	sc, err := scope.Parse(s)
	if err == nil {
		err = rt.CheckScope(sc)
	}
	if err != nil {
		ps.add(path, "%s", strings.TrimPrefix(err.Error(), "scope: "))
	}
}

// unknownType says that res is not a resource type of rt, with the
// nearest one when there is one.
func unknownType(res string, rt scope.ResourceTypes) string {
	msg := fmt.Sprintf("unknown resource type %q: not a FHIR R4 resource type nor in scopes.custom_resource_types", res)
	if near := fhir.Nearest(res, rt.Custom()...); near != "" {
		msg += " (did you mean " + near + "?)"
	}
	return msg
}

func (ps *problems) prefix(path, p string) {
	switch {
	case p == "":
		ps.add(path, "required: the path on the gateway, such as /fhir/")
		return
	case p[0] != '/' || p[len(p)-1] != '/':
		ps.add(path, "must start and end with / (got %q)", truncate(p, 70))
		return
	case strings.Contains(p, "*"):
		ps.add(path, "must be a literal path, without * (got %q)", truncate(p, 70))
		return
	}
	if _, err := route.Parse("GET " + p); err != nil {
		ps.add(path, "%s (got %q)", strings.TrimPrefix(err.Error(), "invalid route pattern: "), truncate(p, 70))
		return
	}
	for _, r := range ReservedGatewayPaths {
		if strings.HasPrefix(p, strings.TrimSuffix(r, "/")+"/") {
			ps.add(path, "%q lies under %s, which the gateway serves itself", p, r)
		}
	}
}

// upstreamURL checks an upstream URL and reports whether it is https.
func (ps *problems) upstreamURL(path, s string, allowPlain bool) bool {
	if s == "" {
		return false // forward auth only
	}
	u, err := url.Parse(s)
	if err != nil {
		ps.add(path, "not a URL (want https://host[:port][/path])")
		return false
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPlain:
	case u.Scheme == "http":
		ps.add(path, "plain http:// sends PHI and the injected credential unencrypted; use https, or set allow_plain_http: true for a loopback or otherwise protected link")
		return false
	default:
		ps.add(path, "scheme must be https (got %q)", truncate(u.Scheme, 20))
		return false
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		ps.add(path, "a host is required (https://host[:port][/path])")
	case u.User != nil:
		ps.add(path, "must not hold credentials; use the credential section")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		ps.add(path, "must not have a query or fragment")
	case u.Opaque != "" || (u.Path != "" && u.Path[0] != '/'):
		ps.add(path, "the path must start with /")
	case strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/.") || strings.HasSuffix(u.Path, "/.."):
		ps.add(path, "the path must not hold . or .. segments")
	}
	if h := u.Hostname(); h != "" && !isHostname(h) {
		if _, err := netip.ParseAddr(h); err != nil {
			ps.add(path, "host %q is neither an IP address nor a host name", truncate(h, 70))
		}
	}
	return u.Scheme == "https"
}

func (ps *problems) credential(path string, c *Credential) {
	switch c.Type {
	case "", CredentialNone:
		if c.Value != "" || c.Header != "" || c.Username != "" {
			ps.add(path+".type", "required when a value, header or username is given: bearer, basic or header")
		}
		return
	case CredentialBearer, CredentialBasic, CredentialHeader:
	default:
		ps.add(path+".type", "must be none, bearer, basic or header (got %q)", truncate(c.Type, 20))
		return
	}
	if err := CheckSecretRef(c.Value); err != nil {
		ps.add(path+".value", "%s", err)
	}
	switch c.Type {
	case CredentialBasic:
		if c.Username == "" || strings.ContainsAny(c.Username, ":\r\n") || !printableASCII(c.Username) {
			ps.add(path+".username", "required for basic: printable characters without a colon")
		}
	case CredentialHeader:
		switch {
		case c.Header == "":
			ps.add(path+".header", "required for type header: the header's name, such as X-Api-Key")
		case !validHeaderName(c.Header):
			ps.add(path+".header", "%q is not a header name", truncate(c.Header, 70))
		case reservedHeader(c.Header):
			ps.add(path+".header", "%s is set by the gateway itself or never forwarded (use type bearer or basic for Authorization)", c.Header)
		}
	}
	if c.Type != CredentialBasic && c.Username != "" {
		ps.add(path+".username", "only for type basic")
	}
	if c.Type != CredentialHeader && c.Header != "" {
		ps.add(path+".header", "only for type header")
	}
}

func (ps *problems) identity(path string, id *Identity) {
	switch id.Alg {
	case "", IdentityEdDSA:
		if id.Key != "" {
			ps.add(path+".key", "only for alg HS256 (EdDSA signs with the gateway's own key, published at /.well-known/phigate-identity-key)")
		}
	case IdentityHS256:
		if err := CheckSecretRef(id.Key); err != nil {
			ps.add(path+".key", "%s", err)
		}
	default:
		ps.add(path+".alg", "must be EdDSA or HS256 (got %q)", truncate(id.Alg, 20))
	}
}

// CheckSecretRef checks the syntax of a credential reference: env:NAME,
// file:PATH or secret:NAME.
func CheckSecretRef(ref string) error {
	kind, name, ok := strings.Cut(ref, ":")
	switch {
	case ref == "":
		return fmt.Errorf("required: env:NAME, file:PATH or secret:NAME (the secret itself never goes in this file)")
	case !ok:
		return fmt.Errorf("must be env:NAME, file:PATH or secret:NAME (the secret itself never goes in this file)")
	case kind == "env":
		if !validEnvName(name) {
			return fmt.Errorf("env: wants an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
		}
	case kind == "file":
		if name == "" || strings.ContainsRune(name, 0) {
			return fmt.Errorf("file: wants a path")
		}
	case kind == "secret":
		if !vault.ValidName(name) {
			return fmt.Errorf("secret: wants the name of a vault secret (phigate secret set NAME: letters, digits, then also . _ -)")
		}
	default:
		return fmt.Errorf("must be env:NAME, file:PATH or secret:NAME (the secret itself never goes in this file)")
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 128 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validOperation(s string) bool {
	if len(s) < 2 || len(s) > 64 || s[0] != '$' || !(s[1] >= 'a' && s[1] <= 'z' || s[1] >= 'A' && s[1] <= 'Z') {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validResourceType(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeader reports whether the gateway sets or strips header name
// itself, so that a credential may not use it.
func reservedHeader(name string) bool {
	// "_" as "-": CGI, WSGI, Rack and PHP read X_Forwarded_For as
	// X-Forwarded-For (the gateway drops such names from clients)
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch n {
	case "authorization", "proxy-authorization", "host", "content-length", "transfer-encoding", "connection",
		"upgrade", "te", "trailer", "keep-alive", "forwarded", "x-real-ip", "x-request-id", "cookie",
		"x-purpose-of-use", "x-break-glass", "content-type", "expect", "prefer", "if-none-exist",
		"x-original-url", "x-rewrite-url", "x-http-method-override", "x-method-override", "x-http-method":
		return true
	}
	return strings.HasPrefix(n, "x-phigate-") || strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "proxy-")
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
