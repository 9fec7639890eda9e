package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/pkg/client"
)

// metricsListenAddr finds the metrics listener's address in the server's
// JSON log.
func metricsListenAddr(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics served without a token" {
			return rec.Listen
		}
	}
	t.Fatal("the server did not log its metrics listener")
	return ""
}

var reSeries = regexp.MustCompile(`(?m)^(phigate_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

// TestLiveMetricsCountGatewayAndAdminRequests scrapes the real server, on
// the admin API with an admin:metrics token and on the metrics listener
// without one, after gateway and admin requests, and finds each counted
// with its labels, the tokens by status, the audit log's sizes and
// commits, and the cache's hits; no series names a token, subject,
// patient or path.
func TestLiveMetricsCountGatewayAndAdminRequests(t *testing.T) {
	logs := &syncBuffer{}
	ls := startLiveLogged(t, func(c *config.Config) { c.Metrics.Listen = "127.0.0.1:0" },
		slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	svc := ls.token(client.CreateTokenRequest{Subject: "svc:metrics-probe", Scopes: []string{"user/Patient.r"}})
	scraper := ls.token(client.CreateTokenRequest{Subject: "prometheus", Kind: "service", Scopes: []string{"admin:metrics"}})
	for range 3 {
		if a := ls.gateway(patientPath, svc.Secret, nil); a.status != http.StatusOK {
			t.Fatalf("gateway: %d %s", a.status, a.body)
		}
	}
	ls.gateway(patientPath, "", nil) // missing_token
	ls.call("GET", "https://"+ls.admin+"/v1/tokens/tok_nosuch", ls.adminToken, nil, nil)

	a := ls.call("GET", "https://"+ls.admin+"/metrics", scraper.Secret, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", a.status, a.body)
	}
	if r := ls.call("GET", "https://"+ls.admin+"/metrics", svc.Secret, nil, nil); r.status != http.StatusForbidden || r.code != "insufficient_scope" {
		t.Errorf("/metrics with a token without admin:metrics: %d %s", r.status, r.code)
	}
	body := string(a.body)
	for _, want := range []string{
		`phigate_requests_total{class="fhir-read",listener="gateway",outcome="granted",reason=""} 3`,
		`phigate_requests_total{class="unrouted",listener="gateway",outcome="denied",reason="missing_token"} 1`,
		`phigate_requests_total{class="token-admin",listener="admin",outcome="denied",reason="not_found"} 1`,
		`phigate_tokens{status="active"} `,
		`phigate_audit_journal_bytes `,
		`phigate_audit_database_bytes `,
		`phigate_audit_batch_entries_count `,
		`phigate_audit_append_duration_seconds_count `,
		`phigate_token_cache_hits_total `,
		`phigate_request_duration_seconds_count{listener="gateway",stage="upstream"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	for _, m := range reSeries.FindAllStringSubmatch(body, -1) {
		for _, leak := range []string{svc.Secret, svc.ID, "svc:metrics-probe", "pat-", "/fhir", scraper.ID} {
			if strings.Contains(m[0], leak) {
				t.Errorf("series %s holds %q", m[0], leak)
			}
		}
	}

	// the metrics listener: no token, TLS with the server's certificate
	addr := metricsListenAddr(t, logs)
	hc := ls.hc
	deadline := time.Now().Add(5 * time.Second)
	var r answer
	for {
		r = ls.call("GET", "https://"+addr+"/metrics", "", nil, nil)
		if strings.Contains(string(r.body), `listener="gateway"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "phigate_requests_total") {
		t.Errorf("metrics listener: %d", r.status)
	}
	if r := ls.call("GET", "https://"+addr+"/v1/tokens", ls.adminToken, nil, nil); r.status != http.StatusNotFound {
		t.Errorf("the metrics listener serves %d on /v1/tokens", r.status)
	}
	_ = hc
}
