package monitor

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

// warmed returns a monitor that has learned n tokens for a week, and one
// observation per token to replay.
func warmed(tb testing.TB, n int) (*Monitor, []Observation) {
	clk := testclock.New()
	m, err := New(DefaultConfig(), Options{Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	obs := make([]Observation, n)
	for i := range obs {
		obs[i] = Observation{Kind: Grant, TokenID: fmt.Sprintf("tok-%06d", i), Subject: "subj",
			Source: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7}), AuditSeq: 1}
	}
	start := clk.Now()
	for d := range 8 {
		for i := range obs {
			obs[i].Time = start.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Millisecond)
			m.Check(&obs[i])
			m.Observe(&obs[i])
		}
	}
	return m, obs
}

// BenchmarkCheckObserve is what the monitor adds to one granted request:
// Check before the decision is recorded, Observe after.
func BenchmarkCheckObserve(b *testing.B) {
	m, obs := warmed(b, 1000)
	base := obs[len(obs)-1].Time.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := &obs[i%len(obs)]
		o.Time = base.Add(time.Duration(i) * 100 * time.Microsecond)
		o.AuditSeq = uint64(i)
		if v := m.Check(o); v.Block {
			b.Fatal(v)
		}
		m.Observe(o)
	}
}

// BenchmarkCheckObserveUnderAttack is the same with the brute-force
// table holding 10,000 failing sources (its Check then takes its lock).
func BenchmarkCheckObserveUnderAttack(b *testing.B) {
	m, obs := warmed(b, 1000)
	base := obs[len(obs)-1].Time.Add(time.Hour)
	for i := range 10_000 {
		m.Observe(&Observation{Time: base, Kind: AuthFailure, Source: netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := &obs[i%len(obs)]
		o.Time = base.Add(time.Duration(i) * 100 * time.Microsecond)
		m.Check(o)
		m.Observe(o)
	}
}

func BenchmarkCheckObserveParallel(b *testing.B) {
	m, obs := warmed(b, 1000)
	base := obs[len(obs)-1].Time.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]Observation, len(obs))
		copy(local, obs)
		i := 0
		for pb.Next() {
			o := &local[i%len(local)]
			o.Time = base.Add(time.Duration(i) * 100 * time.Microsecond)
			m.Check(o)
			m.Observe(o)
			i++
		}
	})
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestCheckAndObserveDoNotAllocate(t *testing.T) {
	m, obs := warmed(t, 100)
	base := obs[len(obs)-1].Time.Add(time.Hour)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		o := &obs[i%len(obs)]
		o.Time = base.Add(time.Duration(i) * time.Millisecond)
		i++
		m.Check(o)
		m.Observe(o)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}

func TestMemoryPerTrackedTokenIsAtMost2KiB(t *testing.T) {
	const n = 10_000
	clk := testclock.New()
	empty := heap()
	m, err := New(DefaultConfig(), Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	// the fixed part (shards, the subjects' table) is not per token
	before := heap()
	t.Logf("an empty monitor: %d bytes", before-empty)
	for i := range n {
		// the id is counted: the monitor keeps it
		o := Observation{Time: clk.Now(), Kind: Grant, TokenID: fmt.Sprintf("tok-%08d", i), Subject: fmt.Sprintf("subj-%08d", i),
			Source: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), AuditSeq: uint64(i + 1)}
		m.Check(&o)
		m.Observe(&o)
		o.Kind, o.Reason = Deny, "insufficient_scope"
		m.Observe(&o)
	}
	after := heap()
	if got := m.Stats().Tokens; got != n {
		t.Fatalf("%d tokens tracked, want %d", got, n)
	}
	per := float64(after-before) / n
	t.Logf("%.0f bytes per tracked token (%d tokens, %d bytes)", per, n, after-before)
	if per > 2048 {
		t.Fatalf("%.0f bytes per tracked token, want <= 2048", per)
	}
	runtime.KeepAlive(m)
}

func TestFloodOfInvalidTokensFromAMillionSourcesStaysWithinTheBound(t *testing.T) {
	if testing.Short() {
		t.Skip("a million failures")
	}
	cfg := DefaultConfig()
	clk := testclock.New()
	m, err := New(cfg, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	before := heap() // after the fixed part
	r := rand.New(rand.NewPCG(1, 2))
	var full uint64
	const sources = 1_000_000
	for i := range sources {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		} else {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for j := 2; j < 8; j++ {
				b[j] = byte(r.IntN(256))
			}
			a = netip.AddrFrom16(b)
		}
		if i%1000 == 0 {
			clk.Add(time.Millisecond)
		}
		o := Observation{Time: clk.Now(), Kind: AuthFailure, Source: a, Reason: "invalid_token"}
		m.Check(&o)
		m.Observe(&o)
		if i == 2*cfg.BruteForce.MaxSources {
			full = heap()
		}
	}
	after := heap()
	s := m.Stats()
	if s.Sources > cfg.BruteForce.MaxSources || s.Tokens != 0 {
		t.Fatalf("%d sources and %d tokens tracked, bound %d sources", s.Sources, s.Tokens, cfg.BruteForce.MaxSources)
	}
	// the bound: the table of MaxSources sources, at most 256 bytes each
	bound := uint64(cfg.BruteForce.MaxSources) * 256
	t.Logf("heap: %d bytes with the table full, %d after %d sources (bound %d); %d tracked", full-before, after-before, sources, bound, s.Sources)
	if after-before > bound || after > full+bound/10 {
		t.Fatalf("heap grew to %d bytes (%d when full), bound %d", after-before, full-before, bound)
	}
	runtime.KeepAlive(m)
}
