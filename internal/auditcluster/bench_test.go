package auditcluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
)

// benchLog makes a closed log of n realistic entries (64 concurrent
// writers, so that it is built by group commits) and returns its node.
func benchLog(b *testing.B, name string, n int) *node {
	b.Helper()
	nd := newNode(b, name, nil)
	fill(b, nd.log, n)
	nd.close(b)
	return nd
}

func fill(b *testing.B, l *audit.Log, n int) {
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
				if _, err := l.Append(context.Background(), benchEntry(int(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func benchEntry(i int) *audit.Entry {
	return &audit.Entry{
		Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
		Actor:     audit.Actor{TokenID: fmt.Sprintf("tok_4f3kq9ZpLm2Xc8VbN1s%03d", i%500), Subject: "svc:lab-results-app", Kind: "service"},
		Source:    audit.Source{IP: "10.20.30.40", UserAgent: "lab-client/2.3.1 (+https://lab.example.org)"},
		RequestID: fmt.Sprintf("req_8c1e4b2a9f03%06d", i),
		Purpose:   "TREAT", Patient: fmt.Sprintf("pat-%09d", i/5%2000), Method: "GET", Upstream: "fhir",
		Path: fmt.Sprintf("/fhir/Observation?patient=pat-%09d&category=laboratory&_count=50&page=%d", i/5%2000, i%10),
	}
}

// BenchmarkMirror measures copying a log of 20,000 entries into an empty
// cluster database, per batch size.
func BenchmarkMirror(b *testing.B) {
	const n = 20000
	nd := benchLog(b, "bench", n)
	for _, batch := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			var el time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c, _ := testCluster(b, nil)
				m := nd.mirror(b, c, MirrorOptions{Batch: batch})
				b.StartTimer()
				start := time.Now()
				k, err := m.Sync(context.Background())
				el += time.Since(start)
				if err != nil || k != n {
					b.Fatalf("%d copied, %v", k, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/el.Seconds(), "entries/s")
		})
	}
}

// BenchmarkMirrorLag appends at a steady rate for two seconds while a
// Mirror runs (reading the open Log, as in the server, or a Reader of its
// directory, which sees entries only once the log's indexer wrote them), and measures each entry's lag from its Append returning to
// its row being visible in PostgreSQL (polled every 2 ms, so up to 2 ms of
// each figure is the poll's).
func BenchmarkMirrorLag(b *testing.B) {
	for _, tc := range []struct {
		rate     int
		interval time.Duration
		reader   bool
	}{{1000, 50 * time.Millisecond, true}, {1000, 50 * time.Millisecond, false}, {1000, 10 * time.Millisecond, false}, {5000, 10 * time.Millisecond, false}} {
		src := map[bool]string{true: "reader", false: "log"}[tc.reader]
		b.Run(fmt.Sprintf("src=%s,rate=%d/s,interval=%v", src, tc.rate, tc.interval), func(b *testing.B) {
			var lags []time.Duration
			for i := 0; i < b.N; i++ {
				lags = append(lags, lagRun(b, tc.rate, tc.interval, 2*time.Second, tc.reader)...)
			}
			slices.Sort(lags)
			q := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))]) / 1e6 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
		})
	}
}

func lagRun(b *testing.B, rate int, interval, dur time.Duration, reader bool) []time.Duration {
	c, pool := testCluster(b, nil)
	nd := newNode(b, "lag", nil)
	ctx, stop := context.WithCancel(context.Background())
	var m *Mirror
	if reader {
		m = nd.mirror(b, c, MirrorOptions{Interval: interval})
	} else {
		var err error
		if m, err = c.NewMirror(nd.log, MirrorOptions{Verifier: nd.vkey, Interval: interval}); err != nil {
			b.Fatal(err)
		}
	}
	ran := make(chan struct{})
	go func() { defer close(ran); m.Run(ctx) }()
	defer func() { stop(); <-ran }()
	total := int(dur.Seconds() * float64(rate))
	acked := make([]atomic.Int64, total)
	// the steady load: a tick every ms releases the appends due, which 32
	// writers make (a durable Append waits for its group commit)
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				seq, err := nd.log.Append(context.Background(), benchEntry(i))
				if err != nil {
					b.Error(err)
					return
				}
				acked[seq].Store(time.Now().UnixNano())
			}
		}()
	}
	go func() {
		defer close(jobs)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		start := time.Now()
		for i := 0; i < total; {
			<-t.C
			for due := min(total, int(time.Since(start).Seconds()*float64(rate))); i < due; i++ {
				jobs <- i
			}
		}
	}()
	lags := make([]time.Duration, 0, total)
	seen := int64(0)
	deadline := time.Now().Add(dur + 10*time.Second)
	for seen < int64(total) && time.Now().Before(deadline) {
		var n int64
		if err := pool.QueryRow(context.Background(), "SELECT coalesce(max(seq)+1, 0) FROM audit_entries WHERE origin = $1", nd.origin()).Scan(&n); err != nil {
			b.Fatal(err)
		}
		now := time.Now().UnixNano()
		for ; seen < n; seen++ {
			// an entry can be copied before its Append returns: lag 0
			a := acked[seen].Load()
			lags = append(lags, time.Duration(max(0, now-a)))
			if a == 0 {
				lags[len(lags)-1] = 0
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	if seen < int64(total) {
		b.Fatalf("only %d of %d entries mirrored", seen, total)
	}
	return lags
}

// BenchmarkVerify100k verifies an origin of 100,000 entries in the
// cluster database, and the same log in its own data directory
// (audit.Verify) in the same run, for the ratio.
func BenchmarkVerify100k(b *testing.B) {
	const n = 100000
	nd := benchLog(b, "big", n)
	c, _ := testCluster(b, nil)
	m := nd.mirror(b, c, MirrorOptions{Batch: 5000})
	if k, err := m.Sync(context.Background()); err != nil || k != n {
		b.Fatalf("%d mirrored, %v", k, err)
	}
	b.Run("cluster", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rs, err := c.Verify(context.Background(), VerifyOptions{Keys: []string{nd.vkey}})
			if err != nil || len(rs) != 1 || !rs[0].OK() || rs[0].Size != n {
				b.Fatalf("%v %+v", err, rs)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("local", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r, err := audit.Verify(context.Background(), nd.dir, audit.VerifyOptions{Verifier: nd.vkey})
			if err != nil || !r.OK() || r.Size != n {
				b.Fatalf("%v %+v", err, r)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
