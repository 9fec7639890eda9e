package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// DefaultAddr is the admin API of `phigate server --dev`.
	DefaultAddr = "https://127.0.0.1:8443"
	// DefaultTimeout bounds a whole request, answer included.
	DefaultTimeout = 30 * time.Second
	// DefaultUserAgent identifies the SDK.
	DefaultUserAgent = "phigate-go-client/1"

	// maxResponse bounds a success answer; maxErrorResponse an error answer.
	maxResponse      = 4 << 20
	maxErrorResponse = 64 << 10
	// maxRequest is the server's limit on a request body.
	maxRequest = 1 << 20
)

// A TokenSource provides the bearer token of each request. Token may be
// called concurrently; its error is returned as is by the request.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// staticToken is a fixed bearer token. It is used through a pointer, so
// that printing a Client (even with %v on the dereferenced struct) shows an
// address, and prints as [REDACTED] itself.
type staticToken struct{ s string }

func (t *staticToken) Token(context.Context) (string, error) { return t.s, nil }
func (*staticToken) String() string                          { return "[REDACTED]" }
func (*staticToken) GoString() string                        { return "[REDACTED]" }

// Client is a client of phigate's admin API. It is safe for concurrent use.
// The bearer token is sent only in the Authorization header of API requests
// (never to /healthz or /readyz); it is never logged, stored, or put in an
// error.
type Client struct {
	base      *url.URL
	hc        *http.Client
	tokens    TokenSource
	userAgent string
	// ownTLS: the client built its TLS config (no custom HTTP client or
	// transport), so a failed chain verification is explained with
	// caFile (see UntrustedCertificateError).
	ownTLS bool
	caFile string
}

type config struct {
	tokens     TokenSource
	pins       []string
	caFile     string
	serverName string
	hc         *http.Client
	rt         http.RoundTripper
	userAgent  string
	timeout    time.Duration
	allowHTTP  bool
	err        error
}

// An Option configures a Client.
type Option func(*config)

// WithToken sets the bearer token (a phigate secret, "phi_…").
func WithToken(secret string) Option {
	return func(c *config) {
		if err := checkToken(secret); err != nil {
			c.err = errors.Join(c.err, err)
			return
		}
		c.tokens = &staticToken{secret}
	}
}

// WithTokenSource sets where the bearer token of each request comes from
// (for example a rotating token kept fresh by the agent).
func WithTokenSource(ts TokenSource) Option {
	return func(c *config) { c.tokens = ts }
}

// WithPins pins the server's public key: each pin is the base64 SHA-256 of
// an acceptable leaf certificate's SubjectPublicKeyInfo, optionally prefixed
// "sha256//". With pins and no CA file, the pin alone identifies the server.
// A mismatch fails the request with a *PinMismatchError.
func WithPins(pins ...string) Option {
	return func(c *config) { c.pins = append(c.pins, pins...) }
}

// WithCAFile makes the client verify the server's certificate chain against
// the PEM certificates in path instead of the system roots.
func WithCAFile(path string) Option {
	return func(c *config) { c.caFile = path }
}

// WithServerName sets the name the server's certificate is verified
// against, when it differs from the address's host.
func WithServerName(name string) Option {
	return func(c *config) { c.serverName = name }
}

// WithHTTPClient replaces the HTTP client. Its transport is used as is:
// pins, CA file and server name cannot be combined with it. Redirects are
// never followed unless the client's CheckRedirect says otherwise.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.hc = hc }
}

// WithTransport replaces the HTTP transport (it then owns TLS: pins, CA
// file and server name cannot be combined with it).
func WithTransport(rt http.RoundTripper) Option {
	return func(c *config) { c.rt = rt }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *config) { c.userAgent = ua }
}

// WithTimeout bounds each request, answer included (DefaultTimeout when
// not set; 0 leaves it to the context).
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithInsecureHTTP allows an http:// address on a loopback host (tests, or
// a TLS-terminating sidecar on the same machine). Without it New refuses
// any address that is not https.
func WithInsecureHTTP() Option {
	return func(c *config) { c.allowHTTP = true }
}

// New returns a client of the admin API at addr ("https://host:port",
// optionally with a path prefix; a bare "host:port" means https).
func New(addr string, opts ...Option) (*Client, error) {
	cfg := config{timeout: DefaultTimeout, userAgent: DefaultUserAgent}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	base, err := parseAddr(addr, cfg.allowHTTP)
	if err != nil {
		return nil, err
	}
	tlsOpts := len(cfg.pins) > 0 || cfg.caFile != "" || cfg.serverName != ""
	if (cfg.hc != nil || cfg.rt != nil) && tlsOpts {
		return nil, errors.New("phigate: pins, CA file and server name cannot be combined with a custom HTTP client or transport")
	}
	if cfg.hc != nil && cfg.rt != nil {
		return nil, errors.New("phigate: give either an HTTP client or a transport, not both")
	}
	var hc *http.Client
	switch {
	case cfg.hc != nil:
		cp := *cfg.hc
		if cp.CheckRedirect == nil {
			cp.CheckRedirect = noRedirect
		}
		hc = &cp
	default:
		rt := cfg.rt
		if rt == nil {
			tc, err := clientTLS(cfg.pins, cfg.caFile, cfg.serverName)
			if err != nil {
				return nil, err
			}
			rt = &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:       tc,
				ForceAttemptHTTP2:     true,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   4,
			}
		}
		hc = &http.Client{Transport: rt, CheckRedirect: noRedirect}
	}
	if cfg.timeout > 0 && (cfg.hc == nil || hc.Timeout == 0) {
		hc.Timeout = cfg.timeout
	}
	return &Client{base: base, hc: hc, tokens: cfg.tokens, userAgent: cfg.userAgent,
		ownTLS: cfg.hc == nil && cfg.rt == nil, caFile: cfg.caFile}, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

var errBadToken = errors.New("the bearer token is empty or contains white space, control or non-ASCII characters")

// checkToken refuses a token that cannot travel in a header. It never
// echoes the token.
func checkToken(s string) error {
	bad := s == ""
	for i := 0; i < len(s) && !bad; i++ {
		bad = s[i] <= ' ' || s[i] >= 0x7f
	}
	if bad {
		return fmt.Errorf("phigate: %w", errBadToken)
	}
	return nil
}

func parseAddr(addr string, allowHTTP bool) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, errors.New("phigate: empty server address")
	}
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("phigate: server address: %w", err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("phigate: server address must be https://host[:port][/path], without credentials, query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP {
			return nil, fmt.Errorf("phigate: refusing plain-text address %s: use https:// (tokens must not cross the network in clear)", u.Redacted())
		}
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("phigate: plain http is allowed only to a loopback host, not %s", u.Hostname())
		}
	default:
		return nil, fmt.Errorf("phigate: unsupported scheme %q in server address: use https://", u.Scheme)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr returns the server address the client talks to.
func (c *Client) Addr() string { return c.base.String() }

// String describes the client without its token.
func (c *Client) String() string { return "phigate client for " + c.base.String() }

// GoString is String, so %#v does not reach the token either.
func (c *Client) GoString() string { return c.String() }

// request is one API call.
type request struct {
	method string
	path   string // escaped, starting with "/"
	query  url.Values
	json   any         // JSON body, or nil
	form   url.Values  // form body, or nil
	auth   bool        // send the bearer token
	redact []string    // strings to keep out of errors, besides the token
	header http.Header // extra request headers, or nil
}

// do performs r and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	if ctx == nil {
		return errors.New("phigate: nil context")
	}
	var body io.Reader
	var ctype string
	switch {
	case r.json != nil:
		b, err := json.Marshal(r.json)
		if err != nil {
			return fmt.Errorf("phigate: encoding request: %w", err)
		}
		if len(b) > maxRequest {
			return fmt.Errorf("phigate: request body is %d bytes, over the 1 MiB limit", len(b))
		}
		body, ctype = bytes.NewReader(b), "application/json"
	case r.form != nil:
		body, ctype = strings.NewReader(r.form.Encode()), "application/x-www-form-urlencoded"
	}
	target := c.base.String() + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return fmt.Errorf("phigate: building request: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range r.header {
		req.Header[k] = v
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	redact := r.redact
	if r.auth && c.tokens != nil {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return err
		}
		if err := checkToken(tok); err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		redact = append(redact[:len(redact):len(redact)], tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var pe *PinMismatchError
		if errors.As(err, &pe) {
			return pe
		}
		if c.ownTLS {
			if ue := untrusted(err, c.caFile); ue != nil {
				return ue
			}
		}
		return scrub(err, redact)
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorResponse))
		return decodeAPIError(resp, b, redact...)
	}
	if out == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return scrub(fmt.Errorf("phigate: reading answer: %w", err), redact)
	}
	if len(b) > maxResponse {
		return fmt.Errorf("phigate: answer of %s %s is over %d bytes", r.method, r.path, maxResponse)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("phigate: decoding answer of %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// redactedError replaces the message of err when it would contain a
// secret. It answers errors.Is for err's chain (context.DeadlineExceeded,
// say) but does not unwrap, so the original message cannot be reached.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

func scrub(err error, redact []string) error {
	msg := err.Error()
	clean := msg
	for _, r := range redact {
		if r != "" {
			clean = strings.ReplaceAll(clean, r, "[REDACTED]")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
