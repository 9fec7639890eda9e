package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const alertJSON = `{"id":"alr_0Abc","detector":"rate_spike","severity":"high","token_id":"tok_abc","subject":"svc:lab",
"summary":"rate spike: 120 requests in 1s","evidence":{"count_1s":120,"baseline":2},"audit_seqs":[41,42],
"action":"suspended","created_at":"2026-01-02T03:04:05Z","state":"open"}`

func TestAlertCommandsSendTheRightRequest(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/alerts", 200, `{"alerts":[`+alertJSON+`],"next":"alr_0Abc"}`)
	f.on("GET", "/v1/alerts/alr_0Abc", 200, alertJSON)
	f.on("POST", "/v1/alerts/alr_0Abc/ack", 200, strings.Replace(alertJSON, `"state":"open"`, `"state":"acked","acked_by":"tok_op","ack_note":"ok"`, 1))
	for _, tc := range []struct {
		name              string
		args              []string
		method, path, qry string
		body              string
		stdout            []string
	}{
		{"list", []string{"alerts", "list"}, "GET", "/v1/alerts", "", "", []string{"ID", "SEVERITY", "alr_0Abc", "rate_spike", "tok_abc", "suspended", "open"}},
		{"list filtered", []string{"alerts", "list", "--token", "tok_abc", "--severity", "high", "--state", "open",
			"--since", "2026-01-02T00:00:00Z", "--until", "2026-01-03T00:00:00Z", "--limit", "5", "--after", "alr_0"},
			"GET", "/v1/alerts", "after=alr_0&limit=5&severity=high&since=2026-01-02T00%3A00%3A00Z&state=open&token=tok_abc&until=2026-01-03T00%3A00%3A00Z", "", nil},
		{"show", []string{"alerts", "show", "alr_0Abc"}, "GET", "/v1/alerts/alr_0Abc", "", "",
			[]string{"detector:", "rate_spike", "evidence:", `"count_1s":120`, "audit_seqs:", "41 42"}},
		{"ack", []string{"alerts", "ack", "alr_0Abc", "--note", "ok"}, "POST", "/v1/alerts/alr_0Abc/ack", "", `{"note":"ok"}`,
			[]string{"Alert alr_0Abc acknowledged."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, f.env(), "", tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			s := f.last(t)
			if s.Method != tc.method || s.Path != tc.path || s.Query != tc.qry {
				t.Errorf("request %s %s?%s, want %s %s?%s", s.Method, s.Path, s.Query, tc.method, tc.path, tc.qry)
			}
			if tc.body != "" {
				jsonBodyEqual(t, s.Body, tc.body)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func TestAlertsJSONIsTheAPIsAlert(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/alerts/alr_0Abc", 200, alertJSON)
	r := runCLI(t, f.env(), "", "alerts", "show", "alr_0Abc", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, r.stdout)
	}
	if got["id"] != "alr_0Abc" || got["detector"] != "rate_spike" || got["state"] != "open" {
		t.Errorf("--json = %v", got)
	}
}

func TestAlertCommandsRefuseBadUsage(t *testing.T) {
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"alerts", "show"},
		{"alerts", "show", "a", "b"},
		{"alerts", "ack", " "},
		{"alerts", "list", "--since", "yesterday"},
		{"alerts", "list", "--limit", "-1"},
	} {
		r := runCLI(t, f.env(), "", args...)
		if r.code != exitUsage {
			t.Errorf("phigate %v: exit %d, want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("bad usage reached the server %d times", n)
	}
}

func TestAlertsListWaitAsksAgainUntilAnAlertComes(t *testing.T) {
	f := newFakeAPI(t)
	calls := 0
	f.mu.Lock()
	f.answers["GET /v1/alerts"] = func(*http.Request) (int, string) {
		calls++
		if calls < 3 {
			return 200, `{"alerts":[]}`
		}
		return 200, `{"alerts":[` + alertJSON + `]}`
	}
	f.mu.Unlock()
	r := runCLI(t, f.env(), "", "alerts", "list", "--token", "tok_abc", "--wait", "5s")
	if r.code != 0 || !strings.Contains(r.stdout, "alr_0Abc") {
		t.Fatalf("exit %d, stdout:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	// nothing comes: the empty list, after the wait
	f.on("GET", "/v1/alerts", 200, `{"alerts":[]}`)
	r = runCLI(t, f.env(), "", "alerts", "list", "--wait", "250ms")
	if r.code != 0 || strings.Contains(r.stdout, "alr_") {
		t.Errorf("exit %d, stdout:\n%s", r.code, r.stdout)
	}
	if r := runCLI(t, f.env(), "", "alerts", "list", "--wait", "11m"); r.code != exitUsage {
		t.Errorf("--wait 11m: exit %d", r.code)
	}
}
