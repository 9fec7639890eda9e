package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/auditcluster"
	"github.com/phigate/phigate/pkg/client"
)

// The --cluster forms of audit verify, search and export: they read the
// cluster's shared PostgreSQL database (internal/auditcluster) directly.

const clusterFlagHelp = "the cluster's PostgreSQL DSN (postgres://...; the password in PGPASSWORD or ~/.pgpass, not here): read every node's log from the shared database"

// openCluster connects to the cluster's database.
func openCluster(ctx context.Context, dsn string) (*auditcluster.Cluster, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return nil, usagef("--cluster: want a postgres:// DSN")
	}
	return auditcluster.Open(ctx, dsn, auditcluster.Options{})
}

// loadKeys reads verifier keys from files of one key per line (the output
// of "phigate audit key" for each node, concatenated), plus --key.
func loadKeys(files []string, single string) ([]string, error) {
	var keys []string
	if single != "" {
		keys = append(keys, single)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
				n++
			}
		}
		if n == 0 {
			return nil, usagef("--keys %s: the file holds no key", safe(p))
		}
	}
	return keys, nil
}

// clusterVerifyJSON is the --json output of audit verify --cluster.
type clusterVerifyJSON struct {
	OK      bool                `json:"ok"`
	Origins []clusterOriginJSON `json:"origins"`
}

type clusterOriginJSON struct {
	Origin          string `json:"origin"`
	KeyFromDatabase bool   `json:"key_from_database"`
	verifyResult
}

func (a *cli) verifyCluster(ctx context.Context, dsn string, keys []string, cps [][]byte) error {
	c, err := openCluster(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close()
	rs, err := c.Verify(ctx, auditcluster.VerifyOptions{Keys: keys, Checkpoints: cps})
	if err != nil {
		return err
	}
	out := clusterVerifyJSON{OK: true, Origins: []clusterOriginJSON{}}
	var bad []string
	fromDB := false
	for _, r := range rs {
		out.Origins = append(out.Origins, clusterOriginJSON{Origin: r.Origin, KeyFromDatabase: r.KeyFromDatabase, verifyResult: verifyJSON(r.Result)})
		if !r.OK() {
			out.OK = false
			bad = append(bad, r.Origin+": "+r.Problem.Error())
		}
		fromDB = fromDB || r.KeyFromDatabase
	}
	if a.json {
		if err := printJSON(a.stdout, out); err != nil {
			return err
		}
	} else {
		if len(rs) == 0 {
			fmt.Fprintln(a.stdout, "The cluster database holds no audit log.")
		}
		for _, r := range rs {
			var b strings.Builder
			r.KeyFromDataDir = false // said once below, for the database
			printVerify(&b, r.Result)
			for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				fmt.Fprintf(a.stdout, "%s: %s\n", safe(r.Origin), line)
			}
		}
		if fromDB {
			fmt.Fprintln(a.stdout, "Note: verified with the keys registered in the cluster database, which prove nothing against someone who can write it; pass the nodes' keys with --keys.")
		}
	}
	if len(rs) == 0 && len(keys) == 0 {
		return fmt.Errorf("no audit log to verify")
	}
	if len(bad) > 0 {
		return fmt.Errorf("cluster audit log NOT intact: %s", safe(strings.Join(bad, "; ")))
	}
	return nil
}

// searchCluster prints one page (or, with all, every page) of the merged
// view, as audit search prints the server's.
func (a *cli) searchCluster(ctx context.Context, dsn string, q *audit.Query, after string, all bool) error {
	c, err := openCluster(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close()
	cq := &auditcluster.Query{Query: *q}
	if after != "" {
		cur, err := auditcluster.ParseCursor(after)
		if err != nil {
			return usagef("--after %s: not a cursor of the cluster's merged view", safe(after))
		}
		cq.After = &cur
	}
	var page *audit.Page
	if all {
		page = &audit.Page{Entries: []*audit.Entry{}}
		for it, err := range c.All(ctx, *cq) {
			if err != nil {
				return err
			}
			page.Entries = append(page.Entries, it.Entry)
		}
	} else if page, err = c.Search(ctx, cq); err != nil {
		return err
	}
	// the same JSON as GET /v1/audit, and the same table
	b, err := json.Marshal(page)
	if err != nil {
		return err
	}
	var cp client.AuditPage
	if err := json.Unmarshal(b, &cp); err != nil {
		return err
	}
	return a.outputAuditPage(&cp)
}

// exportCluster writes the merged entries matching q.
func exportCluster(ctx context.Context, dsn string, q *audit.Query, w io.Writer, fhir bool) (int, error) {
	c, err := openCluster(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n := 0
	for it, err := range c.All(ctx, auditcluster.Query{Query: *q}) {
		if err != nil {
			return n, err
		}
		if fhir {
			err = audit.WriteFHIR(w, it.Entry, it.Origin)
		} else {
			err = audit.WriteJSONL(w, it.Entry)
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// exportTo runs write on standard output, or on the file out (mode 0600,
// fsync'd, with a note of how many entries went there).
func (a *cli) exportTo(out string, write func(io.Writer) (int, error)) error {
	w := a.stdout
	var file *os.File
	if out != "" {
		var err error
		if file, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	n, err := write(bw)
	if err != nil {
		return err
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
