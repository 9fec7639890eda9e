package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/internal/agent"
	"github.com/phigate/phigate/pkg/client"
)

// defaultAgentHealth is the agent's health endpoint unless --health says
// otherwise.
const defaultAgentHealth = "127.0.0.1:8479"

func (a *cli) agentCmd() *cobra.Command {
	var (
		configFile string
		t          agent.Token
		grace, ttl time.Duration
		execLine   string
		health     string
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "agent --token-file F --sink F | --config F",
		Short: "Keep an application's token fresh on disk: rotate it, write it, tell the application",
		Long: `phigate agent runs beside an application. It starts from the token in --token-file
(or the variable --token-env, with --state), checks it with the server, writes it to
--sink, and rotates it itself at about two thirds of its rotation period (the token's
TTL), with jitter. Every new secret is written atomically (mode 0600) to the token
file (or the state file) and then to the sink, so that a restarted agent continues
from the newest secret; then the process in --pid-file gets --signal and --exec runs.
Server outages are retried with backoff; a warning is logged loudly when the token is
about to stop working. The state is served as JSON on --health (loopback only).

The server is the one PHIGATE_ADDR names, verified with PHIGATE_PIN (one or more
pins, comma separated: a current and a backup) or PHIGATE_CACERT; one of them is
required. --config F manages several tokens (see the README's "Automated rotation").`,
		Example: `  phigate agent --token-file /var/lib/lab/phigate.token --sink /run/lab/token \
      --pid-file /run/lab/lab.pid --signal HUP
  phigate agent --config /etc/phigate/agent.yaml`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file of the tokens to manage (instead of the flags below)")
	f.StringVar(&t.TokenFile, "token-file", "", "file holding the token to start from; rewritten with every new secret")
	f.StringVar(&t.TokenEnv, "token-env", "", "environment variable holding the token to start from (needs --state)")
	f.StringVar(&t.State, "state", "", "with --token-env: file the newest secret is kept in, and started from when it exists")
	f.StringVar(&t.Sink, "sink", "", "file the application reads the current token from")
	f.StringVar(&t.Name, "name", "", "name of the token in logs and the health report (default: the sink's file name)")
	f.DurationVar(&grace, "grace", 0, "grace period to ask for at each rotation (default: the token's own)")
	f.DurationVar(&ttl, "ttl", 0, "TTL to ask for at each rotation (default: the token's rotation period)")
	f.StringVar(&t.PIDFile, "pid-file", "", "after each rotation, signal the process whose id this file holds")
	f.StringVar(&t.Signal, "signal", "", "the signal for --pid-file: HUP (default), USR1, USR2, TERM, INT")
	f.StringVar(&execLine, "exec", "", "after each rotation, run this command (split on spaces, no shell) with PHIGATE_SINK set")
	f.StringVar(&health, "health", defaultAgentHealth, `health endpoint address (loopback only; "off" for none)`)
	f.BoolVarP(&verbose, "verbose", "v", false, "log every check and rotation, not only warnings")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var cfg *agent.Config
		if configFile != "" {
			for _, n := range []string{"token-file", "token-env", "state", "sink", "name", "grace", "ttl", "pid-file", "signal", "exec"} {
				if f.Changed(n) {
					return usagef("--config and --%s are exclusive: put the token in the config file", n)
				}
			}
			data, err := readConfigFile(configFile)
			if err != nil {
				return err
			}
			if cfg, err = agent.DecodeConfig(data); err != nil {
				return fmt.Errorf("%s: %w", configFile, err)
			}
			if err := fillFromEnv(cfg, a.env); err != nil {
				return err
			}
		} else {
			if t.Sink == "" || t.TokenFile == "" && t.TokenEnv == "" {
				return usagef("agent needs --token-file F (or --token-env V --state F) and --sink F, or --config F")
			}
			t.Grace, t.TTL = agent.Duration(grace), agent.Duration(ttl)
			t.Exec = strings.Fields(execLine)
			cfg = &agent.Config{Tokens: []agent.Token{t}}
			if err := fillFromEnv(cfg, a.env); err != nil {
				return err
			}
		}
		if f.Changed("health") || configFile == "" {
			cfg.Health = health
		}
		if cfg.Health == "off" {
			cfg.Health = ""
		}
		if err := cfg.Check(); err != nil {
			return usageErr{err}
		}
		level := slog.LevelWarn
		if verbose {
			level = slog.LevelInfo
		}
		log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
		ag, err := agent.New(cfg, agent.Options{Getenv: a.env, Logger: log,
			Listening: func(addr net.Addr) { fmt.Fprintf(a.stderr, "phigate agent: health endpoint http://%s/healthz\n", addr) }})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "phigate agent: keeping %d token(s) fresh against %s\n", len(cfg.Tokens), cfg.Addr)
		return ag.Run(cmd.Context())
	}
	return cmd
}

// maxAgentConfig bounds the config file read.
const maxAgentConfig = agent.MaxConfigSize

func readConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAgentConfig+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAgentConfig {
		return nil, fmt.Errorf("%s: over %d bytes", name, maxAgentConfig)
	}
	return b, nil
}

// fillFromEnv takes what cfg does not say from the environment the other
// client commands read.
func fillFromEnv(cfg *agent.Config, env func(string) string) error {
	if cfg.Addr == "" {
		cfg.Addr = strings.TrimSpace(env(client.EnvAddr))
		if cfg.Addr == "" {
			cfg.Addr = client.DefaultAddr
		}
	}
	if len(cfg.Pins) == 0 && cfg.CAFile == "" {
		if p := env(client.EnvPin); strings.TrimSpace(p) != "" {
			pins, err := client.ParsePins(p)
			if err != nil {
				return fmt.Errorf("%s: %w", client.EnvPin, err)
			}
			cfg.Pins = pins
		}
		cfg.CAFile = strings.TrimSpace(env(client.EnvCACert))
	}
	return nil
}
