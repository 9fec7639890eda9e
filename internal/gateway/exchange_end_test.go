package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
)

// rawExchange sends req on a new TLS connection and reads one answer.
func rawExchange(t *testing.T, fx *fixture, req string, closeWrite bool) (*http.Response, *tls.Conn, error) {
	t.Helper()
	c := fx.dial(t)
	io.WriteString(c, req)
	if closeWrite {
		c.CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	return resp, c, err
}

// An exchange cut short still gets its completion record, with what got
// through: the upstream breaking off its answer (502, aborted) or the
// client going away mid-download (499, aborted).
func TestCutExchangesAreCompleted(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/invoices/broken" {
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(200)
			w.Write([]byte(strings.Repeat("x", 5000)))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		chunk := []byte(strings.Repeat("x", 64<<10))
		for range 400 { // 25 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	resp, _, err := rawExchange(t, fx, "GET /billing/invoices/broken HTTP/1.1\r\nHost: x\r\nX-Request-Id: cut-upstream\r\nAuthorization: Bearer "+s+"\r\n\r\n", false)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	evs := fx.rec.byRequest(t, "cut-upstream", 2)
	if len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Status != http.StatusBadGateway || evs[1].Reason != CodeAborted || evs[1].BytesOut < 5000 {
		t.Errorf("upstream broke off: events %+v", evs)
	}

	resp, c, err := rawExchange(t, fx, "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: cut-client\r\nAuthorization: Bearer "+s+"\r\n\r\n", false)
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, resp.Body, 1<<20)
	c.Close()
	evs = fx.rec.byRequest(t, "cut-client", 2)
	if len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Reason != CodeAborted || evs[1].BytesOut < 1<<20 {
		t.Errorf("client went away: events %+v", evs)
	}
}

// A client that half-closes while the upstream works gets no answer
// rather than an empty 200, and the exchange is recorded as cut.
func TestHalfClosedClientGetsNoFakeAnswer(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte(`{"ok":true}`))
	})
	resp, _, err := rawExchange(t, fx, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nX-Request-Id: half-closed\r\nContent-Length: 5\r\nAuthorization: Bearer "+s+"\r\n\r\nhello", true)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && len(b) == 0 {
			t.Errorf("an empty 200 for an exchange the gateway cut")
		}
	}
	evs := fx.rec.byRequest(t, "half-closed", 2)
	if len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Status != 499 {
		t.Errorf("events %+v", evs)
	}
}

// Informational answers of the upstream (103 Early Hints with whatever
// headers) do not reach the client, the final answer keeps the gateway's
// request id, and a client's Expect: 100-continue is answered by the
// gateway, not passed on.
func TestInformationalAnswersAreDropped(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Set-Cookie", "upstream_session=abc")
		h.Set("Location", "https://billing.internal.example:8443/secret")
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("Set-Cookie")
		h.Del("Location")
		w.Write([]byte(`{"ok":true}`))
	})
	resps := fx.raw(t, "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: hints\r\nAuthorization: Bearer "+s+"\r\n\r\n", 1)
	if len(resps) == 0 || resps[0].StatusCode != http.StatusOK || resps[0].Header.Get("X-Request-Id") != "hints" || resps[0].Header.Get("Set-Cookie") != "" {
		for _, r := range resps {
			t.Errorf("answer %d %v", r.StatusCode, r.Header)
		}
	}

	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"ok":true}`))
	})
	c := fx.dial(t)
	io.WriteString(c, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nX-Request-Id: expect\r\nExpect: 100-continue\r\nContent-Length: 5\r\nAuthorization: Bearer "+s+"\r\n\r\n")
	br := bufio.NewReader(c)
	var final *http.Response
	for range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusContinue {
			io.WriteString(c, "hello")
			continue
		}
		final = resp
		break
	}
	if final == nil || final.StatusCode != http.StatusOK || final.Header.Get("X-Request-Id") != "expect" {
		t.Errorf("final answer %+v", final)
	}
	if got := fx.api.lastSeen().Header.Get("Expect"); got != "" {
		t.Errorf("the upstream got Expect: %s", got)
	}
}

// Shutdown cuts the requests still in flight when its context ends, and
// their completions are recorded before it returns: no grant is left
// without its completion in the log.
func TestShutdownCompletesCutExchanges(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:*"}})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered := make(chan struct{}, 1)
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	go func() {
		c, err := tls.Dial("tcp", fx.addr, fx.tlsCfg)
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "GET /billing/invoices/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: at-shutdown\r\nAuthorization: Bearer "+s+"\r\n\r\n")
		io.Copy(io.Discard, c)
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := fx.gw.Shutdown(ctx) // an error: a request was cut
	t.Logf("shutdown: %v", err)
	fx.rec.mu.Lock()
	var kinds []EventKind
	for _, e := range fx.rec.events {
		if e.RequestID == "at-shutdown" {
			kinds = append(kinds, e.Kind)
		}
	}
	fx.rec.mu.Unlock()
	if len(kinds) != 2 || kinds[1] != KindComplete {
		t.Errorf("events of the cut request when Shutdown returned: %v", kinds)
	}
}

// An upstream that answers before it has read the upload: the transport
// may go on reading the client's body after the handler returned. Under
// -race this shows the counters and the connection's deadline are not
// shared unsafely with the completion.
func TestEarlyAnswerDuringUpload(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:write"}})
	fx.api.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("early"))
	})
	c := fx.dial(t)
	io.WriteString(c, "POST /billing/upload HTTP/1.1\r\nHost: x\r\nX-Request-Id: early\r\nAuthorization: Bearer "+s+"\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := strings.Repeat("y", 16<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 40 {
			if _, err := io.WriteString(c, "4000\r\n"+chunk+"\r\n"); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		io.WriteString(c, "0\r\n\r\n")
	}()
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		io.ReadAll(resp.Body)
	}
	<-done
	if evs := fx.rec.byRequest(t, "early", 2); len(evs) != 2 || evs[1].Kind != KindComplete {
		t.Errorf("events %+v", evs)
	}
}
