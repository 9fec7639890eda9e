package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func joinSafe(ss []string, sep string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = safe(s)
	}
	return strings.Join(out, sep)
}

// kv is one "key: value" line; empty values are left out.
type kv struct{ k, v string }

func printKV(w io.Writer, rows []kv) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, r := range rows {
		if r.v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", r.k, r.v)
		}
	}
	return tw.Flush()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

func tokenRows(t *client.Token) []kv {
	rows := []kv{
		{"id", safe(t.ID)},
		{"subject", safe(t.Subject)},
		{"kind", safe(t.Kind)},
		{"status", safe(t.Status)},
		{"status_reason", safe(t.StatusReason)},
		{"scopes", joinSafe(t.Scopes, " ")},
		{"created_at", fmtTime(t.CreatedAt)},
		{"created_by", safe(t.CreatedBy)},
		{"parent_id", safe(t.ParentID)},
		{"expires_at", fmtTime(t.ExpiresAt)},
		{"max_lifetime", safe(t.MaxLifetime)},
		{"not_after", fmtTime(t.NotAfter)},
		{"idle_timeout", safe(t.IdleTimeout)},
	}
	if t.LastUsedAt != nil {
		rows = append(rows, kv{"last_used_at", fmtTime(*t.LastUsedAt)})
	}
	if t.RemainingUses != nil {
		rows = append(rows, kv{"remaining_uses", strconv.FormatInt(*t.RemainingUses, 10)})
	}
	rows = append(rows, kv{"cidrs", joinSafe(t.CIDRs, " ")})
	if h := t.Hours; h != nil {
		v := safe(h.Start) + "-" + safe(h.End) + " " + safe(h.TZ)
		if len(h.Days) > 0 {
			v += " " + joinSafe(h.Days, ",")
		}
		rows = append(rows, kv{"hours", v})
	}
	if r := t.Rate; r != nil {
		rows = append(rows, kv{"rate", fmt.Sprintf("%s burst %d", formatRate(r.PerSecond), r.Burst)})
	}
	rows = append(rows,
		kv{"purposes", joinSafe(t.Purposes, " ")},
		kv{"purpose_required", yes(t.PurposeRequired)},
		kv{"patient_id", safe(t.PatientID)},
		kv{"break_glass", yes(t.BreakGlass)},
		kv{"subject_prefix", safe(t.SubjectPrefix)},
		kv{"metadata", formatMeta(t.Metadata)},
		kv{"updated_at", fmtTime(t.UpdatedAt)},
		kv{"revision", strconv.FormatInt(t.Revision, 10)},
	)
	return rows
}

func printToken(w io.Writer, t *client.Token) error { return printKV(w, tokenRows(t)) }

// printIssued prints a created or rotated token: a summary, then the secret
// alone on its line under a label. This is the only time it is shown.
func printIssued(w io.Writer, verb string, it *client.IssuedToken) error {
	rows := []kv{
		{"id", safe(it.ID)},
		{"subject", safe(it.Subject)},
		{"scopes", joinSafe(it.Scopes, " ")},
		{"expires_at", fmtTime(it.ExpiresAt)},
		{"not_after", fmtTime(it.NotAfter)},
	}
	if it.PreviousNotAfter != nil {
		rows = append(rows, kv{"previous_secret_until", fmtTime(*it.PreviousNotAfter)})
	}
	fmt.Fprintf(w, "Token %s.\n", verb)
	if err := printKV(w, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nSecret (shown only this once; phigate keeps just a hash, so store it now):\n%s\n", safe(it.Secret))
	return err
}

func printTokenTable(w io.Writer, ts []client.Token, header bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "ID\tSUBJECT\tKIND\tSTATUS\tEXPIRES\tSCOPES")
	}
	for i := range ts {
		t := &ts[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", safe(t.ID), safe(t.Subject), safe(t.Kind), safe(t.Status),
			fmtTime(t.ExpiresAt), joinSafe(t.Scopes, " "))
	}
	return tw.Flush()
}

func printIntrospection(w io.Writer, in *client.Introspection) error {
	unix := func(s int64) string {
		if s == 0 {
			return ""
		}
		return fmtTime(time.Unix(s, 0))
	}
	return printKV(w, []kv{
		{"active", strconv.FormatBool(in.Active)},
		{"jti", safe(in.Jti)},
		{"sub", safe(in.Sub)},
		{"kind", safe(in.Kind)},
		{"scope", safe(in.Scope)},
		{"token_type", safe(in.TokenType)},
		{"patient", safe(in.PatientID)},
		{"iat", unix(in.Iat)},
		{"exp", unix(in.Exp)},
		{"iss", safe(in.Iss)},
	})
}
