package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

var reGateway = regexp.MustCompile(`gateway:\s+https://(\S+)`)

// gwServer is `phigate server --dev` with its gateway on an ephemeral port.
type gwServer struct {
	*devServer
	gw string
}

// startGatewayDev starts the binary in dev mode with the admin API and the
// gateway on ephemeral ports, plus extra arguments (such as --config) and
// environment.
func startGatewayDev(t *testing.T, dir string, env []string, extra ...string) *gwServer {
	t.Helper()
	bin := phigateBinary(t)
	s := &devServer{dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	args := append([]string{"server", "--dev", "--data", dir, "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"}, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout = io.MultiWriter(pw, s.stdout)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { s.stop(t) })
	g := &gwServer{devServer: s}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for s.addr == "" || s.pin == "" || g.gw == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("server exited early; stderr:\n%s", s.stderr.String())
			}
			if m := reAddr.FindStringSubmatch(l); m != nil {
				s.addr = m[1]
			}
			if m := rePin.FindStringSubmatch(l); m != nil {
				s.pin = m[1]
			}
			if m := reGateway.FindStringSubmatch(l); m != nil {
				g.gw = m[1]
			}
		case <-deadline:
			t.Fatalf("server did not start; stdout:\n%s\nstderr:\n%s", s.stdout.String(), s.stderr.String())
		}
	}
	time.Sleep(100 * time.Millisecond)
	if m := reToken.FindStringSubmatch(s.stdout.String()); m != nil {
		s.adm = m[1]
	}
	go func() {
		for range lines {
		}
	}()
	return g
}

type gwReply struct {
	status int
	header http.Header
	body   string
	code   string
}

func (g *gwServer) request(t *testing.T, method, path, secret string, hdr map[string]string, body string) gwReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+g.gw+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := g.http(t).Do(req) // pinned to the server's key, like the admin API
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return gwReply{status: resp.StatusCode, header: resp.Header, body: string(b), code: reasonCode(b)}
}

// reasonCode is the reason code of a refusal: error.code of a JSON error,
// or the urn:phigate:reason coding of an OperationOutcome (the refusals
// of fhir upstreams).
func reasonCode(b []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
		Issue []struct {
			Details struct {
				Coding []struct{ System, Code string }
			}
		}
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	for _, is := range e.Issue {
		for _, c := range is.Details.Coding {
			if c.System == "urn:phigate:reason" {
				return c.Code
			}
		}
	}
	return e.Error.Code
}

// gwFiles is what a phigate config in front of a test upstream names.
type gwFiles struct {
	caFile            string // the upstream's certificate, as a CA file
	certFile, keyFile string // phigate's own TLS certificate and key
	dir, cfgFile      string // a data directory and the config file's path (not written)
}

// upstreamFiles starts up over TLS (closed at the end of the test) and
// prepares gwFiles in a temporary directory.
func upstreamFiles(t *testing.T, up *httptest.Server) gwFiles {
	t.Helper()
	up.StartTLS()
	t.Cleanup(up.Close)
	tmp := t.TempDir()
	f := gwFiles{caFile: filepath.Join(tmp, "upstream-ca.pem"), dir: filepath.Join(tmp, "data"), cfgFile: filepath.Join(tmp, "phigate.yaml")}
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.certFile, f.keyFile, err = tlsutil.GenerateSelfSigned(filepath.Join(tmp, "tls"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGatewayEndToEndDemo is the README's walk-through: the demo FHIR
// server behind the gateway, a request allowed, one denied for scope, one
// for compartment, and the decisions in the audit log.
func TestGatewayEndToEndDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	g := startGatewayDev(t, dir, nil)
	if !strings.Contains(g.stdout.String(), "demo FHIR:") || g.adm == "" {
		t.Fatalf("stdout:\n%s", g.stdout.String())
	}
	var lab client.IssuedToken
	g.mustJSON(t, g.adm, &lab, "token", "create", "--subject", "lab-app", "--scope", "patient/Observation.rs",
		"--patient", "pat-1", "--ttl", "10m")

	r := g.request(t, "GET", "/fhir/Observation?patient=pat-1&category=laboratory", lab.Secret, nil, "")
	if r.status != 200 || !strings.Contains(r.body, `"SYNTHETIC DEMO DATA"`) || !strings.Contains(r.body, `"total":2`) ||
		r.header.Get("X-Demo-Data") != "SYNTHETIC DEMO DATA" {
		t.Fatalf("allowed search: %d %s", r.status, r.body)
	}
	r = g.request(t, "GET", "/fhir/Patient/pat-1", lab.Secret, nil, "")
	if r.status != 403 || r.code != "insufficient_scope" || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="patient/Patient.r"`) {
		t.Fatalf("denied for scope: %d %s", r.status, r.body)
	}
	r = g.request(t, "GET", "/fhir/Observation?patient=pat-2", lab.Secret, nil, "")
	if r.status != 403 || r.code != "compartment" {
		t.Fatalf("denied for compartment: %d %s", r.status, r.body)
	}
	r = g.request(t, "GET", "/fhir/Observation?patient=pat-1", "", nil, "")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `Bearer realm="phigate"`) {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}

	// a patient-bound writer may create only for its patient
	var app client.IssuedToken
	g.mustJSON(t, g.adm, &app, "token", "create", "--subject", "patient-app", "--scope", "patient/Observation.crs", "--patient", "pat-2", "--ttl", "10m")
	obs := func(pid string) string {
		return `{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/` + pid + `"},"code":{"text":"mood"}}`
	}
	ct := map[string]string{"Content-Type": "application/fhir+json"}
	if r := g.request(t, "POST", "/fhir/Observation", app.Secret, ct, obs("pat-2")); r.status != 201 {
		t.Errorf("create in compartment: %d %s", r.status, r.body)
	}
	if r := g.request(t, "POST", "/fhir/Observation", app.Secret, ct, obs("pat-1")); r.status != 403 || r.code != "compartment" {
		t.Errorf("create outside compartment: %d %s", r.status, r.body)
	}

	// revocation takes effect on the next request
	if _, errs, code := g.cli(t, g.adm, "", "token", "revoke", lab.ID); code != 0 {
		t.Fatal(errs)
	}
	if r := g.request(t, "GET", "/fhir/Observation?patient=pat-1", lab.Secret, nil, ""); r.status != 401 || r.code != "token_revoked" {
		t.Errorf("after revoke: %d %s", r.status, r.body)
	}

	// every decision is in the audit log
	want := []string{"access.granted/", "access.completed/", "access.denied/insufficient_scope", "access.denied/compartment", "auth.failed/token_revoked"}
	var kinds map[string]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var page client.AuditPage
		g.mustJSON(t, g.adm, &page, "audit", "search", "--token-id", lab.ID, "--all")
		kinds = map[string]int{}
		for _, e := range page.Entries {
			kinds[e.Action+"/"+e.Reason]++
			if e.Action == "access.granted" && (e.Upstream != "demo-fhir" || e.Source.IP != "127.0.0.1" || e.Patient != "pat-1" ||
				!strings.HasPrefix(e.Path, "/fhir/Observation?patient=pat-1")) {
				t.Errorf("grant entry %+v", e)
			}
		}
		missing := false
		for _, w := range want {
			missing = missing || kinds[w] == 0
		}
		if !missing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit entries of the lab token: %v, want %v", kinds, want)
		}
	}
	g.stop(t)
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		for _, sec := range []string{g.adm, lab.Secret, app.Secret} {
			if bytes.Contains(data, []byte(sec)) {
				t.Errorf("a token secret is in %s", p)
			}
		}
		return nil
	})
	for _, sec := range []string{g.adm, lab.Secret, app.Secret} {
		if strings.Contains(g.stderr.String(), sec) {
			t.Error("a token secret reached the log")
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "keys", "gateway-identity.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("identity key: %v %v", st, err)
	}
}

// TestGatewayEndToEndConfigAndReload runs the binary with a config file
// naming a real HTTPS upstream: routes, the injected credential, the
// published identity key, and a SIGHUP reload adding a route.
func TestGatewayEndToEndConfigAndReload(t *testing.T) {
	var hits atomic.Int64
	var lastKey, lastAuth atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		lastKey.Store(r.Header.Get("X-Api-Key"))
		lastAuth.Store(r.Header.Get("Authorization"))
		fmt.Fprintf(w, `{"path":%q,"subject":%q}`, r.URL.Path, r.Header.Get("X-Phigate-Subject"))
	}))
	f := upstreamFiles(t, up)
	caFile, certFile, keyFile, dir, cfgFile := f.caFile, f.certFile, f.keyFile, f.dir, f.cfgFile
	writeCfg := func(routes string) {
		cfg := fmt.Sprintf(`data_dir: %s
tls: {cert_file: %s, key_file: %s}
log: {level: info, format: json}
gateway:
  upstreams:
    - name: items
      url: %s/api
      prefix: /items-api/
      kind: http
      tls: {ca_file: %s}
      credential: {type: header, header: X-Api-Key, value: env:PHIGATE_TEST_ITEMS_KEY}
      routes:
%s`, dir, certFile, keyFile, up.URL, caFile, routes)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("        - {match: GET /items/*, scope: items:read}\n")
	g := startGatewayDev(t, dir, []string{"PHIGATE_TEST_ITEMS_KEY=items-upstream-key"}, "--config", cfgFile)
	var tok client.IssuedToken
	g.mustJSON(t, g.adm, &tok, "token", "create", "--subject", "items-app", "--scope", "items:read", "--ttl", "10m")

	r := g.request(t, "GET", "/items-api/items/7", tok.Secret, nil, "")
	if r.status != 200 || r.body != `{"path":"/api/items/7","subject":"items-app"}` {
		t.Fatalf("allowed: %d %s", r.status, r.body)
	}
	if lastKey.Load() != "items-upstream-key" || lastAuth.Load() != "" {
		t.Errorf("upstream got X-Api-Key %q, Authorization %q", lastKey.Load(), lastAuth.Load())
	}
	if r := g.request(t, "GET", "/items-api/reports/1", tok.Secret, nil, ""); r.status != 403 || r.code != "no_route" {
		t.Fatalf("before reload: %d %s", r.status, r.body)
	}

	// the published key verifies what the gateway asserts
	r = g.request(t, "GET", "/.well-known/phigate-identity-key", "", nil, "")
	if r.status != 200 || !strings.Contains(r.body, `"crv":"Ed25519"`) {
		t.Fatalf("identity key: %d %s", r.status, r.body)
	}

	// SIGHUP: a new route, without a restart
	writeCfg("        - {match: GET /items/*, scope: items:read}\n        - {match: GET /reports/*, scope: items:read}\n")
	g.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := g.request(t, "GET", "/items-api/reports/1", tok.Secret, nil, "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: %d %s\nstderr:\n%s", r.status, r.body, g.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a broken file changes nothing
	os.WriteFile(cfgFile, []byte("gateway: [\n"), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if r := g.request(t, "GET", "/items-api/reports/1", tok.Secret, nil, ""); r.status != 200 {
		t.Errorf("after a bad reload: %d %s", r.status, r.body)
	}
	if !strings.Contains(g.stderr.String(), "config reload failed") {
		t.Errorf("the failed reload was not logged:\n%s", g.stderr.String())
	}
	if strings.Contains(g.stderr.String(), "items-upstream-key") {
		t.Error("the upstream credential reached the log")
	}

	// TLS 1.1 is refused by the gateway too
	pool := x509.NewCertPool()
	certPEM, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(certPEM)
	c11 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := c11.Get("https://" + g.gw + "/healthz"); err == nil {
		t.Error("TLS 1.1 accepted by the gateway")
	}
}

// TestGatewayEndToEndScopesAndConstraints runs the binary (--dev, the demo
// FHIR upstream) and checks what the issue's "done when" lists at the
// binary's level: each FHIR interaction needs its scope (the refusal names
// it), a Bundle is checked entry by entry, an $operation not configured is
// refused, and each of the token's constraints refuses with its reason and
// is recorded in the audit log with it.
func TestGatewayEndToEndScopesAndConstraints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	g := startGatewayDev(t, dir, nil)
	var ro, all client.IssuedToken
	g.mustJSON(t, g.adm, &ro, "token", "create", "--subject", "reader", "--scope", "user/Observation.r", "--ttl", "10m")
	g.mustJSON(t, g.adm, &all, "token", "create", "--subject", "writer", "--scope", "user/Observation.cruds", "--ttl", "10m")
	fjson := map[string]string{"Content-Type": "application/fhir+json"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/obs-1"}},{"request":{"method":"DELETE","url":"Observation/obs-2"}}]}`
	for _, c := range []struct {
		method, path string
		hdr          map[string]string
		body         string
		need         string // the scope the reader lacks; "" when it has it
	}{
		{"GET", "/fhir/Observation/obs-1", nil, "", ""},                    // read
		{"GET", "/fhir/Observation/obs-1/_history/1", nil, "", ""},         // vread
		{"GET", "/fhir/Observation/obs-1/_history", nil, "", ""},           // history-instance
		{"GET", "/fhir/Observation?code=x", nil, "", "user/Observation.s"}, // search
		{"POST", "/fhir/Observation/_search", form, "code=x", "user/Observation.s"},
		{"GET", "/fhir/Observation/_history", nil, "", "user/Observation.s"}, // history-type
		{"POST", "/fhir/Observation", fjson, obs, "user/Observation.c"},      // create
		{"PUT", "/fhir/Observation/obs-1", fjson, obs, "user/Observation.u"}, // update
		{"PATCH", "/fhir/Observation/obs-1", map[string]string{"Content-Type": "application/json-patch+json"}, `[]`, "user/Observation.u"},
		{"DELETE", "/fhir/Observation/obs-1", nil, "", "user/Observation.d"}, // delete
		{"POST", "/fhir/", fjson, bundle, "user/Observation.d"},              // batch: the DELETE entry
	} {
		r := g.request(t, c.method, c.path, ro.Secret, c.hdr, c.body)
		switch {
		case c.need == "" && (r.status == 401 || r.status == 403):
			t.Errorf("reader %s %s: %d %s", c.method, c.path, r.status, r.body)
		case c.need != "" && (r.status != 403 || r.code != "insufficient_scope" || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="`+c.need+`"`)):
			t.Errorf("reader %s %s: %d %s %q, want 403 needing %s", c.method, c.path, r.status, r.body, r.header.Get("WWW-Authenticate"), c.need)
		}
		if r := g.request(t, c.method, c.path, all.Secret, c.hdr, c.body); r.status == 401 || r.status == 403 {
			t.Errorf("writer %s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if r := g.request(t, "GET", "/fhir/Observation/$lastn?code=x", all.Secret, nil, ""); r.status != 403 || r.code != "insufficient_scope" {
		t.Errorf("an operation not configured: %d %s", r.status, r.body)
	}

	// each constraint, through the binary, with its reason in the answer and
	// in the audit log
	now := time.Now().UTC()
	window := now.Add(2*time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	const path = "/fhir/Observation/obs-1"
	for _, c := range []struct {
		name   string
		flags  []string
		hdr    map[string]string
		before int // requests allowed first
		status int
		reason string
	}{
		{"network", []string{"--cidr", "10.0.0.0/8"}, nil, 0, 403, "network_denied"},
		{"hours", []string{"--hours", window, "--tz", "UTC"}, nil, 0, 403, "outside_hours"},
		{"rate", []string{"--rate", "1/h", "--burst", "1"}, nil, 1, 429, "rate_limited"},
		{"uses", []string{"--max-uses", "1"}, nil, 1, 403, "uses_exhausted"},
		{"purpose", []string{"--purpose", "TREAT", "--purpose-required"}, nil, 0, 403, "purpose_denied"},
	} {
		var tok client.IssuedToken
		args := append([]string{"token", "create", "--subject", "c-" + strings.ReplaceAll(c.name, " ", "-"), "--scope", "user/Observation.r", "--ttl", "10m"}, c.flags...)
		g.mustJSON(t, g.adm, &tok, args...)
		for i := range c.before {
			if r := g.request(t, "GET", path, tok.Secret, c.hdr, ""); r.status == 401 || r.status == 403 || r.status == 429 {
				t.Errorf("%s: request %d: %d %s", c.name, i, r.status, r.body)
			}
		}
		r := g.request(t, "GET", path, tok.Secret, c.hdr, "")
		if r.status != c.status || r.code != c.reason {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.reason)
			continue
		}
		var page client.AuditPage
		found := false
		for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			g.mustJSON(t, g.adm, &page, "audit", "search", "--token-id", tok.ID, "--all")
			for _, e := range page.Entries {
				found = found || e.Action == "access.denied" && e.Reason == c.reason && e.Source.IP == "127.0.0.1"
			}
		}
		if !found {
			t.Errorf("%s: no access.denied/%s entry for the token: %+v", c.name, c.reason, page.Entries)
		}
	}
}
