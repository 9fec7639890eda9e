package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/audit"
)

// benchPage measures the server time of one console page, session
// verification included, through the admin API's handler.
func benchPage(b *testing.B, e *env, path, want string) { benchPageEach(b, e, path, want, nil) }

// benchPageEach is benchPage with each() run before every request,
// untimed (to empty a cache).
func benchPageEach(b *testing.B, e *env, path, want string, each func()) {
	id, _, err := e.con.sess.create("", e.root, e.clock.Now())
	if err != nil {
		b.Fatal(err)
	}
	h := e.srv.Config.Handler
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = "127.0.0.1:5000"
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
		b.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if each != nil {
			b.StopTimer()
			each()
			b.StartTimer()
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// The token list, 100 tokens on the page.
func BenchmarkTokensPage100(b *testing.B) {
	e := newEnv(b, envOpts{})
	for i := 0; i < 120; i++ {
		e.token("bench", "patient/Observation.rs")
	}
	benchPage(b, e, "/console/tokens?subject=bench", `rel="next"`)
}

// An audit explorer page of 100 entries, each one's inclusion proof
// verified for the badge, in a log of 10,000.
func BenchmarkAuditPage100Verified(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.seedAccess(5000, "pat-1")
	e.seedAccess(5000, "pat-2")
	benchPage(b, e, "/console/audit?patient=pat-1", "each of the 100 entries shown is included")
}

// The badge alone: 100 inclusion proofs fetched and verified.
func BenchmarkBadgeVerify100(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.seedAccess(10000, "pat-1")
	pg, err := e.log.Search(b.Context(), &audit.Query{Desc: true, Limit: 100})
	if err != nil || len(pg.Entries) != 100 {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if bd := e.con.verify(b.Context(), pg.Entries); !bd.OK {
			b.Fatal(bd.Problem)
		}
	}
}

// The explorer's first page (newest 100, no filter) in a log of 10,000.
func BenchmarkAuditPage100VerifiedNewest(b *testing.B) {
	e := newEnv(b, envOpts{})
	e.seedAccess(10000, "pat-1")
	benchPage(b, e, "/console/audit", "each of the 100 entries shown is included")
}
