package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
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
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/gateway"
	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/token"
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
// grant in the audit log (group commit) before forwarding, a signed
// identity (-identity: HS256 under a key shared with the upstream, or
// EdDSA), and the completion record. A second gateway, identical but
// recording to the FileRecorder (an fsynced JSONL file, group commit),
// and a third that records nothing (a diagnostic, not a configuration
// phigate allows) split the gap into the gateway's own cost and the
// recording's. The fsync of this machine is measured in the same run, on
// the same file system.
func runGateway(ctx context.Context, o options, log *slog.Logger, progress io.Writer) (*Report, error) {
	dir, err := os.MkdirTemp("", "phigate-bench-gateway-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// the identity every gateway asserts; an HS256 key is generated for
	// this run and shared with the upstream through a file (mode 0600)
	ident := config.Identity{Alg: o.Identity}
	if o.Identity == config.IdentityHS256 {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		ident.Key = "file:" + filepath.Join(dir, "identity.key")
		if err := os.WriteFile(strings.TrimPrefix(ident.Key, "file:"), []byte(hex.EncodeToString(key)), 0o600); err != nil {
			return nil, err
		}
	}

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
	p, gwAddr, err := startGatewayInProcess(ctx, filepath.Join(dir, "data"), upBase, upCert, ident, log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	admin, err := p.adminClient()
	if err != nil {
		return nil, err
	}
	// a load generator is a rate spike by design: its token's own policy
	// keeps the monitor's detectors running (their cost is measured) but
	// lifts its rate floor out of reach and never suspends it
	tok, err := admin.CreateToken(ctx, client.CreateTokenRequest{Subject: "bench-gateway", Kind: "service", Scopes: []string{"bench:read"}, TTL: "30m",
		Metadata: map[string]string{"monitor.rate_floor": "1000000", "monitor.suspend": "false"}})
	if err != nil {
		return nil, err
	}

	// the bare reverse proxy, with phigate's TLS configuration and
	// certificate, and the same upstream transport settings; it passes
	// /api/items/1 through as is, the gateway maps its prefix /api/ to
	// the upstream's /api: both send the upstream GET /api/items/1
	bare, err := startBareProxy(p.CertFile, p.KeyFile, "https://"+upURL.Host, upPEM, o.BarePool)
	if err != nil {
		return nil, fmt.Errorf("bare proxy: %w", err)
	}
	defer bare.Close()

	// the same gateway with the stand-in recorder (an fsynced JSONL file)
	// instead of the audit log, and without any recording: what the
	// gateway itself costs
	fg, err := startLocalGateways(ctx, filepath.Join(dir, "file-gateway"), p.CertFile, p.KeyFile, upBase, upCert, ident)
	if err != nil {
		return nil, fmt.Errorf("file-recorder gateway: %w", err)
	}
	defer fg.Close()

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
	phf := &Target{Name: "phi-file", Method: http.MethodGet, URL: "https://" + fg.fileAddr + "/api/items/1", Expect: 200, Check: check,
		Header: http.Header{"Authorization": {"Bearer " + fg.secret}}}
	phn := &Target{Name: "phi-none", Method: http.MethodGet, URL: "https://" + fg.noneAddr + "/api/items/1", Expect: 200, Check: check,
		Header: http.Header{"Authorization": {"Bearer " + fg.secret}}}
	for _, t := range []*Target{phi, phf, phn} {
		if _, err := l.Probe(ctx, t); err != nil {
			return nil, err
		}
	}
	if _, err := l.Probe(ctx, base); err != nil {
		return nil, err
	}

	fsyncBefore, err := measureFsync(filepath.Join(dir, "data"), 100)
	if err != nil {
		return nil, err
	}
	res, err := l.RunRounds(ctx, []*Target{base, phi, phf, phn}, o.Warmup, o.Duration, o.Rounds)
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
	lat, err := l1.RunRounds(ctx, []*Target{base, phi, phf, phn}, o.Warmup/2, max(o.Duration/2, time.Duration(o.Rounds)*10*time.Millisecond), o.Rounds)
	if err != nil {
		return nil, err
	}
	fsyncAfter, err := measureFsync(filepath.Join(dir, "data"), 100)
	if err != nil {
		return nil, err
	}
	fsync := max(fsyncBefore, fsyncAfter)

	b, g, gf, gn := res[0], res[1], res[2], res[3]
	lb, lg, lgf, lgn := lat[0], lat[1], lat[2], lat[3]
	lb.Name, lg.Name, lgf.Name, lgn.Name = "baseline1", "phigate1", "phi-file1", "phi-none1"
	rep := &Report{
		Scenario: "gateway", Concurrency: o.Concurrency, Results: res, Target: gatewayGoal,
		Config: map[string]any{
			"duration": o.Duration.String(), "warmup": o.Warmup.String(), "rounds": o.Rounds,
			"response_bytes": gatewayBody, "fsync_p50_ns": int64(fsync), "identity": o.Identity, "bare_buffer_pool": o.BarePool,
		},
	}
	ratio := func(r *Result) float64 {
		if b.RPS > 0 {
			return r.RPS / b.RPS
		}
		return 0
	}
	rep.Ratio = ratio(g)
	added := lg.P50 - lb.P50
	addedFile := lgf.P50 - lb.P50
	addedNone := lgn.P50 - lb.P50
	ratioFile, ratioNone := ratio(gf), ratio(gn)
	budget := fsync + gatewayLatencySlack
	okRatio := rep.Ratio >= gatewayGoal
	okLatency := added <= budget
	rep.Pass = okRatio && okLatency && rep.errors() == 0
	rep.Config["added_p50_ns"] = int64(added)
	rep.Config["added_p50_at_c_ns"] = int64(g.P50 - b.P50)
	rep.Config["latency_budget_ns"] = int64(budget)
	rep.Config["file_recorder_ratio"] = ratioFile
	rep.Config["file_recorder_added_p50_ns"] = int64(addedFile)
	rep.Config["no_recorder_ratio"] = ratioNone
	rep.Config["no_recorder_added_p50_ns"] = int64(addedNone)
	rep.Results = append(rep.Results, lb, lg, lgf, lgn)
	rep.Lines = []string{
		resultLine("gateway", b),
		resultLine("gateway", g) + fmt.Sprintf("  ratio=%.2f%s (target ≥ %.2f) %s", rep.Ratio, roundSpread(g, b), gatewayGoal, passFail(okRatio)),
		resultLine("gateway", gf) + fmt.Sprintf("  ratio=%.2f%s (file recorder instead of the audit log)", ratioFile, roundSpread(gf, b)),
		resultLine("gateway", gn) + fmt.Sprintf("  ratio=%.2f%s (diagnostic: no recording at all)", ratioNone, roundSpread(gn, b)),
		resultLine("gateway", lb) + "  (1 client)",
		resultLine("gateway", lg) + "  (1 client)",
		resultLine("gateway", lgf) + "  (1 client)",
		resultLine("gateway", lgn) + "  (1 client)",
		fmt.Sprintf("%-11s gap       1-ratio=%.2f: the gateway without recording %.2f, recording in the audit log %.2f (with the file recorder instead: %.2f)",
			"gateway", 1-rep.Ratio, 1-ratioNone, ratioNone-rep.Ratio, ratioNone-ratioFile),
		fmt.Sprintf("%-11s latency   added p50=%s (1 client; %s at c=%d) fsync p50=%s (before %s, after %s) budget=fsync+%s=%s %s",
			"gateway", ms(added), ms(g.P50-b.P50), o.Concurrency, ms(fsync), ms(fsyncBefore), ms(fsyncAfter), ms(gatewayLatencySlack), ms(budget), passFail(okLatency)),
		fmt.Sprintf("%-11s latency   added p50=%s with the file recorder (budget %s) %s; %s without recording", "gateway", ms(addedFile), ms(budget), passFail(addedFile <= budget), ms(addedNone)),
		fmt.Sprintf("%-11s setup     c=%d duration=%v warmup=%v rounds=%d (interleaved A/B) GET response=%dB TLS1.3 client→proxy, TLS upstream, HTTP/1.1 keep-alive, identity %s; "+
			"baseline = httputil.ReverseProxy (%s); phigate = server.Run's gateway, durable audit log; phi-file = the gateway with the durable JSONL FileRecorder; "+
			"phi-none = the gateway recording nothing (diagnostic only)",
			"gateway", o.Concurrency, o.Duration, o.Warmup, o.Rounds, gatewayBody, o.Identity, barePoolNote(o.BarePool)),
	}
	return rep, nil
}

func barePoolNote(pool bool) string {
	if pool {
		return "with the gateway's copy-buffer pool"
	}
	return "httputil's default: a new 32 KiB copy buffer per request"
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

// benchUpstream is the configuration of the upstream upBase: under the
// prefix /api/, route GET /items/* needing bench:read.
func benchUpstream(upBase, upCA string, ident config.Identity) config.Upstream {
	return config.Upstream{
		Name: "bench", URL: upBase, Prefix: "/api/", Kind: config.KindHTTP,
		TLS:      config.UpstreamTLS{CAFile: upCA},
		Routes:   []config.Route{{Match: "GET /items/*", Scope: "bench:read"}},
		Identity: ident,
	}
}

// startGatewayInProcess starts phigate (server.Run, dev mode) with one http
// upstream, upBase (benchUpstream), and returns the gateway's address.
// mutate, when given, changes the configuration before the start.
func startGatewayInProcess(ctx context.Context, dataDir, upBase, upCA string, ident config.Identity, log *slog.Logger, mutate ...func(*config.Config)) (*inproc, string, error) {
	cfg := config.Dev(dataDir)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Upstreams = []config.Upstream{benchUpstream(upBase, upCA, ident)}
	for _, m := range mutate {
		m(cfg)
	}
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
type bareProxy = loopbackServer

// copyBufferPool recycles the 32 KiB copy buffers of a ReverseProxy, as
// the gateway does: without it httputil allocates and clears one per
// request.
type copyBufferPool struct{ p sync.Pool }

func (b *copyBufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[32 << 10]byte); ok {
		return a[:]
	}
	return new([32 << 10]byte)[:]
}

func (b *copyBufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf[:32<<10]))
	}
}

// startBareProxy starts the reference proxy; recycle gives it the gateway's
// copy-buffer recycling, so that the comparison is about what the gateway
// adds, not about how it copies bodies.
func startBareProxy(certFile, keyFile, upBase string, upPEM []byte, recycle bool) (*bareProxy, error) {
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
	if recycle {
		rp.BufferPool = &copyBufferPool{}
	}
	return serveLoopback(rp, certFile, keyFile)
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

// localGateways are two gateway.Gateways in this process sharing one
// authority (SQLite store): one records to the FileRecorder, the other
// records nothing.
type localGateways struct {
	fileAddr, noneAddr, secret string
	close                      func()
}

func (f *localGateways) Close() { f.close() }

// discardRecorder records nothing. It breaks the gateway's contract
// (nothing is durable); the bench uses it only to show what recording
// costs.
type discardRecorder struct{}

func (discardRecorder) Record(context.Context, *gateway.Event) error { return nil }
func (discardRecorder) RecordAsync(*gateway.Event)                   {}

func startLocalGateways(ctx context.Context, dir, certFile, keyFile, upBase, upCA string, ident config.Identity) (*localGateways, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "gw.db"), sqlite.Options{})
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	h, err := token.NewHasherKey(1, key)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := authority.New(st, h, authority.Config{})
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		a.Close(context.Background())
		st.Close()
	}
	fail := func(err error) (*localGateways, error) {
		closeAll()
		return nil, err
	}
	root, _, err := a.Bootstrap(ctx, "bench-root", time.Hour, 0)
	if err != nil {
		return fail(err)
	}
	d, err := a.Verify(ctx, root, authority.Request{})
	if err != nil || !d.Allowed() {
		return fail(fmt.Errorf("bootstrap token: %v %v", d.Reason, err))
	}
	secret, _, err := a.Create(ctx, authority.ActorOf(d), authority.Spec{Subject: "bench-gateway", Kind: token.KindService, Scopes: []string{"bench:read"}, TTL: 30 * time.Minute})
	if err != nil {
		return fail(err)
	}
	rec, err := gateway.NewFileRecorder(filepath.Join(dir, "gateway-audit.jsonl"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { rec.Close() })
	_, pk, _ := ed25519.GenerateKey(rand.Reader)
	signer := gateway.NewSigner(pk)
	src, err := tlsutil.NewReloader(certFile, keyFile, nil, time.Now)
	if err != nil {
		return fail(err)
	}
	gcfg := config.Default().Gateway
	gcfg.Upstreams = []config.Upstream{benchUpstream(upBase, upCA, ident)}
	start := func(r gateway.Recorder) (string, error) {
		gw, err := gateway.New(ctx, &gcfg, gateway.Options{Auth: a, Recorder: r, Signer: signer, TLS: tlsutil.ServerConfig(src)})
		if err != nil {
			return "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		served := make(chan error, 1)
		go func() { served <- gw.Serve(ln) }()
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			gw.Shutdown(sctx)
			<-served
		})
		return ln.Addr().String(), nil
	}
	lg := &localGateways{secret: secret, close: closeAll}
	if lg.fileAddr, err = start(rec); err != nil {
		return fail(err)
	}
	if lg.noneAddr, err = start(discardRecorder{}); err != nil {
		return fail(err)
	}
	return lg, nil
}
