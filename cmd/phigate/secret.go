package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// envMasterKey names the master key of offline commands when --master-key
// is not given.
const envMasterKey = "PHIGATE_MASTER_KEY"

// offline holds the flags of commands that can work on a stopped
// server's data directory instead of the admin API.
type offline struct {
	data      string
	masterKey string
}

func (o *offline) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.data, "data", "", "work offline on this data directory (the server must be stopped) instead of the admin API")
	cmd.Flags().StringVar(&o.masterKey, "master-key", "", "with --data: the vault's master key spec (default $"+envMasterKey+", or the directory's development key)")
}

// openVault opens the vault of --data with the master key of
// --master-key, $PHIGATE_MASTER_KEY, or the development key file, to read
// (a running server may hold the directory).
func (a *cli) openVault(ctx context.Context, o *offline) (*vault.Vault, error) {
	p, err := a.masterKey(ctx, o)
	if err != nil {
		return nil, err
	}
	return vault.Open(vault.WithActor(ctx, "cli:offline"), o.data, p, vault.Options{})
}

// openOffline opens the vault of --data to change it: with the data
// directory's lock (the server must be stopped) and its audit log, which
// records every key event as the server would.
func (a *cli) openOffline(ctx context.Context, o *offline) (*server.Offline, error) {
	p, err := a.masterKey(ctx, o)
	if err != nil {
		return nil, err
	}
	return server.OpenOffline(vault.WithActor(ctx, "cli:offline"), o.data, p)
}

// masterKey is the master key of --data: --master-key,
// $PHIGATE_MASTER_KEY, or the development key file.
func (a *cli) masterKey(ctx context.Context, o *offline) (vault.Provider, error) {
	spec := o.masterKey
	if spec == "" {
		spec = a.env(envMasterKey)
	}
	if spec == "" {
		dev, ok := devMasterKey(o.data)
		if !ok {
			return nil, usagef("--data needs the vault's master key: --master-key SPEC or $%s (file:PATH, env:NAME, passphrase, awskms:KEY_ID)", envMasterKey)
		}
		spec = dev
		fmt.Fprintln(a.stderr, "Using the development master key "+strings.TrimPrefix(dev, "file:")+" (development only).")
	}
	return vault.ParseProvider(ctx, spec, a.providerOptions("Passphrase of the vault's master key: "))
}

// providerOptions asks for a terminal passphrase with prompt, on stderr.
func (a *cli) providerOptions(prompt string) vault.ProviderOptions {
	return vault.ProviderOptions{
		Getenv: a.env,
		ReadPassphrase: func(string) ([]byte, error) {
			tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
			if err != nil {
				return nil, errors.New("no terminal to ask for the passphrase: use passphrase:fd:N")
			}
			defer tty.Close()
			fmt.Fprint(tty, prompt)
			b, err := term.ReadPassword(int(tty.Fd()))
			fmt.Fprintln(tty)
			return b, err
		},
	}
}

func (a *cli) secretCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "secret",
		Short: "Store and list upstream credentials kept encrypted in the vault",
		Long: `Upstream credentials are what the gateway injects towards an upstream in
place of the client's token. The config file refers to one as secret:NAME.
Values go in from standard input or a file, never from the command line,
and never come back out: list shows names and versions only.`,
	})
	cmd.AddCommand(a.secretSetCmd(), a.secretListCmd())
	return cmd
}

// readValue reads a secret value from r (at most vault.MaxValue bytes),
// dropping one trailing newline.
func readValue(r io.Reader, from string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, vault.MaxValue+3))
	if err != nil {
		return nil, fmt.Errorf("reading the value from %s: %w", from, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return nil, usagef("the value read from %s is empty", from)
	case len(b) > vault.MaxValue:
		return nil, usagef("the value read from %s is longer than %d bytes", from, vault.MaxValue)
	case !utf8.Valid(b):
		return nil, usagef("the value read from %s is not UTF-8 text (encode a binary credential, e.g. in base64)", from)
	}
	return b, nil
}

func nameArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("%s needs a %s", name(cmd), what)
		case len(args) > 1:
			return usagef("%s takes one %s (a secret value is read from stdin or --from-file, never from the command line)", name(cmd), what)
		}
		return nil
	}
}

func (a *cli) secretSetCmd() *cobra.Command {
	var fromFile string
	var o offline
	cmd := &cobra.Command{
		Use:   "set NAME [--from-file F]",
		Short: "Store a new version of an upstream credential (value from stdin or a file)",
		Long: `Set stores a new version of the upstream credential NAME. The value is read
from standard input (without echo on a terminal) or from --from-file; one
trailing newline is dropped. It is never taken from the command line, where
other users and the shell history could see it.`,
		Example: `  phigate secret set ehr-api < ehr-api.credential
  phigate secret set ehr-api --from-file /run/secrets/ehr-api
  phigate secret set ehr-api --data /var/lib/phigate --master-key file:/etc/phigate/master.key < cred`,
		Args: nameArg("secret NAME"),
	}
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file instead of stdin")
	o.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if !vault.ValidName(name) {
			return usagef("secret name %s: want 1 to 128 of [A-Za-z0-9._-], starting with a letter or digit", quote(name))
		}
		value, err := a.secretValue(cmd, fromFile)
		if err != nil {
			return err
		}
		var out client.Secret
		if o.data != "" {
			off, err := a.openOffline(cmd.Context(), &o)
			if err != nil {
				return err
			}
			defer off.Close()
			info, err := off.Vault.SetSecret(vault.WithActor(cmd.Context(), "cli:offline"), name, value)
			if err != nil {
				return err
			}
			out = client.Secret{Name: info.Name, Version: info.Version, UpdatedAt: info.UpdatedAt}
		} else {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.SetSecret(cmd.Context(), name, value)
			if err != nil {
				return err
			}
			out = *s
		}
		return a.output(out, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "secret %s set (version %d)\n", safe(out.Name), out.Version)
			return err
		})
	}
	return cmd
}

// secretValue reads the value from --from-file or stdin; on a terminal it
// prompts on stderr and reads without echo.
func (a *cli) secretValue(cmd *cobra.Command, fromFile string) ([]byte, error) {
	if fromFile != "" {
		f, err := os.Open(fromFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readValue(f, fromFile)
	}
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "Secret value (not echoed): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, err
		}
		return readValue(bytes.NewReader(b), "the terminal")
	}
	return readValue(in, "stdin")
}

func (a *cli) secretListCmd() *cobra.Command {
	var o offline
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List upstream credentials: names and versions, never values",
		Args:  noArgs,
	}
	o.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		list := client.SecretList{Secrets: []client.Secret{}}
		if o.data != "" {
			v, err := a.openVault(cmd.Context(), &o)
			if err != nil {
				return err
			}
			defer v.Close()
			infos, err := v.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			for _, i := range infos {
				list.Secrets = append(list.Secrets, client.Secret{Name: i.Name, Version: i.Version, UpdatedAt: i.UpdatedAt})
			}
		} else {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			list = *l
		}
		return a.output(list, func(w io.Writer) error {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tUPDATED")
			for _, s := range list.Secrets {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", safe(s.Name), s.Version, fmtTime(s.UpdatedAt))
			}
			return tw.Flush()
		})
	}
	return cmd
}
