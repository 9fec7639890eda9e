package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/pkg/client"
)

func (a *cli) alertsCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "alerts",
		Short: "List, show and acknowledge the monitor's alerts (scope admin:alerts)",
	})
	cmd.AddCommand(a.alertsListCmd(), a.alertsShowCmd(), a.alertsAckCmd())
	return cmd
}

// alertArg takes exactly one alert id.
func alertArg(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return usagef("%s needs an alert ID", name(cmd))
	case len(args) > 1:
		return usagef("%s takes one alert ID, got %d arguments", name(cmd), len(args))
	case strings.TrimSpace(args[0]) == "":
		return usagef("%s: empty alert ID", name(cmd))
	}
	return nil
}

func (a *cli) alertsListCmd() *cobra.Command {
	var opts client.AlertListOptions
	var since, until string
	var all bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List alerts, oldest first",
		Example: `  phigate alerts list --state open
  phigate alerts list --token tok_... --severity high --since 2026-01-02T00:00:00Z --json`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Token, "token", "", "only alerts about this token ID")
	fs.StringVar(&opts.Severity, "severity", "", "only alerts of this severity: low, medium, high, critical")
	fs.StringVar(&opts.State, "state", "", "only alerts in this state: open, acked")
	fs.StringVar(&since, "since", "", "only alerts raised at or after this RFC 3339 time")
	fs.StringVar(&until, "until", "", "only alerts raised before this RFC 3339 time")
	fs.StringVar(&opts.After, "after", "", "start after this cursor (the previous page's next)")
	fs.IntVar(&opts.Limit, "limit", 0, "page size (server default when not given)")
	fs.BoolVar(&all, "all", false, "follow the cursor and list every page")
	fs.DurationVar(&wait, "wait", 0, "when no alert matches yet, ask again until one does or this long has passed (at most 10m)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if opts.Limit < 0 {
			return usagef("--limit %d: must be positive", opts.Limit)
		}
		if wait < 0 || wait > maxAlertWait {
			return usagef("--wait %s: must be from 0 to %s", wait, maxAlertWait)
		}
		for _, t := range []struct {
			flag, v string
			dst     *time.Time
		}{{"--since", since, &opts.Since}, {"--until", until, &opts.Until}} {
			if t.v == "" {
				continue
			}
			v, err := time.Parse(time.RFC3339Nano, t.v)
			if err != nil {
				return usagef("%s %s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", t.flag, quote(t.v))
			}
			*t.dst = v
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		if !all {
			page, err := c.ListAlerts(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if len(page.Alerts) == 0 && wait > 0 {
				if page, err = waitForAlerts(cmd.Context(), c, opts, wait); err != nil {
					return err
				}
			}
			return a.output(page, func(w io.Writer) error {
				if err := printAlertTable(w, page.Alerts); err != nil {
					return err
				}
				if page.Next != "" {
					fmt.Fprintf(a.stderr, "More alerts: --after %s, or --all.\n", safe(page.Next))
				}
				return nil
			})
		}
		list := client.AlertList{Alerts: []client.Alert{}}
		for al, err := range c.AllAlerts(cmd.Context(), opts) {
			if err != nil {
				return err
			}
			list.Alerts = append(list.Alerts, al)
		}
		return a.output(list, func(w io.Writer) error { return printAlertTable(w, list.Alerts) })
	}
	return cmd
}

// maxAlertWait bounds alerts list --wait.
const maxAlertWait = 10 * time.Minute

// alertPoll is how often alerts list --wait asks again.
const alertPoll = 100 * time.Millisecond

// waitForAlerts asks for opts's first page until it holds an alert or d
// has passed (then the empty page).
func waitForAlerts(ctx context.Context, c *client.Client, opts client.AlertListOptions, d time.Duration) (*client.AlertList, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(alertPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return &client.AlertList{Alerts: []client.Alert{}}, nil
		case <-t.C:
		}
		page, err := c.ListAlerts(ctx, opts)
		if ctx.Err() != nil {
			return &client.AlertList{Alerts: []client.Alert{}}, nil
		}
		if err != nil {
			return nil, err
		}
		if len(page.Alerts) > 0 {
			return page, nil
		}
	}
}

func (a *cli) alertsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an alert: detector, token, evidence and the audit entries that tripped it",
		Args:  alertArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			al, err := c.Alert(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.output(al, func(w io.Writer) error { return printAlert(w, al) })
		},
	}
}

func (a *cli) alertsAckCmd() *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:     "ack ID [--note TEXT]",
		Short:   "Acknowledge an open alert (audited)",
		Example: `  phigate alerts ack alr_... --note "owner confirmed the batch job"`,
		Args:    alertArg,
	}
	cmd.Flags().StringVar(&note, "note", "", "why it is acknowledged (kept with the alert and in the audit log)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		al, err := c.AckAlert(cmd.Context(), args[0], note)
		if err != nil {
			return err
		}
		return a.output(al, func(w io.Writer) error {
			fmt.Fprintf(w, "Alert %s acknowledged.\n", safe(al.ID))
			return nil
		})
	}
	return cmd
}

func printAlertTable(w io.Writer, as []client.Alert) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAISED\tSEVERITY\tDETECTOR\tTOKEN\tACTION\tSTATE\tSUMMARY")
	for i := range as {
		al := &as[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(al.ID), fmtTime(al.CreatedAt), safe(al.Severity),
			safe(al.Detector), safe(al.TokenID), safe(al.Action), safe(al.State), safe(al.Summary))
	}
	return tw.Flush()
}

func printAlert(w io.Writer, al *client.Alert) error {
	seqs := make([]string, len(al.AuditSeqs))
	for i, s := range al.AuditSeqs {
		seqs[i] = strconv.FormatUint(s, 10)
	}
	rows := []kv{
		{"id", safe(al.ID)},
		{"raised_at", fmtTime(al.CreatedAt)},
		{"severity", safe(al.Severity)},
		{"detector", safe(al.Detector)},
		{"token", safe(al.TokenID)},
		{"subject", safe(al.Subject)},
		{"source", safe(al.Source)},
		{"summary", safe(al.Summary)},
		{"action", safe(al.Action)},
		{"evidence", safe(string(al.Evidence))},
		{"audit_seqs", strings.Join(seqs, " ")},
		{"state", safe(al.State)},
	}
	if al.AckedAt != nil {
		rows = append(rows, kv{"acked_at", fmtTime(*al.AckedAt)})
	}
	rows = append(rows, kv{"acked_by", safe(al.AckedBy)}, kv{"ack_note", safe(al.AckNote)})
	return printKV(w, rows)
}
