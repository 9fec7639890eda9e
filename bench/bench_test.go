package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// runJSON runs the bench with args plus -json and decodes its report. It
// fails the test unless the run exits 0 with results and no request error.
// Performance is not asserted: these tests prove the program works.
func runJSON(t *testing.T, args ...string) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, append(args, "-json"), &stdout, &stderr); code != 0 {
		t.Fatalf("bench %v: exit %d\nstderr:\n%s", args, code, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("bench %v: output is not a JSON report: %v\n%s", args, err, stdout.String())
	}
	if len(rep.Results) == 0 {
		t.Fatalf("bench %v: no results", args)
	}
	for _, r := range rep.Results {
		if r.Requests == 0 || r.RPS <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("bench %v: %s: implausible result %+v", args, r.Name, r)
		}
		if r.Errors != 0 {
			t.Errorf("bench %v: %s: %d errors: %v", args, r.Name, r.Errors, r.ErrorKinds)
		}
	}
	if rep.Env.Cores == 0 || rep.Env.Go == "" {
		t.Errorf("bench %v: no environment in the report: %+v", args, rep.Env)
	}
	return &rep
}

func checkComparison(t *testing.T, rep *Report, wantBody int) {
	t.Helper()
	if len(rep.Results) != 2 || rep.Results[0].Name != "baseline" || rep.Results[1].Name != "phigate" {
		t.Fatalf("want results baseline and phigate, got %+v", rep.Results)
	}
	if rep.Ratio <= 0 {
		t.Errorf("ratio %v, want > 0", rep.Ratio)
	}
	// The baseline answers exactly as many bytes as phigate (whose answer
	// size may vary by a few bytes between tokens: timestamps).
	b, p := rep.Results[0].BodyBytes, rep.Results[1].BodyBytes
	if b < int64(wantBody) || p < int64(wantBody) || b-p > 8 || p-b > 8 {
		t.Errorf("body sizes baseline=%d phigate=%d, want equal and at least %d", b, p, wantBody)
	}
}

func TestIntrospectScenario(t *testing.T) {
	rep := runJSON(t, "introspect", "-duration", "300ms", "-warmup", "50ms", "-rounds", "2", "-c", "2")
	checkComparison(t, rep, 50)
}

func TestCreateScenario(t *testing.T) {
	rep := runJSON(t, "create", "-duration", "300ms", "-warmup", "50ms", "-rounds", "2", "-c", "4")
	checkComparison(t, rep, 200)
}

func TestMemoryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds phigate and fills a store: not in -short")
	}
	rep := runJSON(t, "memory", "-tokens", "2000", "-working", "200", "-passes", "2", "-c", "4")
	m := rep.Memory
	if m == nil {
		t.Fatal("no memory result")
	}
	if m.Stored < 2000 || m.Generated < 200 || m.Start <= 0 || m.RSSReady <= 0 || m.RSSHWM < m.RSSReady {
		t.Errorf("implausible memory result %+v", m)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("want 2 passes, got %d", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Requests != 200 {
			t.Errorf("%s: %d introspections, want one per working-set token (200)", r.Name, r.Requests)
		}
	}
}

func TestTextOutput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"introspect", "-duration", "100ms", "-warmup", "0s", "-rounds", "1", "-c", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"introspect  baseline  rps=", "introspect  phigate   rps=", "ratio=", "(target ≥ 0.70)", "cores="} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "phi_") || strings.Contains(stderr.String(), "phi_") {
		t.Errorf("output shows a token secret")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"nope"},
		{"introspect", "-c", "0"},
		{"introspect", "-c", "100000"},
		{"create", "-duration", "0s"},
		{"create", "-duration", "1h"},
		{"memory", "-working", "10", "-tokens", "5"},
		{"introspect", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run %q: exit %d, want 2 (usage)", args, code)
		}
	}
}

func TestLoaderRefusesNonLoopback(t *testing.T) {
	l, err := NewLoader(1, nil)
	if err == nil {
		defer l.Close()
	} else {
		t.Fatal(err)
	}
	for _, u := range []string{"https://example.com/", "https://10.0.0.1/", "http://127.0.0.1:1/", "https://localhost/"} {
		if _, err := l.Run(context.Background(), &Target{Name: "x", URL: u}, 0, 10*time.Millisecond); err == nil {
			t.Errorf("Run %s: no error, want a refusal", u)
		}
	}
	if err := loopbackOnly("tcp", "192.0.2.1:443", nil); err == nil {
		t.Error("dialing 192.0.2.1 allowed")
	}
	if err := loopbackOnly("tcp", "127.0.0.1:443", nil); err != nil {
		t.Errorf("dialing 127.0.0.1: %v", err)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("quantile(%v) = %v, want %v ± 1%%", c.q, got, c.want)
		}
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		i := bucketOf(v)
		if m := bucketMid(i); bucketOf(m) != i {
			t.Fatalf("bucketMid(%d) = %d lies in bucket %d", i, m, bucketOf(m))
		}
	}
	if i := bucketOf(1<<63 + 5); i >= len(h.counts) {
		t.Fatalf("bucket %d out of range", i)
	}
}

func TestJSONBodyOfSize(t *testing.T) {
	for _, n := range []int{11, 64, 427} {
		b, err := jsonBodyOfSize(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != n || !json.Valid(b) || b[len(b)-1] != '\n' {
			t.Errorf("jsonBodyOfSize(%d) = %q", n, b)
		}
	}
	if _, err := jsonBodyOfSize(5); err == nil {
		t.Error("jsonBodyOfSize(5): no error")
	}
}
