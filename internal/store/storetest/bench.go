package storetest

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// BenchGoroutines is the number of goroutines BenchCreate runs at once.
const BenchGoroutines = 64

// BenchCreate measures CreateToken with BenchGoroutines goroutines creating
// tokens at once, the load under which group commit pays. Records and
// secrets are made before the clock starts, so ns/op and allocs/op are the
// store's. It also reports creates/s.
func BenchCreate(b *testing.B, s store.Store) {
	recs, secs := benchTokens(b, b.N)
	ctx := b.Context()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((BenchGoroutines + procs - 1) / procs)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if err := s.CreateToken(ctx, recs[i], secs[i]); err != nil {
				b.Errorf("CreateToken: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(b.N)/sec, "creates/s")
	}
}

// BenchTokenBySecret measures TokenBySecret, the store's share of
// authenticating a request on a cache miss, over n tokens (1000 when n is
// 0) looked up in turn.
func BenchTokenBySecret(b *testing.B, s store.Store, n int) {
	if n <= 0 {
		n = 1000
	}
	fx := newFixtures(b)
	ctx := b.Context()
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	hashes := make([]token.Hash, n)
	for i := range recs {
		recs[i] = fx.record(func(r *token.Record) {
			r.Scopes = []string{"patient/Observation.rs", "patient/Patient.r"}
			r.Metadata = map[string]string{"team": "cardiology"}
		})
		secs[i] = fx.secret(recs[i].ID, recs[i].CreatedAt)
		hashes[i] = secs[i].Hash
	}
	// Created concurrently, so that setting up takes a few commits.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range BenchGoroutines {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := s.CreateToken(ctx, recs[i], secs[i]); err != nil {
					b.Errorf("CreateToken: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, _, err := s.TokenBySecret(ctx, hashes[i%n]); err != nil {
			b.Fatalf("TokenBySecret: %v", err)
		}
		i++
	}
}

// BenchCreateLatency measures CreateToken's latency from goroutines
// creating one token after another (a closed loop each), and reports its
// p50 and p99: with one goroutine, each creation's own commit and fsync;
// with a few, how long a creation waits for the group commit in progress.
func BenchCreateLatency(b *testing.B, s store.Store, goroutines int) {
	recs, secs := benchTokens(b, b.N)
	ctx := b.Context()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range goroutines {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t := time.Now()
				if err := s.CreateToken(ctx, recs[i], secs[i]); err != nil {
					b.Errorf("CreateToken: %v", err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// benchTokens makes n token records and their secrets, before the clock
// starts.
func benchTokens(b *testing.B, n int) ([]*token.Record, []token.Secret) {
	fx := newFixtures(b)
	recs := make([]*token.Record, n)
	secs := make([]token.Secret, n)
	for i := range recs {
		recs[i] = fx.record()
		secs[i] = fx.secret(recs[i].ID, recs[i].CreatedAt)
	}
	return recs, secs
}
