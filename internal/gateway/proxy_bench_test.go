package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

// discardRecorder records nothing: it isolates the gateway's own cost
// from the durable store's.
type discardRecorder struct{}

func (discardRecorder) Record(context.Context, *Event) error { return nil }
func (discardRecorder) RecordAsync(*Event)                   {}

// BenchmarkProxy measures whole requests through the gateway over TLS to a
// real HTTPS upstream, from 16 keep-alive clients: framing guard,
// decision, grant and completion events (discarded), identity assertion
// (EdDSA or HS256), header rewriting and the upstream exchange. Clients
// and upstream run in the same process, so ns/op is the CPU of all three
// over GOMAXPROCS; cpu-µs/op (the process's CPU time per request, steadier
// than the wall clock on a shared machine) compares the sub-benchmarks,
// and a CPU profile's internal/gateway frames are the gateway's own share.
//
// The "bare" sub-benchmark is the reference: httputil.ReverseProxy alone,
// with the gateway's TLS configuration and copy-buffer pool, in front of
// the same upstream.
func BenchmarkProxy(b *testing.B) {
	for _, alg := range []string{"bare", config.IdentityEdDSA, config.IdentityHS256} {
		b.Run(alg, func(b *testing.B) {
			fx := newFixture(b, fixtureOpts{recorder: discardRecorder{}, mutate: func(c *config.Gateway) {
				if alg == config.IdentityHS256 {
					c.Identity = config.Identity{Alg: alg, Key: "env:TEST_IDENTITY_KEY"}
				}
			}})
			s, _ := fx.token(b, authority.Spec{Scopes: []string{"billing:read"}})
			tr := &http.Transport{TLSClientConfig: fx.tlsCfg, MaxIdleConnsPerHost: 256, DisableCompression: true}
			b.Cleanup(tr.CloseIdleConnections)
			url := "https://" + fx.addr + "/billing/invoices/42"
			if alg == "bare" {
				url = "https://" + startBareProxy(b, fx) + "/invoices/42"
			}
			auth := "Bearer " + s
			b.ReportAllocs()
			b.SetParallelism(8)
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("Authorization", auth)
					resp, err := tr.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time (user and system) this process used so far: on
// a shared machine a steadier measure than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startBareProxy serves httputil.ReverseProxy to fx's billing upstream
// with the gateway's server TLS configuration, and returns its address.
func startBareProxy(b *testing.B, fx *fixture) string {
	target, _ := url.Parse(fx.api.srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(fx.api.srv.Certificate())
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
			MaxIdleConnsPerHost: 512, DisableCompression: true,
		},
		BufferPool: &bufferPool{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp, TLSConfig: fx.serverTLS.Clone()}
	srv.TLSConfig.NextProtos = []string{"http/1.1"}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
