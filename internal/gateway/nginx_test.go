package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
)

// nginxBinary finds nginx. In CI (CI=true) a missing nginx fails the test;
// elsewhere the test is skipped.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx", "nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed; CI must install it (.ci/run: apt-get install -y nginx)")
	}
	t.Skip("nginx is not installed (apt-get install nginx); CI runs this test")
	return ""
}

// nginxConf is nginx in front of app with auth_request to the gateway's
// /v1/authz: the configuration the README shows, with test paths.
const nginxConf = `{{USER}}
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path {{DIR}}/tmp/body;
    proxy_temp_path       {{DIR}}/tmp/proxy;
    fastcgi_temp_path     {{DIR}}/tmp/fastcgi;
    uwsgi_temp_path       {{DIR}}/tmp/uwsgi;
    scgi_temp_path        {{DIR}}/tmp/scgi;

    server {
        listen 127.0.0.1:{{PORT}};

        location / {
            auth_request /_phigate_authz;
            auth_request_set $phigate_subject  $upstream_http_x_phigate_subject;
            auth_request_set $phigate_token_id $upstream_http_x_phigate_token_id;
            auth_request_set $phigate_purpose  $upstream_http_x_phigate_purpose;
            auth_request_set $phigate_bg       $upstream_http_x_phigate_break_glass;
            auth_request_set $phigate_identity $upstream_http_x_phigate_identity;
            proxy_set_header Authorization         "";
            proxy_set_header X-Phigate-Subject     $phigate_subject;
            proxy_set_header X-Phigate-Token-Id    $phigate_token_id;
            proxy_set_header X-Phigate-Purpose     $phigate_purpose;
            proxy_set_header X-Phigate-Break-Glass $phigate_bg;
            proxy_set_header X-Phigate-Identity    $phigate_identity;
            proxy_pass http://{{APP}};
        }

        location = /_phigate_authz {
            internal;
            proxy_pass https://{{GATEWAY}}/v1/authz;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {{CERT}};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
        }
    }
}
`

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNginx runs nginx as a child process on a free loopback port and
// returns its address.
func startNginx(t *testing.T, bin, gateway, app, cert string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil { // nginx opens logs/error.log before reading -g
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers would otherwise drop to nobody, who cannot read the temp dirs
	}
	conf := strings.NewReplacer("{{USER}}", user, "{{DIR}}", dir, "{{PORT}}", fmt.Sprint(port),
		"{{APP}}", app, "{{GATEWAY}}", gateway, "{{CERT}}", cert).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd := exec.Command(bin, "-p", dir, "-c", "nginx.conf", "-g", "daemon off; pid "+dir+"/nginx.pid; error_log stderr;")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // nginx's own process group
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nginx exited:\n%s", stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s:\n%s", addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNginxAuthRequest puts a real nginx with auth_request to /v1/authz in
// front of a small upstream: a scoped token passes (and the upstream
// verifies the identity phigate signed), a token with the wrong scope and a
// revoked token are refused by nginx, and nothing refused reaches the
// upstream.
func TestNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx")
	}
	bin := nginxBinary(t)
	fx := newFixture(t)

	var hits atomic.Int64
	var mu sync.Mutex
	var lastSubject string
	var verifyErr error
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		id, err := VerifyRequest(r, fx.signer.PublicKey(), fx.clk.Now())
		mu.Lock()
		verifyErr = err
		if id != nil {
			lastSubject = id.Subject
		}
		mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			http.Error(w, "the client's token reached the upstream", 500)
			return
		}
		fmt.Fprintf(w, "record %s for %s", r.URL.Path, r.Header.Get(HeaderSubject))
	}), ReadHeaderTimeout: 5 * time.Second}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })

	ngx := startNginx(t, bin, fx.addr, appLn.Addr().String(), fx.certFile)

	ok, okRec := fx.token(t, authority.Spec{Subject: "records-app", Scopes: []string{"records:read"}})
	wrong, _ := fx.token(t, authority.Spec{Subject: "billing-app", Scopes: []string{"billing:read"}})
	revoked, revRec := fx.token(t, authority.Spec{Subject: "old-app", Scopes: []string{"records:read"}})
	if _, err := fx.auth.Revoke(context.Background(), fx.root, revRec.ID, false, "test"); err != nil {
		t.Fatal(err)
	}

	get := func(secret, path string, hdr ...string) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", "http://"+ngx+path, nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	status, body, _ := get(ok, "/records/r/42")
	if status != 200 || body != "record /records/r/42 for records-app" {
		t.Fatalf("scoped token: %d %q", status, body)
	}
	mu.Lock()
	if verifyErr != nil || lastSubject != "records-app" {
		t.Errorf("the upstream could not verify the identity: %v (%q)", verifyErr, lastSubject)
	}
	mu.Unlock()
	found := false
	fx.rec.mu.Lock()
	evs := fx.rec.events
	for _, e := range evs {
		if e.Kind == KindGrant && e.Via == "authz" && e.TokenID == okRec.ID && e.Path == "/records/r/42" && e.SourceIP == "127.0.0.1" {
			found = true
		}
	}
	if !found {
		t.Errorf("no grant recorded for the nginx request: %+v", evs)
	}
	fx.rec.mu.Unlock()

	// nginx passes the client's headers on: the configuration sets every
	// identity header, and clears Traefik's, so forged ones go nowhere
	status, body, _ = get(ok, "/records/r/43", "X-Phigate-Token-Id", "tok_forged", "X-Phigate-Purpose", "ETREAT",
		"X-Phigate-Break-Glass", "true", "X-Forwarded-Uri", "/records/other", "X-Forwarded-Method", "GET")
	mu.Lock()
	if status != 200 || verifyErr != nil {
		t.Errorf("with forged headers: %d %q, upstream verification %v", status, body, verifyErr)
	}
	mu.Unlock()

	for name, c := range map[string]struct {
		secret, path string
		status       int
		wwwAuth      string
	}{
		"wrong scope":   {wrong, "/records/r/42", 403, ""},
		"revoked":       {revoked, "/records/r/42", 401, `error="invalid_token"`},
		"no token":      {"", "/records/r/42", 401, ""},
		"no such route": {ok, "/records/other", 403, ""},
	} {
		status, body, h := get(c.secret, c.path)
		if status != c.status {
			t.Errorf("%s: %d %q, want %d", name, status, body, c.status)
		}
		if c.wwwAuth != "" && !strings.Contains(h.Get("WWW-Authenticate"), c.wwwAuth) {
			t.Errorf("%s: WWW-Authenticate %q", name, h.Get("WWW-Authenticate"))
		}
	}
	// nginx passes a header the app reads as one value, sent twice, on to
	// the auth call too: refused there (nginx answers 500 for the 400),
	// and the app is not reached (nginx refuses some, If-Match say, itself)
	for _, k := range []string{"Content-Type", "Prefer", "X-Original-Host"} {
		req, _ := http.NewRequest("GET", "http://"+ngx+"/records/r/44", nil)
		req.Header.Set("Authorization", "Bearer "+ok)
		req.Header.Add(k, "a/b")
		req.Header.Add(k, "c/d")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("%s twice through nginx: %d", k, resp.StatusCode)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("the upstream was reached %d times, want twice", n)
	}
}
