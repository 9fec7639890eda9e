package gateway

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/phigate/phigate/internal/authority"
)

// raw sends data on a new TLS connection to the gateway and returns the
// responses read until the server closes the connection or want responses
// arrived.
func (fx *fixture) raw(t *testing.T, data string, want int) []*http.Response {
	t.Helper()
	c := fx.dial(t)
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for len(out) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
	return out
}

func TestRequestSmugglingIsRefused(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	auth := "Authorization: Bearer " + s + "\r\n"
	for name, req := range map[string]string{
		"CL then TE": "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE then CL": "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n" +
			"GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"lower-case names":    "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
		"differing CL":        "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"TE with CL on 1.0":   "POST /billing/upload HTTP/1.0\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
		"TE not chunked":      "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"two TE":              "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"folded TE":           "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nX-A: b\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		"CL with sign":        "POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: +5\r\n\r\nhello",
		"oversized head":      "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n" + auth + "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
		"absolute form, CLTE": "POST https://x/billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			resps := fx.raw(t, req, 2)
			if len(resps) == 0 {
				return // the server closed the connection without an answer: nothing forwarded either
			}
			if resps[0].StatusCode < 400 {
				t.Errorf("answered %d", resps[0].StatusCode)
			}
			if len(resps) > 1 {
				t.Errorf("a second response on the same connection: %d", resps[1].StatusCode)
			}
		})
	}
	if n := fx.api.count.Load(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
	// the refusal of an ambiguous request is audited
	resps := fx.raw(t, "POST /billing/upload HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1)
	if len(resps) != 1 || resps[0].StatusCode != 400 || !resps[0].Close {
		t.Fatalf("%+v", resps)
	}
	if evs := fx.rec.byRequest(t, resps[0].Header.Get("X-Request-Id"), 1); len(evs) != 1 || evs[0].Reason != CodeAmbiguousFraming || evs[0].SourceIP != "127.0.0.1" {
		t.Errorf("events %+v", evs)
	}
}

// TestMalformedChunkedBodyEndsTheExchange: a chunked body's syntax is
// only known as it streams; the upstream then sees an aborted request,
// never a second one smuggled in the body.
func TestMalformedChunkedBodyEndsTheExchange(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	var complete atomic.Int64
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			complete.Add(1)
		}
	})
	resps := fx.raw(t, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+s+"\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\nhello\r\n0\r\n\r\nGET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	// the client's malformed body, not the upstream's failure
	if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest {
		t.Fatalf("%d responses, first %v", len(resps), resps)
	}
	if complete.Load() != 0 || fx.api.count.Load() > 1 {
		t.Errorf("upstream: %d complete bodies, %d requests", complete.Load(), fx.api.count.Load())
	}
}

func TestWellFramedRequestsShareAConnection(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	auth := "Authorization: Bearer " + s + "\r\n"
	pipelined := "" +
		"GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n" +
		"POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"POST /billing/upload HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 11\r\n\r\nhello world" +
		"PUT /billing/upload?x=1 HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 3\r\n\r\nabc" + // (a GET with a body is refused)
		"GET /billing/invoices/3 HTTP/1.1\nHost: x\n" + strings.TrimSuffix(auth, "\r\n") + "\n\n"
	resps := fx.raw(t, pipelined, 5)
	if len(resps) != 5 {
		t.Fatalf("%d responses", len(resps))
	}
	for i, r := range resps {
		if r.StatusCode != 200 {
			t.Errorf("response %d: %d", i, r.StatusCode)
		}
	}
	if fx.api.count.Load() != 5 {
		t.Errorf("upstream saw %d", fx.api.count.Load())
	}
}

// Folded header lines (obs-fold) are refused: joining thousands of them
// took quadratic time before any authentication.
func TestFoldedHeaderLinesAreRefused(t *testing.T) {
	fx := newFixture(t)
	for name, req := range map[string]string{
		"folded field": "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
		"many folds":   "POST /billing/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + strings.Repeat(" \n", 30000) + "\r\n",
	} {
		resps := fx.raw(t, req, 1)
		if len(resps) == 1 && resps[0].StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d", name, resps[0].StatusCode)
		}
	}
	if fx.api.count.Load() != 0 {
		t.Error("forwarded")
	}
}

// Up to 4 CR or LF bytes after a POST are skipped, as net/http does (RFC
// 9112 §2.2); pipelined requests sent in one TLS record are all served.
func TestTolerantFramingAgreesWithNetHTTP(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	auth := "Authorization: Bearer " + s + "\r\n"
	resps := fx.raw(t, "POST /billing/upload HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 5\r\n\r\nhello\r\n"+
		"GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n"+auth+"\r\n", 2)
	if len(resps) != 2 || resps[0].StatusCode != 200 || resps[1].StatusCode != 200 {
		t.Errorf("a GET after a POST and an empty line: %d responses", len(resps))
	}
	var b strings.Builder
	for range 40 {
		b.WriteString("GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n")
	}
	fx.tlsCfg = fx.tlsCfg.Clone()
	fx.tlsCfg.DynamicRecordSizingDisabled = true // one record, as OpenSSL sends
	resps = fx.raw(t, b.String(), 40)
	ok := 0
	for _, r := range resps {
		if r.StatusCode == 200 {
			ok++
		}
	}
	if ok != 40 {
		t.Errorf("40 pipelined requests: %d answered 200", ok)
	}
}
