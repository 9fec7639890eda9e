package console

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// The scale: every console page in ≤ 50 ms server time with
// 100,000 tokens and 1,000,000 audit entries in the store.
//
// The fixture is made once per test process, through the public APIs
// only (so it has exactly the shape production data has): the tokens by
// authority.Create under one root (each creation audited, as in
// production), statuses by the store's SetStatus, last uses by
// TouchLastUsed, and the access entries by audit.Log.Append from many
// goroutines (group commit), into a log that seals PHI fields and
// blind-indexes patients with a vault, as the server's does. Its data directory is kept in $TMPDIR until
// the process ends. PHIGATE_BENCH_SCALE divides the sizes (default 1:
// the issue's; 10 for a quick run).
type scaleFixture struct {
	dir     string
	key     []byte
	master  []byte
	root    string
	end     time.Time // the clock when the fixture was done
	tokens  int
	entries int
	hot     string // a token id with access entries and a parent
	patient string // a patient with ~1 in 1000 of the access entries
	made    time.Duration
}

// Sizes of the full fixture.
const (
	scaleTokens  = 100_000
	scaleEntries = 1_000_000
	scaleSpan    = 7 * 24 * time.Hour // the time the access entries cover
)

var (
	scaleOnce sync.Once
	scaleFix  *scaleFixture
	scaleErr  error
)

func scaleDivisor() int {
	if n, err := strconv.Atoi(os.Getenv("PHIGATE_BENCH_SCALE")); err == nil && n > 0 {
		return n
	}
	return 1
}

// scaleEnv opens an env on the fixture (made at the first call).
func scaleEnv(b *testing.B) (*env, *scaleFixture) {
	b.Helper()
	scaleOnce.Do(func() { scaleFix, scaleErr = makeScale(b) })
	if scaleErr == nil && scaleFix == nil {
		scaleErr = errors.New("the scale fixture failed")
	}
	if scaleErr != nil {
		b.Fatal(scaleErr)
	}
	f := scaleFix
	e := newEnv(b, envOpts{alerts: true, dir: f.dir, key: f.key, root: f.root, at: f.end, seal: true, master: f.master})
	return e, f
}

func makeScale(b *testing.B) (*scaleFixture, error) {
	div := scaleDivisor()
	dir, err := os.MkdirTemp("", "phigate-console-scale-")
	if err != nil {
		return nil, err
	}
	start := time.Now() // wall time of the generation, for the log only
	f := &scaleFixture{dir: dir, tokens: scaleTokens / div, entries: scaleEntries / div, patient: "pat-hot"}
	// its own sub-benchmark-free env: closed before the benchmarks reopen it
	fb := &fixtureTB{TB: b}
	e := newEnv(fb, envOpts{alerts: true, dir: dir, rootTTL: 60 * 24 * time.Hour, seal: true})
	defer fb.cleanup()
	f.key, f.root, f.master = e.key, e.root, e.master
	ctx := context.Background()
	root := e.rootActor()

	// tokens: 500 subjects, 1 in 10 expiring within the day the
	// benchmarks run in, the rest in 30 days; a tenth issued under
	// another token (lineage)
	ids := make([]string, f.tokens)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	work := func(workers int, n int, do func(i int) error) {
		next.Store(0)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if err := do(i); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	scopes := []string{"patient/Observation.rs", "patient/Patient.rs", "system/Observation.rs", "user/Encounter.rs"}
	work(64, f.tokens, func(i int) error {
		ttl := 30 * 24 * time.Hour
		if i%10 == 0 {
			ttl = scaleSpan + 12*time.Hour
		}
		_, rec, err := e.auth.Create(ctx, root, authority.Spec{Subject: fmt.Sprintf("svc-%03d", i%500), Kind: token.KindService,
			Scopes: []string{scopes[i%len(scopes)]}, TTL: ttl, IdleTimeout: time.Duration(i%3) * 24 * time.Hour})
		if err != nil {
			return err
		}
		ids[i] = rec.ID
		return nil
	})
	if firstErr != nil {
		return nil, fmt.Errorf("tokens: %w", firstErr)
	}
	// statuses: 1 in 20 revoked, 1 in 33 suspended
	var revoke, suspend []string
	for i, id := range ids {
		switch {
		case i%20 == 1:
			revoke = append(revoke, id)
		case i%33 == 2:
			suspend = append(suspend, id)
		}
	}
	for _, s := range []struct {
		ids []string
		st  token.Status
	}{{revoke, token.StatusRevoked}, {suspend, token.StatusSuspended}} {
		for len(s.ids) > 0 {
			n := min(len(s.ids), 500)
			if _, err := e.st.SetStatus(ctx, s.ids[:n], s.st, "fixture", e.clock.Now()); err != nil {
				return nil, fmt.Errorf("status: %w", err)
			}
			s.ids = s.ids[n:]
		}
	}

	// access entries, spread over scaleSpan: 1 in 1000 for the hot
	// patient, the others over 20,000 patients; 1 in 20 denied; the
	// actors are the tokens
	n := f.entries - f.tokens
	step := scaleSpan / time.Duration(max(n/1000, 1))
	var used sync.Map
	work(64, n, func(i int) error {
		if i%1000 == 999 {
			e.clock.Add(step)
		}
		tok := i * 7919 % len(ids)
		pat := fmt.Sprintf("pat-%05d", i%20000)
		if i%1000 == 500 {
			pat = f.patient
		}
		en := &audit.Entry{Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess, Patient: pat, Purpose: "TREAT",
			Actor:  audit.Actor{TokenID: ids[tok], Subject: fmt.Sprintf("svc-%03d", tok%500), Kind: "service"},
			Method: "GET", Upstream: "fhir", Path: "/fhir/Observation?patient=" + pat}
		if i%20 == 7 {
			en.Action, en.Outcome, en.Reason = audit.ActionAccessDenied, audit.OutcomeDenied, "scope"
		}
		for {
			_, err := e.log.Append(ctx, en)
			// a shared machine's disk can stall a group commit past
			// StallTimeout: the log refuses until it lands; retry
			if errors.Is(err, audit.ErrPushback) || errors.Is(err, audit.ErrUnavailable) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		if tok%5 != 0 { // 1 in 5 never used
			used.Store(ids[tok], e.clock.Now())
		}
		return nil
	})
	if firstErr != nil {
		return nil, fmt.Errorf("entries: %w", firstErr)
	}
	last := map[string]time.Time{}
	used.Range(func(k, v any) bool {
		last[k.(string)] = v.(time.Time)
		if len(last) == 1000 {
			err = e.st.TouchLastUsed(ctx, last)
			clear(last)
		}
		return err == nil
	})
	if err == nil && len(last) > 0 {
		err = e.st.TouchLastUsed(ctx, last)
	}
	if err != nil {
		return nil, fmt.Errorf("last use: %w", err)
	}
	for i := 0; i < 200; i++ {
		if err := e.st.CreateAlert(ctx, &store.Alert{ID: fmt.Sprintf("alr_%04d", i), Detector: "rate_spike", Severity: store.SeverityHigh,
			TokenID: ids[i*7%len(ids)], Summary: "a spike", Action: "none", CreatedAt: e.clock.Now()}); err != nil {
			return nil, err
		}
	}
	// the log's database caught up with its journal before the
	// benchmarks measure (a search waits for it)
	if _, err := e.log.Search(ctx, &audit.Query{Desc: true, Limit: 1}); err != nil {
		return nil, err
	}
	f.hot = ids[7919%len(ids)]
	f.end = e.clock.Now()
	f.made = time.Since(start)
	b.Logf("scale fixture: %d tokens, %d audit entries (+ the benchmarks' reads), made in %v in %s", f.tokens, f.entries, f.made.Round(time.Second), dir)
	return f, nil
}

// fixtureTB runs the fixture's cleanups when it is made, not at the end
// of the benchmark that happened to make it.
type fixtureTB struct {
	testing.TB
	fns []func()
}

func (t *fixtureTB) Cleanup(fn func()) { t.fns = append(t.fns, fn) }
func (t *fixtureTB) cleanup() {
	for i := len(t.fns) - 1; i >= 0; i-- {
		t.fns[i]()
	}
}

// TestMain removes the scale fixture's directory at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if scaleFix != nil {
		os.RemoveAll(scaleFix.dir)
	}
	os.Exit(code)
}

func benchScale(b *testing.B, path, want string) {
	e, _ := scaleEnv(b)
	benchPage(b, e, path, want)
}

// The overview computed (its 10-second cache emptied before each
// request), and from the cache.
func BenchmarkScaleOverview(b *testing.B) {
	b.Run("computed", func(b *testing.B) {
		e, _ := scaleEnv(b)
		benchPageEach(b, e, "/console/", "svg", func() {
			e.con.overview.mu.Lock()
			clear(e.con.overview.m)
			e.con.overview.mu.Unlock()
		})
	})
	b.Run("cached", func(b *testing.B) { benchScale(b, "/console/", "svg") })
}

func BenchmarkScaleTokens(b *testing.B) {
	_, f := scaleEnv(b)
	for _, c := range []struct{ name, q, want string }{
		{"all", "", `rel="next"`},
		{"subject", "subject=svc-042", "svc-042"},
		{"status", "status=suspended", `id="tokens"`},
		{"expiring", "expiring=1", `id="tokens"`},
		{"never_used", "never_used=1", `id="tokens"`},
		{"idle", "idle=3d", `id="tokens"`},
	} {
		b.Run(c.name, func(b *testing.B) { benchScale(b, "/console/tokens?"+c.q, c.want) })
	}
	b.Run("detail", func(b *testing.B) { benchScale(b, "/console/tokens/"+f.hot, f.hot) })
}

func BenchmarkScaleAudit(b *testing.B) {
	_, f := scaleEnv(b)
	from := f.end.Add(-scaleSpan / 2).UTC().Format(time.RFC3339)
	to := f.end.Add(-scaleSpan/2 + 24*time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct{ name, q string }{
		{"newest", ""},
		{"patient", "patient=" + f.patient},
		{"token", "token_id=" + f.hot},
		{"range", url.Values{"from": {from}, "to": {to}}.Encode()},
	} {
		b.Run(c.name, func(b *testing.B) { benchScale(b, "/console/audit?"+c.q, `class="badge verified"`) })
	}
}

func BenchmarkScaleDisclosures(b *testing.B) {
	_, f := scaleEnv(b)
	benchScale(b, "/console/disclosures?patient="+f.patient, f.patient)
}

func BenchmarkScaleAlerts(b *testing.B) { benchScale(b, "/console/alerts", "alr_") }

// The badge of the newest 100 entries: the batch (audit.Log.Proofs) the
// console uses against 100 separate Proof calls, in the same process.
func BenchmarkScaleBadge(b *testing.B) {
	e, _ := scaleEnv(b)
	pg, err := e.log.Search(b.Context(), &audit.Query{Desc: true, Limit: 100})
	if err != nil || len(pg.Entries) != 100 {
		b.Fatal(err)
	}
	b.Run("batch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if bd := e.con.verify(b.Context(), pg.Entries); !bd.OK {
				b.Fatal(bd.Problem)
			}
		}
	})
	b.Run("one_by_one", func(b *testing.B) {
		v, err := e.con.verifier()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			for _, en := range pg.Entries {
				pb, err := e.log.Proof(b.Context(), en.Seq)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := audit.VerifyBundle(pb, v); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
