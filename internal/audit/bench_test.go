package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend64 measures durable appends with 64 concurrent writers,
// plain and with the vault sealing the PHI fields (a patient per 5
// requests, so the blind index grows as it would).
func BenchmarkAppend64(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
			opts := Options{}
			if sealed {
				opts.Sealer = VaultSealer(testVault(b))
			}
			l, _ := newTestLog(b, opts)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			appendParallel(b, l, b.N, patientGrant)
			el := time.Since(start)
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
			b.ReportMetric(float64(st.Entries)/float64(max(st.Commits, 1)), "entries/commit")
		})
	}
}

// patientGrant is grant(i) for one of 2,000 patients.
func patientGrant(i int) *Entry {
	e := grant(i)
	e.Patient = fmt.Sprintf("pat-%09d", i/5%2000)
	e.Path = fmt.Sprintf("/fhir/Observation?patient=%s&category=laboratory&_count=50&page=%d", e.Patient, i%10)
	return e
}

// appendParallel appends mk(0..n-1) through Append from 64 goroutines.
func appendParallel(tb testing.TB, l *Log, n int, mk func(i int) *Entry) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := l.Append(ctx, mk(int(i))); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// fsyncTimes measures n fsyncs, each after an append of size bytes, in dir.
func fsyncTimes(tb testing.TB, dir string, n, size int) []time.Duration {
	f, err := os.OpenFile(filepath.Join(dir, "fsync.probe"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, size)
	var ds []time.Duration
	for i := 0; i < n; i++ {
		f.Write(buf)
		t := time.Now()
		if err := f.Sync(); err != nil {
			tb.Fatal(err)
		}
		ds = append(ds, time.Since(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// BenchmarkAppendLatency2000 appends at 2,000 entries/s (open loop, each
// append in its own goroutine, as the gateway's requests would) for two
// seconds per iteration and reports the latency percentiles, next to the
// fsync percentiles of the same disk measured in the same run: of a 4 KiB
// append (one page), and of a 12 KiB one (what a commit of one entry
// writes to the WAL: the table's page and the two indexes' pages).
func BenchmarkAppendLatency2000(b *testing.B) {
	l, dir := newTestLog(b, Options{})
	ctx := context.Background()
	const rate, dur = 2000, 2 * time.Second
	var lat []time.Duration
	var mu sync.Mutex
	fs := fsyncTimes(b, dir, 100, 4096)
	fs12 := fsyncTimes(b, dir, 100, 3*4120)
	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		var wg sync.WaitGroup
		start := time.Now()
		n := int(rate * dur / time.Second)
		for i := 0; i < n; i++ {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				t := time.Now()
				if _, err := l.Append(ctx, grant(i)); err != nil {
					b.Error(err)
				}
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}(i)
		}
		wg.Wait()
	}
	b.StopTimer()
	fs = append(fs, fsyncTimes(b, dir, 100, 4096)...)
	fs12 = append(fs12, fsyncTimes(b, dir, 100, 3*4120)...)
	sort.Slice(fs, func(i, j int) bool { return fs[i] < fs[j] })
	sort.Slice(fs12, func(i, j int) bool { return fs12[i] < fs12[j] })
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(pct(lat, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(lat, 0.90).Microseconds()), "p90-µs")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(pct(fs, 0.50).Microseconds()), "fsync-p50-µs")
	b.ReportMetric(float64(pct(fs, 0.99).Microseconds()), "fsync-p99-µs")
	b.ReportMetric(float64(pct(fs12, 0.50).Microseconds()), "fsync12k-p50-µs")
	b.ReportMetric(float64(pct(fs12, 0.99).Microseconds()), "fsync12k-p99-µs")
	b.ReportMetric(float64(pct(lat, 0.99))/float64(pct(fs, 0.99)), "p99/fsync-p99")
	b.ReportMetric(float64(pct(lat, 0.99))/float64(pct(fs12, 0.99)), "p99/fsync12k-p99")
}

// BenchmarkStoragePerRequest appends a grant and a completion per gateway
// request (200 tokens, 2,000 patients, varied paths) and reports the bytes
// of audit.db per request, tree nodes, indexes and checkpoints included:
// plain (written straight by the writer), and through Append with the
// vault sealing the PHI fields and keeping their blind index.
func BenchmarkStoragePerRequest(b *testing.B) {
	const requests = 20000
	mk := func(i int) *Entry {
		r := i / 2
		e := patientGrant(r)
		if i%2 == 1 {
			e.Action, e.Status, e.Bytes, e.Duration = ActionAccessCompleted, 200, 48213, 37*time.Millisecond+412*time.Microsecond
		}
		e.Actor.TokenID = fmt.Sprintf("tok_%022d", r%200)
		e.Actor.Subject = fmt.Sprintf("svc:app-%03d", r%200)
		return e
	}
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
			b.ReportAllocs()
			for it := 0; it < b.N; it++ {
				b.StopTimer()
				opts := Options{}
				if sealed {
					opts.Sealer = VaultSealer(testVault(b))
				}
				l, dir := newTestLog(b, opts)
				b.StartTimer()
				if sealed {
					appendParallel(b, l, 2*requests, mk)
				} else {
					generate(b, l, 2*requests, mk)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				fi, err := os.Stat(filepath.Join(dir, DBFile))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size())/requests, "B/request")
				b.StartTimer()
			}
		})
	}
}

// benchLogDir returns a data directory holding a closed log of n realistic
// entries: PHIGATE_AUDIT_BENCH_DIR/<n> when set (kept between runs, so a
// 10M-entry log is generated once), else a temporary one.
func benchLogDir(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	if base := os.Getenv("PHIGATE_AUDIT_BENCH_DIR"); base != "" {
		dir = filepath.Join(base, strconv.Itoa(n))
		if _, err := os.Stat(filepath.Join(dir, DBFile)); err == nil {
			return dir
		}
		os.MkdirAll(dir, 0o700)
	}
	if _, _, err := InitKeys(dir, "bench", nil); err != nil {
		b.Fatal(err)
	}
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for done := 0; done < n; done += 1_000_000 {
		generate(b, l, min(n-done, 1_000_000), func(i int) *Entry {
			r := (done + i) / 2
			e := grant(r)
			if i%2 == 1 {
				e = completion(r)
			}
			e.Actor.TokenID = fmt.Sprintf("tok_%022d", r%5000)
			e.Actor.Subject = fmt.Sprintf("svc:app-%04d", r%5000)
			return e
		})
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d entries in %v", n, time.Since(start).Round(time.Second))
	return dir
}

func benchSize(def int) int {
	if s := os.Getenv("PHIGATE_AUDIT_BENCH_SIZE"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return def
}

// BenchmarkVerify reports how many entries a second Verify checks.
func BenchmarkVerify(b *testing.B) {
	n := benchSize(200_000)
	dir := benchLogDir(b, n)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := Verify(context.Background(), dir, VerifyOptions{})
		if err != nil || !res.OK() || res.Size != uint64(n) {
			b.Fatal(err, res.Problem)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkProof serves proof bundles (entry, inclusion proof, checkpoint)
// for random entries of a log of PHIGATE_AUDIT_BENCH_SIZE entries (default
// 1M).
func BenchmarkProof(b *testing.B) {
	n := benchSize(1_000_000)
	dir := benchLogDir(b, n)
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	rnd := uint64(12345)
	next := func() uint64 { rnd ^= rnd << 13; rnd ^= rnd >> 7; rnd ^= rnd << 17; return rnd % uint64(n) }
	for i := 0; i < 200; i++ { // warm up
		l.Proof(ctx, next())
	}
	v, _ := NewVerifier(l.PublicKey())
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		p, err := l.Proof(ctx, next())
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			if _, _, err := VerifyBundle(p, v); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(pct(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(n), "entries")
}

// BenchmarkConsistency serves consistency proofs between random sizes
// (from ≤ to) of a log of PHIGATE_AUDIT_BENCH_SIZE entries (default 1M;
// the target is 10M, built like BenchmarkProof's log and cached
// with PHIGATE_AUDIT_BENCH_DIR).
func BenchmarkConsistency(b *testing.B) {
	n := benchSize(1_000_000)
	dir := benchLogDir(b, n)
	l, err := Open(context.Background(), dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	size := l.latest.Load().Size
	rnd := uint64(54321)
	next := func() uint64 { rnd ^= rnd << 13; rnd ^= rnd >> 7; rnd ^= rnd << 17; return rnd % (size + 1) }
	pair := func() (uint64, uint64) {
		a, c := next(), next()
		return min(a, c), max(a, c)
	}
	for i := 0; i < 200; i++ { // warm up
		f, t := pair()
		l.Consistency(ctx, f, t)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from, to := pair()
		t := time.Now()
		p, err := l.Consistency(ctx, from, to)
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Proof) > 2*64 {
			b.Fatal("proof too long")
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(pct(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(size), "entries")
}
