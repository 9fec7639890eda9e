package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/mod/sumdb/note"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/pkg/client"
)

func (a *cli) auditCmd() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "audit",
		Short: "Read, verify and export the tamper-evident audit log",
		Long: `The audit log records every token creation, permission change and use in a
Merkle tree whose signed checkpoints prove that no entry was changed,
removed, inserted or reordered.

Online (the admin API; the token needs admin:audit):
  tail, search     read entries
  checkpoint       print the latest signed checkpoint (give it to a witness)
  prove --seq N    fetch a proof that entry N is in the log, and check it

Offline (the data directory; no server needed):
  verify           check the whole log against its signed checkpoints
  export           write entries as JSON lines or FHIR AuditEvents
  key              print the public key that verifies the log
  prove FILE       check a saved proof with only the public key

A cluster (--cluster postgres://...): verify, search and export read every
node's log from the shared PostgreSQL database, merged by time.`,
	})
	cmd.AddCommand(a.auditTailCmd(), a.auditSearchCmd(), a.auditCheckpointCmd(), a.auditProveCmd(),
		a.auditVerifyCmd(), a.auditExportCmd(), a.auditKeyCmd())
	return cmd
}

// auditFilters are the search flags shared by tail, search and export.
type auditFilters struct {
	from, to, subject, tokenID, outcome, upstream, pathPrefix, patient string
	actions                                                            []string
}

func (f *auditFilters) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.from, "from", "", "only entries at or after this time (RFC 3339)")
	fs.StringVar(&f.to, "to", "", "only entries before this time (RFC 3339)")
	fs.StringVar(&f.subject, "subject", "", "only entries of this subject")
	fs.StringVar(&f.tokenID, "token-id", "", "only entries of this token ID")
	fs.StringArrayVar(&f.actions, "action", nil, "only this event type, e.g. access.denied (repeatable)")
	fs.StringVar(&f.outcome, "outcome", "", "only this outcome: success, denied or failure")
	fs.StringVar(&f.upstream, "upstream", "", "only requests to this upstream")
	fs.StringVar(&f.pathPrefix, "path-prefix", "", "only requests whose path starts with these whole segments, e.g. /fhir/Patient")
	fs.StringVar(&f.patient, "patient", "", "only entries bound to this patient id")
}

// query checks the filters (as the server would) and returns them as an
// audit.Query.
func (f *auditFilters) query() (*audit.Query, error) {
	q := &audit.Query{Subject: f.subject, TokenID: f.tokenID, Outcome: audit.Outcome(f.outcome), Upstream: f.upstream, PathPrefix: f.pathPrefix, Patient: f.patient}
	for _, t := range []struct {
		flag, v string
		dst     *time.Time
	}{{"from", f.from, &q.From}, {"to", f.to, &q.To}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", t.flag, safe(t.v))
		}
		*t.dst = v
	}
	for _, s := range f.actions {
		for _, act := range strings.Split(s, ",") {
			if !audit.Action(act).Known() {
				return nil, fmt.Errorf("--action %s: unknown event type", safe(act))
			}
			q.Actions = append(q.Actions, audit.Action(act))
		}
	}
	if q.Outcome != "" && !q.Outcome.Valid() {
		return nil, fmt.Errorf("--outcome %s: want success, denied or failure", safe(f.outcome))
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, errors.New("--to must be after --from")
	}
	return q, nil
}

// clientQuery is the same filters for the SDK.
func (f *auditFilters) clientQuery() (client.AuditQuery, error) {
	q, err := f.query()
	if err != nil {
		return client.AuditQuery{}, err
	}
	cq := client.AuditQuery{From: q.From, To: q.To, Subject: q.Subject, TokenID: q.TokenID, Outcome: string(q.Outcome), Upstream: q.Upstream, PathPrefix: q.PathPrefix, Patient: q.Patient}
	for _, act := range q.Actions {
		cq.Actions = append(cq.Actions, string(act))
	}
	return cq, nil
}

func (a *cli) auditSearchCmd() *cobra.Command {
	var f auditFilters
	var limit int
	var all, desc bool
	var after, cluster string
	cmd := &cobra.Command{
		Use:   "search [filters]",
		Short: "Search audit entries",
		Example: `  phigate audit search --subject svc:labs --action access.denied --from 2026-01-01T00:00:00Z
  phigate audit search --token-id tok_123 --all --json`,
		Args: noArgs,
	}
	f.add(cmd.Flags())
	cmd.Flags().IntVar(&limit, "limit", 0, "page size (server default when not given, at most 1000)")
	cmd.Flags().BoolVar(&all, "all", false, "follow the cursor and print every page")
	cmd.Flags().BoolVar(&desc, "desc", false, "newest first")
	cmd.Flags().StringVar(&after, "after", "", "continue from this cursor (the previous page's next)")
	cmd.Flags().StringVar(&cluster, "cluster", "", clusterFlagHelp)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cluster != "" {
			q, err := f.query()
			if err != nil {
				return usageErr{err}
			}
			if limit < 0 || limit > audit.MaxLimit {
				return usagef("--limit %d: must be 1 to %d", limit, audit.MaxLimit)
			}
			q.Limit, q.Desc = limit, desc
			return a.searchCluster(cmd.Context(), cluster, q, after, all)
		}
		q, err := f.clientQuery()
		if err != nil {
			return usageErr{err}
		}
		if limit < 0 || limit > audit.MaxLimit {
			return usagef("--limit %d: must be 1 to %d", limit, audit.MaxLimit)
		}
		q.Limit, q.Desc = limit, desc
		if desc {
			q.Before = after
		} else {
			q.After = after
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		if !all {
			page, err := c.AuditSearch(cmd.Context(), q)
			if err != nil {
				return err
			}
			return a.outputAuditPage(page)
		}
		list := client.AuditPage{Entries: []client.AuditEntry{}}
		for e, err := range c.AllAudit(cmd.Context(), q) {
			if err != nil {
				return err
			}
			list.Entries = append(list.Entries, e)
		}
		return a.output(list, func(w io.Writer) error { return printAuditTable(w, list.Entries) })
	}
	return cmd
}

func (a *cli) auditTailCmd() *cobra.Command {
	var f auditFilters
	var n int
	var follow bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "tail [-n 20] [--follow] [filters]",
		Short: "Print the latest audit entries (and follow new ones)",
		Args:  noArgs,
	}
	f.add(cmd.Flags())
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest entries to print")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries as they are written")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "with --follow, how often to ask for new entries")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q, err := f.clientQuery()
		if err != nil {
			return usageErr{err}
		}
		if n < 0 || n > audit.MaxLimit {
			return usagef("-n %d: must be 0 to %d", n, audit.MaxLimit)
		}
		if every < 10*time.Millisecond {
			return usagef("--interval %v: too short", every)
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		var last string
		if n > 0 {
			tq := q
			tq.Desc, tq.Limit = true, n
			page, err := c.AuditSearch(ctx, tq)
			if err != nil {
				return err
			}
			slices.Reverse(page.Entries)
			if err := a.printEntries(page.Entries, true); err != nil {
				return err
			}
			if len(page.Entries) > 0 {
				last = strconv.FormatUint(page.Entries[len(page.Entries)-1].Seq, 10)
			}
		}
		if !follow {
			return nil
		}
		if last == "" {
			// start from the end: the newest entry of the whole log
			page, err := c.AuditSearch(ctx, client.AuditQuery{Desc: true, Limit: 1})
			if err != nil {
				return err
			}
			if len(page.Entries) > 0 {
				last = strconv.FormatUint(page.Entries[0].Seq, 10)
			}
		}
		header := n == 0
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			fq := q
			fq.After, fq.Limit = last, audit.MaxLimit
			if last == "" {
				fq.After = ""
			}
			for e, err := range c.AllAudit(ctx, fq) {
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if err := a.printEntries([]client.AuditEntry{e}, header); err != nil {
					return err
				}
				header = false
				last = strconv.FormatUint(e.Seq, 10)
			}
		}
	}
	return cmd
}

// printEntries prints entries as JSON lines (--json) or table rows.
func (a *cli) printEntries(es []client.AuditEntry, header bool) error {
	if a.json {
		enc := json.NewEncoder(a.stdout)
		for _, e := range es {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, auditHeader)
	}
	for i := range es {
		fmt.Fprintln(tw, auditRow(&es[i]))
	}
	return tw.Flush()
}

const auditHeader = "SEQ\tTIME\tACTION\tOUTCOME\tSUBJECT\tTOKEN\tSOURCE\tWHAT\tREASON"

func auditRow(e *client.AuditEntry) string {
	what := e.Target
	if e.Path != "" {
		what = strings.TrimSpace(e.Method + " " + e.Path)
		if e.Status != 0 {
			what += " → " + strconv.Itoa(e.Status)
		}
	}
	reason := e.Reason
	if e.BreakGlass != "" {
		reason = strings.TrimSpace(reason + " break-glass: " + e.BreakGlass)
	}
	return strings.Join([]string{strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format("2006-01-02T15:04:05.000Z"),
		safe(e.Action), safe(e.Outcome), safe(e.Actor.Subject), safe(e.Actor.TokenID), safe(e.Source.IP),
		safe(what), safe(reason)}, "\t")
}

// outputAuditPage prints one page of audit entries (a table, or the page
// as JSON with --json) and, when more follow, how to get them.
func (a *cli) outputAuditPage(p *client.AuditPage) error {
	return a.output(p, func(w io.Writer) error {
		if err := printAuditTable(w, p.Entries); err != nil {
			return err
		}
		if p.Next != "" {
			fmt.Fprintf(a.stderr, "More entries: --after %s, or --all.\n", safe(p.Next))
		}
		return nil
	})
}

func printAuditTable(w io.Writer, es []client.AuditEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, auditHeader)
	for i := range es {
		fmt.Fprintln(tw, auditRow(&es[i]))
	}
	return tw.Flush()
}

func (a *cli) auditCheckpointCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint of the audit log",
		Long: `Checkpoint prints the latest signed checkpoint (C2SP tlog-checkpoint) exactly
as the log signed it. Keep it somewhere the log's machine cannot write (a
witness): audit verify --checkpoint FILE later proves that the log still
contains, unchanged, every entry the checkpoint covers.`,
		Example: `  phigate audit checkpoint >> /mnt/worm/phigate-checkpoints.txt`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cp, err := c.AuditCheckpoint(cmd.Context())
			if err != nil {
				return err
			}
			return a.output(cp, func(w io.Writer) error {
				_, err := io.WriteString(w, cp.Checkpoint)
				return err
			})
		},
	}
}

// verifierFlags are --key FILE and --key-text KEY.
type verifierFlags struct{ file, text string }

func (k *verifierFlags) add(fs *pflag.FlagSet, what string) {
	fs.StringVar(&k.file, "key", "", "file holding the log's public key ("+what+")")
	fs.StringVar(&k.text, "key-text", "", "the log's public key itself, phigate/<node>+<hash>+<key>")
}

// load returns the key given, or "" when none was. A key given but empty
// (an empty file, say, left by a failed "audit key > FILE") is an error:
// verify would otherwise fall back to the copy in the data directory,
// which is exactly what an auditor's own copy is there to avoid.
func (k *verifierFlags) load() (string, error) {
	switch {
	case k.file != "" && k.text != "":
		return "", usagef("give --key or --key-text, not both")
	case k.file != "":
		b, err := os.ReadFile(k.file)
		if err != nil {
			return "", err
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			return "", usagef("--key %s: the file is empty; it should hold the log's public key (phigate audit key --data DIR)", safe(k.file))
		}
		return key, nil
	case k.text != "" && strings.TrimSpace(k.text) == "":
		return "", usagef("--key-text is empty")
	}
	return strings.TrimSpace(k.text), nil
}

func (a *cli) auditVerifyCmd() *cobra.Command {
	var dataDir, cluster string
	var cps, keyFiles, witnesses []string
	var quorum int
	var key verifierFlags
	cmd := &cobra.Command{
		Use:   "verify --data DIR | --cluster DSN [--checkpoint FILE]... [--key FILE | --keys FILE] [--witness VKEY]... [--witness-quorum K]",
		Short: "Verify the whole audit log against its signed checkpoints",
		Long: `Verify reads the audit log of the data directory, recomputes every entry's
hash, rebuilds the Merkle tree and checks it against every signed checkpoint.
With --checkpoint (a file of one or more checkpoints kept outside the log,
e.g. by a witness) it also proves the log consistent with them, so a history
rewritten by someone holding the signing key is caught too.

With --witness (a witness's cosignature verifier key; repeatable) it also
requires that --witness-quorum of them (default: all) cosigned the latest
checkpoint, as kept in the data directory's audit.cosigned, and names those
that did not.

Exit status 0 when the log is intact; 1 with the first bad entry and why.
Without --key the public key in the data directory is used: an auditor
passes a copy kept elsewhere. The server may keep running meanwhile.

With --cluster, every node's log in the cluster's shared PostgreSQL
database is verified, each against its own signed checkpoints, and reported
per node; the exit status is 1 when any fails. Pass the nodes' public keys
with --keys (a file of one key per line, e.g. each node's "phigate audit
key" output): without it the keys registered in the same database are used,
and they prove nothing on their own, since whoever can write the database
can register a key of their own and re-sign. With --keys, a node in the
database without a key given, or a key whose node is missing, is a failure.`,
		Example: `  phigate audit verify --data /var/lib/phigate --key audit.pub --checkpoint witness.txt
  phigate audit verify --cluster postgres://auditor@db.example.org/phigate --keys nodes.pub`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory (required)")
	cmd.Flags().StringArrayVar(&cps, "checkpoint", nil, "file of saved checkpoints to prove consistency with (repeatable)")
	cmd.Flags().StringVar(&cluster, "cluster", "", clusterFlagHelp)
	cmd.Flags().StringArrayVar(&keyFiles, "keys", nil, "with --cluster: file of the nodes' public keys, one a line (repeatable)")
	cmd.Flags().StringArrayVar(&witnesses, "witness", nil, "cosignature verifier key of a witness (name+hash+key) that must have cosigned the latest checkpoint (repeatable)")
	cmd.Flags().IntVar(&quorum, "witness-quorum", 0, "how many of the --witness keys must have cosigned (default: all)")
	key.add(cmd.Flags(), "default: the copy in the data directory")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if (dataDir == "") == (cluster == "") {
			return usagef("give --data DIR or --cluster DSN")
		}
		if len(keyFiles) > 0 && cluster == "" {
			return usagef("--keys is for --cluster; give --key for one log")
		}
		if len(witnesses) > 0 && cluster != "" {
			return usagef("--witness checks one node's data directory: give --data DIR")
		}
		vkey, err := key.load()
		if err != nil {
			return err
		}
		if quorum == 0 {
			quorum = len(witnesses)
		}
		if quorum < 0 || quorum > len(witnesses) {
			return usagef("--witness-quorum %d: give at least that many --witness keys", quorum)
		}
		for _, w := range witnesses {
			if _, err := audit.NewCosignatureVerifier(w); err != nil {
				return usageErr{err}
			}
		}
		opts := audit.VerifyOptions{Verifier: vkey}
		for _, p := range cps {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			notes, err := audit.SplitCheckpoints(b)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			opts.Checkpoints = append(opts.Checkpoints, notes...)
		}
		if cluster != "" {
			keys, err := loadKeys(keyFiles, vkey)
			if err != nil {
				return err
			}
			return a.verifyCluster(cmd.Context(), cluster, keys, opts.Checkpoints)
		}
		res, err := audit.Verify(cmd.Context(), dataDir, opts)
		if err != nil {
			return err
		}
		if a.json {
			if err := printJSON(a.stdout, verifyJSON(res)); err != nil {
				return err
			}
		} else {
			printVerify(a.stdout, res)
		}
		if p := res.Problem; p != nil {
			return fmt.Errorf("audit log NOT intact: %s", safe(p.Error()))
		}
		if len(witnesses) > 0 {
			return a.checkWitnesses(dataDir, vkey, res.Checkpoint, witnesses, quorum)
		}
		return nil
	}
	return cmd
}

// checkWitnesses requires quorum cosignatures of the witnesses on cp.
func (a *cli) checkWitnesses(dataDir, vkey string, cp *audit.Checkpoint, witnesses []string, quorum int) error {
	if cp == nil {
		return errors.New("the log has no signed checkpoint for the witnesses to have cosigned")
	}
	if vkey == "" {
		var err error
		if vkey, err = audit.ReadVerifierKey(dataDir); err != nil {
			return err
		}
	}
	v, err := audit.NewVerifier(vkey)
	if err != nil {
		return err
	}
	got, err := audit.CheckCosignatures(dataDir, cp, v, witnesses, quorum)
	if err != nil {
		return fmt.Errorf("audit log intact, but NOT witnessed: %s", safe(err.Error()))
	}
	if !a.json {
		fmt.Fprintf(a.stdout, "Witnessed: checkpoint %d cosigned by %s (quorum %d).\n", cp.Size, safe(strings.Join(got, ", ")), quorum)
	}
	return nil
}

// verifyResult is the --json output of audit verify.
type verifyResult struct {
	OK             bool     `json:"ok"`
	Size           uint64   `json:"size"`
	Covered        uint64   `json:"covered"`
	Checkpoint     string   `json:"checkpoint,omitempty"`
	Consistent     []uint64 `json:"consistent_with,omitempty"`
	KeyFromDataDir bool     `json:"key_from_data_dir"`
	Journaled      uint64   `json:"journaled,omitempty"`
	FirstBad       *uint64  `json:"first_bad_seq,omitempty"`
	LastBad        *uint64  `json:"last_bad_seq,omitempty"`
	Reason         string   `json:"reason,omitempty"`
}

func verifyJSON(r *audit.Result) verifyResult {
	v := verifyResult{OK: r.OK(), Size: r.Size, Covered: r.Covered, Consistent: r.Consistent, KeyFromDataDir: r.KeyFromDataDir, Journaled: r.Journaled}
	if r.Checkpoint != nil {
		v.Checkpoint = string(r.Checkpoint.Note)
	}
	if p := r.Problem; p != nil {
		v.FirstBad, v.LastBad, v.Reason = &p.Seq, &p.Last, p.Reason
	}
	return v
}

func printVerify(w io.Writer, r *audit.Result) {
	if p := r.Problem; p != nil {
		if p.Last > p.Seq {
			fmt.Fprintf(w, "FAIL: the first bad entry is among %d to %d: %s\n", p.Seq, p.Last, safe(p.Reason))
		} else {
			fmt.Fprintf(w, "FAIL: the first bad entry is %d: %s\n", p.Seq, safe(p.Reason))
		}
	} else {
		fmt.Fprintf(w, "OK: %d entries, signed up to %d.\n", r.Size, r.Covered)
	}
	if len(r.Consistent) > 0 {
		s := make([]string, len(r.Consistent))
		for i, n := range r.Consistent {
			s[i] = strconv.FormatUint(n, 10)
		}
		fmt.Fprintf(w, "Consistent with the saved checkpoints of size %s.\n", strings.Join(s, ", "))
	}
	if r.Problem == nil && r.Size > r.Covered {
		fmt.Fprintf(w, "Note: entries %d to %d are not signed yet (the log is being written, or was not closed cleanly; the server signs them when it opens the log).\n", r.Covered, r.Size-1)
	}
	if r.Journaled > 0 {
		fmt.Fprintf(w, "Note: the journal holds %d more entries, not in audit.db yet and not checked here (the log is being written, or was not closed cleanly; the server moves them into audit.db when it opens the log).\n", r.Journaled)
	}
	if r.KeyFromDataDir {
		fmt.Fprintln(w, "Note: verified with the public key stored in the data directory; for an independent check pass --key with a copy kept elsewhere.")
	}
}

func (a *cli) auditExportCmd() *cobra.Command {
	var dataDir, format, out, masterKey, cluster string
	var decrypt bool
	var f auditFilters
	cmd := &cobra.Command{
		Use:   "export --data DIR | --cluster DSN --format jsonl|fhir [--out FILE] [filters]",
		Short: "Export audit entries as JSON lines or FHIR AuditEvents",
		Long: `Export writes the entries of the audit log in the data directory, oldest
first, one per line: the entry itself (--format jsonl) or a FHIR R4
AuditEvent in the IHE Basic Audit Log Patterns style (--format fhir, NDJSON
as FHIR Bulk Data uses). It reads the data directory directly.

The PHI-bearing fields of each entry (request path and query, patient id,
break-glass justification) are stored encrypted. Without --decrypt they
are exported sealed ("sealed": base64; in the FHIR format, the extension
urn:phigate:audit:sealed), which is what to hand someone who only checks
the log's integrity; with --decrypt the vault's master key
(--master-key, $PHIGATE_MASTER_KEY or the development key) opens them, and
--patient and --path-prefix can be used.

With --cluster it exports every node's entries from the cluster's shared
PostgreSQL database, merged by time (ties by node, then sequence number),
their PHI fields sealed (--decrypt is not available there).`,
		Example: `  phigate audit export --data /var/lib/phigate --format fhir --from 2026-01-01T00:00:00Z --out q1.ndjson
  phigate audit export --data /var/lib/phigate --decrypt --patient 123 --out patient-123.jsonl`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory (required)")
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or fhir")
	cmd.Flags().StringVar(&out, "out", "", "write to this file (mode 0600) instead of standard output")
	cmd.Flags().BoolVar(&decrypt, "decrypt", false, "open the encrypted PHI fields with the vault's master key")
	cmd.Flags().StringVar(&masterKey, "master-key", "", "with --decrypt: the vault's master key spec (default $"+envMasterKey+", or the directory's development key)")
	cmd.Flags().StringVar(&cluster, "cluster", "", clusterFlagHelp)
	f.add(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if (dataDir == "") == (cluster == "") {
			return usagef("give --data DIR or --cluster DSN")
		}
		if cluster != "" && (decrypt || f.patient != "" || f.pathPrefix != "") {
			return usagef("--decrypt, --patient and --path-prefix open one node's sealed fields with its vault: use --data on that node")
		}
		if !decrypt && (f.patient != "" || f.pathPrefix != "") {
			return usagef("--patient and --path-prefix search encrypted fields: add --decrypt")
		}
		if format != "jsonl" && format != "fhir" {
			return usagef("--format %s: want jsonl or fhir", safe(format))
		}
		q, err := f.query()
		if err != nil {
			return usageErr{err}
		}
		if cluster != "" {
			return a.exportTo(out, func(w io.Writer) (int, error) { return exportCluster(cmd.Context(), cluster, q, w, format == "fhir") })
		}
		r, err := audit.OpenReader(cmd.Context(), dataDir)
		if err != nil {
			return err
		}
		defer r.Close()
		if decrypt {
			v, err := a.openVault(cmd.Context(), &offline{data: dataDir, masterKey: masterKey})
			if err != nil {
				return err
			}
			defer v.Close()
			r.SetSealer(audit.VaultSealer(v))
		}
		w := a.stdout
		var file *os.File
		if out != "" {
			if file, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				return err
			}
			defer file.Close()
			w = file
		}
		bw := bufio.NewWriterSize(w, 256<<10)
		n := 0
		for e, err := range r.All(cmd.Context(), *q) {
			if err != nil {
				return err
			}
			if format == "fhir" {
				err = audit.WriteFHIR(bw, e, r.Origin())
			} else {
				err = audit.WriteJSONL(bw, e)
			}
			if err != nil {
				return err
			}
			n++
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if file != nil {
			if err := file.Sync(); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Exported %d entries to %s.\n", n, safe(out))
		}
		return nil
	}
	return cmd
}

func (a *cli) auditKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "key [--data DIR]",
		Short: "Print the public key that verifies the audit log",
		Long: `Key prints the note verifier key of the audit log
(phigate/<node>+<hash>+<key>). Give it to auditors, keep a copy off the
machine: with it alone they can check checkpoints, proofs and the whole log.

With --data it reads the key of the log in that data directory. Without, it
asks the server (GET /v1/audit/key, no token needed) over the TLS connection
PHIGATE_ADDR and PHIGATE_PIN describe, and says so on stderr: a key fetched
from the server you mean to audit is only as good as the connection it came
over, so compare it once with a copy taken on the server's machine.`,
		Example: `  phigate audit key --data /var/lib/phigate > audit.pub
  phigate audit key > audit.pub     # from the server, over the pinned connection`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory (default: ask the server)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var vkey string
		if dataDir != "" {
			k, err := audit.ReadVerifierKey(dataDir)
			if err != nil {
				return err
			}
			vkey = k
		} else {
			c, err := a.publicClient()
			if err != nil {
				return err
			}
			k, err := c.AuditKey(cmd.Context())
			if err != nil {
				return err
			}
			vkey = strings.TrimSpace(k.Key)
			fmt.Fprintf(a.stderr, "Fetched from the server at %s; compare it once with 'phigate audit key --data DIR' on that machine.\n", safe(c.Addr()))
		}
		v, err := audit.NewVerifier(vkey)
		if err != nil {
			return err
		}
		return a.output(client.AuditKey{Origin: v.Name(), Key: vkey}, func(w io.Writer) error {
			_, err := fmt.Fprintln(w, vkey)
			return err
		})
	}
	return cmd
}

func (a *cli) auditProveCmd() *cobra.Command {
	var key verifierFlags
	var seq int64
	var save, fromFile, toFile string
	cmd := &cobra.Command{
		Use:   "prove FILE --key KEYFILE | prove --seq N --key KEYFILE [--save FILE] | prove --from OLD --to NEW --key KEYFILE [--save FILE] | prove --from OLD [--to NEW] --key KEYFILE PROOFFILE",
		Short: "Check a proof that an entry is in the audit log, or that the log only grew between two checkpoints",
		Long: `Prove checks a proof bundle (GET /v1/audit/proof?seq=N) offline: the
checkpoint is signed by the log's key, and the entry's hash leads to its
root. Give the bundle as FILE, or fetch it from the server with --seq (and
keep it with --save). The key must come from somewhere you trust, not from
the bundle's server.

With --from and --to (two signed checkpoints saved earlier, e.g. by
"phigate audit checkpoint"; of a file of several, the last) it fetches
the consistency proof between their sizes (GET /v1/audit/proof/consistency)
and checks offline, with only the key and the two checkpoints, that the
newer tree extends the older one unchanged: no entry the older covers was
removed, changed or reordered. Given a saved proof FILE instead, nothing is
fetched; without --to, the newer checkpoint is the one in the proof (checked
with the key).`,
		Example: `  phigate audit prove --seq 1234 --key audit.pub --save entry-1234.proof.json
  phigate audit prove entry-1234.proof.json --key-text 'phigate/node-1+5a3c...+AXk...'
  phigate audit prove --from cp-monday.txt --to cp-tuesday.txt --key audit.pub --save mon-tue.json
  phigate audit prove --from cp-monday.txt --to cp-tuesday.txt --key audit.pub mon-tue.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			fetch := cmd.Flags().Changed("seq")
			cons := cmd.Flags().Changed("from") || cmd.Flags().Changed("to")
			switch {
			case cons && fetch:
				return usagef("give --seq (an entry) or --from/--to (two checkpoints), not both")
			case cons && !cmd.Flags().Changed("from"):
				return usagef("--from CHECKPOINT is required with --to")
			case cons && len(args) > 1:
				return usagef("give at most one saved consistency proof FILE")
			case cons && len(args) == 0 && !cmd.Flags().Changed("to"):
				return usagef("give --to CHECKPOINT (to fetch the proof) or a saved consistency proof FILE")
			case cons:
				return nil
			case fetch && len(args) > 0:
				return usagef("give a bundle FILE or --seq, not both")
			case !fetch && len(args) != 1:
				return usagef("%s needs a proof bundle FILE (or --seq N)", name(cmd))
			}
			return nil
		},
	}
	key.add(cmd.Flags(), "required")
	cmd.Flags().Int64Var(&seq, "seq", 0, "fetch the proof of this entry from the server")
	cmd.Flags().StringVar(&save, "save", "", "with --seq or --from/--to, also write the proof to this file")
	cmd.Flags().StringVar(&fromFile, "from", "", "file of the older signed checkpoint (its last one)")
	cmd.Flags().StringVar(&toFile, "to", "", "file of the newer signed checkpoint (its last one)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		vkey, err := key.load()
		if err != nil {
			return err
		}
		if vkey == "" {
			return usagef("--key FILE or --key-text KEY is required: the proof is only as good as the key you check it with")
		}
		v, err := audit.NewVerifier(vkey)
		if err != nil {
			return usageErr{err}
		}
		if fromFile != "" {
			return a.proveConsistency(cmd, v, fromFile, toFile, args, save)
		}
		var data []byte
		if len(args) == 1 {
			if data, err = os.ReadFile(args[0]); err != nil {
				return err
			}
		} else {
			if seq < 0 {
				return usagef("--seq %d: must be 0 or more", seq)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.AuditProof(cmd.Context(), uint64(seq))
			if err != nil {
				return err
			}
			data = p.Raw
		}
		e, cp, err := proveBundle(data, v)
		if err != nil {
			return err
		}
		if save != "" {
			if err := os.WriteFile(save, append(data, '\n'), 0o600); err != nil {
				return err
			}
		}
		return a.output(e, func(w io.Writer) error {
			fmt.Fprintf(w, "OK: entry %d is in the log %s of %d entries (signed checkpoint, root %x).\n", e.Seq, safe(cp.Origin), cp.Size, cp.Root)
			return printKV(w, []kv{
				{"time", e.Time.UTC().Format(time.RFC3339Nano)},
				{"action", safe(string(e.Action))},
				{"outcome", safe(string(e.Outcome))},
				{"subject", safe(e.Actor.Subject)},
				{"token_id", safe(e.Actor.TokenID)},
				{"source", safe(e.Source.IP)},
				{"request_id", safe(e.RequestID)},
				{"target", safe(e.Target)},
				{"path", safe(strings.TrimSpace(e.Method + " " + e.Path))},
				{"reason", safe(e.Reason)},
			})
		})
	}
	return cmd
}

// proveConsistency checks (fetching it unless saved in args[0]) the
// consistency proof between the checkpoints of the files from and to.
func (a *cli) proveConsistency(cmd *cobra.Command, v note.Verifier, from, to string, args []string, save string) error {
	older, err := readCheckpointFile(from, v)
	if err != nil {
		return err
	}
	var newer *audit.Checkpoint
	if to != "" {
		if newer, err = readCheckpointFile(to, v); err != nil {
			return err
		}
		if newer.Size < older.Size {
			return usagef("--to %s is of size %d, smaller than --from %s (%d): give the older checkpoint as --from", safe(to), newer.Size, safe(from), older.Size)
		}
	}
	var data []byte
	if len(args) == 1 {
		if data, err = os.ReadFile(args[0]); err != nil {
			return err
		}
	} else {
		c, err := a.client()
		if err != nil {
			return err
		}
		p, err := c.AuditConsistency(cmd.Context(), older.Size, newer.Size)
		if err != nil {
			return err
		}
		data = p.Raw
	}
	p, err := audit.ParseConsistency(data)
	if err != nil {
		return err
	}
	if newer == nil {
		if p.ToCheckpoint == "" {
			return usagef("the proof carries no checkpoint of size %d: give --to CHECKPOINT", p.To)
		}
		if newer, err = audit.ParseCheckpoint([]byte(p.ToCheckpoint), v); err != nil {
			return err
		}
	}
	if err := audit.VerifyConsistency(p, older, newer); err != nil {
		return err
	}
	if save != "" && len(args) == 0 {
		if err := os.WriteFile(save, append(data, '\n'), 0o600); err != nil {
			return err
		}
	}
	type result struct {
		Origin string `json:"origin"`
		From   uint64 `json:"from"`
		To     uint64 `json:"to"`
		OK     bool   `json:"ok"`
	}
	return a.output(result{older.Origin, older.Size, newer.Size, true}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "OK: the log %s of %d entries (root %x) extends, unchanged, the log of %d entries (root %x) of the older checkpoint.\n", safe(older.Origin), newer.Size, newer.Root, older.Size, older.Root)
		return err
	})
}

// readCheckpointFile returns the last signed checkpoint of the file at
// path, checked with v.
func readCheckpointFile(path string, v note.Verifier) (*audit.Checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cp, err := audit.LastCheckpoint(data, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", safe(path), err)
	}
	return cp, nil
}

func proveBundle(data []byte, v note.Verifier) (*audit.Entry, *audit.Checkpoint, error) {
	b, err := audit.ParseBundle(data)
	if err != nil {
		return nil, nil, err
	}
	return audit.VerifyBundle(b, v)
}
