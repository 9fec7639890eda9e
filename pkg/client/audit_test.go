package client_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

func TestAuditCallsSendTheContractRequest(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx := context.Background()

	f.answer(200, `{"entries":[{"seq":4,"time":"2026-01-02T03:04:05Z","action":"access.denied","outcome":"denied","actor":{"subject":"a"},"source":{},"duration_ms":1.5}],"next":"4"}`, nil)
	page, err := c.AuditSearch(ctx, client.AuditQuery{
		From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Subject: "a", TokenID: "tok_1",
		Actions: []string{"access.denied", "auth.failed"}, Outcome: "denied", Upstream: "fhir", PathPrefix: "/fhir", Limit: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.last(t)
	q, _ := url.ParseQuery(r.RawQuery)
	if r.Method != "GET" || r.Path != "/v1/audit" || r.Auth != "Bearer "+testToken ||
		q.Get("from") != "2026-01-01T00:00:00Z" || q.Get("subject") != "a" || q.Get("token_id") != "tok_1" ||
		strings.Join(q["action"], ",") != "access.denied,auth.failed" || q.Get("outcome") != "denied" ||
		q.Get("upstream") != "fhir" || q.Get("path_prefix") != "/fhir" || q.Get("limit") != "5" {
		t.Fatalf("%+v", r)
	}
	if len(page.Entries) != 1 || page.Entries[0].Seq != 4 || page.Entries[0].DurationMS != 1.5 || page.Next != "4" {
		t.Fatalf("%+v", page)
	}

	f.answer(200, `{"origin":"phigate/n1","size":7,"root_hash":"AAAA","checkpoint":"phigate/n1\n7\nAAAA\n\n— phigate/n1 x\n"}`, nil)
	cp, err := c.AuditCheckpoint(ctx)
	if err != nil || cp.Size != 7 || f.last(t).Path != "/v1/audit/checkpoint" {
		t.Fatalf("%+v %v", cp, err)
	}

	bundle := `{"format":"phigate-audit-proof/1","seq":3,"entry":{"seq":3,"time":"2026-01-02T03:04:05Z","action":"x","actor":{},"source":{}},"entry_bytes":"AQ==","tree_size":9,"inclusion":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],"checkpoint":"c"}`
	f.answer(200, bundle, nil)
	p, err := c.AuditProof(ctx, 3)
	if err != nil || p.Seq != 3 || p.TreeSize != 9 || len(p.Inclusion) != 1 || len(p.Inclusion[0]) != 32 || string(p.Raw) != bundle {
		t.Fatalf("%+v %v", p, err)
	}
	if r := f.last(t); r.Path != "/v1/audit/proof" || r.RawQuery != "seq=3" {
		t.Fatalf("%+v", r)
	}

	f.answer(200, `{"origin":"phigate/n1","key":"phigate/n1+01234567+AQID"}`, nil)
	k, err := c.AuditKey(ctx)
	if err != nil || k.Key != "phigate/n1+01234567+AQID" {
		t.Fatalf("%+v %v", k, err)
	}
	if r := f.last(t); r.Path != "/v1/audit/key" || r.Auth != "" {
		t.Fatalf("the public key is fetched without credentials: %+v", r)
	}
}

func TestAllAuditFollowsTheCursor(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	f.answer(200, `{"entries":[{"seq":9,"time":"2026-01-02T03:04:05Z","action":"x","actor":{},"source":{}}],"next":"9"}`, nil)
	var last error
	for _, err := range c.AllAudit(context.Background(), client.AuditQuery{Desc: true}) {
		last = err
	}
	if last == nil || !strings.Contains(last.Error(), "repeated audit cursor") {
		t.Fatalf("a repeated cursor must end the iteration: %v", last)
	}
	reqs := f.count()
	if reqs != 2 {
		t.Fatalf("%d requests", reqs)
	}
	if r := f.last(t); !strings.Contains(r.RawQuery, "before=9") {
		t.Fatalf("descending pages continue with before: %q", r.RawQuery)
	}
}
