package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"runtime/pprof"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

// Targets of the gateway scenario (issue 3).
const (
	// gatewayGoal: the gateway's requests per second over the bare
	// reverse proxy's.
	gatewayGoal = 0.75
	// gatewayLatencySlack: the p50 the gateway may add beyond one fsync.
	gatewayLatencySlack = 500 * time.Microsecond
	// gatewayBody is the size of the upstream's answer.
	gatewayBody = 512
)

// runGateway measures the enforcing gateway against a bare
// httputil.ReverseProxy, both TLS-terminating on loopback in front of the
// same HTTPS upstream, driven by the same clients. The gateway runs as in
// production (server.Run): token authentication and policy, a durable
// grant record (group-committed fsync) before forwarding, a signed
// identity, the upstream credential, and the completion record. The fsync
// of this machine is measured in the same run, on the same file system.
func runGateway(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	dir, err := os.MkdirTemp("", "phigate-bench-gateway-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// the upstream: an HTTPS server with a certificate of its own
	upCert, upKey, err := tlsutil.GenerateSelfSigned(filepath.Join(dir, "upstream-tls"), nil, time.Now())
	if err != nil {
		return nil, err
	}
	upPEM, err := os.ReadFile(upCert)
	if err != nil {
		return nil, err
	}
	up, err := startBaseline(upCert, upKey, "/api/items/", gatewayBody, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.Close()
	upURL, _ := url.Parse(up.URL)
	upBase := "https://" + upURL.Host + "/api"

	// phigate with its gateway in front of the upstream
	p, gwAddr, err := startGatewayInProcess(ctx, filepath.Join(dir, "data"), upBase, upCert, log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	admin, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	tok, err := admin.CreateToken(ctx, client.CreateTokenRequest{Subject: "bench-gateway", Kind: "service", Scopes: []string{"bench:read"}, TTL: "30m"})
	if err != nil {
		return nil, err
	}

	// the bare reverse proxy, with phigate's TLS configuration and
	// certificate, and the same upstream transport settings; it passes
	// /api/items/1 through as is, the gateway maps its prefix /api/ to
	// the upstream's /api: both send the upstream GET /api/items/1
	bare, err := startBareProxy(p.CertFile, p.KeyFile, "https://"+upURL.Host, upPEM)
	if err != nil {
		return nil, fmt.Errorf("bare proxy: %w", err)
	}
	defer bare.Close()

	tc, err := tlsClientConfig(p.CertPEM)
	if err != nil {
		return nil, err
	}
	l, err := NewLoader(o.Concurrency, tc)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	want, _ := jsonBodyOfSize(gatewayBody)
	check := func(body []byte) error {
		if !bytes.Equal(body, want) {
			return errors.New("not the upstream's answer")
		}
		return nil
	}
	base := &Target{Name: "baseline", Method: http.MethodGet, URL: "https://" + bare.addr + "/api/items/1", Expect: 200, Check: check}
	phi := &Target{Name: "phigate", Method: http.MethodGet, URL: "https://" + gwAddr + "/api/items/1", Expect: 200, Check: check,
		Header: http.Header{"Authorization": {"Bearer " + tok.Secret}}}
	if _, err := l.Probe(ctx, phi); err != nil {
		return nil, err
	}
	if _, err := l.Probe(ctx, base); err != nil {
		return nil, err
	}

	fsyncBefore, err := measureFsync(filepath.Join(dir, "data"), 100)
	if err != nil {
		return nil, err
	}
	if os.Getenv("XX") != "" {
	for _, tt := range []*Target{base, phi, base, phi, base, phi} {
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(0, &ru0)
		r, _ := l.Run(ctx, tt, 0, 3*time.Second)
		syscall.Getrusage(0, &ru1)
		cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano())
		fmt.Fprintf(os.Stderr, "XX %s rps=%.0f cpu/req=%v util=%.2f p50=%v\n", tt.Name, r.RPS, cpu/time.Duration(r.Requests), cpu.Seconds()/3, r.P50)
	}
	if os.Getenv("XX") == "prof" {
		f, _ := os.Create("/tmp/phi.prof")
		pprof.StartCPUProfile(f)
		l.Run(ctx, phi, 0, 5*time.Second)
		pprof.StopCPUProfile()
		f.Close()
		f, _ = os.Create("/tmp/base.prof")
		pprof.StartCPUProfile(f)
		l.Run(ctx, base, 0, 5*time.Second)
		pprof.StopCPUProfile()
		f.Close()
	}
	}
	res, err := l.RunRounds(ctx, []*Target{base, phi}, o.Warmup, o.Duration, o.Rounds)
	if err != nil {
		return nil, err
	}
	// the latency the gateway adds, measured without queueing: one client,
	// one request at a time (at 64 clients a p50 is mostly the wait for
	// the others, i.e. the throughput again)
	l1, err := NewLoader(1, tc)
	if err != nil {
		return nil, err
	}
	defer l1.Close()
	lat, err := l1.RunRounds(ctx, []*Target{base, phi}, o.Warmup/2, max(o.Duration/2, time.Duration(o.Rounds)*10*time.Millisecond), o.Rounds)
	if err != nil {
		return nil, err
	}
	fsyncAfter, err := measureFsync(filepath.Join(dir, "data"), 100)
	if err != nil {
		return nil, err
	}
	fsync := max(fsyncBefore, fsyncAfter)

	b, g := res[0], res[1]
	lb, lg := lat[0], lat[1]
	lb.Name, lg.Name = "baseline1", "phigate1"
	rep := &Report{
		Scenario: "gateway", Concurrency: o.Concurrency, Results: res, Target: gatewayGoal,
		Config: map[string]any{
			"duration": o.Duration.String(), "warmup": o.Warmup.String(), "rounds": o.Rounds,
			"response_bytes": gatewayBody, "fsync_p50_ns": int64(fsync),
		},
	}
	if b.RPS > 0 {
		rep.Ratio = g.RPS / b.RPS
	}
	added := lg.P50 - lb.P50
	budget := fsync + gatewayLatencySlack
	okRatio := rep.Ratio >= gatewayGoal
	okLatency := added <= budget
	rep.Pass = okRatio && okLatency && rep.errors() == 0
	rep.Config["added_p50_ns"] = int64(added)
	rep.Config["added_p50_at_c_ns"] = int64(g.P50 - b.P50)
	rep.Config["latency_budget_ns"] = int64(budget)
	rep.Results = append(rep.Results, lb, lg)
	rep.Lines = []string{
		resultLine("gateway", b),
		resultLine("gateway", g) + fmt.Sprintf("  ratio=%.2f (target ≥ %.2f) %s", rep.Ratio, gatewayGoal, passFail(okRatio)),
		resultLine("gateway", lb) + "  (1 client)",
		resultLine("gateway", lg) + "  (1 client)",
		fmt.Sprintf("%-11s latency   added p50=%s (1 client; %s at c=%d) fsync p50=%s (before %s, after %s) budget=fsync+%s=%s %s",
			"gateway", ms(added), ms(g.P50-b.P50), o.Concurrency, ms(fsync), ms(fsyncBefore), ms(fsyncAfter), ms(gatewayLatencySlack), ms(budget), passFail(okLatency)),
		fmt.Sprintf("%-11s setup     c=%d duration=%v warmup=%v rounds=%d (interleaved A/B) GET response=%dB TLS1.3 client→proxy, TLS upstream, HTTP/1.1 keep-alive; "+
			"baseline = httputil.ReverseProxy; phigate = server.Run gateway with durable group-commit audit file",
			"gateway", o.Concurrency, o.Duration, o.Warmup, o.Rounds, gatewayBody),
	}
	return rep, nil
}

// consoleAddrs reads the addresses server.Run prints.
type consoleAddrs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	gateway chan string
	once    sync.Once
}

var reConsoleGateway = regexp.MustCompile(`(?m)^gateway:\s+https://(\S+)`)

func (c *consoleAddrs) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(b)
	if m := reConsoleGateway.FindSubmatch(c.buf.Bytes()); m != nil {
		c.once.Do(func() { c.gateway <- string(m[1]) })
	}
	return len(b), nil
}

// startGatewayInProcess starts phigate (server.Run, dev mode) with one http
// upstream, upBase, under the prefix /api/ (route GET /items/* needs
// bench:read), and returns the gateway's address.
func startGatewayInProcess(ctx context.Context, dataDir, upBase, upCA string, log *slog.Logger) (*inproc, string, error) {
	cfg := config.Dev(dataDir)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Upstreams = []config.Upstream{{
		Name: "bench", URL: upBase, Prefix: "/api/", Kind: config.KindHTTP,
		TLS:    config.UpstreamTLS{CAFile: upCA},
		Routes: []config.Route{{Match: "GET /items/*", Scope: "bench:read"}},
	}}
	admin, _, err := server.Init(ctx, server.InitOptions{Config: cfg, Dev: true, Logger: log})
	if err != nil {
		return nil, "", fmt.Errorf("phigate init: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &inproc{admin: admin, cancel: cancel, done: make(chan error, 1)}
	console := &consoleAddrs{gateway: make(chan string, 1)}
	ready := make(chan string, 1)
	go func() {
		p.done <- server.Run(runCtx, server.Options{
			Config: cfg, Dev: true, Console: console, Logger: log,
			Ready: func(addr string) { ready <- addr },
		})
	}()
	var gw string
	for p.Addr == "" || gw == "" {
		select {
		case p.Addr = <-ready:
		case gw = <-console.gateway:
		case err := <-p.done:
			cancel()
			return nil, "", fmt.Errorf("phigate server: %w", errors.Join(err, errors.New("stopped before it was ready")))
		case <-ctx.Done():
			p.Close()
			return nil, "", ctx.Err()
		case <-time.After(30 * time.Second):
			p.Close()
			return nil, "", errors.New("phigate server: not ready after 30s")
		}
	}
	p.CertFile = filepath.Join(dataDir, "tls", tlsutil.SelfSignedCertName)
	p.KeyFile = filepath.Join(dataDir, "tls", tlsutil.SelfSignedKeyName)
	if p.CertPEM, err = os.ReadFile(p.CertFile); err != nil {
		p.Close()
		return nil, "", err
	}
	return p, gw, nil
}

// bareProxy is the reference: httputil.ReverseProxy over TLS, nothing else.
type bareProxy struct {
	addr string
	srv  *http.Server
	done chan error
}

func startBareProxy(certFile, keyFile, upBase string, upPEM []byte) (*bareProxy, error) {
	src, err := tlsutil.NewReloader(certFile, keyFile, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(upBase)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(upPEM)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		TLSHandshakeTimeout: 5 * time.Second, IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 512,
		DisableCompression: true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
	lim := config.Default().Limits
	srv := &http.Server{
		Handler:           rp,
		TLSConfig:         tlsutil.ServerConfig(src),
		ReadHeaderTimeout: lim.ReadHeaderTimeout.Duration(),
		ReadTimeout:       lim.ReadTimeout.Duration(),
		WriteTimeout:      lim.WriteTimeout.Duration(),
		IdleTimeout:       lim.IdleTimeout.Duration(),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &bareProxy{addr: ln.Addr().String(), srv: srv, done: make(chan error, 1)}
	go func() { b.done <- srv.ServeTLS(ln, "", "") }()
	return b, nil
}

func (b *bareProxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.srv.Shutdown(ctx)
	if serr := <-b.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// measureFsync appends a line to a file in dir and fsyncs it n times, and
// returns the median duration of write+fsync: the cost one durable record
// cannot avoid on this machine.
func measureFsync(dir string, n int) (time.Duration, error) {
	f, err := os.OpenFile(filepath.Join(dir, "fsync-probe.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	line := []byte(`{"kind":"probe","pad":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}` + "\n")
	ds := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := f.Write(append(line[:0:0], strconv.Itoa(i)...)); err != nil {
			return 0, err
		}
		if _, err := f.Write(line); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], nil
}
