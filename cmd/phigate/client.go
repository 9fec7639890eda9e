package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/pkg/client"
)

func (a *cli) clientCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "client",
		Short: "Register, inspect and revoke SMART Backend Services clients",
	})
	cmd.AddCommand(a.clientRegisterCmd(), a.clientListCmd(), a.clientShowCmd(), a.clientRevokeCmd())
	return cmd
}

func (a *cli) clientRegisterCmd() *cobra.Command {
	var req client.RegisterClientRequest
	var jwksFile, hours, tz, rate string
	var days []string
	var burst int
	cmd := &cobra.Command{
		Use:   "register --name N (--jwks-url URL | --jwks-file F) --scope SCOPE [constraints]",
		Short: "Register a client that gets tokens with a signed JWT assertion (private_key_jwt)",
		Example: `  phigate client register --name lab-sync --jwks-file lab.jwks.json \
      --scope system/Observation.rs --cidr 10.1.0.0/16 --ttl 5m`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&req.Name, "name", "", "the client's name (required)")
	fs.StringVar(&req.Subject, "subject", "", "subject of its tokens (default client:<id>)")
	fs.StringVar(&req.JWKSURL, "jwks-url", "", "https URL of the client's public JWKS")
	fs.StringVar(&jwksFile, "jwks-file", "", "file holding the client's public JWKS (registered inline)")
	fs.StringArrayVar(&req.Scopes, "scope", nil, "scope its tokens may have, e.g. system/Observation.rs (repeatable)")
	fs.StringSliceVar(&req.CIDRs, "cidr", nil, "source network its tokens may be used from (repeatable)")
	fs.StringVar(&hours, "hours", "", "daily window of use, HH:MM-HH:MM (needs --tz)")
	fs.StringVar(&tz, "tz", "", "IANA time zone of --hours")
	fs.StringSliceVar(&days, "days", nil, "weekdays of --hours, e.g. Mon-Fri")
	fs.StringVar(&rate, "rate", "", "rate limit of each token, N/s, N/m or N/h")
	fs.IntVar(&burst, "burst", 0, "burst of --rate")
	fs.StringSliceVar(&req.Purposes, "purpose", nil, "purpose of use accepted, e.g. TREAT (repeatable)")
	fs.BoolVar(&req.PurposeRequired, "purpose-required", false, "every request must state a purpose of use")
	fs.StringVar(&req.MaxTTL, "ttl", "", "life of its tokens, at most the server's token endpoint TTL (default 5m)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if strings.TrimSpace(req.Name) == "" {
			return usagef("--name is required")
		}
		if (req.JWKSURL == "") == (jwksFile == "") {
			return usagef("give exactly one of --jwks-url and --jwks-file")
		}
		if len(req.Scopes) == 0 {
			return usagef("--scope is required")
		}
		if req.MaxTTL != "" {
			if err := checkDuration("ttl", req.MaxTTL); err != nil {
				return usageErr{err}
			}
		}
		if jwksFile != "" {
			b, err := readSmallFile(jwksFile, 64<<10)
			if err != nil {
				return err
			}
			if !json.Valid(b) {
				return usagef("--jwks-file %s: not JSON", quote(jwksFile))
			}
			req.JWKS = b
		}
		if hours != "" {
			h, err := parseHoursFlags(hours, tz, days)
			if err != nil {
				return usageErr{err}
			}
			req.Hours = h
		} else if tz != "" || len(days) > 0 {
			return usagef("--tz and --days qualify --hours: give --hours too")
		}
		if rate != "" {
			ps, err := parseRate(rate)
			if err != nil {
				return usageErr{err}
			}
			b := defaultBurst(ps)
			if burst > 0 {
				b = burst
			}
			req.Rate = &client.Rate{PerSecond: ps, Burst: b}
		} else if burst != 0 {
			return usagef("--burst qualifies --rate: give --rate too")
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		oc, err := c.RegisterClient(cmd.Context(), req)
		if err != nil {
			return err
		}
		return a.output(oc, func(w io.Writer) error {
			fmt.Fprintf(w, "registered client %s\n", oc.ID)
			return printClient(w, oc)
		})
	}
	return cmd
}

func readSmallFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: over %d bytes", name, limit)
	}
	return b, nil
}

func (a *cli) clientListCmd() *cobra.Command {
	var status string
	cmd := &cobra.Command{Use: "list", Short: "List clients", Args: noArgs}
	cmd.Flags().StringVar(&status, "status", "", "only clients in this status: active, revoked")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		var all []client.OAuthClient
		after := ""
		for range 1000 {
			page, err := c.ListClients(cmd.Context(), status, after, 1000)
			if err != nil {
				return err
			}
			all = append(all, page.Clients...)
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		out := client.ClientList{Clients: all}
		if out.Clients == nil {
			out.Clients = []client.OAuthClient{}
		}
		return a.output(out, func(w io.Writer) error {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tSCOPES\tKEYS")
			for _, oc := range all {
				keys := "inline"
				if oc.JWKSURL != "" {
					keys = oc.JWKSURL
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", oc.ID, oc.Name, oc.Status, strings.Join(oc.Scopes, " "), keys)
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (a *cli) clientShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show ID", Short: "Show a client", Args: idArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			oc, err := c.OAuthClient(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.output(oc, func(w io.Writer) error { return printClient(w, oc) })
		},
	}
}

func (a *cli) clientRevokeCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: "revoke ID", Short: "Revoke a client and every live token issued to it", Args: idArg}
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		oc, err := c.RevokeClient(cmd.Context(), args[0], reason)
		if err != nil {
			return err
		}
		return a.output(oc, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "revoked client %s and %d of its tokens\n", oc.ID, len(oc.RevokedTokens))
			return err
		})
	}
	return cmd
}

func printClient(w io.Writer, oc *client.OAuthClient) error {
	if oc == nil {
		return errors.New("no client")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("id", oc.ID)
	row("name", oc.Name)
	row("subject", oc.Subject)
	row("status", oc.Status)
	row("status_reason", oc.StatusReason)
	row("scopes", strings.Join(oc.Scopes, " "))
	row("jwks_url", oc.JWKSURL)
	if len(oc.JWKS) > 0 {
		row("jwks", "inline")
	}
	row("cidrs", strings.Join(oc.CIDRs, " "))
	if h := oc.Hours; h != nil {
		row("hours", h.Start+"-"+h.End+" "+h.TZ+" "+strings.Join(h.Days, ","))
	}
	if r := oc.Rate; r != nil {
		row("rate", fmt.Sprintf("%g/s burst %d", r.PerSecond, r.Burst))
	}
	row("purposes", strings.Join(oc.Purposes, " "))
	row("max_ttl", oc.MaxTTL)
	row("created_by", oc.CreatedBy)
	row("created_at", oc.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
	return tw.Flush()
}
