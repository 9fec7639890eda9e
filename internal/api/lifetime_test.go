package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

func (e *env) issued(r resp, want int) client.IssuedToken {
	e.t.Helper()
	if r.status != want {
		e.t.Fatalf("got %d %s, want %d", r.status, r.body, want)
	}
	var it client.IssuedToken
	if err := json.Unmarshal(r.body, &it); err != nil {
		e.t.Fatal(err)
	}
	return it
}

func TestATokenNeverOutlivesItsIssuerOverHTTP(t *testing.T) {
	e := newEnv(t)
	p := e.create(client.CreateTokenRequest{Subject: "issuer", Scopes: []string{"admin:tokens", "billing:read"}, TTL: "10m", MaxLifetime: "20m"})
	if p.NotAfter.IsZero() || p.NotAfter.Before(p.ExpiresAt) {
		t.Fatalf("not_after %v, expires_at %v", p.NotAfter, p.ExpiresAt)
	}
	c := e.issued(e.json("POST", "/v1/tokens", p.Secret, client.CreateTokenRequest{Subject: "child", Scopes: []string{"billing:read"}, TTL: "3m", MaxLifetime: "2h"}), 201)
	if !c.NotAfter.Equal(p.NotAfter) {
		t.Fatalf("child not_after %v, want the issuer's %v", c.NotAfter, p.NotAfter)
	}
	var shown client.Token
	if r := e.json("GET", "/v1/tokens/"+c.ID, e.admin, nil); r.status != 200 || json.Unmarshal(r.body, &shown) != nil || !shown.NotAfter.Equal(c.NotAfter) {
		t.Fatalf("show: %d %s", r.status, r.body)
	}
	// self-rotation cannot ask for more than its rotation period
	if r := e.json("POST", "/v1/tokens/self/rotate", c.Secret, client.RotateRequest{TTL: "1h"}); r.status != 400 {
		t.Fatalf("rotation ttl above the period: %d %s", r.status, r.body)
	}
	// and gets the issuer's end at most
	rot := e.issued(e.json("POST", "/v1/tokens/self/rotate", c.Secret, client.RotateRequest{}), 200)
	if rot.ExpiresAt.After(p.NotAfter) {
		t.Fatalf("self-rotated to %v, after the issuer's not_after %v", rot.ExpiresAt, p.NotAfter)
	}
	// introspection's exp is the expiry, not the not_after
	r0 := e.do("POST", "/v1/introspect", e.admin, "application/x-www-form-urlencoded", []byte("token="+p.Secret))
	var in client.Introspection
	if r0.status != 200 || json.Unmarshal(r0.body, &in) != nil || !in.Active || in.Exp != p.ExpiresAt.Unix() || p.ExpiresAt.Equal(p.NotAfter) {
		t.Fatalf("introspection: %d %s, want exp %d (not the not_after)", r0.status, r0.body, p.ExpiresAt.Unix())
	}
	// PATCH cannot move the expiry past not_after either
	later := p.NotAfter.Add(time.Minute)
	r := e.json("PATCH", "/v1/tokens/"+c.ID, e.admin, client.UpdateTokenRequest{ExpiresAt: &later})
	if code, field := errCode(t, r); r.status != 400 || code != "invalid_request" || field != "expires_at" {
		t.Fatalf("PATCH past not_after: %d %s", r.status, r.body)
	}
	// once the issuer is revoked, the child can no longer be renewed
	if r := e.json("DELETE", "/v1/tokens/"+p.ID, e.admin, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	for _, who := range []string{rot.Secret, e.admin} {
		path := "/v1/tokens/self/rotate"
		if who == e.admin {
			path = "/v1/tokens/" + c.ID + "/rotate"
		}
		r := e.json("POST", path, who, client.RotateRequest{})
		if code, _ := errCode(t, r); r.status != 409 || code != "issuer_revoked" {
			t.Fatalf("%s after the issuer's revocation: %d %s", path, r.status, r.body)
		}
	}
}

func TestSubjectPrefixOverHTTP(t *testing.T) {
	e := newEnv(t)
	for name, p := range map[string]string{"newline": "team-a/\n", "padded": " team-a/", "long": string(make([]byte, 300))} {
		r := e.json("POST", "/v1/tokens", e.admin, client.CreateTokenRequest{Subject: "team-a-admin", Scopes: []string{"admin:tokens"}, SubjectPrefix: p})
		if code, field := errCode(t, r); r.status != 400 || code != "invalid_request" || field != "subject_prefix" {
			t.Errorf("%s: %d %s, want 400 on subject_prefix", name, r.status, r.body)
		}
	}
	d := e.create(client.CreateTokenRequest{Subject: "team-a-admin", Scopes: []string{"admin:tokens", "billing:read"}, TTL: "1h", SubjectPrefix: "team-a/"})
	if d.SubjectPrefix != "team-a/" {
		t.Fatalf("subject_prefix %q", d.SubjectPrefix)
	}
	r := e.json("POST", "/v1/tokens", d.Secret, client.CreateTokenRequest{Subject: "team-b/app", Scopes: []string{"billing:read"}})
	if code, field := errCode(t, r); r.status != 403 || code != "attenuation" || field != "subject" {
		t.Fatalf("subject outside the prefix: %d %s", r.status, r.body)
	}
	c := e.issued(e.json("POST", "/v1/tokens", d.Secret, client.CreateTokenRequest{Subject: "team-a/app", Scopes: []string{"billing:read"}}), 201)
	if c.SubjectPrefix != "team-a/" {
		t.Fatalf("inherited subject_prefix %q", c.SubjectPrefix)
	}
	for _, tc := range []struct {
		to     string
		status int
	}{{"team-", 400}, {"", 400}, {"team-a/app/", 200}} {
		to := tc.to
		r := e.json("PATCH", "/v1/tokens/"+c.ID, e.admin, client.UpdateTokenRequest{SubjectPrefix: &to})
		if r.status != tc.status {
			t.Errorf("PATCH subject_prefix %q: %d %s, want %d", to, r.status, r.body, tc.status)
		}
	}
}
