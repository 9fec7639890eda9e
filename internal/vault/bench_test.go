package vault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchVault(b *testing.B) *Vault {
	b.Helper()
	v := mustCreate(b, b.TempDir(), keyProvider(b, randKey(b)), Options{})
	b.Cleanup(func() { v.Close() })
	return v
}

const benchPath = "/fhir/r4/Patient/8c1f3a52-77b0-4e0c-9d0a-1f1e1c2b3a4d/Observation?code=8867-4&_count=50"

func BenchmarkEncryptField(b *testing.B) {
	ctx := context.Background()
	v := benchVault(b)
	aad := AAD("audit_entries", "123456789", "path")
	pt := []byte(benchPath)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPath)))
	for b.Loop() {
		if _, err := v.EncryptField(ctx, PurposeAuditFields, aad, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptField(b *testing.B) {
	ctx := context.Background()
	v := benchVault(b)
	aad := AAD("audit_entries", "123456789", "path")
	ct, _ := v.EncryptField(ctx, PurposeAuditFields, aad, []byte(benchPath))
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPath)))
	for b.Loop() {
		if _, err := v.DecryptField(ctx, PurposeAuditFields, aad, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSecretCached is the gateway's credential lookup: after the
// first read, no storage and no AES-GCM work.
func BenchmarkSecretCached(b *testing.B) {
	ctx := context.Background()
	v := benchVault(b)
	v.SetSecret(ctx, "ehr-api", []byte("Bearer upstream-credential-0123456789"))
	v.Secret(ctx, "ehr-api")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := v.Secret(ctx, "ehr-api"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSecretUncached is the first read of a credential: a storage
// read and one AES-GCM open.
func BenchmarkSecretUncached(b *testing.B) {
	ctx := context.Background()
	v := benchVault(b)
	v.SetSecret(ctx, "ehr-api", []byte("Bearer upstream-credential-0123456789"))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.getItem(ctx, PurposeCredentials, "ehr-api"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	v := benchVault(b)
	id := []byte("8c1f3a52-77b0-4e0c-9d0a-1f1e1c2b3a4d")
	b.ReportAllocs()
	for b.Loop() {
		v.BlindIndex("audit-patient", id)
	}
}

// fillItems stores n sealed secrets of purpose directly (one transaction,
// a prepared insert), the quick way to a large store.
func fillItems(b *testing.B, v *Vault, purpose string, n int) {
	b.Helper()
	ctx := context.Background()
	k, err := v.activeKey(ctx, purpose)
	if err != nil {
		b.Fatal(err)
	}
	db := v.st.(*SQLiteStorage).db
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.PrepareContext(ctx, "INSERT INTO items (purpose, name, version, dek_version, ciphertext, created_at) VALUES (?, ?, 1, ?, ?, ?)")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	for i := range n {
		name := benchName(i)
		ct, err := k.seal(v.opts.Rand, itemAAD(purpose, name, 1), []byte("credential-value-"+name))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.ExecContext(ctx, purpose, name, int64(k.version), ct, now); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func benchName(i int) string { return fmt.Sprintf("cred-%07d", i) }

// readers stands for a server in service: two goroutines each read a
// random item every millisecond (uncached: a storage read and an AES-GCM
// open each; the gateway's cached path does neither) until stop is
// closed. It counts reads and failures and keeps the slowest read.
func readers(v *Vault, purpose string, n int, stop chan struct{}) (wait func() (reads, fails int64, slowest time.Duration)) {
	var r, f, slow atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				name := benchName(rand.IntN(n))
				start := time.Now()
				val, _, err := v.getItem(context.Background(), purpose, name)
				if d := int64(time.Since(start)); d > slow.Load() {
					slow.Store(d)
				}
				if err != nil || string(val) != "credential-value-"+name {
					f.Add(1)
				}
				r.Add(1)
			}
		})
	}
	return func() (int64, int64, time.Duration) { wg.Wait(); return r.Load(), f.Load(), time.Duration(slow.Load()) }
}

// BenchmarkRotation1M measures rotation over a store of 1,000,000 sealed
// secrets (PHIGATE_BENCH_VALUES overrides the count), with readers
// reading random secrets (uncached, 2000/s) throughout.
//
//   - rotate-kek: RotateKEK. The vault wraps only data keys, so this
//     re-wraps the 6 data keys in one transaction and touches none of the
//     1M secrets (they stay sealed under the same data keys): its cost
//     does not depend on the store's size.
//   - reencrypt: RotateDEK then Reencrypt, which re-seals all 1M secrets
//     under the new data key in transactions of 1000 — the operation whose
//     cost does grow with the store.
func BenchmarkRotation1M(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("PHIGATE_BENCH_VALUES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	v := benchVault(b)
	start := time.Now()
	fillItems(b, v, PurposeCredentials, n)
	b.Logf("generated %d sealed secrets in %v", n, time.Since(start).Round(time.Millisecond))
	providers := []Provider{keyProvider(b, randKey(b)), keyProvider(b, randKey(b))}

	b.Run("rotate-kek", func(b *testing.B) {
		stop := make(chan struct{})
		wait := readers(v, PurposeCredentials, n, stop)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.RotateKEK(ctx, providers[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StopTimer()
		close(stop)
		reads, fails, slowest := wait()
		b.ReportMetric(float64(n), "values")
		b.ReportMetric(float64(reads), "reads-during")
		b.ReportMetric(float64(slowest.Microseconds()), "slowest-read-µs")
		b.ReportMetric(float64(fails), "read-failures")
		if fails != 0 {
			b.Fatalf("%d reads failed during the rotation", fails)
		}
	})
	b.Run("reencrypt", func(b *testing.B) {
		stop := make(chan struct{})
		wait := readers(v, PurposeCredentials, n, stop)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.RotateDEK(ctx, PurposeCredentials); err != nil {
				b.Fatal(err)
			}
			got, err := v.Reencrypt(ctx, PurposeCredentials)
			if err != nil || got != n {
				b.Fatalf("re-encrypted %d of %d: %v", got, n, err)
			}
		}
		b.StopTimer()
		close(stop)
		reads, fails, slowest := wait()
		b.ReportMetric(float64(n), "values")
		b.ReportMetric(float64(reads), "reads-during")
		b.ReportMetric(float64(slowest.Microseconds()), "slowest-read-µs")
		b.ReportMetric(float64(fails), "read-failures")
		if fails != 0 {
			b.Fatalf("%d reads failed during the re-encryption", fails)
		}
	})
}
