package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// DefaultHealth is the health endpoint's address unless --health says
// otherwise.
const DefaultHealth = "127.0.0.1:8479"

// ErrUsage matches (errors.Is) Main's errors that are mistakes on the
// command line (exit code 2).
var ErrUsage = errors.New("agent: usage error")

// usageError is a mistake on the command line; its message is the
// mistake alone.
type usageError struct{ err error }

func (e usageError) Error() string      { return e.err.Error() }
func (e usageError) Unwrap() error      { return e.err }
func (usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Usage is the help of `phigate agent`.
const Usage = `Usage: phigate agent --token-file F --sink F [flags] | --config F

Keep an application's token fresh on disk: rotate it, write it, tell the
application.

The agent starts from the token in --token-file (or the variable --token-env,
with --state), checks it with the server, writes it to --sink, and rotates it
itself at about two thirds of its rotation period (the token's TTL), with
jitter. Every new secret is written atomically (mode 0600) to the token file
(or the state file) and then to the sink, so that a restarted agent continues
from the newest secret; then the process in --pid-file gets --signal and
--exec runs. Server outages are retried with backoff; a warning is logged
loudly when the token is about to stop working. The state is served as JSON
on --health (loopback only).

The server is the one PHIGATE_ADDR names, verified with PHIGATE_PIN (one or
more pins, comma separated: a current and a backup) or PHIGATE_CACERT; one of
them is required. --config F manages several tokens (keys: see the package
documentation of internal/agent, or the README's "Automated rotation").

Examples:
  phigate agent --token-file /var/lib/lab/phigate.token --sink /run/lab/token \
      --pid-file /run/lab/lab.pid --signal HUP
  phigate agent --config /etc/phigate/agent.yaml

Flags:
`

// Main runs `phigate agent` with args (the flags after "agent"), reading
// PHIGATE_ADDR, PHIGATE_PIN and PHIGATE_CACERT through getenv and logging
// to stderr, until ctx is done (nil) or no token can be rotated any more.
// An error that wraps ErrUsage is a mistake on the command line.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var (
		configFile string
		t          Token
		grace, ttl time.Duration
		execLine   string
		health     string
		verbose    bool
	)
	fs := flag.NewFlagSet("phigate agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a mistake is reported once, by the caller
	fs.Usage = func() {}
	fs.StringVar(&configFile, "config", "", "YAML `file` of the tokens to manage (instead of the flags below)")
	fs.StringVar(&t.TokenFile, "token-file", "", "`file` holding the token to start from; rewritten with every new secret")
	fs.StringVar(&t.TokenEnv, "token-env", "", "environment `variable` holding the token to start from (needs --state)")
	fs.StringVar(&t.State, "state", "", "with --token-env: `file` the newest secret is kept in, and started from when it exists")
	fs.StringVar(&t.Sink, "sink", "", "`file` the application reads the current token from")
	fs.StringVar(&t.Name, "name", "", "name of the token in logs and the health report (default: the sink's file name)")
	fs.DurationVar(&grace, "grace", 0, "grace period to ask for at each rotation (default: the token's own)")
	fs.DurationVar(&ttl, "ttl", 0, "TTL to ask for at each rotation (default: the token's rotation period)")
	fs.StringVar(&t.PIDFile, "pid-file", "", "after each rotation, signal the process whose id this `file` holds")
	fs.StringVar(&t.Signal, "signal", "", "the signal for --pid-file: HUP (default), USR1, USR2, TERM, INT")
	fs.StringVar(&execLine, "exec", "", "after each rotation, run this `command` (split on spaces, no shell) with PHIGATE_SINK set")
	fs.StringVar(&health, "health", DefaultHealth, "health endpoint `address` (loopback only; \"off\" for none)")
	fs.BoolVar(&verbose, "v", false, "log every check and rotation, not only warnings")
	fs.BoolVar(&verbose, "verbose", false, "same as -v")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, Usage)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("agent takes no arguments, got %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var cfg *Config
	if configFile != "" {
		for _, n := range []string{"token-file", "token-env", "state", "sink", "name", "grace", "ttl", "pid-file", "signal", "exec"} {
			if set[n] {
				return usagef("--config and --%s are exclusive: put the token in the config file", n)
			}
		}
		data, err := readConfigFile(configFile)
		if err != nil {
			return err
		}
		if cfg, err = DecodeConfig(data); err != nil {
			return fmt.Errorf("%s: %w", configFile, err)
		}
	} else {
		if t.Sink == "" || t.TokenFile == "" && t.TokenEnv == "" {
			return usagef("agent needs --token-file F (or --token-env V --state F) and --sink F, or --config F")
		}
		t.Grace, t.TTL = Duration(grace), Duration(ttl)
		t.Exec = strings.Fields(execLine)
		cfg = &Config{Tokens: []Token{t}}
	}
	if err := fillFromEnv(cfg, getenv); err != nil {
		return err
	}
	if set["health"] || configFile == "" {
		cfg.Health = health
	}
	if cfg.Health == "off" {
		cfg.Health = ""
	}
	if err := cfg.Check(); err != nil {
		return usageError{err}
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ag, err := New(cfg, Options{Getenv: getenv, Logger: log,
		Listening: func(addr net.Addr) { fmt.Fprintf(stderr, "phigate agent: health endpoint http://%s/healthz\n", addr) }})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "phigate agent: keeping %d token(s) fresh against %s\n", len(cfg.Tokens), cfg.Addr)
	return ag.Run(ctx)
}

func readConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxConfigSize {
		return nil, fmt.Errorf("%s: %w: over %d bytes", name, ErrConfig, MaxConfigSize)
	}
	return b, nil
}

// fillFromEnv takes what cfg does not say from the environment the other
// client commands read: PHIGATE_ADDR (default client.DefaultAddr), and
// PHIGATE_PIN and PHIGATE_CACERT when the config names neither pins nor a
// CA file.
func fillFromEnv(cfg *Config, getenv func(string) string) error {
	if cfg.Addr == "" {
		cfg.Addr = strings.TrimSpace(getenv(client.EnvAddr))
		if cfg.Addr == "" {
			cfg.Addr = client.DefaultAddr
		}
	}
	if len(cfg.Pins) == 0 && cfg.CAFile == "" {
		if p := getenv(client.EnvPin); strings.TrimSpace(p) != "" {
			pins, err := client.ParsePins(p)
			if err != nil {
				return usagef("%s: %w", client.EnvPin, err)
			}
			cfg.Pins = pins
		}
		cfg.CAFile = strings.TrimSpace(getenv(client.EnvCACert))
	}
	return nil
}
