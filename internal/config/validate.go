package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/scope"
)

// Validate checks every rule of the package documentation. In dev mode
// (dev true) data_dir and the TLS files may be empty. All problems are
// reported, as *Error values with the key path and no line.
func (c *Config) Validate(dev bool) error {
	var errs []*Error
	for _, p := range c.check(dev, func(string) bool { return true }) {
		errs = append(errs, &Error{Path: p.path, Msg: p.msg})
	}
	return join(errs)
}

// problem is a validation failure of the value at path.
type problem struct{ path, msg string }

type problems []problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, problem{path, fmt.Sprintf(format, args...)})
}

// check returns every problem of c. set reports whether the file gave a key
// a value; it decides which of two keys in conflict is blamed, so that the
// error points at a line the user wrote.
func (c *Config) check(dev bool, set func(path string) bool) []problem {
	var ps problems

	if c.DataDir == "" && !dev {
		ps.add("data_dir", "required (the directory of phigate's data)")
	}

	if iss := c.Admin.Issuer; iss != "" {
		u, err := url.Parse(iss)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || strings.ContainsAny(iss, "?#") {
			ps.add("admin.issuer", "must be an https URL without query or fragment (the URL OAuth clients use for discovery)")
		}
	}
	if t := c.OAuth.TokenTTL.Duration(); t != 0 && (t < time.Second || t > 5*time.Minute) {
		ps.add("oauth.token_ttl", "must be 1s..5m (SMART Backend Services tokens are short-lived)")
	}
	if u := c.OAuth.TokenEndpoint; u != "" && (!strings.HasPrefix(u, "https://") || !strings.HasSuffix(u, "/v1/oauth/token")) {
		ps.add("oauth.token_endpoint", "must be an https URL ending in /v1/oauth/token (the admin API's endpoint as clients reach it, e.g. through a load balancer)")
	}

	adminOK := ps.listen("admin.listen", c.Admin.Listen)
	gatewayOK := ps.listen("gateway.listen", c.Gateway.Listen)
	if adminOK && gatewayOK && c.Admin.Listen == c.Gateway.Listen && !strings.HasSuffix(c.Admin.Listen, ":0") {
		if set("gateway.listen") || !set("admin.listen") {
			ps.add("gateway.listen", "must differ from admin.listen (%s)", c.Admin.Listen)
		} else {
			ps.add("admin.listen", "must differ from gateway.listen (%s)", c.Gateway.Listen)
		}
	}

	if m := c.Metrics; m.Listen != "" {
		if ps.listen("metrics.listen", m.Listen) {
			switch {
			case (m.Listen == c.Admin.Listen || m.Listen == c.Gateway.Listen) && !strings.HasSuffix(m.Listen, ":0"):
				ps.add("metrics.listen", "must differ from admin.listen and gateway.listen")
			case !m.AllowPublic && !PrivateListen(m.Listen):
				ps.add("metrics.listen", "%s is not a loopback, private or link-local address, and the metrics are served there without a token: use one, or set metrics.allow_public: true", m.Listen)
			}
		}
	} else if m.AllowPublic {
		ps.add("metrics.allow_public", "only with metrics.listen")
	}

	switch cert, key := c.TLS.CertFile, c.TLS.KeyFile; {
	case cert == "" && key == "":
		if !dev {
			ps.add("tls.cert_file", "required (the PEM file of the server certificate; a self-signed one is generated only in dev mode)")
			ps.add("tls.key_file", "required (the PEM file of the server certificate's private key)")
		}
	case cert == "":
		ps.add("tls.cert_file", "required when tls.key_file is set")
	case key == "":
		ps.add("tls.key_file", "required when tls.cert_file is set")
	}

	if a := c.Audit; a.Retention < 0 {
		ps.add("audit.retention", "must not be negative")
	}
	if u := c.Audit.WitnessURL; u != "" && !strings.HasPrefix(u, "https://") {
		ps.add("audit.witness_url", "must be an https:// URL")
	}
	names := map[string]bool{}
	for i, w := range c.Audit.Witnesses {
		at := fmt.Sprintf("audit.witnesses[%d]", i)
		if w.Name == "" || strings.ContainsAny(w.Name, " +\t\n") {
			ps.add(at+".name", "required: the witness's key name, without spaces or +")
		} else if names[w.Name] {
			ps.add(at+".name", "%s is listed twice", w.Name)
		}
		names[w.Name] = true
		if !strings.HasPrefix(w.URL, "https://") {
			ps.add(at+".url", "must be an https:// URL (the witness's prefix: phigate POSTs to <url>/add-checkpoint)")
		}
		if !strings.HasPrefix(w.VKey, w.Name+"+") || strings.Count(w.VKey, "+") != 2 {
			ps.add(at+".vkey", "must be the witness's cosignature verifier key, %s+<hash>+<key>", w.Name)
		}
	}
	if q := c.Audit.WitnessQuorum; q < 0 || q > len(c.Audit.Witnesses) {
		ps.add("audit.witness_quorum", "must be from 0 to the number of audit.witnesses (%d)", len(c.Audit.Witnesses))
	}
	switch tl := c.Audit.Tiles; tl.Access {
	case "", "off":
		if tl.Listen != "" {
			ps.add("audit.tiles.access", "set it to token or public to serve audit.tiles.listen (it is off)")
		}
	case "token", "public":
		ps.listen("audit.tiles.listen", tl.Listen)
	default:
		ps.oneOf("audit.tiles.access", tl.Access, "off", "token", "public")
	}
	if sl := c.Audit.Syslog; sl.Addr != "" {
		ps.listen("audit.syslog.addr", sl.Addr)
		if sl.Format != "" {
			ps.oneOf("audit.syslog.format", sl.Format, "json", "fhir")
		}
	} else if sl.CAFile != "" || sl.ServerName != "" || sl.Format != "" || sl.FromStart {
		ps.add("audit.syslog.addr", "required when other audit.syslog keys are set")
	}

	t := c.Tokens
	okDefault := ps.positive("tokens.default_ttl", t.DefaultTTL)
	okMax := ps.positive("tokens.max_ttl", t.MaxTTL)
	okBootstrap := ps.positive("tokens.bootstrap_ttl", t.BootstrapTTL)
	if okDefault && okMax {
		ps.atMost(set, "tokens.default_ttl", t.DefaultTTL, "tokens.max_ttl", t.MaxTTL)
	}
	if okBootstrap && okMax {
		ps.atMost(set, "tokens.bootstrap_ttl", t.BootstrapTTL, "tokens.max_ttl", t.MaxTTL)
	}
	if ps.positive("tokens.default_max_lifetime", t.DefaultMaxLifetime) && okMax {
		ps.atMost(set, "tokens.max_ttl", t.MaxTTL, "tokens.default_max_lifetime", t.DefaultMaxLifetime)
	}
	if t.CacheSize <= 0 {
		ps.add("tokens.cache_size", "must be greater than zero (got %d)", t.CacheSize)
	}
	ps.positive("tokens.last_used_flush", t.LastUsedFlush)

	ps.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ps.oneOf("log.format", c.Log.Format, "auto", "json", "text")

	l := c.Limits
	if l.MaxBodyBytes <= 0 {
		ps.add("limits.max_body_bytes", "must be greater than zero (got %d)", l.MaxBodyBytes)
	}
	if l.MaxHeaderBytes <= 0 {
		ps.add("limits.max_header_bytes", "must be greater than zero (got %d)", l.MaxHeaderBytes)
	}
	ps.positive("limits.read_header_timeout", l.ReadHeaderTimeout)
	ps.positive("limits.read_timeout", l.ReadTimeout)
	ps.positive("limits.write_timeout", l.WriteTimeout)
	ps.positive("limits.idle_timeout", l.IdleTimeout)

	rt := ps.scopes(&c.Scopes)
	ps.gateway(&c.Gateway, rt)
	ps.protections(c)
	ps.monitor(c)
	ps.postgres(c)
	return ps
}

// positive adds a problem unless d > 0, and reports whether it is.
func (ps *problems) positive(path string, d Duration) bool {
	if d <= 0 {
		ps.add(path, "must be greater than zero (got %s)", d)
		return false
	}
	return true
}

// atMost adds a problem if small > big, on big's key unless only small's
// was written in the file.
func (ps *problems) atMost(set func(string) bool, smallPath string, small Duration, bigPath string, big Duration) {
	if small <= big {
		return
	}
	if set(bigPath) || !set(smallPath) {
		ps.add(bigPath, "must be at least %s (%s)", smallPath, small)
	} else {
		ps.add(smallPath, "must not exceed %s (%s)", bigPath, big)
	}
}

func (ps *problems) oneOf(path, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		ps.add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), v)
	}
}

// listen adds a problem unless addr is host:port with a numeric port and a
// host that is empty (every interface), an IP address or a host name. It
// reports whether addr is valid.
func (ps *problems) listen(path, addr string) bool {
	if addr == "" {
		ps.add(path, "required (host:port, such as 127.0.0.1:8443)")
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.add(path, "%q is not host:port, such as 127.0.0.1:8443 or [::1]:8443", addr)
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		ps.add(path, "port %q must be a number from 0 to 65535", port)
		return false
	}
	if host != "" && !isHostname(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			ps.add(path, "host %q is neither an IP address nor a host name", host)
			return false
		}
	}
	return true
}

// isHostname reports whether s is a DNS host name: RFC 1123 labels, the last
// of which is not all digits (so "127.0.0.300" is a bad address, not a name).
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	last := s[strings.LastIndexByte(s, '.')+1:]
	if len(s) > 253 || strings.Trim(last, "0123456789") == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// scopes checks scopes.custom_resource_types and returns the resource types
// of the valid entries (so that a bad entry is reported once, not again by
// every route naming it).
func (ps *problems) scopes(s *Scopes) scope.ResourceTypes {
	const at = "scopes.custom_resource_types"
	if n := len(s.CustomResourceTypes); n > scope.MaxCustomTypes {
		ps.add(at, "at most %d types (got %d)", scope.MaxCustomTypes, n)
	}
	var valid []string
	first := map[string]int{}
	for i, name := range s.CustomResourceTypes {
		path := fmt.Sprintf("%s[%d]", at, i)
		if err := scope.CheckCustomType(name); err != nil {
			ps.add(path, "%s", strings.TrimPrefix(err.Error(), "invalid custom resource type "))
			continue
		}
		if k, dup := first[name]; dup {
			ps.add(path, "%q repeats %s[%d]", name, at, k)
			continue
		}
		first[name] = i
		valid = append(valid, name)
	}
	if len(valid) > scope.MaxCustomTypes {
		valid = valid[:scope.MaxCustomTypes]
	}
	rt, _ := scope.NewResourceTypes(valid...)
	return rt
}

// PrivateListen reports whether the host of the host:port addr is an IP
// address that only a private network reaches: loopback, private (RFC
// 1918, RFC 4193) or link-local. A host name or an empty host (every
// interface) is not.
func PrivateListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast()
}
