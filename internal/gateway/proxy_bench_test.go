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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/metrics"
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
	// EdDSA+metrics: EdDSA with the metrics observing every request
	for _, alg := range []string{"bare", config.IdentityEdDSA, config.IdentityEdDSA + "+metrics", config.IdentityHS256} {
		b.Run(alg, func(b *testing.B) {
			fx := newFixture(b, fixtureOpts{recorder: discardRecorder{}, mutate: func(c *config.Gateway) {
				if alg == config.IdentityHS256 {
					c.Identity = config.Identity{Alg: alg, Key: "env:TEST_IDENTITY_KEY"}
				}
			}, options: func(_ *fixture, o *Options) {
				if strings.HasSuffix(alg, "+metrics") {
					o.Observer = metrics.New(metrics.Options{Reasons: reasons()})
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

// BenchmarkFHIRAnswer measures whole searches through the gateway whose
// answer is a 20-entry searchset (about 20 KB) with the upstream's URLs in
// every link and fullUrl: "unrewritten" is the same answer under a media
// type the gateway passes as it is (the reference), "rewritten" adds the
// streaming link rewriter and the continuation handle of its next link,
// "checked" a patient token's _include, for which every entry is also
// checked against the compartment (the answer read whole, filtered, then
// rewritten). Compare cpu-µs/op.
func BenchmarkFHIRAnswer(b *testing.B) {
	for _, mode := range []string{"unrewritten", "rewritten", "checked"} {
		b.Run(mode, func(b *testing.B) {
			fx := newFixture(b, fixtureOpts{recorder: discardRecorder{}})
			base := fx.fhir.srv.URL + "/fhir/R4"
			body := searchset20(base)
			ct := "application/fhir+json"
			if mode == "unrewritten" {
				ct = "application/x-fhir-bench"
			}
			fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.Write(body)
			})
			spec := authority.Spec{Scopes: []string{"user/Observation.rs", "user/Patient.r"}}
			path := "/fhir/Observation?patient=p1&_count=20"
			if mode == "checked" {
				spec = authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r"}}
				path += "&_include=Observation:subject"
			}
			s, _ := fx.token(b, spec)
			tr := &http.Transport{TLSClientConfig: fx.tlsCfg, MaxIdleConnsPerHost: 256, DisableCompression: true}
			b.Cleanup(tr.CloseIdleConnections)
			url := "https://" + fx.addr + path
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
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || n < 10000 {
						b.Errorf("status %d, %d bytes", resp.StatusCode, n)
						return
					}
				}
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// searchset20 is a searchset of 20 Observations of p1 on base, each an
// included entry, with self and next links.
func searchset20(base string) []byte {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Bundle","type":"searchset","total":100,"link":[{"relation":"self","url":"` + base + `/Observation?patient=p1&_count=20"},{"relation":"next","url":"` + base + `?_getpages=7f3a9c2e-bench&_getpagesoffset=20&_count=20&_bundletype=searchset"}],"entry":[`)
	for i := range 20 {
		if i > 0 {
			sb.WriteByte(',')
		}
		id := "o" + strconv.Itoa(i)
		sb.WriteString(`{"fullUrl":"` + base + `/Observation/` + id + `","resource":{"resourceType":"Observation","id":"` + id + `","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-01T00:00:00Z","performer":[{"reference":"Practitioner/d1"}],"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"note":[{"text":"` + strings.Repeat("synthetic note ", 30) + `"}]},"search":{"mode":"include"}}`)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// BenchmarkAnswerWork is the gateway's own work on the 20-entry searchset
// of BenchmarkFHIRAnswer, without the network: "rewrite" the link
// rewriter over the whole answer (a continuation handle sealed for its
// next link), "check" the compartment check of every (included) entry,
// "check+rewrite" both, as a patient token's _include costs.
func BenchmarkAnswerWork(b *testing.B) {
	g := &Gateway{now: time.Now}
	ls, err := newLocalSealer()
	if err != nil {
		b.Fatal(err)
	}
	g.conts = ls
	body := searchset20("https://upstream.internal:8443/fhir/R4")
	target, _ := url.Parse("https://upstream.internal:8443/fhir/R4")
	up := &upstream{name: "ehr", prefix: "/fhir/", fhir: true, target: target, basePath: "/fhir/R4", contTTL: time.Minute}
	x := &exchange{up: up, host: "gw.example", tokenID: "tok_x", pages: true, searchPath: "/Observation", searchQuery: "patient=p1", ctx: context.Background()}
	all := func(string) bool { return true }
	dst := make([]byte, 0, 2*len(body))
	for _, mode := range []string{"rewrite", "check", "check+rewrite"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				in := body
				if mode != "rewrite" {
					out, _, ok := checkBody(checkIncluded, "Observation", "", "p1", body, all)
					if !ok {
						b.Fatal("refused")
					}
					in = out
				}
				if mode != "check" {
					if _, err := rewriteWhole(dst[:0], in, g.mapLink(x)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
