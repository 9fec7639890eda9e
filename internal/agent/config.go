package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits of a configuration.
const (
	// MaxConfigSize bounds a configuration file.
	MaxConfigSize = 64 << 10
	// MaxTokens bounds how many tokens one agent manages.
	MaxTokens = 64
	// MaxExecArgs bounds a hook command's arguments.
	MaxExecArgs = 64
	// DefaultHookTimeout bounds a hook command.
	DefaultHookTimeout = 30 * time.Second
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("agent: configuration")

// Config is what one agent does: the server it talks to, the tokens it
// keeps fresh, and where it reports its state.
type Config struct {
	// Addr is the admin API ("https://host:port").
	Addr string `yaml:"addr"`
	// Pins are the accepted SPKI SHA-256 pins of the server's key (a
	// current and a backup); CAFile a PEM file of the CA that signed its
	// certificate. At least one of them is required: the agent does not
	// trust the system roots alone.
	Pins   []string `yaml:"pins"`
	CAFile string   `yaml:"ca_file"`
	// Health is the address of the health endpoint ("" for none). It must
	// be a loopback address unless HealthAllowRemote is set.
	Health            string  `yaml:"health"`
	HealthAllowRemote bool    `yaml:"health_allow_remote"`
	Tokens            []Token `yaml:"tokens"`
}

// Token is one token the agent keeps fresh.
type Token struct {
	// Name identifies the token in logs and the health report (defaults to
	// the sink's file name).
	Name string `yaml:"name"`
	// TokenFile holds the secret to start from; the agent rewrites it with
	// every new secret, so that a restarted agent continues from the
	// newest. TokenEnv names an environment variable to start from
	// instead; State is then required: the file the agent keeps the newest
	// secret in, and starts from when it exists.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	State     string `yaml:"state"`
	// Sink is the file the application reads the current secret from.
	Sink string `yaml:"sink"`
	// Grace and TTL, when set, are asked for at each rotation (the server's
	// defaults otherwise: the token's own grace and rotation period).
	Grace Duration `yaml:"grace"`
	TTL   Duration `yaml:"ttl"`
	// After each rotation: send Signal (default SIGHUP) to the process
	// whose id is in PIDFile, and/or run Exec (argv, no shell) with
	// PHIGATE_SINK set to the sink, within HookTimeout.
	PIDFile     string   `yaml:"pid_file"`
	Signal      string   `yaml:"signal"`
	Exec        []string `yaml:"exec"`
	HookTimeout Duration `yaml:"hook_timeout"`
}

// Duration is a time.Duration written as Go writes it ("90s", "5m").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 90s or 5m", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// ParseConfig parses and checks a configuration file (YAML). Unknown keys
// are errors, with their line.
func ParseConfig(data []byte) (*Config, error) {
	c, err := DecodeConfig(data)
	if err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c, nil
}

// DecodeConfig parses a configuration file without checking it, for a
// caller that completes it (from the environment, say) before Check.
func DecodeConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrConfig, MaxConfigSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrConfig)
	}
	return &c, nil
}

// signals are the signals a hook may send.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT,
}

// signalOf returns the signal named s ("HUP", "SIGHUP"; "" is SIGHUP).
func signalOf(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGHUP, nil
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
	if !ok {
		return 0, fmt.Errorf("signal %q: want one of HUP, USR1, USR2, TERM, INT", s)
	}
	return sig, nil
}

// Check validates c and fills in defaults.
func (c *Config) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if strings.TrimSpace(c.Addr) == "" {
		return bad("addr: the admin API address is required")
	}
	if len(c.Pins) == 0 && c.CAFile == "" {
		return bad("pins or ca_file: the agent pins the server's key (PHIGATE_PIN) or its CA (PHIGATE_CACERT); it does not trust the system roots alone")
	}
	if c.Health != "" {
		host, _, err := net.SplitHostPort(c.Health)
		if err != nil {
			return bad("health: %q is not host:port", c.Health)
		}
		ip := net.ParseIP(host)
		if !c.HealthAllowRemote && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return bad("health: %s is not a loopback address (set health_allow_remote to listen on another)", c.Health)
		}
	}
	if len(c.Tokens) == 0 {
		return bad("tokens: no token to manage")
	}
	if len(c.Tokens) > MaxTokens {
		return bad("tokens: %d tokens, at most %d", len(c.Tokens), MaxTokens)
	}
	names := map[string]bool{}
	files := map[string]string{}
	for i := range c.Tokens {
		t := &c.Tokens[i]
		if t.Sink == "" {
			return bad("tokens[%d]: sink is required", i)
		}
		if t.Name == "" {
			t.Name = filepath.Base(t.Sink)
		}
		if names[t.Name] {
			return bad("tokens[%d]: name %q is used twice", i, t.Name)
		}
		names[t.Name] = true
		switch {
		case t.TokenFile != "" && t.TokenEnv != "":
			return bad("token %s: token_file and token_env are exclusive", t.Name)
		case t.TokenFile == "" && t.TokenEnv == "":
			return bad("token %s: token_file or token_env is required", t.Name)
		case t.TokenEnv != "" && t.State == "":
			return bad("token %s: token_env needs a state file, where the newest secret is kept across restarts", t.Name)
		case t.TokenFile != "" && t.State != "":
			return bad("token %s: the token file is the state: state is only for token_env", t.Name)
		}
		if t.TokenFile != "" && filepath.Clean(t.TokenFile) == filepath.Clean(t.Sink) {
			return bad("token %s: the sink must not be the token file", t.Name)
		}
		for _, f := range []string{t.TokenFile, t.State, t.Sink} {
			if f == "" {
				continue
			}
			abs := filepath.Clean(f)
			if other, ok := files[abs]; ok {
				return bad("token %s: file %s is also used by token %s", t.Name, f, other)
			}
			files[abs] = t.Name
		}
		if _, err := signalOf(t.Signal); err != nil {
			return bad("token %s: %v", t.Name, err)
		}
		if t.Signal != "" && t.PIDFile == "" {
			return bad("token %s: signal needs pid_file", t.Name)
		}
		if len(t.Exec) > MaxExecArgs || len(t.Exec) > 0 && t.Exec[0] == "" {
			return bad("token %s: exec: want a command and at most %d arguments", t.Name, MaxExecArgs-1)
		}
		if t.HookTimeout == 0 {
			t.HookTimeout = Duration(DefaultHookTimeout)
		}
	}
	return nil
}
