package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/monitor/sink"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/pkg/client"
)

// The monitor against the real server and gateway (phigate server --dev
// with the demo FHIR upstream), on one test clock.

// liveServer is a running dev server.
type liveServer struct {
	t          *testing.T
	admin, gw  string
	adminToken string
	hc         *http.Client
	clk        *testclock.Clock
}

var (
	reAdminAddr = regexp.MustCompile(`admin API:   https://(\S+)`)
	reGwAddr    = regexp.MustCompile(`gateway:     https://(\S+)`)
)

func startLive(t *testing.T, mutate func(*config.Config)) *liveServer {
	t.Helper()
	return startLiveLogged(t, mutate, nil)
}

// startLiveLogged is startLive with the server logging to log (nil: nowhere).
func startLiveLogged(t *testing.T, mutate func(*config.Config), log *slog.Logger) *liveServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := config.Dev(dir)
	cfg.Admin.Listen, cfg.Gateway.Listen = "127.0.0.1:0", "127.0.0.1:0"
	if mutate != nil {
		mutate(cfg)
	}
	clk := testclock.New()
	out := &console{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Config: cfg, Dev: true, Console: out, Now: clk.Now, Logger: log, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("the server did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	s := out.String()
	ls := &liveServer{t: t, clk: clk, adminToken: reBootstrapSecret.FindString(s),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	if m := reAdminAddr.FindStringSubmatch(s); m != nil {
		ls.admin = m[1]
	}
	if m := reGwAddr.FindStringSubmatch(s); m != nil {
		ls.gw = m[1]
	}
	if ls.admin == "" || ls.gw == "" || ls.adminToken == "" {
		t.Fatalf("console lacks the addresses or the token:\n%s", reBootstrapSecret.ReplaceAllString(s, "phi_…"))
	}
	t.Cleanup(ls.hc.CloseIdleConnections)
	return ls
}

type answer struct {
	status int
	header http.Header
	body   []byte
	code   string
}

func (ls *liveServer) call(method, url, bearer string, hdr map[string]string, body any) answer {
	ls.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ls.hc.Do(req)
	if err != nil {
		ls.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: b}
	var e client.ErrorBody
	if json.Unmarshal(b, &e) == nil {
		a.code = e.Error.Code
	}
	// a refusal of a request routed to a fhir upstream is an OperationOutcome
	var oo struct {
		Issue []struct {
			Details struct {
				Coding []struct{ Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if a.code == "" && json.Unmarshal(b, &oo) == nil && len(oo.Issue) > 0 && len(oo.Issue[0].Details.Coding) > 0 {
		a.code = oo.Issue[0].Details.Coding[0].Code
	}
	return a
}

func (ls *liveServer) admin_(method, path string, body any) answer {
	return ls.call(method, "https://"+ls.admin+path, ls.adminToken, nil, body)
}

func (ls *liveServer) gateway(path, secret string, hdr map[string]string) answer {
	return ls.call("GET", "https://"+ls.gw+path, secret, hdr, nil)
}

// token creates a token through the admin API.
func (ls *liveServer) token(req client.CreateTokenRequest) client.IssuedToken {
	ls.t.Helper()
	if req.Subject == "" {
		req.Subject = "svc:lab"
	}
	if req.TTL == "" {
		req.TTL = "1h"
	}
	a := ls.admin_("POST", "/v1/tokens", req)
	if a.status != http.StatusCreated {
		ls.t.Fatalf("create token: %d %s", a.status, a.body)
	}
	var it client.IssuedToken
	json.Unmarshal(a.body, &it)
	return it
}

// alerts lists the alerts about token id (all when id is ""), waiting up
// to a second for at least want of them.
func (ls *liveServer) alerts(id string, want int) []client.Alert {
	ls.t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		a := ls.admin_("GET", "/v1/alerts?token="+id, nil)
		if a.status != 200 {
			ls.t.Fatalf("GET /v1/alerts: %d %s", a.status, a.body)
		}
		var l client.AlertList
		json.Unmarshal(a.body, &l)
		if len(l.Alerts) >= want || time.Now().After(deadline) {
			return l.Alerts
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// audit returns the audit entries that search q finds.
func (ls *liveServer) audit(q string) []map[string]any {
	ls.t.Helper()
	a := ls.admin_("GET", "/v1/audit?"+q, nil)
	if a.status != 200 {
		ls.t.Fatalf("GET /v1/audit?%s: %d %s", q, a.status, a.body)
	}
	var out struct {
		Entries []map[string]any `json:"entries"`
	}
	json.Unmarshal(a.body, &out)
	return out.Entries
}

const patientPath = "/fhir/Patient/pat-1"

func TestLiveTokenFromANewNetworkIsBlockedWhenItsPolicySaysSo(t *testing.T) {
	ls := startLive(t, nil)
	it := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"},
		Metadata: map[string]string{"monitor.networks": "10.20.0.0/16", "monitor.network": "block"}})
	a := ls.gateway(patientPath, it.Secret, nil)
	if a.status != http.StatusForbidden || a.code != "anomaly_new_network" {
		t.Fatalf("use from 127.0.0.1: %d %s, want 403 anomaly_new_network", a.status, a.code)
	}
	al := ls.alerts(it.ID, 1)
	if len(al) != 1 || al[0].Detector != "new_network" || al[0].Action != "blocked" || al[0].TokenID != it.ID || al[0].State != "open" {
		t.Fatalf("alerts %+v", al)
	}
	var ev map[string]any
	if err := json.Unmarshal(al[0].Evidence, &ev); err != nil || ev["network"] == nil {
		t.Errorf("evidence %s does not name the network", al[0].Evidence)
	}
	// an undeclared token from the same network is not blocked
	other := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}})
	if a := ls.gateway(patientPath, other.Secret, nil); a.status == http.StatusForbidden {
		t.Errorf("a token without a policy was blocked: %s", a.code)
	}
}

func TestLiveSpikeSuspendsTheTokenAndTheNextRequestIs401Suspended(t *testing.T) {
	ls := startLive(t, nil)
	it := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}, Metadata: map[string]string{"monitor.rate_floor": "5"}})
	lat := spikeUntilSuspended(t, ls, it.Secret)
	t.Logf("detection to suspension: %v", lat)
	al := ls.alerts(it.ID, 1)
	if len(al) == 0 || al[0].Detector != "rate_spike" || al[0].Action != "suspended" || al[0].Severity != "high" || len(al[0].AuditSeqs) == 0 {
		t.Fatalf("alerts %+v, want a rate_spike alert, action suspended, with audit sequence numbers", al)
	}
	tok := ls.admin_("GET", "/v1/tokens/"+it.ID, nil)
	var ct client.Token
	json.Unmarshal(tok.body, &ct)
	if ct.Status != "suspended" {
		t.Errorf("token status %q", ct.Status)
	}
	// the alert, the suspension and the acknowledgement are audited
	ack := ls.admin_("POST", "/v1/alerts/"+al[0].ID+"/ack", client.AckRequest{Note: "load test, owner asked"})
	if ack.status != 200 {
		t.Fatalf("ack: %d %s", ack.status, ack.body)
	}
	var actions []string
	for _, act := range []string{"alert.raised", "alert.acked"} {
		for _, e := range ls.audit("action=" + act) {
			if e["target"] == al[0].ID {
				actions = append(actions, fmt.Sprint(e["action"]))
			}
		}
	}
	if !slices.Contains(actions, "alert.raised") || !slices.Contains(actions, "alert.acked") {
		t.Errorf("audit of the alert: %v", actions)
	}
	found := false
	for _, e := range ls.audit("action=token.suspended") {
		if e["target"] == it.ID {
			found = true
		}
	}
	if !found {
		t.Errorf("the suspension is not audited")
	}
	// reinstated, it works again
	if r := ls.admin_("POST", "/v1/tokens/"+it.ID+"/reinstate", client.StatusRequest{Reason: "checked"}); r.status != 200 {
		t.Fatalf("reinstate: %d %s", r.status, r.body)
	}
}

// spikeUntilSuspended sends requests with secret until the gateway answers
// 401 token_suspended, and returns the time from the request that crossed
// the token's rate floor (the 6th with monitor.rate_floor=5) to that answer.
func spikeUntilSuspended(t *testing.T, ls *liveServer, secret string) time.Duration {
	t.Helper()
	tripped := spike(t, ls, secret)
	return time.Since(tripped)
}

// spike is spikeUntilSuspended that returns when the crossing request was
// sent (the 401 has just been answered).
func spike(t *testing.T, ls *liveServer, secret string) (tripped time.Time) {
	t.Helper()
	for i := 1; ; i++ {
		if i == 7 { // the 7th request exceeds limit max(0+6·1, 5) = 6
			tripped = time.Now()
		}
		a := ls.gateway(patientPath, secret, nil)
		if a.status == http.StatusUnauthorized {
			if a.code != "token_suspended" {
				t.Fatalf("401 %s, want token_suspended", a.code)
			}
			if tripped.IsZero() {
				t.Fatalf("suspended after %d requests, before the spike", i)
			}
			return tripped
		}
		if a.status >= 500 || a.status == http.StatusForbidden {
			t.Fatalf("request %d: %d %s", i, a.status, a.code)
		}
		if !tripped.IsZero() && time.Since(tripped) > 2*time.Second {
			t.Fatalf("not suspended %v after the spike", time.Since(tripped))
		}
	}
}

// hookReceiver is a real HTTPS webhook receiver that checks signatures
// as the README tells receivers to, with the server's clock.
type hookReceiver struct {
	srv    *httptest.Server
	caFile string
	key    string // hex, the env value
	mu     sync.Mutex
	got    map[string]time.Time // token id → first verified alert's arrival
	bodies []sink.Payload
	bad    int
}

func newHookReceiver(t *testing.T, now func() time.Time) *hookReceiver {
	kb := make([]byte, 32)
	rand.Read(kb)
	h := &hookReceiver{key: hex.EncodeToString(kb), got: map[string]time.Time{}}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived := time.Now()
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := sink.Verify([]byte(h.key), r.Header.Get(sink.HeaderTimestamp), r.Header.Get(sink.HeaderSignature), body, now()); err != nil {
			h.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p sink.Payload
		json.Unmarshal(body, &p)
		h.bodies = append(h.bodies, p)
		if _, ok := h.got[p.TokenID]; !ok {
			h.got[p.TokenID] = arrived
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	h.caFile = filepath.Join(t.TempDir(), "hook-ca.pem")
	os.WriteFile(h.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}), 0o600)
	return h
}

func (h *hookReceiver) arrival(id string, within time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(within)
	for {
		h.mu.Lock()
		at, ok := h.got[id]
		h.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return at, ok
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// withHook configures a webhook to h, its key in the environment.
func withHook(t *testing.T, h *hookReceiver) func(*config.Config) {
	t.Setenv("PHIGATE_TEST_HOOK_KEY", h.key)
	return func(c *config.Config) {
		c.Monitor.Sinks.Webhooks = []config.Webhook{{URL: h.srv.URL + "/phigate", CAFile: h.caFile, Secret: "env:PHIGATE_TEST_HOOK_KEY"}}
	}
}

func TestLiveWebhookReceivesTheSignedAlert(t *testing.T) {
	var clk func() time.Time
	h := newHookReceiver(t, func() time.Time { return clk() })
	ls := startLive(t, withHook(t, h))
	clk = ls.clk.Now
	it := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}, Metadata: map[string]string{"monitor.rate_floor": "5"}})
	spikeUntilSuspended(t, ls, it.Secret)
	if _, ok := h.arrival(it.ID, 2*time.Second); !ok {
		t.Fatalf("no signed alert within 2s (%d refused)", h.bad)
	}
	h.mu.Lock()
	p := h.bodies[0]
	bad := h.bad
	h.mu.Unlock()
	if bad != 0 || p.Detector != "rate_spike" || p.Action != "suspended" || !strings.HasPrefix(p.ID, sink.IDPrefix) ||
		!strings.Contains(p.Text, "rate_spike") || !strings.Contains(p.Text, it.ID) {
		t.Errorf("payload %+v (%d refused)", p, bad)
	}
	if strings.Contains(string(mustJSON(p)), "phi_") {
		t.Error("the webhook body holds something token-shaped")
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestLiveBruteForceSourceIsRefusedOnBothListeners(t *testing.T) {
	ls := startLive(t, func(c *config.Config) {
		c.BruteForce.SlowAfter, c.BruteForce.BlockAfter, c.BruteForce.Delay = 0, 5, 0
	})
	// a valid token made before the flood
	it := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}})
	for i := range 5 {
		garbage := make([]byte, 20)
		rand.Read(garbage)
		a := ls.gateway(patientPath, "phi_"+hex.EncodeToString(garbage), nil)
		if a.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i, a.status, a.code)
		}
	}
	a := ls.gateway(patientPath, it.Secret, nil)
	if a.status != http.StatusTooManyRequests || a.code != "too_many_failures" || a.header.Get("Retry-After") == "" {
		t.Fatalf("after the flood, even a valid token from the source: %d %s Retry-After %q", a.status, a.code, a.header.Get("Retry-After"))
	}
	if a := ls.admin_("GET", "/v1/alerts", nil); a.status != http.StatusTooManyRequests {
		t.Errorf("the admin API let the source in: %d", a.status)
	}
	// the cooling-off ends on the server's clock
	ls.clk.Add(config.DefaultBruteForceCoolOff + time.Second)
	al := ls.alerts("", 1)
	if len(al) != 1 || al[0].Detector != "brute_force" || al[0].Action != "ip_blocked" || al[0].Source == "" {
		t.Fatalf("alerts %+v, want one brute_force alert, action ip_blocked", al)
	}
	ipb := ls.audit("action=ip.blocked")
	if len(ipb) != 1 || ipb[0]["target"] != al[0].ID {
		t.Errorf("ip.blocked entries %v", ipb)
	}
}

func TestLiveBreakGlassUseRaisesAHighAlert(t *testing.T) {
	ls := startLive(t, nil)
	it := ls.token(client.CreateTokenRequest{Subject: "dr:er", Scopes: []string{"user/Patient.r"}, BreakGlass: true})
	a := ls.gateway(patientPath, it.Secret, map[string]string{"X-Break-Glass": "patient unconscious in ED", "X-Purpose-Of-Use": "ETREAT"})
	if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status >= 500 {
		t.Fatalf("break-glass request: %d %s", a.status, a.code)
	}
	al := ls.alerts(it.ID, 1)
	if len(al) != 1 || al[0].Detector != "break_glass" || al[0].Severity != "high" || al[0].Subject != "dr:er" {
		t.Fatalf("alerts %+v, want one high break_glass alert", al)
	}
	if strings.Contains(string(al[0].Evidence), "unconscious") || strings.Contains(al[0].Summary, "unconscious") {
		t.Error("the alert holds the justification (PHI-bearing, sealed in the audit log)")
	}
}

// TestLiveDetectionAndDeliveryLatency measures, over 100 trials against
// the real server, the time from the request that makes a spike to the
// gateway's first 401 token_suspended (windowed detection: ≤ 1 s) and to
// the signed alert at an HTTPS webhook (≤ 2 s), and logs the distribution.
func TestLiveDetectionAndDeliveryLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("100 trials against a live server")
	}
	var clk func() time.Time
	h := newHookReceiver(t, func() time.Time { return clk() })
	ls := startLive(t, withHook(t, h))
	clk = ls.clk.Now
	const trials = 100
	var susp, hook []time.Duration
	for range trials {
		it := ls.token(client.CreateTokenRequest{Scopes: []string{"user/Patient.r"}, Metadata: map[string]string{"monitor.rate_floor": "5"}})
		tripped := spike(t, ls, it.Secret)
		susp = append(susp, time.Since(tripped))
		at, ok := h.arrival(it.ID, 3*time.Second)
		if !ok {
			t.Fatalf("no alert at the webhook for %s", it.ID)
		}
		hook = append(hook, at.Sub(tripped))
	}
	for _, m := range []struct {
		name  string
		d     []time.Duration
		bound time.Duration
	}{{"spike → 401 token_suspended", susp, time.Second}, {"spike → signed alert at the webhook", hook, 2 * time.Second}} {
		slices.Sort(m.d)
		q := func(p float64) time.Duration { return m.d[int(p*float64(len(m.d)-1))] }
		t.Logf("%s over %d trials: min %v  p50 %v  p90 %v  p99 %v  max %v", m.name, len(m.d), m.d[0], q(0.5), q(0.9), q(0.99), m.d[len(m.d)-1])
		if max := m.d[len(m.d)-1]; max > m.bound {
			t.Errorf("%s: max %v, over %v", m.name, max, m.bound)
		}
	}
}

// The config file's defaults are the monitor's documented defaults.
func TestMonitorConfigDefaultsAreTheMonitorsDefaults(t *testing.T) {
	got, want := monitorConfig(config.Default()), monitor.DefaultConfig()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("monitorConfig(config.Default()) =\n%+v\nwant monitor.DefaultConfig() =\n%+v", got, want)
	}
}
