package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/config"
)

// runFlood reproduces the anonymous flood of issue 13 (item 2.2): -c
// connections (32) sending, for -duration, requests without a token whose
// query is 2 KB, to the real server (server.Run, dev mode) over TLS on
// loopback, and reports what the audit log grew by: bytes per anonymous
// request (target ≤ 200 B amortised) and per second. With -aggregate=false
// every denial is recorded in full and uncut, as before the fix, for
// comparison.
func runFlood(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	dir, err := os.MkdirTemp("", "phigate-bench-flood-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mutate := func(c *config.Config) {
		if !o.Aggregate {
			// as before issue 13: every denial in full, nothing cut
			// (the audit log's own limits apply)
			c.Audit.Anonymous.FullPerWindow = 1 << 30
			c.Audit.Anonymous.MaxFieldBytes = 1 << 20
		}
	}
	// a first start initialises the directory; stopped, its audit log is
	// checkpointed into audit.db: the size to compare with
	p, _, err := startGatewayInProcess(ctx, dir, "https://127.0.0.1:9/", "", config.Identity{}, log, mutate)
	if err != nil {
		return nil, err
	}
	admin := p.admin
	if err := p.Close(); err != nil {
		return nil, err
	}
	before := auditBytes(dir)
	p, gw, err := startGatewayInProcess(ctx, dir, "https://127.0.0.1:9/", "", config.Identity{}, log, mutate)
	if err != nil {
		return nil, err
	}
	p.admin = admin
	closed := false
	defer func() {
		if !closed {
			p.Close()
		}
	}()
	ac, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	tc, err := tlsClientConfig(p.CertPEM)
	if err != nil {
		return nil, err
	}
	l, err := NewLoader(o.Concurrency, tc)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	t := &Target{
		Name: "anonymous", Method: http.MethodGet, Expect: http.StatusUnauthorized,
		URL: "https://" + gw + "/api/items/1?q=" + strings.Repeat("a", 2046), // a 2 KB query
	}
	cp0, err := ac.AuditCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "flood: %d connections for %v, no token, 2 KB query …\n", o.Concurrency, o.Duration)
	res, err := l.Run(ctx, t, 0, o.Duration)
	if err != nil {
		return nil, err
	}
	// a signed checkpoint trails the entries by up to a second
	select {
	case <-time.After(1500 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cp1, err := ac.AuditCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	// the last window's summaries are written at shutdown, and the log
	// checkpointed into audit.db again
	if err := p.Close(); err != nil {
		return nil, err
	}
	closed = true
	grew := auditBytes(dir) - before
	perReq := float64(grew) / float64(max(res.Requests, 1))
	perSec := float64(grew) / res.Elapsed.Seconds()
	verdict := "PASS"
	if perReq > 200 {
		verdict = "MISS"
	}
	mode := "aggregated"
	if !o.Aggregate {
		mode = "in-full"
	}
	entries := cp1.Size - cp0.Size
	rep := &Report{Scenario: "flood", Concurrency: o.Concurrency, Results: []*Result{res}, Pass: perReq <= 200,
		Config: map[string]any{"aggregate": o.Aggregate, "query_bytes": 2048, "audit_growth_bytes": grew,
			"entries_during_flood": entries, "bytes_per_request": perReq, "bytes_per_second": perSec}}
	rep.Lines = []string{
		resultLine("flood", res),
		fmt.Sprintf("flood       audit     %s: %d entries (signed checkpoints) for %d requests; audit.db+journal grew %s (%s/s), %.1f B/request (target ≤ 200) %s",
			mode, entries, res.Requests, size(grew), size(int64(perSec)), perReq, verdict),
		fmt.Sprintf("flood       setup     c=%d duration=%v GET /api/items/1?q=<2 KB>, no token, status 401, TLS1.3 HTTP/1.1 keep-alive; growth: audit.db+-wal+audit.journal/ after a clean stop, before and after (server start/stop and summary entries included)", o.Concurrency, o.Duration),
	}
	return rep, nil
}

// auditBytes is the size of the audit log's files in dir: the database,
// its write-ahead log, and the journal's files.
func auditBytes(dir string) int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-journal"} {
		if st, err := os.Stat(filepath.Join(dir, audit.DBFile+suffix)); err == nil {
			n += st.Size()
		}
	}
	files, _ := os.ReadDir(filepath.Join(dir, audit.JournalDir))
	for _, f := range files {
		if info, err := f.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
