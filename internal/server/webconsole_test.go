package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/phigate/phigate/pkg/client"
)

// The real server's admin listener serves the console: its headers, a
// login with a token issued by the admin API, and the session ending at
// the next click once the API revokes that token.
func TestAdminListenerServesTheConsole(t *testing.T) {
	ls := startLive(t, nil)
	base := "https://" + ls.admin
	r := ls.call("POST", base+"/v1/tokens", ls.adminToken, nil, client.CreateTokenRequest{Subject: "privacy-officer", Scopes: []string{"admin:tokens", "admin:audit"}, TTL: "1h"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var it client.IssuedToken
	if err := json.Unmarshal(r.body, &it); err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := *ls.hc
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(path string) (int, http.Header, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	st, h, body := get("/console/login")
	if st != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Request-Id") == "" {
		t.Fatalf("login page: %d %v", st, h)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)[1]
	resp, err := hc.PostForm(base+"/console/login", url.Values{"csrf": {csrf}, "token": {it.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if st, _, body := get("/console/tokens/" + it.ID); st != 200 || !strings.Contains(body, "privacy-officer") {
		t.Fatalf("token page: %d", st)
	}
	if st, _, body := get("/console/audit?action=token.created"); st != 200 || !strings.Contains(body, `class="badge verified"`) {
		t.Fatalf("audit page: %d %s", st, body)
	}
	if r := ls.call("DELETE", base+"/v1/tokens/"+it.ID, ls.adminToken, nil, nil); r.status != 200 {
		t.Fatalf("revoke: %d", r.status)
	}
	if st, _, body := get("/console/tokens"); st != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("after the API revoked the session's token: %d", st)
	}
}
