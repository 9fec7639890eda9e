package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/config"
)

// Targets of issue 21.
const (
	propagationP50Goal = 50 * time.Millisecond
	propagationP99Goal = 250 * time.Millisecond
	missP99Goal        = 2 * time.Millisecond
	pgCreateGoal       = 0.50
)

// storeEnv names the database when -store is not given.
const storeEnv = "PHIGATE_TEST_POSTGRES"

// storeDSN is o.Store, or $PHIGATE_TEST_POSTGRES.
func storeDSN(o options) (string, error) {
	if o.Store != "" {
		return o.Store, nil
	}
	if d := os.Getenv(storeEnv); d != "" {
		return d, nil
	}
	return "", errors.New("no database: give -store postgres://… or set " + storeEnv)
}

// pgSchema makes a fresh schema in dsn's database for one run and returns
// a DSN whose search_path is it, and the function that drops it.
func pgSchema(ctx context.Context, dsn string) (string, func(), error) {
	b := make([]byte, 6)
	rand.Read(b)
	name := "phigate_bench_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+name+" CASCADE")
			c.Close(ctx)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		drop()
		return "", nil, errors.New("-store must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

// pgNodes starts n in-process nodes on one fresh schema: the first
// initialises the cluster (its admin token is the bench's), all share its
// certificate and one master key.
func pgNodes(ctx context.Context, dsn string, n int, log *slog.Logger) (nodes []*inproc, cleanup func(), err error) {
	schema, drop, err := pgSchema(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "phigate-bench-cluster-")
	if err != nil {
		drop()
		return nil, nil, err
	}
	cleanup = func() {
		for _, p := range nodes {
			p.Close()
		}
		os.RemoveAll(dir)
		drop()
	}
	mk := make([]byte, 32)
	rand.Read(mk)
	mkFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(mkFile, mk, 0o600); err != nil {
		cleanup()
		return nil, nil, err
	}
	for i := range n {
		name := fmt.Sprintf("bench-%c", 'a'+i)
		var first *inproc
		if i > 0 {
			first = nodes[0]
		}
		p, err := startNode(ctx, filepath.Join(dir, name), log, nodeOptions{init: i == 0, masterKey: "file:" + mkFile,
			mod: func(c *config.Config) {
				c.Store, c.Audit.Node = schema, name
				if first != nil {
					c.TLS.CertFile, c.TLS.KeyFile = first.CertFile, first.KeyFile
				}
			}})
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("node %s: %w", name, err)
		}
		nodes = append(nodes, p)
	}
	nodes[0].CertPEM, _ = os.ReadFile(nodes[0].CertFile)
	return nodes, cleanup, nil
}

// runCluster measures, over o.Trials trials on three nodes of one
// database: the propagation of a revocation, from the revoking response on
// node a to the first denial on both b and c; and the first use of a token
// on a node (a cache miss: the store is read) against its second (a hit).
func runCluster(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	dsn, err := storeDSN(o)
	if err != nil {
		return nil, err
	}
	nodes, cleanup, err := pgNodes(ctx, dsn, 3, log)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	a, others := nodes[0], nodes[1:]
	tc, err := tlsClientConfig(a.CertPEM)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 8, ForceAttemptHTTP2: false}}
	defer hc.CloseIdleConnections()
	do := func(p *inproc, method, path, tok string, body []byte) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, "https://"+p.Addr+path, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, b, err
	}
	var prop, miss, hit []time.Duration
	for i := range o.Trials {
		st, body, err := do(a, "POST", "/v1/tokens", a.admin, []byte(createBody))
		if err != nil || st != http.StatusCreated {
			return nil, fmt.Errorf("trial %d: create: %d %v", i, st, err)
		}
		var created struct{ ID, Token string }
		if err := json.Unmarshal(body, &created); err != nil {
			return nil, err
		}
		for _, p := range others { // first use (miss), then second (hit): both cached now
			t := time.Now()
			if st, _, err := do(p, "GET", "/v1/tokens/self", created.Token, nil); err != nil || st != http.StatusOK {
				return nil, fmt.Errorf("trial %d: first use: %d %v", i, st, err)
			}
			miss = append(miss, time.Since(t))
			t = time.Now()
			if st, _, err := do(p, "GET", "/v1/tokens/self", created.Token, nil); err != nil || st != http.StatusOK {
				return nil, fmt.Errorf("trial %d: second use: %d %v", i, st, err)
			}
			hit = append(hit, time.Since(t))
		}
		if st, _, err := do(a, "DELETE", "/v1/tokens/"+created.ID, a.admin, nil); err != nil || (st != http.StatusOK && st != http.StatusNoContent) {
			return nil, fmt.Errorf("trial %d: revoke: %d %v", i, st, err)
		}
		t0 := time.Now()
		var mu sync.Mutex
		var worst time.Duration
		var werr error
		var wg sync.WaitGroup
		for _, p := range others {
			wg.Go(func() {
				for {
					st, _, err := do(p, "GET", "/v1/tokens/self", created.Token, nil)
					d := time.Since(t0)
					if err == nil && st == http.StatusUnauthorized {
						mu.Lock()
						worst = max(worst, d)
						mu.Unlock()
						return
					}
					if err != nil || st != http.StatusOK || d > 10*time.Second {
						mu.Lock()
						werr = fmt.Errorf("trial %d: waiting for the denial: %d %v after %v", i, st, err, d)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if werr != nil {
			return nil, werr
		}
		prop = append(prop, worst)
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	p50, p99 := q(prop, 0.50), q(prop, 0.99)
	mp50, mp99, hp50, hp99 := q(miss, 0.5), q(miss, 0.99), q(hit, 0.5), q(hit, 0.99)
	propOK := p50 <= propagationP50Goal && p99 <= propagationP99Goal
	missOK := mp99 <= missP99Goal
	rep := &Report{Scenario: "cluster", Concurrency: 1, Pass: propOK && missOK,
		Config: map[string]any{"trials": o.Trials, "nodes": 3,
			"propagation_p50_ns": p50, "propagation_p99_ns": p99, "propagation_max_ns": q(prop, 1),
			"first_use_p50_ns": mp50, "first_use_p99_ns": mp99, "second_use_p50_ns": hp50, "second_use_p99_ns": hp99}}
	rep.Lines = []string{
		fmt.Sprintf("cluster     revocation propagation (a's response → denied on b and c)  p50=%s p99=%s max=%s n=%d (targets ≤ %v, ≤ %v) %s",
			ms(p50), ms(p99), ms(q(prop, 1)), len(prop), propagationP50Goal, propagationP99Goal, passFail(propOK)),
		fmt.Sprintf("cluster     first use on a node (cache miss, HTTPS round trip)  p50=%s p99=%s; second use (hit) p50=%s p99=%s; miss − hit at p99=%s (target p99 ≤ %v) %s",
			ms(mp50), ms(mp99), ms(hp50), ms(hp99), ms(mp99-hp99), missP99Goal, passFail(missOK)),
		fmt.Sprintf("cluster     setup     3 in-process nodes, one PostgreSQL schema, trials=%d, sequential keep-alive HTTPS requests", o.Trials),
	}
	return rep, nil
}

// runCreatePostgres is create with -store: two phigate nodes in this
// process, one on the embedded SQLite store and one on PostgreSQL, measured
// in interleaved rounds; PostgreSQL's rate against SQLite's is the figure.
func runCreatePostgres(ctx context.Context, o options, log *slog.Logger) (*Report, error) {
	dsn, err := storeDSN(o)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "phigate-bench-create-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	lite, err := startInProcess(ctx, dir, log)
	if err != nil {
		return nil, err
	}
	defer lite.Close()
	schema, drop, err := pgSchema(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer drop()
	mkFile := filepath.Join(dir, "pg-master.key")
	mk := make([]byte, 32)
	rand.Read(mk)
	if err := os.WriteFile(mkFile, mk, 0o600); err != nil {
		return nil, err
	}
	pg, err := startNode(ctx, filepath.Join(dir, "pg"), log, nodeOptions{init: true, masterKey: "file:" + mkFile,
		mod: func(c *config.Config) {
			c.Store, c.Audit.Node = schema, "bench-pg"
			c.TLS.CertFile, c.TLS.KeyFile = lite.CertFile, lite.KeyFile
		}})
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	tc, err := tlsClientConfig(lite.CertPEM)
	if err != nil {
		return nil, err
	}
	l, err := NewLoader(o.Concurrency, tc)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	target := func(name string, p *inproc) *Target {
		return &Target{Name: name, URL: "https://" + p.Addr + "/v1/tokens", ContentType: "application/json",
			Header: http.Header{"Authorization": {"Bearer " + p.admin}}, Body: []byte(createBody),
			Expect: http.StatusCreated, Check: checkIssued}
	}
	res, err := l.RunRounds(ctx, []*Target{target("sqlite", lite), target("postgres", pg)}, o.Warmup, o.Duration, o.Rounds)
	if err != nil {
		return nil, err
	}
	base, got := res[0], res[1]
	rep := &Report{Scenario: "create", Concurrency: o.Concurrency, Results: res, Target: pgCreateGoal,
		Config: map[string]any{"duration": o.Duration.String(), "warmup": o.Warmup.String(), "rounds": o.Rounds, "store": "postgres vs sqlite"}}
	if base.RPS > 0 {
		rep.Ratio = got.RPS / base.RPS
	}
	rep.Pass = rep.Ratio >= pgCreateGoal && rep.errors() == 0
	rep.Lines = []string{
		resultLine("create", base),
		resultLine("create", got) + fmt.Sprintf("  ratio=%.2f%s (target ≥ %.2f of sqlite) %s", rep.Ratio, roundSpread(got, base), pgCreateGoal, passFail(rep.Pass)),
		fmt.Sprintf("%-11s setup     c=%d duration=%v warmup=%v rounds=%d (interleaved sqlite/postgres) database=%s", "create",
			o.Concurrency, o.Duration, o.Warmup, o.Rounds, strings.SplitN(redactDSN(dsn), "?", 2)[0]),
	}
	return rep, nil
}

// redactDSN drops the password of a URL DSN.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
