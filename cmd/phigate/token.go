package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/pkg/client"
)

func (a *cli) tokenCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "token",
		Short: "Create, inspect, change, rotate and revoke tokens",
	})
	cmd.AddCommand(
		a.tokenCreateCmd(),
		a.tokenListCmd(),
		a.tokenShowCmd(),
		a.tokenUpdateCmd(),
		a.tokenRevokeCmd(),
		a.tokenRotateCmd(),
		a.tokenStatusCmd("suspend", "Suspend a token until it is reinstated"),
		a.tokenStatusCmd("reinstate", "Lift a token's suspension"),
		a.tokenSelfCmd(),
	)
	return cmd
}

func (a *cli) tokenCreateCmd() *cobra.Command {
	var subject string
	cmd := &cobra.Command{
		Use:   "create --subject S --scope SCOPE [constraints]",
		Short: "Issue a token (its secret is printed once)",
		Example: `  phigate token create --subject alice --scope "patient/Observation.rs" --ttl 15m
  phigate token create --subject svc:labs --kind service --scope "system/Observation.rs" \
      --ttl 1h --max-lifetime 720h --cidr 10.1.0.0/16 --rate 600/m --burst 20 \
      --hours 07:00-19:00 --tz America/New_York --days Mon-Fri --purpose TREAT --meta team=lab`,
		Args: noArgs,
	}
	cf := addConstraintFlags(cmd.Flags(), true)
	cmd.Flags().StringVar(&subject, "subject", "", "whom or what the token is for (required)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req, err := cf.createRequest(subject)
		if err != nil {
			return usageErr{err}
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		it, err := c.CreateToken(cmd.Context(), req)
		if err != nil {
			return err
		}
		return a.output(it, func(w io.Writer) error { return printIssued(w, "created", it) })
	}
	return cmd
}

func (a *cli) tokenListCmd() *cobra.Command {
	var opts client.ListOptions
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Subject, "subject", "", "only tokens of this subject")
	fs.StringVar(&opts.Status, "status", "", "only tokens in this status: active, suspended, revoked, expired")
	fs.StringVar(&opts.Parent, "parent", "", "only tokens created by this token ID")
	fs.StringVar(&opts.After, "after", "", "start after this cursor (the previous page's next)")
	fs.IntVar(&opts.Limit, "limit", 0, "page size (server default when not given)")
	fs.BoolVar(&all, "all", false, "follow the cursor and list every page")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if opts.Limit < 0 {
			return usagef("--limit %d: must be positive", opts.Limit)
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		if !all {
			page, err := c.ListTokens(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return a.output(page, func(w io.Writer) error {
				if err := printTokenTable(w, page.Tokens, true); err != nil {
					return err
				}
				if page.Next != "" {
					fmt.Fprintf(a.stderr, "More tokens: --after %s, or --all.\n", safe(page.Next))
				}
				return nil
			})
		}
		list := client.TokenList{Tokens: []client.Token{}}
		for t, err := range c.AllTokens(cmd.Context(), opts) {
			if err != nil {
				return err
			}
			list.Tokens = append(list.Tokens, t)
		}
		return a.output(list, func(w io.Writer) error { return printTokenTable(w, list.Tokens, true) })
	}
	return cmd
}

func (a *cli) tokenShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a token (never its secret)",
		Args:  idArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.Token(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.output(t, func(w io.Writer) error { return printToken(w, t) })
		},
	}
}

func (a *cli) tokenUpdateCmd() *cobra.Command {
	var clear []string
	var revision int64
	var expiresAt string
	cmd := &cobra.Command{
		Use:   "update ID [constraints] [--clear NAME]",
		Short: "Change a token's scopes or constraints (only the flags given)",
		Long: `Update changes the scopes and constraints given as flags and leaves the rest
alone. --scope, --cidr, --purpose and --meta replace the whole list or map.
--clear removes a constraint: idle_timeout, max_uses, cidrs, hours, rate,
purposes, patient_id or metadata. A token can only be narrowed to what the
caller's own token allows.`,
		Example: `  phigate token update tok_123 --scope patient/Observation.r --clear rate
  phigate token update tok_123 --hours 08:00-18:00 --tz Europe/Paris --revision 4`,
		Args: idArg,
	}
	cf := addConstraintFlags(cmd.Flags(), false)
	cmd.Flags().StringArrayVar(&clear, "clear", nil, "constraint to remove (repeatable)")
	cmd.Flags().Int64Var(&revision, "revision", 0, "apply only if the token is still at this revision")
	cmd.Flags().StringVar(&expiresAt, "expires-at", "", "new expiry, RFC 3339 (instead of --ttl)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if revision < 0 {
			return usagef("--revision %d: must be positive", revision)
		}
		req, err := cf.updateRequest(clear, revision, expiresAt)
		if err != nil {
			return usageErr{err}
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		t, err := c.UpdateToken(cmd.Context(), args[0], req)
		if err != nil {
			return err
		}
		return a.output(t, func(w io.Writer) error { return printToken(w, t) })
	}
	return cmd
}

func (a *cli) tokenRevokeCmd() *cobra.Command {
	var cascade bool
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke ID [--cascade] [--reason R]",
		Short: "Revoke a token for good",
		Args:  idArg,
	}
	cmd.Flags().BoolVar(&cascade, "cascade", false, "also revoke every token this one created, recursively")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		res, err := c.RevokeToken(cmd.Context(), args[0], cascade, reason)
		if err != nil {
			return err
		}
		return a.output(res, func(w io.Writer) error {
			for _, id := range res.Revoked {
				if _, err := fmt.Fprintf(w, "revoked %s\n", safe(id)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return cmd
}

func (a *cli) tokenRotateCmd() *cobra.Command {
	var req client.RotateRequest
	cmd := &cobra.Command{
		Use:   "rotate ID [--grace 5m] [--ttl 1h]",
		Short: "Give a token a new secret (printed once)",
		Long: `Rotate gives a token a new secret that expires a full ttl (the token's
rotation period) later, never past its not_after. The previous secret keeps
working for the token's grace period (set with token create/update --grace),
so that its users can switch; --grace and --ttl here may only shorten them.
"self" as ID rotates the caller's own token.`,
		Args: idArg,
	}
	cmd.Flags().StringVar(&req.Grace, "grace", "", "how long the previous secret keeps working, e.g. 1m (at most the token's grace, the default)")
	cmd.Flags().StringVar(&req.TTL, "ttl", "", "the new secret's lifetime (at most the token's ttl, the default; within the max lifetime)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		for _, d := range []struct{ flag, v string }{{"grace", req.Grace}, {"ttl", req.TTL}} {
			if cmd.Flags().Changed(d.flag) {
				if err := checkDuration(d.flag, d.v); err != nil {
					return usageErr{err}
				}
			}
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		it, err := c.RotateToken(cmd.Context(), args[0], req)
		if err != nil {
			return err
		}
		return a.output(it, func(w io.Writer) error { return printIssued(w, "rotated", it) })
	}
	return cmd
}

// tokenStatusCmd is suspend or reinstate.
func (a *cli) tokenStatusCmd(verb, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " ID [--reason R]",
		Short: short,
		Args:  idArg,
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		call := c.SuspendToken
		if verb == "reinstate" {
			call = c.ReinstateToken
		}
		t, err := call(cmd.Context(), args[0], reason)
		if err != nil {
			return err
		}
		return a.output(t, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "%s: %s\n", safe(t.ID), safe(t.Status))
			return err
		})
	}
	return cmd
}

func (a *cli) tokenSelfCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "self",
		Short: "Show the token in PHIGATE_TOKEN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.Self(cmd.Context())
			if err != nil {
				return err
			}
			return a.output(t, func(w io.Writer) error { return printToken(w, t) })
		},
	}
}
