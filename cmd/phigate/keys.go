package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

func (a *cli) keysCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "keys",
		Short: "Rotate the vault's master key, data keys and token pepper",
		Long: `The vault encrypts phigate's secrets with data keys, one per purpose, which
the master key wraps (envelope encryption). Token secrets are stored as
HMAC-SHA256 under the token pepper, kept in the vault.

  rotate-kek      re-wrap every data key under a new master key (no data is
                  re-encrypted; readers keep working)
  rotate-dek      start a new data key for one purpose; older data stays readable
  peppers         list the live pepper versions and the live tokens of each
  rotate-pepper   hash new token secrets with a new pepper; tokens hashed with
                  older versions keep working
  retire-pepper   delete an old pepper version once no live token uses it

rotate-kek and rotate-dek talk to the running server unless --data names the
data directory of a stopped server; the pepper commands always talk to the
running server, which starts using a new pepper at once. Each rotation is
recorded in the audit log by the server.`,
	})
	cmd.AddCommand(a.keysRotateKEKCmd(), a.keysRotateDEKCmd(), a.keysPeppersCmd(), a.keysRotatePepperCmd(), a.keysRetirePepperCmd())
	return cmd
}

func (a *cli) keysRotateKEKCmd() *cobra.Command {
	var next string
	var o offline
	cmd := &cobra.Command{
		Use:   "rotate-kek [--new-master-key SPEC]",
		Short: "Re-wrap every data key under a new master key",
		Long: `Rotate-kek re-wraps every data key of the vault under the master key SPEC
(file:PATH or awskms:KEY_ID for a running server, which opens it; with --data
also env:NAME and passphrase[:fd:N]). Without --new-master-key the data keys
are re-wrapped under the current master key (for AWS KMS: its newest backing
key). Nothing else is re-encrypted. Afterwards, start the server with the new
spec as vault.master_key (or PHIGATE_MASTER_KEY): the old key no longer opens
the vault. A server --dev running on its development key refuses a rotation
to that same key (it would change nothing): give --new-master-key.`,
		Example: `  phigate keys rotate-kek --new-master-key file:/etc/phigate/master-2026.key
  phigate keys rotate-kek --data /var/lib/phigate --master-key passphrase:fd:3 --new-master-key passphrase:fd:4 3<old 4<new`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&next, "new-master-key", "", "spec of the new master key (default: the current one)")
	o.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if next != "" {
			if _, err := vault.ParseSpec(next); err != nil {
				return usageErr{err}
			}
		}
		var out client.KEKRotation
		if o.data != "" {
			if next == "" {
				return usagef("with --data, give --new-master-key")
			}
			off, err := a.openOffline(cmd.Context(), &o)
			if err != nil {
				return err
			}
			defer off.Close()
			v := off.Vault
			opts := a.providerOptions("Passphrase of the NEW master key: ")
			opts.ReadPassphrase = confirmPassphrase(opts.ReadPassphrase)
			p, err := vault.ParseProvider(cmd.Context(), next, opts)
			if err != nil {
				return err
			}
			ev, err := v.RotateKEK(vault.WithActor(cmd.Context(), "cli:offline"), p)
			if err != nil {
				return err
			}
			out = client.KEKRotation{From: ev.From, To: ev.To, DataKeys: ev.Count, RotatedAt: ev.At}
		} else {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RotateKEK(cmd.Context(), client.RotateKEKRequest{NewMasterKey: next})
			if err != nil {
				return err
			}
			out = *r
		}
		return a.output(out, func(w io.Writer) error {
			return printKEKRotation(w, out, next != "")
		})
	}
	return cmd
}

func printKEKRotation(w io.Writer, r client.KEKRotation, newKey bool) error {
	fmt.Fprintf(w, "Master key rotated: %d data keys re-wrapped.\n", r.DataKeys)
	if err := printKV(w, []kv{{"from", safe(r.From)}, {"to", safe(r.To)}, {"rotated_at", fmtTime(r.RotatedAt)}}); err != nil {
		return err
	}
	if newKey {
		_, err := fmt.Fprintln(w, "\nSet vault.master_key (or PHIGATE_MASTER_KEY) to the new key's spec before the next start: the old key no longer opens the vault.")
		return err
	}
	return nil
}

// confirmPassphrase asks for a new passphrase twice.
func confirmPassphrase(read func(string) ([]byte, error)) func(string) ([]byte, error) {
	return func(prompt string) ([]byte, error) {
		p1, err := read(prompt)
		if err != nil {
			return nil, err
		}
		p2, err := read(prompt)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			return nil, errors.New("the two passphrases differ")
		}
		return p1, nil
	}
}

func (a *cli) keysRotateDEKCmd() *cobra.Command {
	var o offline
	cmd := &cobra.Command{
		Use:   "rotate-dek PURPOSE",
		Short: "Start a new data key for a purpose (older data stays readable)",
		Long: `Rotate-dek adds a new version of the data key of PURPOSE: new data is
encrypted with it from now on, and data encrypted with older versions stays
readable. Purposes: ` + joinPurposes() + `.`,
		Example: `  phigate keys rotate-dek audit-fields`,
		Args:    nameArg("PURPOSE"),
	}
	o.addFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var out client.DEKRotation
		if o.data != "" {
			off, err := a.openOffline(cmd.Context(), &o)
			if err != nil {
				return err
			}
			defer off.Close()
			ev, err := off.Vault.RotateDEK(vault.WithActor(cmd.Context(), "cli:offline"), args[0])
			var ie *vault.InputError
			if errors.As(err, &ie) {
				return usageErr{err}
			}
			if err != nil {
				return err
			}
			out = client.DEKRotation{Purpose: ev.Purpose, Version: ev.Version, RotatedAt: ev.At}
		} else {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RotateDEK(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out = *r
		}
		return a.output(out, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "Data key for %s rotated to version %d at %s.\n", safe(out.Purpose), out.Version, out.RotatedAt.UTC().Format(time.RFC3339))
			return err
		})
	}
	return cmd
}

func joinPurposes() string {
	var b bytes.Buffer
	for i, p := range vault.DefaultPurposes() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	return b.String()
}

func (a *cli) keysPeppersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peppers",
		Short: "List the live token pepper versions and the live tokens hashed with each",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.Peppers(cmd.Context())
			if err != nil {
				return err
			}
			if list.Peppers == nil {
				list.Peppers = []client.Pepper{}
			}
			return a.output(list, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tCURRENT\tLIVE TOKENS")
				for _, p := range list.Peppers {
					cur := ""
					if p.Current {
						cur = "yes"
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\n", p.Version, cur, p.LiveSecrets)
				}
				return tw.Flush()
			})
		},
	}
}

func (a *cli) keysRotatePepperCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-pepper",
		Short: "Hash new token secrets with a new pepper (existing tokens keep working)",
		Long: `Rotate-pepper adds a new version of the token pepper, the key of the
HMAC under which token secrets are stored. The running server hashes every
new or rotated secret with it at once; tokens hashed with older versions keep
working until those versions are retired (phigate keys retire-pepper).`,
		Example: `  phigate keys rotate-pepper
  phigate keys peppers
  phigate keys retire-pepper 1    # once no live token uses version 1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RotatePepper(cmd.Context())
			if err != nil {
				return err
			}
			return a.output(r, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Token pepper rotated to version %d at %s; tokens hashed with older versions keep working until they are retired.\n",
					r.Version, r.RotatedAt.UTC().Format(time.RFC3339))
				return err
			})
		},
	}
}

func (a *cli) keysRetirePepperCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retire-pepper VERSION",
		Short: "Delete an old token pepper version once no live token uses it",
		Long: `Retire-pepper deletes pepper VERSION; token secrets hashed with it no
longer verify. The server refuses while a token hashed with it has neither
expired nor been revoked (phigate keys peppers shows how many), and never
retires the current version.`,
		Example: `  phigate keys retire-pepper 1`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usagef("%s needs a pepper VERSION", name(cmd))
			case len(args) > 1:
				return usagef("%s takes one pepper VERSION, got %d arguments", name(cmd), len(args))
			}
			if v, err := strconv.Atoi(args[0]); err != nil || v <= 0 {
				return usagef("%s: %s is not a pepper version (a positive number; see phigate keys peppers)", name(cmd), quote(args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, _ := strconv.Atoi(args[0])
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.RetirePepper(cmd.Context(), v)
			if err != nil {
				return err
			}
			return a.output(r, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Token pepper version %d retired at %s.\n", r.Version, r.RetiredAt.UTC().Format(time.RFC3339))
				return err
			})
		},
	}
}
