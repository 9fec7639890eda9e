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
//	tls:
//	  cert_file: /etc/phigate/tls.crt   # PEM; both files required, except in dev
//	  key_file: /etc/phigate/tls.key    # mode, where both empty means self-signed
//	tokens:
//	  default_ttl: 15m                  # > 0, <= max_ttl
//	  max_ttl: 24h                      # > 0
//	  bootstrap_ttl: 1h                 # admin token of init / --dev; > 0, <= max_ttl
//	  cache_size: 200000                # verification cache entries, > 0
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
// A Config built in code is checked by [Config.Validate], whose errors carry
// the key path but no line.
package config

import (
	"log/slog"
	"time"
)

// Config is the server configuration. The yaml tag of each field is its key
// in the file.
type Config struct {
	// DataDir holds the embedded store and generated files.
	DataDir string `yaml:"data_dir"`
	// Admin is the admin API listener.
	Admin Listener `yaml:"admin"`
	// Gateway is the enforcing gateway listener.
	Gateway Listener `yaml:"gateway"`
	// TLS names the server certificate.
	TLS TLS `yaml:"tls"`
	// Tokens sets token lifetimes and the verification cache.
	Tokens Tokens `yaml:"tokens"`
	// Log sets the process log.
	Log Log `yaml:"log"`
	// Limits bound every HTTP request and connection.
	Limits Limits `yaml:"limits"`
}

// Listener is a TCP listen address.
type Listener struct {
	Listen string `yaml:"listen"`
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
	// BootstrapTTL is the lifetime of the admin token printed by init and
	// server --dev.
	BootstrapTTL Duration `yaml:"bootstrap_ttl"`
	// CacheSize is the number of entries of the verification cache.
	CacheSize int `yaml:"cache_size"`
	// LastUsedFlush is how often last-use times are written to the store.
	LastUsedFlush Duration `yaml:"last_used_flush"`
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
	DefaultBootstrapTTL      = time.Hour
	DefaultCacheSize         = 200_000
	DefaultLastUsedFlush     = time.Second
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "auto"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

// Default returns a Config with every default applied. DataDir and the TLS
// files are empty: Default is valid only in dev mode until they are set.
func Default() *Config {
	return &Config{
		Admin:   Listener{Listen: DefaultAdminListen},
		Gateway: Listener{Listen: DefaultGatewayListen},
		Tokens: Tokens{
			DefaultTTL:    Duration(DefaultTokenTTL),
			MaxTTL:        Duration(DefaultMaxTTL),
			BootstrapTTL:  Duration(DefaultBootstrapTTL),
			CacheSize:     DefaultCacheSize,
			LastUsedFlush: Duration(DefaultLastUsedFlush),
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
