// Package config reads, completes and checks phigate's server configuration
// file.
//
// # Format
//
// The file is one YAML document in UTF-8. Every key is optional unless marked
// required; an absent key, or a key with an empty (null) value, takes the
// default shown. Durations are Go duration strings ("15m", "1h30m", "500ms";
// units ns, us, ms, s, m, h); a bare number is not a duration.
//
//	data_dir: /var/lib/phigate          # required, except in dev mode
//	admin:
//	  listen: 127.0.0.1:8443            # host:port; host may be empty for all interfaces
//	gateway:
//	  listen: 127.0.0.1:9443            # must differ from admin.listen
//	  trusted_proxies: [10.0.0.0/8]     # CIDRs or addresses whose X-Forwarded-For / X-Real-IP
//	                                    # and forward-auth headers are believed (default: none)
//	  limits:
//	    max_body_bytes: 33554432        # request body streamed upstream (413 beyond); > 0
//	    max_inspect_bytes: 1048576      # body the gateway reads to decide (Bundles,
//	                                    # POST _search, patient-scoped creates); > 0
//	    max_bundle_entries: 100         # entries of a batch/transaction Bundle; 1..10000
//	  upstreams:                        # outside dev mode the gateway starts only with one
//	    - name: ehr                     # required; a-z 0-9 - _, unique; names it in the audit
//	      url: https://ehr.internal/fhir/R4  # https (http only with allow_plain_http: true);
//	                                    # no credentials, query or fragment; empty: the
//	                                    # upstream is reached only through /v1/authz
//	      allow_plain_http: false
//	      prefix: /fhir/                # required; starts and ends with /, unique, not under
//	                                    # /v1/authz, /.well-known/ or /healthz (those win)
//	      kind: fhir                    # required: fhir | http
//	      tls:                          # https only; neither: the system roots
//	        ca_file: /etc/phigate/ehr-ca.pem   # the only roots trusted
//	        pins: [sha256//…]           # SPKI pins; alone they replace the chain check
//	        server_name: ehr.internal   # SNI and name verified (default: the URL's host)
//	      timeouts:                     # absent or 0: the default shown; >= 0
//	        connect: 5s                 # dial and TLS handshake
//	        response: 30s               # until the response headers (504 beyond)
//	        idle: 90s                   # idle keep-alive connections
//	      credential:                   # injected in place of the client's token
//	        type: bearer                # none (default) | bearer | basic | header
//	        value: env:EHR_TOKEN        # env:NAME | file:PATH | secret:NAME (key vault);
//	                                    # never the secret itself
//	        username: svc               # basic only (value is the password)
//	        header: X-Api-Key           # header only; not a header the gateway sets
//	      operations:                   # fhir only: $operations allowed, with their scope
//	        - name: $everything         # $ and a name
//	          resource: Patient         # a resource type, or * / absent: any level
//	          scope: user/Patient.r     # the token must cover it (SMART or plain)
//	      routes:                       # http only, at least one: METHOD /path → scope;
//	        - match: GET /invoices/*    # the most specific match wins; a request no route
//	          scope: billing:read       # matches is denied (see internal/gateway/route)
//	      identity:                     # how X-Phigate-Identity is signed for this upstream;
//	        alg: HS256                  # absent: gateway.identity. EdDSA | HS256
//	        key: secret:ehr-identity    # HS256 only, required: env: | file: | secret: reference
//	                                    # to >= 32 bytes shared with this upstream alone
//	  identity:                         # the default of every upstream
//	    alg: EdDSA                      # EdDSA (default: the gateway's Ed25519 key, published
//	                                    # at /.well-known/phigate-identity-key) | HS256
//	    key:                            # HS256 only (one key then serves every upstream)
//	tls:
//	  cert_file: /etc/phigate/tls.crt   # PEM; both files required, except in dev
//	  key_file: /etc/phigate/tls.key    # mode, where both empty means self-signed
//	tokens:
//	  default_ttl: 15m                  # > 0, <= max_ttl
//	  max_ttl: 24h                      # > 0
//	  bootstrap_ttl: 1h                 # admin token of init / --dev; > 0, <= max_ttl
//	  cache_size: 150000                # verification cache entries (~2 KiB each), > 0
//	  last_used_flush: 1s               # > 0
//	log:
//	  level: info                       # debug | info | warn | error
//	  format: auto                      # auto | json | text (auto: text on a terminal)
//	limits:
//	  max_body_bytes: 1048576           # > 0
//	  max_header_bytes: 65536           # > 0
//	  read_header_timeout: 5s           # every timeout > 0
//	  read_timeout: 30s
//	  write_timeout: 30s
//	  idle_timeout: 120s
//	vault:
//	  master_key: file:/etc/phigate/master.key  # or env:NAME, passphrase, passphrase:fd:N,
//	                                    # awskms:KEY_ID?region=R; required outside dev mode
//	                                    # (PHIGATE_MASTER_KEY overrides it)
//	audit:
//	  node: phigate-1                   # the log's origin is phigate/<node>; default: host name
//	  witness_file: /mnt/worm/phigate-checkpoints.txt  # every signed checkpoint appended
//	  witness_url: https://witness.example/add         # every signed checkpoint POSTed
//	  retention: 52596h                 # default six years; nothing is deleted from the middle
//	  syslog:                           # RFC 5424 over TLS (RFC 5425) to a SIEM; off without addr
//	    addr: siem.example:6514
//	    ca_file: /etc/phigate/siem-ca.pem
//	    format: json                    # json | fhir
//	    from_start: false               # send the whole log on first connection
//	  anonymous:                        # denials before authentication (no, bad, unknown,
//	                                    # revoked, expired token; refusals before a token is read):
//	    full_per_window: 10             # per source and reason, recorded in full per window; >= 0
//	    window: 1m                      # then one summary entry with the count; > 0
//	    max_groups: 10000               # (source, reason) groups per window; more share source "*"
//	    max_field_bytes: 256            # path+query, User-Agent, justification cut (marked); 32..4096
//	  witnesses:                        # C2SP tlog-witness: each checkpoint submitted with its
//	    - name: witness.example/w1      # consistency proof; cosignatures kept in audit.cosigned
//	      url: https://witness.example/w1          # POST <url>/add-checkpoint
//	      vkey: witness.example/w1+1a2b3c4d+BP...  # cosignature/v1 (Ed25519) verifier key
//	  witness_quorum: 1                 # how many must cosign each checkpoint (default 1); fewer: alert
//	  tiles:                            # the log read-only as C2SP tlog-tiles (TLS): /checkpoint, /tile/...
//	    listen: 127.0.0.1:8445          # required unless access is off
//	    access: token                   # off (default) | token (bearer, scope audit:read-tiles) | public
//	scopes:
//	  custom_resource_types: [MyType]   # resource types a SMART scope may name besides
//	                                    # * and the FHIR R4 ones: an upper-case letter, then
//	                                    # letters; not an R4 type; unique; at most 256
//	bruteforce:                         # sources sending malformed or unknown tokens (gateway, admin API)
//	  slow_after: 5                     # failures in window from which each attempt waits delay;
//	                                    # 0: never slowed; < block_after
//	  block_after: 20                   # failures in window from which the source gets 429; > 0
//	  window: 1m                        # > 0
//	  delay: 500ms                      # 0..10s
//	  cool_off: 5m                      # how long a blocked source is refused (Retry-After); > 0
//	  max_sources: 100000               # sources tracked (IPv4 address, IPv6 /64); > 0
//	storage:                            # low-space watermark on the data directory's filesystem:
//	                                    # below it /readyz says why and requests get 503
//	                                    # before anything is written; recovers by itself
//	  min_free_bytes: 1073741824        # >= 0; the watermark is the smaller of the two
//	  min_free_percent: 5               # 0..100 (0: bytes only; both 0: off)
//	  check_interval: 1s                # how often the free space is measured; > 0
//	monitor:                            # anomaly detection on token use (internal/monitor);
//	                                    # per-token overrides: the token's monitor.* metadata
//	  enabled: true                     # false: no detector runs (brute force included)
//	  max_tokens: 100000                # tokens tracked at once; > 0
//	  queue: 4096                       # findings waiting to be acted on; > 0
//	  snapshot_every: 5m                # learned baselines saved to the store; > 0
//	  cooldown: 10m                     # least time between two alerts of a detector on a token; >= 0
//	  new_network: {mode: alert, learning: 168h, max_prefixes: 16}  # mode: off | alert | block;
//	                                    # max_prefixes 1..16
//	  rate_spike: {mode: alert, k: 6, floor_1s: 20, floor_10s: 100, alpha: 0.05}  # off | alert
//	                                    # (alert suspends); k, floors > 0; 0 < alpha < 1
//	  off_hours: {mode: alert, learning: 168h, max_subjects: 100000}  # off | alert | block;
//	                                    # subjects whose hours are learned (32 B each); >= 0
//	  probing: {mode: alert, denials: 10, window: 10s}      # off | alert (suspends); denials 1..32;
//	    reasons: [insufficient_scope, compartment, break_glass_denied, invalid_purpose]
//	  sharing: {mode: alert, window: 10m, learning: 168h, margin: 1, min_sources: 4}
//	                                    # off | alert (suspends); margin >= 0; min_sources 1..32
//	  break_glass: {mode: alert}        # off | alert (every break-glass use: a high alert)
//	                                    # brute force: the bruteforce section above
//	  sinks:                            # every alert is stored and audited (alert.raised) first;
//	                                    # audit.syslog then carries it to the SIEM
//	    log: true                       # one server-log line per alert
//	    webhooks:                       # at most 16
//	      - url: https://hooks.example/phigate  # https (http only with allow_plain_http: true)
//	        allow_plain_http: false
//	        ca_file: /etc/phigate/hooks-ca.pem  # the only CA trusted (default: system roots)
//	        secret: secret:alert-webhook # required: env:NAME | file:PATH | secret:NAME, the
//	                                    # HMAC-SHA256 key (>= 32 bytes) of X-Phigate-Signature
//	        queue: 256                  # alerts waiting; more are dropped and counted; 1..100000
//	        attempts: 5                 # per alert; 1..20
//	        backoff: 250ms              # first wait between attempts, doubled each time; > 0
//	        max_backoff: 10s            # >= backoff
//	store: sqlite                       # sqlite (default: phigate.db in data_dir) or a DSN
//	                                    # postgres://USER@HOST:5432/DB?sslmode=verify-full: a
//	                                    # cluster (see "Running a cluster on PostgreSQL" in the
//	                                    # README); keep the password out (PGPASSWORD, ~/.pgpass)
//	postgres:                           # only with a postgres:// store
//	  ca_file: /etc/phigate/db-ca.pem   # CA of the database's certificate (sslrootcert)
//	  max_conns: 16                     # pool size; 1..1000
//	  poll_interval: 1s                 # fallback poll of the change feed; > 0
//	  max_staleness: 5s                 # a node whose view of revocations is older refuses
//	                                    # every request (503, /readyz not ready); > poll_interval
//	                                    # Remaining uses are cluster-wide (one counter in the
//	                                    # database); rate limits (--rate) are per node: a token
//	                                    # used on N nodes may get N times its rate.
//	metrics:                            # GET /metrics on the admin API needs a token with
//	                                    # admin:metrics; this listener serves it without one
//	  listen: 10.0.0.5:9100             # host:port, TLS with the server certificate (empty: none);
//	                                    # loopback, private or link-local unless allow_public
//	  allow_public: false               # true: any address (metrics to whoever reaches it)
//
// # Errors
//
// [Parse] and [Load] reject, and never silently ignore: YAML syntax errors,
// more than one document, unknown or duplicate keys, values of the wrong
// type, and values that fail validation. Every error is an *[Error] that
// names the line (and the column where one is meaningful) and the key path:
//
//	config: line 7, column 12: tokens.max_ttl: must be at least tokens.default_ttl (15m)
//
// A key that is required but missing is reported at the line of its parent
// key (line 1 at the top level). When a file has several problems of the same
// stage (decoding, then validation), all are reported, joined by newlines in
// file order; errors.As finds the first.
//
// List elements are named by their index: gateway.upstreams[1].routes[0].match.
//
// A Config built in code is checked by [Config.Validate], whose errors carry
// the key path but no line.
package config

import (
	"log/slog"
	"time"

	"github.com/phigate/phigate/internal/scope"
)

// Config is the server configuration. The yaml tag of each field is its key
// in the file.
type Config struct {
	// DataDir holds the embedded store and generated files.
	DataDir string `yaml:"data_dir"`
	// Admin is the admin API listener.
	Admin Listener `yaml:"admin"`
	// Gateway is the enforcing gateway: its listener, limits and upstreams.
	Gateway Gateway `yaml:"gateway"`
	// TLS names the server certificate.
	TLS TLS `yaml:"tls"`
	// Tokens sets token lifetimes and the verification cache.
	Tokens Tokens `yaml:"tokens"`
	// Log sets the process log.
	Log Log `yaml:"log"`
	// Limits bound every HTTP request and connection.
	Limits Limits `yaml:"limits"`
	// Vault configures the key vault (secrets at rest).
	Vault Vault `yaml:"vault"`
	// Audit configures the tamper-evident audit log.
	Audit Audit `yaml:"audit"`
	// Scopes sets what a scope may name.
	Scopes Scopes `yaml:"scopes"`
	// BruteForce slows and refuses sources that keep sending invalid
	// tokens.
	BruteForce BruteForce `yaml:"bruteforce"`
	// Storage is the low-space watermark of the data directory.
	Storage Storage `yaml:"storage"`
	// Monitor sets the anomaly detectors and where their alerts go.
	Monitor Monitor `yaml:"monitor"`
	// Store names the token store: empty or "sqlite" for the embedded
	// store in data_dir, or a postgres:// DSN (see cluster.go).
	Store string `yaml:"store"`
	// Postgres tunes the PostgreSQL store and the cluster it makes.
	Postgres Postgres `yaml:"postgres"`
	// Metrics sets where the Prometheus metrics are served besides the
	// admin API's GET /metrics (which needs admin:metrics).
	Metrics Metrics `yaml:"metrics"`
	// OAuth sets the SMART Backend Services token endpoint.
	OAuth OAuth `yaml:"oauth"`
}

// Metrics configures the metrics listener: GET /metrics without a token,
// over TLS with the server's certificate, for a scraper on a private
// network.
type Metrics struct {
	// Listen is its host:port (empty: none). The host must be a loopback,
	// private (RFC 1918, RFC 4193) or link-local address unless
	// AllowPublic is set.
	Listen string `yaml:"listen"`
	// AllowPublic allows any address: metrics then go to whoever reaches it.
	AllowPublic bool `yaml:"allow_public"`
}

// OAuth configures the token endpoint (package oauth).
type OAuth struct {
	// TokenEndpoint is the URL clients name as their assertion's aud,
	// exactly (default https://<the admin listener's address>/v1/oauth/token).
	TokenEndpoint string `yaml:"token_endpoint,omitempty"`
	// TokenTTL is the life of an issued token: 1s..5m (default 5m).
	TokenTTL Duration `yaml:"token_ttl,omitempty"`
	// JWKSCAFile, when set, is the PEM bundle that verifies the TLS of
	// clients' jwks_url servers instead of the system roots.
	JWKSCAFile string `yaml:"jwks_ca_file,omitempty"`
}

// Listener is a TCP listen address.
type Listener struct {
	Listen string `yaml:"listen"`
	// Issuer (admin only) is the OAuth issuer identifier (RFC 8414): the
	// https URL clients use for discovery, without query or fragment,
	// also the base of the endpoints the metadata names. Empty:
	// https://<the admin listener's bound address> (localhost for an
	// unspecified host).
	Issuer string `yaml:"issuer,omitempty"`
}

// Gateway configures the enforcing gateway.
type Gateway struct {
	// Listen is the gateway's TLS listen address.
	Listen string `yaml:"listen"`
	// TrustedProxies lists the networks (CIDR, or a single address) of the
	// proxies whose X-Forwarded-For, X-Real-IP and forward-auth headers
	// are believed. Empty: none; the client is the connection's peer.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// Limits bound what the gateway reads and forwards.
	Limits GatewayLimits `yaml:"limits"`
	// Upstreams are the APIs behind the gateway. Outside dev mode the
	// gateway starts only when there is at least one.
	Upstreams []Upstream `yaml:"upstreams,omitempty"`
	// Identity is how the identity assertion (X-Phigate-Identity) is
	// signed for upstreams whose own identity section sets no alg.
	Identity Identity `yaml:"identity"`
	// Metadata bounds the capability statements served without a token.
	Metadata PublicMetadata `yaml:"metadata"`
}

// Identity algorithms (see the identity assertion in internal/gateway).
const (
	// IdentityEdDSA signs with the gateway's Ed25519 key, published as a
	// JWK Set; the default.
	IdentityEdDSA = "EdDSA"
	// IdentityHS256 authenticates with HMAC-SHA256 under a key shared
	// with the upstream.
	IdentityHS256 = "HS256"
)

// Identity selects how the gateway signs the identity it asserts to an
// upstream.
type Identity struct {
	// Alg is EdDSA (the gateway's Ed25519 key; empty means EdDSA, or the
	// gateway-wide choice for an upstream) or HS256.
	Alg string `yaml:"alg"`
	// Key is the HS256 key: a reference (env:NAME, file:PATH or
	// secret:NAME) to at least 32 bytes, used as they are. HS256 only.
	Key string `yaml:"key"`
}

// GatewayLimits bound the gateway's requests.
type GatewayLimits struct {
	// MaxBodyBytes bounds a request body streamed to an upstream (413
	// beyond).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInspectBytes bounds a body the gateway must read to decide:
	// FHIR batch/transaction Bundles, POST _search forms, and resources
	// created under a patient-compartment scope.
	MaxInspectBytes int64 `yaml:"max_inspect_bytes"`
	// MaxBundleEntries bounds the entries of a batch or transaction.
	MaxBundleEntries int `yaml:"max_bundle_entries"`
}

// Upstream is one API behind the gateway.
type Upstream struct {
	// Name identifies the upstream in logs and audit events.
	Name string `yaml:"name"`
	// URL is where requests go: https://host[:port][/base]. Empty: the
	// upstream is reached only through forward auth (/v1/authz).
	URL string `yaml:"url"`
	// Prefix is the path on the gateway that leads to this upstream; it
	// is replaced by the URL's path.
	Prefix string `yaml:"prefix"`
	// Kind is fhir (scopes derived from the FHIR interaction) or http
	// (scopes from Routes).
	Kind string `yaml:"kind"`
	// AllowPlainHTTP permits an http:// URL. Without it only https is.
	AllowPlainHTTP bool `yaml:"allow_plain_http"`
	// TLS says how the upstream's certificate is verified.
	TLS UpstreamTLS `yaml:"tls"`
	// Timeouts of the connection to the upstream.
	Timeouts UpstreamTimeouts `yaml:"timeouts"`
	// Credential is what the gateway sends the upstream in place of the
	// client's token.
	Credential Credential `yaml:"credential"`
	// Routes map method and path to the scope required (http upstreams).
	Routes []Route `yaml:"routes,omitempty"`
	// Operations map FHIR $operations to the scope required (fhir
	// upstreams). An operation not listed is denied.
	Operations []Operation `yaml:"operations,omitempty"`
	// Identity, when its Alg is set, replaces gateway.identity for this
	// upstream.
	Identity Identity `yaml:"identity"`
	// MaxCheckedBody bounds the answers the gateway must read whole to
	// check them against a token's patient compartment (fhir upstreams:
	// instance reads, vread and history by patient/ tokens, _include);
	// a larger one is refused with 502 response_too_large. 0: the default
	// (DefaultMaxCheckedBody).
	MaxCheckedBody int64 `yaml:"max_checked_body"`
	// HideExistence answers a resource read outside the token's patient
	// compartment 404 not_found rather than 403 compartment, so that the
	// answer does not tell that it exists (fhir upstreams).
	HideExistence bool `yaml:"hide_existence"`
	// ContinuationTTL is how long a continuation handle (a next or
	// previous page of a search) stays valid. 0: the default
	// (DefaultContinuationTTL).
	ContinuationTTL Duration `yaml:"continuation_ttl"`
	// CORS, when set, lets browser apps from its origins call the
	// upstream (preflights answered without a token).
	CORS CORS `yaml:"cors"`
}

// ResponseDefaults returns the upstream's response-check bound and
// continuation lifetime, the defaults in place of zeros.
func (u *Upstream) ResponseDefaults() (maxChecked int64, continuationTTL time.Duration) {
	maxChecked, continuationTTL = u.MaxCheckedBody, u.ContinuationTTL.Duration()
	if maxChecked == 0 {
		maxChecked = DefaultMaxCheckedBody
	}
	if continuationTTL == 0 {
		continuationTTL = DefaultContinuationTTL
	}
	return maxChecked, continuationTTL
}

// UpstreamTLS verifies an https upstream. With neither CAFile nor Pins the
// system roots are used.
type UpstreamTLS struct {
	// CAFile is a PEM file of the only roots trusted for the upstream.
	CAFile string `yaml:"ca_file"`
	// Pins are SHA-256 SPKI pins (base64, optionally "sha256//"): one or
	// more (the current key and a backup, for rollover); the upstream's
	// leaf key must be one of them. Alone they replace chain verification;
	// with CAFile the chain is verified first and then the pin.
	Pins []string `yaml:"pins,omitempty"`
	// ServerName overrides the name sent as SNI and verified.
	ServerName string `yaml:"server_name"`
}

// UpstreamTimeouts bound the exchange with an upstream; zero takes the
// default.
type UpstreamTimeouts struct {
	// Connect bounds dialling and the TLS handshake (default 5s).
	Connect Duration `yaml:"connect"`
	// Response bounds the wait for the response headers (default 30s;
	// 504 beyond).
	Response Duration `yaml:"response"`
	// Idle is how long an idle keep-alive connection is kept (default 90s).
	Idle Duration `yaml:"idle"`
}

// Credential is injected into every forwarded request. Value is a
// reference: env:NAME (an environment variable) or file:PATH (a file's
// content, trailing newline removed); secret:NAME is reserved for the key
// vault.
type Credential struct {
	// Type is none, bearer, basic or header.
	Type string `yaml:"type"`
	// Header names the header of Type header.
	Header string `yaml:"header"`
	// Username is the user of Type basic (Value is the password).
	Username string `yaml:"username"`
	// Value is the reference to the secret.
	Value string `yaml:"value"`
}

// Route requires Scope for requests matching Match ("GET /invoices/*"; see
// internal/gateway/route for the grammar and which route wins).
type Route struct {
	Match string `yaml:"match"`
	Scope string `yaml:"scope"`
}

// Operation requires Scope for the FHIR operation Name ("$everything") on
// Resource (a resource type; empty or "*": at every level and type).
type Operation struct {
	Name     string `yaml:"name"`
	Resource string `yaml:"resource"`
	Scope    string `yaml:"scope"`
}

// TLS names the PEM files of the server certificate (chain) and its key.
// Both empty means "generate a self-signed certificate", allowed only in dev
// mode.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Tokens sets token lifetimes and the verification cache.
type Tokens struct {
	// DefaultTTL is the lifetime of a token created without one.
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxTTL bounds the lifetime of every token.
	MaxTTL Duration `yaml:"max_ttl"`
	// DefaultMaxLifetime bounds the rotation chain of a token created
	// without max_lifetime, from its creation (default 90 days; at least
	// max_ttl): after it, a person must issue a new token.
	DefaultMaxLifetime Duration `yaml:"default_max_lifetime"`
	// BootstrapTTL is the lifetime of the admin token printed by init and
	// server --dev.
	BootstrapTTL Duration `yaml:"bootstrap_ttl"`
	// CacheSize is the number of entries of the verification cache.
	CacheSize int `yaml:"cache_size"`
	// LastUsedFlush is how often last-use times are written to the store.
	LastUsedFlush Duration `yaml:"last_used_flush"`
}

// Scopes sets what the scopes of new tokens and of the gateway's routes
// and operations may name.
type Scopes struct {
	// CustomResourceTypes are the resource types a SMART scope may name
	// besides "*" and the FHIR R4 types (an upstream's own types). A
	// misspelled type is refused wherever a scope is issued; a type removed
	// from here stays in the tokens that name it, which still work. Read
	// at start: a SIGHUP reload checks the reloaded gateway section against
	// the file's list, but tokens are issued under the list the server
	// started with.
	CustomResourceTypes []string `yaml:"custom_resource_types,omitempty"`
}

// ResourceTypes returns the resource types that s allows, or the R4 types
// alone when s is invalid (which Validate reports).
func (s Scopes) ResourceTypes() scope.ResourceTypes {
	rt, err := scope.NewResourceTypes(s.CustomResourceTypes...)
	if err != nil {
		return scope.ResourceTypes{}
	}
	return rt
}

// Log sets the process log.
type Log struct {
	// Level is one of debug, info, warn, error.
	Level string `yaml:"level"`
	// Format is auto, json or text; auto means text when standard error is
	// a terminal and JSON otherwise.
	Format string `yaml:"format"`
}

// Limits bound every HTTP request and connection (see net/http.Server).
type Limits struct {
	MaxBodyBytes      int64    `yaml:"max_body_bytes"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	ReadTimeout       Duration `yaml:"read_timeout"`
	WriteTimeout      Duration `yaml:"write_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
}

// Defaults.
const (
	DefaultAdminListen       = "127.0.0.1:8443"
	DefaultGatewayListen     = "127.0.0.1:9443"
	DefaultTokenTTL          = 15 * time.Minute
	DefaultMaxTTL            = 24 * time.Hour
	DefaultMaxLifetime       = 90 * 24 * time.Hour
	DefaultBootstrapTTL      = time.Hour
	DefaultCacheSize         = 150_000
	DefaultLastUsedFlush     = time.Second
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "auto"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second

	DefaultGatewayMaxBodyBytes     = 32 << 20
	DefaultGatewayMaxInspectBytes  = 1 << 20
	DefaultGatewayMaxBundleEntries = 100
	DefaultUpstreamConnect         = 5 * time.Second
	DefaultUpstreamResponse        = 30 * time.Second
	DefaultUpstreamIdle            = 90 * time.Second
	DefaultMaxCheckedBody          = 8 << 20
	MaxMaxCheckedBody              = 256 << 20
	DefaultContinuationTTL         = 10 * time.Minute
	MaxContinuationTTL             = 24 * time.Hour
)

// Default returns a Config with every default applied. DataDir and the TLS
// files are empty: Default is valid only in dev mode until they are set.
func Default() *Config {
	c := &Config{
		Admin: Listener{Listen: DefaultAdminListen},
		Gateway: Gateway{
			Listen: DefaultGatewayListen,
			Limits: GatewayLimits{
				MaxBodyBytes:     DefaultGatewayMaxBodyBytes,
				MaxInspectBytes:  DefaultGatewayMaxInspectBytes,
				MaxBundleEntries: DefaultGatewayMaxBundleEntries,
			},
			Metadata: PublicMetadata{}.WithDefaults(),
		},
		Tokens: Tokens{
			DefaultTTL:         Duration(DefaultTokenTTL),
			MaxTTL:             Duration(DefaultMaxTTL),
			DefaultMaxLifetime: Duration(DefaultMaxLifetime),
			BootstrapTTL:       Duration(DefaultBootstrapTTL),
			CacheSize:          DefaultCacheSize,
			LastUsedFlush:      Duration(DefaultLastUsedFlush),
		},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Limits: Limits{
			MaxBodyBytes:      DefaultMaxBodyBytes,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			ReadHeaderTimeout: Duration(DefaultReadHeaderTimeout),
			ReadTimeout:       Duration(DefaultReadTimeout),
			WriteTimeout:      Duration(DefaultWriteTimeout),
			IdleTimeout:       Duration(DefaultIdleTimeout),
		},
	}
	defaultProtections(c)
	defaultMonitor(c)
	defaultPostgres(c)
	return c
}

// Dev returns the configuration of `phigate server --dev`: the defaults,
// with dataDir as the data directory and no TLS files (a self-signed
// certificate is generated).
func Dev(dataDir string) *Config {
	c := Default()
	c.DataDir = dataDir
	return c
}

// SlogLevel returns the slog level named by Level; an unknown name (which
// Validate rejects) means slog.LevelInfo.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Vault configures the key vault.
type Vault struct {
	// MasterKey names the key-encryption key: file:PATH (32 bytes, mode
	// 0600), env:NAME (base64), passphrase (asked at the terminal),
	// passphrase:fd:N, or awskms:KEY_ID?region=R. Required outside dev
	// mode (where a development key file in the data directory is used);
	// the environment variable PHIGATE_MASTER_KEY overrides it.
	MasterKey string `yaml:"master_key"`
}

// Audit configures the audit log.
type Audit struct {
	// Node names this server in the log's origin (phigate/<node>);
	// default: the host name. It can never change for a given log.
	Node string `yaml:"node"`
	// WitnessFile, when set, gets every signed checkpoint appended.
	WitnessFile string `yaml:"witness_file"`
	// WitnessURL, when set, gets every signed checkpoint POSTed.
	WitnessURL string `yaml:"witness_url"`
	// Retention is how long entries are kept (default 6 years, HIPAA
	// 164.316(b)(2)); nothing is ever deleted from the middle.
	Retention Duration `yaml:"retention"`
	// Syslog streams every entry to a SIEM (RFC 5424 over TLS, RFC 5425
	// framing: the IHE ATNA transport). Empty addr: off.
	Syslog Syslog `yaml:"syslog"`
	// Anonymous sets how denials before authentication are aggregated.
	Anonymous AnonymousDenials `yaml:"anonymous"`
	// Tiles serves the log read-only as a C2SP tlog-tiles log.
	Tiles AuditTiles `yaml:"tiles"`
	// Witnesses cosign each checkpoint (C2SP tlog-witness).
	Witnesses []Witness `yaml:"witnesses"`
	// WitnessQuorum is how many witnesses must cosign each checkpoint
	// (fewer is alerted); default 1 when witnesses are set.
	WitnessQuorum int `yaml:"witness_quorum"`
}

// Witness is a C2SP tlog-witness.
type Witness struct {
	// Name is the witness's key name, e.g. witness.example/w1.
	Name string `yaml:"name"`
	// URL is its prefix (https://): phigate POSTs to URL/add-checkpoint.
	URL string `yaml:"url"`
	// VKey is its cosignature/v1 verifier key: <name>+<hash>+<base64>.
	VKey string `yaml:"vkey"`
}

// AuditTiles configures the tlog-tiles listener (TLS, read-only:
// /checkpoint, /tile/...).
type AuditTiles struct {
	// Listen is its address (host:port); required unless Access is off.
	Listen string `yaml:"listen"`
	// Access: "off" (the default: no listener), "token" (a bearer token
	// with the audit:read-tiles scope) or "public" (anyone who reaches
	// the address: entries carry metadata such as subjects, token ids and
	// addresses in the clear; only the PHI fields are sealed).
	Access string `yaml:"access"`
}

// Syslog configures the audit log's syslog sink.
type Syslog struct {
	// Addr is the collector, host:port (6514 is the registered port).
	Addr string `yaml:"addr"`
	// CAFile is the PEM file of the CA that signed the collector's
	// certificate (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the collector's certificate.
	ServerName string `yaml:"server_name"`
	// Format of the message body: json (default) or fhir (AuditEvent).
	Format string `yaml:"format"`
	// FromStart sends the whole log on first connection, not just what is
	// appended from then on.
	FromStart bool `yaml:"from_start"`
}
