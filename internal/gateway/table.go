package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/gateway/route"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/tlsutil"
)

// SecretSource resolves a credential reference of the configuration
// (env:NAME, file:PATH, secret:NAME) to the secret. The returned slice
// belongs to the caller, which wipes it once used. Resolve MUST NOT put the
// secret in its error. The composition root resolves secret:NAME from the
// key vault; EnvFileSecrets alone refuses it (ErrNoVault).
type SecretSource interface {
	Resolve(ctx context.Context, ref string) ([]byte, error)
}

// ErrNoVault is returned for secret:NAME references when no key vault is
// at hand.
var ErrNoVault = errors.New("secret: references need the key vault; use env: or file: without one")

// EnvFileSecrets resolves env:NAME from the environment and file:PATH from
// a file (one trailing newline removed). Zero fields take os.LookupEnv and
// os.ReadFile.
type EnvFileSecrets struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// Resolve implements SecretSource.
func (s EnvFileSecrets) Resolve(_ context.Context, ref string) ([]byte, error) {
	kind, name, _ := strings.Cut(ref, ":")
	switch kind {
	case "env":
		look := s.LookupEnv
		if look == nil {
			look = os.LookupEnv
		}
		v, ok := look(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("environment variable %s is not set", name)
		}
		return []byte(v), nil
	case "file":
		read := s.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(name)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("reading %s: %v", name, pe.Err) // never the content
			}
			return nil, fmt.Errorf("reading %s failed", name)
		}
		b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("%s is empty", name)
		}
		return b, nil
	case "secret":
		return nil, ErrNoVault
	}
	return nil, fmt.Errorf("unknown reference kind %q", kind)
}

// table is the compiled routing configuration, swapped whole on reload.
type table struct {
	trusted   trusted
	limits    config.GatewayLimits
	metadata  config.PublicMetadata // with defaults
	upstreams []*upstream           // longest prefix first
}

// upstream is one compiled upstream.
type upstream struct {
	name   string
	prefix string
	fhir   bool
	// target is nil for an upstream reached only through forward auth.
	target *url.URL
	// basePath is target's escaped path (no final "/"), which replaces
	// the prefix.
	basePath string
	// respTimeout is how long the upstream may take to start its answer.
	respTimeout time.Duration
	proxy       *httputil.ReverseProxy
	transport   *http.Transport
	// credential header to inject (name, value); name "" for none.
	credName, credValue string
	// ident signs the identity asserted to the upstream.
	ident  identitySigner
	routes []httpRoute // most specific first
	ops    map[string][]opRule
	// fhir upstreams: the bound of answers checked against a patient
	// compartment, whether a refused read is answered 404, and how long a
	// continuation handle lives
	maxChecked    int64
	hideExistence bool
	contTTL       time.Duration
	// cors is the upstream's CORS policy (nil: none; see cors.go)
	cors *corsPolicy
}

type httpRoute struct {
	pat  route.Pattern
	need requirement
}

type opRule struct {
	resource string // "*" or a type
	need     requirement
}

// requirement is a scope a route or operation needs.
type requirement struct {
	str string
	// plain scopes are checked with Set.Has; SMART ones with Covers.
	plain bool
	set   scope.Set
	// user is the requirement with a patient context raised to user: a
	// token covering it is not bound to a compartment.
	user    scope.Set
	patient bool
}

func newRequirement(s string) (requirement, error) {
	sc, err := scope.Parse(s)
	if err != nil {
		return requirement{}, err
	}
	r := requirement{str: sc.String()}
	if sc.IsPlain() {
		r.plain = true
		return r, nil
	}
	r.set, _ = scope.NewSet(sc)
	r.user = r.set
	if sc.Context() == scope.Patient {
		r.patient = true
		u, err := scope.Parse("user/" + strings.TrimPrefix(sc.String(), "patient/"))
		if err != nil {
			return requirement{}, err
		}
		r.user, _ = scope.NewSet(u)
	}
	return r, nil
}

// heldBy reports whether set satisfies r, and whether only at patient
// level (the request must then stay in the token's compartment).
func (r *requirement) heldBy(set scope.Set) (ok, patientOnly bool) {
	if r.plain {
		return set.Has(r.str), false
	}
	if set.Covers(r.user) {
		return true, false
	}
	if r.patient && set.Covers(r.set) {
		return true, true
	}
	return false, false
}

// compile builds the routing table of cfg. It resolves credentials and
// HS256 identity keys, so it fails on a missing environment variable or
// file. ed signs the identity of upstreams that use EdDSA.
func compile(ctx context.Context, cfg *config.Gateway, secrets SecretSource, ed *Signer) (*table, error) {
	t := &table{limits: cfg.Limits, metadata: cfg.Metadata.WithDefaults()}
	for i, s := range cfg.TrustedProxies {
		p, err := config.ParseTrustedProxy(s)
		if err != nil {
			return nil, fmt.Errorf("gateway.trusted_proxies[%d]: %w", i, err)
		}
		t.trusted = append(t.trusted, p)
	}
	def, err := compileIdentity(ctx, &cfg.Identity, secrets, ed)
	if err != nil {
		return nil, fmt.Errorf("gateway.identity: %w", err)
	}
	for i := range cfg.Upstreams {
		c := &cfg.Upstreams[i]
		u, err := compileUpstream(ctx, c, secrets)
		if err == nil {
			u.ident = def
			if c.Identity.Alg != "" {
				u.ident, err = compileIdentity(ctx, &c.Identity, secrets, ed)
				if err != nil {
					err = fmt.Errorf("identity: %w", err)
				}
			}
		}
		if err != nil {
			t.close()
			return nil, fmt.Errorf("gateway.upstreams[%d] (%s): %w", i, c.Name, err)
		}
		t.upstreams = append(t.upstreams, u)
	}
	slices.SortStableFunc(t.upstreams, func(a, b *upstream) int { return len(b.prefix) - len(a.prefix) })
	return t, nil
}

// close drops the idle connections of every upstream.
func (t *table) close() {
	for _, u := range t.upstreams {
		if u.transport != nil {
			u.transport.CloseIdleConnections()
		}
	}
}

// match returns the upstream whose prefix is the longest one path starts
// with, and path relative to it (starting with "/"). A path equal to a
// prefix without its final "/" matches it too.
func (t *table) match(path string) (*upstream, string) {
	for _, u := range t.upstreams {
		if strings.HasPrefix(path, u.prefix) {
			return u, path[len(u.prefix)-1:]
		}
		if path == u.prefix[:len(u.prefix)-1] {
			return u, "/"
		}
	}
	return nil, ""
}

func compileUpstream(ctx context.Context, c *config.Upstream, secrets SecretSource) (*upstream, error) {
	u := &upstream{name: c.Name, prefix: c.Prefix, fhir: c.Kind == config.KindFHIR, hideExistence: c.HideExistence}
	u.maxChecked, u.contTTL = c.ResponseDefaults()
	if err := u.credential(ctx, &c.Credential, secrets); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	for j, r := range c.Routes {
		p, err := route.Parse(r.Match)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", j, err)
		}
		need, err := newRequirement(r.Scope)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", j, err)
		}
		u.routes = append(u.routes, httpRoute{pat: p, need: need})
	}
	slices.SortStableFunc(u.routes, func(a, b httpRoute) int { return route.Compare(&a.pat, &b.pat) })
	u.cors = compileCORS(&c.CORS, u.fhir, u.routes)
	for j, o := range c.Operations {
		need, err := newRequirement(o.Scope)
		if err != nil {
			return nil, fmt.Errorf("operations[%d]: %w", j, err)
		}
		res := o.Resource
		if res == "" {
			res = "*"
		}
		if u.ops == nil {
			u.ops = map[string][]opRule{}
		}
		u.ops[o.Name] = append(u.ops[o.Name], opRule{resource: res, need: need})
	}
	if c.URL == "" {
		return u, nil
	}
	target, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if target.Scheme == "http" && !c.AllowPlainHTTP {
		return nil, errors.New("url: plain http needs allow_plain_http: true")
	}
	target.Path = strings.TrimSuffix(target.Path, "/")
	target.RawPath = strings.TrimSuffix(target.RawPath, "/")
	u.target = target
	u.basePath = target.EscapedPath()
	to := c.Timeouts.WithDefaults()
	u.respTimeout = to.Response.Duration()
	dialer := &net.Dialer{Timeout: to.Connect.Duration(), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  nil, // never an environment proxy: the upstream is where the config says
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    to.Connect.Duration(),
		ResponseHeaderTimeout:  to.Response.Duration(),
		IdleConnTimeout:        to.Idle.Duration(),
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    512,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true,
	}
	if target.Scheme == "https" {
		opts := tlsutil.ClientOptions{CAFile: c.TLS.CAFile, ServerName: c.TLS.ServerName}
		if len(c.TLS.Pins) > 0 {
			pins, err := tlsutil.ParsePins(strings.Join(c.TLS.Pins, ","))
			if err != nil {
				return nil, fmt.Errorf("tls.pins: %w", err)
			}
			opts.Pins = pins
		}
		tc, err := tlsutil.ClientConfig(opts)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tc.NextProtos = []string{"http/1.1"}
		tr.TLSClientConfig = tc
	}
	u.transport = tr
	return u, nil
}

// compileIdentity returns the signer c selects: ed for EdDSA (or no alg),
// an HMACSigner under the resolved key for HS256.
func compileIdentity(ctx context.Context, c *config.Identity, secrets SecretSource, ed *Signer) (identitySigner, error) {
	switch c.Alg {
	case "", config.IdentityEdDSA:
		return identitySigner{ed: ed}, nil
	case config.IdentityHS256:
		key, err := secrets.Resolve(ctx, c.Key)
		if err != nil {
			return identitySigner{}, fmt.Errorf("key: %w", err)
		}
		defer clear(key)
		hs, err := NewHMACSigner(key) // refuses a key under MinHMACKey bytes
		if err != nil {
			return identitySigner{}, fmt.Errorf("key: %w", err)
		}
		return identitySigner{hs: hs}, nil
	}
	return identitySigner{}, fmt.Errorf("alg must be EdDSA or HS256 (got %q)", c.Alg)
}

func (u *upstream) credential(ctx context.Context, c *config.Credential, secrets SecretSource) error {
	if c.Type == "" || c.Type == config.CredentialNone {
		return nil
	}
	v, err := secrets.Resolve(ctx, c.Value)
	if err != nil {
		return err
	}
	defer clear(v)
	if !headerSafe(v) {
		return errors.New("the secret holds a control character or newline")
	}
	switch c.Type {
	case config.CredentialBearer:
		u.credName, u.credValue = "Authorization", "Bearer "+string(v)
	case config.CredentialBasic:
		u.credName, u.credValue = "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.Username+":"+string(v)))
	case config.CredentialHeader:
		u.credName, u.credValue = http.CanonicalHeaderKey(c.Header), string(v)
	default:
		return fmt.Errorf("unknown type %q", c.Type)
	}
	return nil
}

func headerSafe(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
