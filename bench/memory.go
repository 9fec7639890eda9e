package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// Targets of the memory scenario.
const (
	memStartGoal = 5 * time.Second
	memRSSGoal   = 400 << 20
)

// MemoryResult is what the memory scenario measured.
type MemoryResult struct {
	// Stored is the number of tokens in the store while serving.
	Stored int64 `json:"stored"`
	// Generated is how many of them this run created, in GenerateTime.
	Generated    int64         `json:"generated"`
	GenerateTime time.Duration `json:"generate_ns"`
	// MeanBatch is the store's mean group-commit batch while generating.
	MeanBatch float64 `json:"mean_batch"`
	// DBBytes is the size of the database file and its WAL.
	DBBytes int64 `json:"db_bytes"`
	Working int   `json:"working"`
	Passes  int   `json:"passes"`
	// Start is the time from exec to the first successful GET /readyz.
	Start time.Duration `json:"start_ns"`
	// RSS of the server: once ready, the largest sample while serving the
	// working set, at the end, and the kernel's high-water mark (VmHWM).
	RSSReady int64 `json:"rss_ready_bytes"`
	RSSMax   int64 `json:"rss_max_bytes"`
	RSSEnd   int64 `json:"rss_end_bytes"`
	RSSHWM   int64 `json:"rss_hwm_bytes"`
	StartOK  bool  `json:"start_ok"`
	RSSOK    bool  `json:"rss_ok"`
}

// runMemory fills a store with o.Tokens tokens, starts the phigate binary
// on it as a child process, times its start, and introspects every token
// of a working set of o.Working while sampling the child's RSS.
func runMemory(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "phigate-bench-memory-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m := &MemoryResult{Working: o.Working, Passes: o.Passes}

	// 1. The binary first: a build that fails should not cost a long fill.
	bin := o.Binary
	if bin == "" {
		tmp, err := os.MkdirTemp("", "phigate-bench-bin-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if bin, err = buildPhigate(ctx, tmp); err != nil {
			return nil, err
		}
	}

	// 2. The store: initialise, then top it up to o.Tokens tokens. The
	// secrets of the working set exist only in this process's memory, so a
	// rerun on a kept directory always creates a fresh working set.
	cfg := config.Dev(dir)
	if _, _, err := server.Init(ctx, server.InitOptions{Config: cfg, Dev: true, Logger: log}); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	dbPath := filepath.Join(dir, server.DBFile)
	existing, err := countTokens(ctx, dbPath)
	if err != nil {
		return nil, err
	}
	n := max(int64(o.Working), int64(o.Tokens)-existing)
	working, stats, err := generateTokens(ctx, dir, n, o.Working, o.GenWorkers, progress)
	if err != nil {
		return nil, err
	}
	m.Generated, m.GenerateTime = n, stats.elapsed
	m.MeanBatch = stats.meanBatch
	if m.Stored, err = countTokens(ctx, dbPath); err != nil {
		return nil, err
	}
	m.DBBytes = fileSize(dbPath) + fileSize(dbPath+"-wal")

	// 3. A fresh admin token to create the caller with.
	admin, err := newAdminToken(ctx, bin, dir)
	if err != nil {
		return nil, err
	}

	// 4. Start the server and time it.
	child, err := startChild(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	defer child.stop()
	m.Start = child.readyAfter
	m.RSSReady, _ = procStatus(child.pid(), "VmRSS")

	tc, err := tlsClientConfig(child.certPEM)
	if err != nil {
		return nil, err
	}
	sdk, err := client.New("https://"+child.addr, client.WithCAFile(child.certFile), client.WithToken(admin))
	if err != nil {
		return nil, err
	}
	caller, err := sdk.CreateToken(ctx, client.CreateTokenRequest{
		Subject: "bench-memory-caller", Kind: "service", Scopes: []string{"introspect"}, TTL: "30m",
	})
	if err != nil {
		return nil, fmt.Errorf("creating the caller token: %w", err)
	}

	// 5. Serve the working set, pass after pass, sampling RSS.
	sampler := startRSSSampler(child.pid(), 100*time.Millisecond)
	defer sampler.stop()
	l, err := NewLoader(o.Concurrency, tc)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var results []*Result
	for pass := 1; pass <= o.Passes; pass++ {
		t := introspectTarget(child.addr, caller.Secret)
		t.Name = fmt.Sprintf("pass%d", pass)
		var next atomic.Int64
		t.Next = func() ([]byte, bool) {
			i := next.Add(1) - 1
			if i >= int64(len(working)) {
				return nil, false
			}
			return []byte("token=" + url.QueryEscape(working[i])), true
		}
		res, err := l.Run(ctx, t, 0, maxRunTime)
		if err != nil {
			return nil, err
		}
		results = append(results, res)
		if res.Requests+res.Errors < int64(len(working)) {
			return nil, fmt.Errorf("%s: only %d of %d introspections done within %v", t.Name, res.Requests+res.Errors, len(working), maxRunTime)
		}
	}
	m.RSSMax = sampler.stop()
	m.RSSEnd, _ = procStatus(child.pid(), "VmRSS")
	m.RSSHWM, _ = procStatus(child.pid(), "VmHWM")
	m.RSSMax = max(m.RSSMax, m.RSSEnd)
	m.StartOK = m.Start <= memStartGoal
	m.RSSOK = m.RSSHWM > 0 && m.RSSHWM <= memRSSGoal && m.RSSMax <= memRSSGoal
	clear(working)

	rep := &Report{
		Scenario: "memory", Concurrency: o.Concurrency, Results: results, Memory: m,
		Config: map[string]any{"tokens": o.Tokens, "working": o.Working, "passes": o.Passes, "data": o.DataDir},
	}
	rep.Pass = m.StartOK && m.RSSOK && rep.errors() == 0
	genRate := float64(m.Generated) / m.GenerateTime.Seconds()
	rep.Lines = []string{
		fmt.Sprintf("memory      stored=%d tokens (this run generated %d in %v, %.0f/s, mean commit batch %.1f) db=%s",
			m.Stored, m.Generated, m.GenerateTime.Round(time.Second), genRate, m.MeanBatch, mib(m.DBBytes)),
		fmt.Sprintf("memory      start=%.2fs (exec → first 200 /readyz; target ≤ %v) %s",
			m.Start.Seconds(), memStartGoal, passFail(m.StartOK)),
		fmt.Sprintf("memory      rss ready=%s max=%s end=%s hwm=%s (target ≤ %s while serving %d working-set tokens) %s",
			mib(m.RSSReady), mib(m.RSSMax), mib(m.RSSEnd), mib(m.RSSHWM), mib(memRSSGoal), o.Working, passFail(m.RSSOK)),
	}
	for _, r := range results {
		rep.Lines = append(rep.Lines, resultLine("memory", r)+fmt.Sprintf(" c=%d", o.Concurrency))
	}
	return rep, nil
}

func mib(b int64) string { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countTokens counts the rows of the store's tokens table, read-only.
func countTokens(ctx context.Context, dbPath string) (int64, error) {
	u := url.URL{Scheme: "file", OmitHost: true, Path: dbPath, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM tokens").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting tokens: %w", err)
	}
	return n, nil
}

type genStats struct {
	elapsed   time.Duration
	meanBatch float64
}

// generateTokens creates n active tokens directly in the store of dir, as
// the authority would (same record shape, same keyed hash), from workers
// goroutines so that the group commit batches them. It returns the secrets
// of the first keep tokens; they are never written anywhere.
func generateTokens(ctx context.Context, dir string, n int64, keep, workers int, progress io.Writer) ([]string, genStats, error) {
	// the pepper lives in the vault, under the dev master key of server --dev
	spec, _, _, err := vault.DevKey(dir, nil)
	if err != nil {
		return nil, genStats{}, err
	}
	p, err := vault.ParseProvider(ctx, spec, vault.ProviderOptions{})
	if err != nil {
		return nil, genStats{}, err
	}
	kr, err := vault.Open(ctx, dir, p, vault.Options{})
	if err != nil {
		return nil, genStats{}, err
	}
	defer kr.Close()
	h, err := token.NewHasher(ctx, kr)
	if err != nil {
		return nil, genStats{}, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, server.DBFile), sqlite.Options{})
	if err != nil {
		return nil, genStats{}, err
	}
	secrets := make([]string, keep)
	var next, done atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				d := done.Load()
				fmt.Fprintf(progress, "bench: memory: generated %d/%d tokens (%.0f/s)\n", d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				secret, err := createStoredToken(ctx, st, h, i)
				if err != nil {
					cancel(err)
					return
				}
				if i < int64(keep) {
					secrets[i] = secret
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	elapsed := time.Since(start)
	s := st.Stats()
	cerr := st.Close()
	if err := context.Cause(ctx); err != nil {
		return nil, genStats{}, fmt.Errorf("generating tokens: %w", err)
	}
	if cerr != nil {
		return nil, genStats{}, cerr
	}
	stats := genStats{elapsed: elapsed}
	if s.Commits > 0 {
		stats.meanBatch = float64(s.Ops) / float64(s.Commits)
	}
	return secrets, stats, nil
}

// createStoredToken stores the i-th token, shaped as the authority makes
// a user token, and returns its secret.
func createStoredToken(ctx context.Context, st *sqlite.Store, h *token.Hasher, i int64) (string, error) {
	id, err := token.NewID(nil)
	if err != nil {
		return "", err
	}
	secret, err := token.Generate(nil)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	rec := &token.Record{
		ID: id, Subject: "bench-" + strconv.FormatInt(i, 10), Kind: token.KindUser,
		Scopes: []string{"patient/Observation.rs"}, Status: token.StatusActive,
		CreatedAt: now, ExpiresAt: now.Add(23 * time.Hour), StatusChangedAt: now, UpdatedAt: now, Revision: 1,
	}
	sec := token.Secret{Hash: h.Sum(secret), PepperVersion: h.Version(), TokenID: id, CreatedAt: now}
	if err := st.CreateToken(ctx, rec, sec); err != nil {
		return "", err
	}
	return secret, nil
}

// moduleRoot is the directory of the go.mod of the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the phigate module: run the bench from its checkout")
	}
	return filepath.Dir(gomod), nil
}

// buildPhigate builds ./cmd/phigate into dir and returns the binary's path.
func buildPhigate(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "phigate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/phigate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/phigate: %w\n%s", err, out)
	}
	return bin, nil
}

// newAdminToken asks `phigate init --new-admin-token` for a bootstrap admin
// token. Its output holds the token on a line of its own; nothing of it is
// printed.
func newAdminToken(ctx context.Context, bin, dir string) (string, error) {
	spec, _, _, err := vault.DevKey(dir, nil) // the dev master key of server --dev
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, "init", "--data", dir, "--new-admin-token", "--master-key", spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("phigate init --new-admin-token: %w\n%s", err, tail(stderr.Bytes(), 4096))
	}
	defer clear(stdout.Bytes())
	for l := range strings.Lines(stdout.String()) {
		if f := strings.TrimSpace(l); token.LooksLikeToken(f) && token.Check(f) == nil {
			return f, nil
		}
	}
	return "", errors.New("phigate init --new-admin-token printed no token")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// child is `phigate server --dev` running as a child process.
type child struct {
	cmd        *exec.Cmd
	addr       string
	certFile   string
	certPEM    []byte
	readyAfter time.Duration
	stderr     *limitedBuffer
	waited     chan error
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// startChild execs the server on dir with the admin API on a free loopback
// port and waits for its first successful GET /readyz.
func startChild(ctx context.Context, bin, dir string) (*child, error) {
	cmd := exec.Command(bin, "server", "--dev", "--data", dir, "--admin-listen", "127.0.0.1:0")
	c := &child{cmd: cmd, stderr: &limitedBuffer{max: 64 << 10}, waited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.waited <- cmd.Wait() }()

	// The server prints its address, then its pin (the certificate is
	// generated before either).
	type announce struct{ addr, pin string }
	annc := make(chan announce, 1)
	go func() {
		var a announce
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "admin API:"); ok {
				a.addr = strings.TrimPrefix(strings.TrimSpace(v), "https://")
			}
			if v, ok := strings.CutPrefix(line, "SPKI pin:"); ok && a.addr != "" && a.pin == "" {
				a.pin = strings.TrimSpace(v)
				annc <- a
			}
		}
		io.Copy(io.Discard, stdout)
	}()

	fail := func(err error) (*child, error) {
		c.stop()
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, c.stderr.String())
	}
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	var a announce
	select {
	case a = <-annc:
	case err := <-c.waited:
		c.waited <- err
		return fail(fmt.Errorf("phigate server exited before listening: %v", err))
	case <-timeout.C:
		return fail(errors.New("phigate server printed no admin address and pin within 60s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	c.addr = a.addr
	c.certFile = filepath.Join(dir, "tls", tlsutil.SelfSignedCertName)
	if c.certPEM, err = os.ReadFile(c.certFile); err != nil {
		return fail(err)
	}
	// The bench trusts the certificate file; it must be the one the server
	// announced.
	if pin, err := tlsutil.PinFromFile(c.certFile); err != nil || pin != a.pin {
		return fail(fmt.Errorf("the certificate in %s does not match the pin the server printed (%v)", c.certFile, err))
	}
	tc, err := tlsClientConfig(c.certPEM)
	if err != nil {
		return fail(err)
	}
	if err := checkTarget(&Target{Name: "readyz", URL: "https://" + c.addr + "/readyz"}); err != nil {
		return fail(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	for {
		resp, err := hc.Get("https://" + c.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.readyAfter = time.Since(start)
				return c, nil
			}
		}
		select {
		case err := <-c.waited:
			c.waited <- err
			return fail(fmt.Errorf("phigate server exited before it was ready: %v", err))
		case <-timeout.C:
			return fail(errors.New("phigate server not ready within 60s"))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop asks the server to shut down (SIGTERM) and kills it if it has not
// exited after 30s.
func (c *child) stop() {
	select {
	case err := <-c.waited:
		c.waited <- err
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.waited:
		c.waited <- err
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		c.waited <- <-c.waited
	}
}

// limitedBuffer keeps the last max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// procStatus reads one "kB" field (VmRSS, VmHWM) of /proc/PID/status, in
// bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// rssSampler samples a process's VmRSS periodically and keeps the largest.
type rssSampler struct {
	done chan struct{}
	max  chan int64
	once sync.Once
	peak int64
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), max: make(chan int64, 1)}
	go func() {
		var peak int64
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil {
				peak = max(peak, v)
			}
			select {
			case <-s.done:
				s.max <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the largest RSS seen. It may be
// called more than once.
func (s *rssSampler) stop() int64 {
	s.once.Do(func() {
		close(s.done)
		s.peak = <-s.max
	})
	return s.peak
}
