package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/vault"
)

// defaultDevData is where server --dev keeps its state unless --data says.
const defaultDevData = "./phigate-data"

func newServerCmd() *cobra.Command {
	var (
		dev        bool
		configFile string
		dataDir    string
		adminAddr  string
		gwAddr     string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the phigate server: the admin API and the enforcing gateway, over TLS",
		Long: `Run the phigate server: the admin API (tokens, audit log, keys) and the
enforcing gateway, a reverse proxy that lets a request through to the APIs
behind it only when its token allows it, after recording the decision in the
audit log.

  phigate server --dev              everything on one machine: embedded store in
                                    ./phigate-data, a self-signed certificate, the
                                    admin API on https://127.0.0.1:8443, the
                                    gateway on https://127.0.0.1:9443 with a demo
                                    FHIR server (synthetic data) at /fhir/; prints
                                    a bootstrap admin token (first start) and the
                                    server's SPKI pin
  phigate server --config FILE      a real deployment (see internal/config for the
                                    file's keys; the gateway runs when it names
                                    upstreams); run phigate init first

The bootstrap admin token is issued only once both listeners are bound. Lost
it, or expired? Stop the server and run phigate init --data DIR
--new-admin-token. SIGHUP reloads the config file's gateway section; with
--dev and no --config there is no file, and SIGHUP is ignored.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServerConfig(dev, configFile, dataDir)
			if err != nil {
				return err
			}
			if adminAddr != "" {
				cfg.Admin.Listen = adminAddr
			}
			if gwAddr != "" {
				cfg.Gateway.Listen = gwAddr
			}
			if err := cfg.Validate(dev); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			return server.Run(cmd.Context(), server.Options{
				Config: cfg, Dev: dev, Console: cmd.OutOrStdout(), Logger: log, ConfigFile: configFile,
				MasterKey: masterKeySpec(cfg),
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "development mode: embedded store in ./phigate-data, self-signed certificate")
	f.StringVar(&configFile, "config", "", "config file (YAML)")
	f.StringVar(&dataDir, "data", "", "data directory (overrides the config's data_dir; --dev default "+defaultDevData+")")
	f.StringVar(&adminAddr, "admin-listen", "", "admin API listen address (overrides the config), e.g. 127.0.0.1:0")
	f.StringVar(&gwAddr, "gateway-listen", "", "gateway listen address (overrides the config), e.g. 127.0.0.1:0")
	return cmd
}

func loadServerConfig(dev bool, configFile, dataDir string) (*config.Config, error) {
	var cfg *config.Config
	switch {
	case configFile != "":
		c, err := config.Load(configFile)
		if err != nil {
			return nil, err
		}
		cfg = c
	case dev:
		cfg = config.Dev(defaultDevData)
	default:
		return nil, usageErr{errors.New("either --dev or --config FILE is required")}
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if dev && cfg.DataDir == "" {
		cfg.DataDir = defaultDevData
	}
	return cfg, nil
}

func newInitCmd() *cobra.Command {
	var (
		configFile string
		dataDir    string
		newAdmin   bool
		masterKey  string
		rootTTL    time.Duration
		rootLife   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialise a data directory and print a bootstrap admin token",
		Long: `Initialise a data directory: the vault (the token pepper and the data keys,
encrypted under the master key), the audit log and its signing key, the
embedded store, and one bootstrap admin token (scope admin:*, short TTL),
printed once to standard output and never stored in plaintext.

On an initialised directory, init does nothing unless --new-admin-token asks
for another bootstrap token (access to the data directory is the proof); the
server must be stopped. In a directory server --dev made, init finds its
development master key (dev-master.key) by itself.

No token outlives the token that issued it. The bootstrap token lives
tokens.bootstrap_ttl (1 hour by default) and cannot renew itself, so what
it issues ends within that hour too: enough to try phigate. For admin
tokens that last, mint a root token with a lifetime, which can renew itself
by rotation up to --max-lifetime and bounds everything it issues:

    phigate init --data DIR --new-admin-token --ttl 8h --max-lifetime 2160h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg *config.Config
			if configFile != "" {
				c, err := config.Load(configFile)
				if err != nil {
					return err
				}
				cfg = c
			} else {
				cfg = config.Default()
			}
			if dataDir != "" {
				cfg.DataDir = dataDir
			}
			if cfg.DataDir == "" {
				return usageErr{errors.New("--data DIR (or --config with data_dir) is required")}
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			already := server.Initialised(cfg.DataDir)
			if masterKey != "" {
				cfg.Vault.MasterKey = masterKey
			}
			spec := masterKeySpec(cfg)
			if spec == "" && already {
				// a directory server --dev made: its development key
				if dev, ok := devMasterKey(cfg.DataDir); ok {
					spec = dev
					fmt.Fprintln(cmd.ErrOrStderr(), "Using the development master key "+strings.TrimPrefix(dev, "file:")+" (development only).")
				}
			}
			if (rootTTL < 0) || (rootLife < 0) {
				return usageErr{errors.New("--ttl and --max-lifetime must not be negative")}
			}
			if rootLife > 0 && rootLife < rootTTL {
				return usageErr{fmt.Errorf("--max-lifetime %s is shorter than --ttl %s", rootLife, rootTTL)}
			}
			secret, rec, err := server.Init(cmd.Context(), server.InitOptions{
				Config: cfg, MasterKey: spec, NewAdmin: newAdmin, Console: cmd.ErrOrStderr(), Logger: log,
				Root: server.RootLifetime{TTL: rootTTL, MaxLifetime: rootLife},
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if secret == "" {
				if already {
					fmt.Fprintf(out, "%s is already initialised; use --new-admin-token for another bootstrap admin token\n", cfg.DataDir)
				}
				return nil
			}
			what := "Initialised " + cfg.DataDir + "."
			if already {
				what = cfg.DataDir + " is already initialised: issued another bootstrap admin token."
			}
			fmt.Fprintf(out, "%s\n\nBootstrap admin token %s (shown once, expires %s; it and everything it issues end by %s):\n\n    %s\n\n",
				what, rec.ID, rec.ExpiresAt.Format(time.RFC3339), rec.NotAfter.Format(time.RFC3339), secret)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "config file (YAML)")
	f.StringVar(&dataDir, "data", "", "data directory")
	f.BoolVar(&newAdmin, "new-admin-token", false, "issue another bootstrap admin token on an initialised directory")
	f.DurationVar(&rootTTL, "ttl", 0, "the admin token's TTL (default tokens.bootstrap_ttl; at most tokens.max_ttl)")
	f.DurationVar(&rootLife, "max-lifetime", 0, "how long the admin token can renew itself by rotation, and so the longest anything it issues can live (default: none, it ends with its TTL)")
	f.StringVar(&masterKey, "master-key", "", "the vault's master key: file:PATH, env:NAME, passphrase, passphrase:fd:N or awskms:KEY_ID (default: the config's vault.master_key, or $"+envMasterKey+")")
	return cmd
}

// devMasterKey is the spec of dir's development master key (the file
// server --dev generates), when dir holds one.
func devMasterKey(dir string) (string, bool) {
	p := filepath.Join(dir, vault.DevKeyFile)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", false
	}
	return vault.Spec{Kind: vault.KindFile, Path: abs}.String(), true
}

// masterKeySpec is the vault's master key: $PHIGATE_MASTER_KEY, else the
// config's vault.master_key (empty in dev mode: the development key).
func masterKeySpec(cfg *config.Config) string {
	if v := os.Getenv(envMasterKey); v != "" {
		return v
	}
	return cfg.Vault.MasterKey
}

// newLogger returns the process logger: JSON unless the format is text, or
// auto on a terminal; anything of token shape in a line is redacted
// (server.RedactLogs).
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	text := l.Format == "text"
	if l.Format == "auto" || l.Format == "" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				text = true
			}
		}
	}
	if text {
		return slog.New(server.RedactLogs(slog.NewTextHandler(w, opts)))
	}
	return slog.New(server.RedactLogs(slog.NewJSONHandler(w, opts)))
}
