package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/phigate/phigate/pkg/client"
)

// BenchmarkIntrospect compares the handler cost of an introspection with
// each client authentication method (no TLS: the handler only).
func BenchmarkIntrospect(b *testing.B) {
	e := newEnv(b)
	s := e.srv.Config.Handler
	rs := e.create(client.CreateTokenRequest{Subject: "rs", Scopes: []string{"introspect"}})
	subj := e.create(client.CreateTokenRequest{Subject: "dr", Scopes: []string{"patient/Observation.rs"}})
	tok := url.Values{"token": {subj.Secret}}.Encode()
	post := url.Values{"token": {subj.Secret}, "client_id": {rs.ID}, "client_secret": {rs.Secret}}.Encode()
	for _, c := range []struct{ name, auth, body string }{
		{"Bearer", "Bearer " + rs.Secret, tok},
		{"ClientSecretBasic", basicAuth(rs.ID, rs.Secret), tok},
		{"ClientSecretPost", "", post},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/introspect", strings.NewReader(c.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if c.auth != "" {
					req.Header.Set("Authorization", c.auth)
				}
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
