package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/diskspace"
)

// TestAnonymousFloodIsRecordedAggregatedAndLowSpaceRecovers drives the
// server's wiring: gateway denials of requests without a token reach the
// audit log aggregated (the first few in full, then one summary with the
// count, written at shutdown), the admin API's go through the same
// aggregation, and a low-space sample refuses everything, writing
// nothing, until space returns.
func TestAnonymousFloodIsRecordedAggregatedAndLowSpaceRecovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	cfg := config.Dev(dir)
	cfg.Audit.Anonymous.FullPerWindow = 5
	cfg.Audit.Anonymous.Window = config.Duration(time.Hour)
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.Upstreams = []config.Upstream{{Name: "rec", Prefix: "/rec/", Kind: config.KindHTTP,
		Routes: []config.Route{{Match: "GET /r/*", Scope: "rec:read"}}}}
	probe := &diskspace.Manual{}
	probe.Set(100<<30, 200<<30)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	prot, err := startProtections(runCtx, cfg, n, probe, time.Now, slog.New(slog.DiscardHandler)) // the node's clock (openDev)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := startGateway(gatewayDeps{Config: cfg, Auth: n.auth, TLS: testServerTLS(t, dir), Logger: slog.New(slog.DiscardHandler),
		Console: io.Discard, Audit: n.audit, Vault: n.vault, PreAuth: n.pre, Storage: prot.space})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 20 * time.Second}
	defer c.CloseIdleConnections()
	query := strings.Repeat("q", 2048)
	get := func() int {
		req, _ := http.NewRequest("GET", "https://"+gw.Addr()+"/v1/authz?"+query, nil)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/rec/r/1?"+query)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const flood = 200
	before := n.audit.Size()
	for range flood {
		if st := get(); st != http.StatusUnauthorized {
			t.Fatalf("no token: %d, want 401", st)
		}
	}
	if got := n.audit.Size() - before; got != 5 {
		t.Fatalf("%d entries for %d anonymous denials in one window, want the first 5", got, flood)
	}
	for i := before; i < n.audit.Size(); i++ {
		e, err := n.audit.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Path) > cfg.Audit.Anonymous.MaxFieldBytes || !strings.Contains(e.Path, " bytes]") {
			t.Fatalf("entry %d: path of %d bytes, not cut to %d with a marker", i, len(e.Path), cfg.Audit.Anonymous.MaxFieldBytes)
		}
	}
	// the admin API's refusals share the aggregation
	for range 10 {
		e := &audit.Entry{Action: audit.ActionAuthFailed, Outcome: audit.OutcomeDenied, Reason: "missing_token", Upstream: "admin", Source: audit.Source{IP: "127.0.0.1"}}
		if err := n.recordDenial(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	// low space: refused before anything is written, then back by itself
	probe.Set(10<<20, 200<<30)
	prot.space.Sample()
	size := n.audit.Size()
	if st := get(); st != http.StatusServiceUnavailable {
		t.Fatalf("low space: %d, want 503", st)
	}
	if n.audit.Size() != size {
		t.Fatal("an entry was written below the watermark")
	}
	probe.Set(100<<30, 200<<30)
	prot.space.Sample()
	if st := get(); st != http.StatusUnauthorized {
		t.Fatalf("space back: %d, want 401", st)
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	gw.Shutdown(sctx)
	mark := n.audit.Size()
	if err := n.pre.Close(sctx); err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	for i := mark; i < n.audit.Size(); i++ {
		e, err := n.audit.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Summary bool `json:"summary"`
			Count   int  `json:"count"`
		}
		if e.Target != "summary" || json.Unmarshal(e.After, &d) != nil || !d.Summary {
			t.Fatalf("entry %d at shutdown is no summary: %+v", i, e)
		}
		counted[e.Upstream] += d.Count
	}
	if counted["rec"] != flood+1-5 || counted["admin"] != 10-5 {
		t.Fatalf("summaries count %v, want %d for the gateway and 5 for the admin API", counted, flood+1-5)
	}
	closeNode(t, n)
}
