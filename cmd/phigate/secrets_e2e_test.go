package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestSecretsAtRestEndToEnd is issue 5's scenario on the real binary:
// tokens are created (one bound to a patient, one break-glass), an
// upstream credential is set in the vault, requests naming the patient go
// through the gateway to a real TLS upstream, one of them break-glass with
// a justification; every key is rotated (KEK, the data keys, the pepper);
// tokens are revoked; the server restarts. Then every byte of the data
// directory (databases, WALs, keys, anything) and everything the server
// printed is searched for each token secret, the credential, the patient
// id and the justification: none may appear. (The only secret a --dev
// server prints is its own bootstrap admin token, on first start, by
// design; it is not one of those searched for.) Finally the audit log,
// opened with the key, still holds the patient's requests.
func TestSecretsAtRestEndToEnd(t *testing.T) {
	var gotCred atomic.Value
	gotCred.Store("")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotCred.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":0}`)
	}))
	f := upstreamFiles(t, up)
	caFile, certFile, keyFile, dir, cfgFile := f.caFile, f.certFile, f.keyFile, f.dir, f.cfgFile
	base := fmt.Sprintf("data_dir: %s\ntls: {cert_file: %s, key_file: %s}\nlog: {level: debug, format: json}\n", dir, certFile, keyFile)
	if err := os.WriteFile(cfgFile, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}

	patient := "pt" + randomHex(8)
	why := "unresponsive in resus " + randomHex(6)
	cred := "ehr-" + randomHex(16)
	var secrets []string

	g := startGatewayDev(t, dir, nil, "--config", cfgFile)
	if g.adm == "" {
		t.Fatal("no bootstrap token")
	}
	// the credential goes into the vault from stdin, then the config names it
	if _, errs, code := g.cli(t, g.adm, cred, "secret", "set", "ehr-cred"); code != 0 {
		t.Fatalf("secret set: %s", errs)
	}
	upCfg := fmt.Sprintf(`gateway:
  upstreams:
    - name: ehr
      url: %s/fhir
      prefix: /ehr/
      kind: fhir
      tls: {ca_file: %s}
      credential: {type: bearer, value: "secret:ehr-cred"}
`, up.URL, caFile)
	os.WriteFile(cfgFile, []byte(base+upCfg), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)

	var pt, bg, other client.IssuedToken
	g.mustJSON(t, g.adm, &pt, "token", "create", "--subject", "portal-app", "--scope", "patient/Observation.rs", "--patient", patient, "--ttl", "10m", "--grace", "1m")
	g.mustJSON(t, g.adm, &bg, "token", "create", "--subject", "er-clinician", "--scope", "user/*.rs", "--break-glass", "--ttl", "10m")
	g.mustJSON(t, g.adm, &other, "token", "create", "--subject", "batch-job", "--scope", "system/Observation.rs", "--ttl", "10m")
	secrets = append(secrets, pt.Secret, bg.Secret, other.Secret)

	deadline := time.Now().Add(10 * time.Second)
	for {
		r := g.request(t, "GET", "/ehr/Observation?patient="+patient, pt.Secret, nil, "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("patient search after reload: %d %s\nstderr:\n%s", r.status, r.body, g.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if gotCred.Load() != "Bearer "+cred {
		t.Fatal("the upstream did not get the credential from the vault")
	}
	steps := []struct {
		path, secret string
		hdr          map[string]string
		want         int
	}{
		{"/ehr/Observation?subject=Patient/" + patient + "&category=laboratory", pt.Secret, nil, 200},
		{"/ehr/Observation?patient=" + patient + "x", pt.Secret, nil, 403}, // another patient
		{"/ehr/Patient/" + patient, bg.Secret, map[string]string{"X-Break-Glass": why, "X-Purpose-Of-Use": "ETREAT"}, 200},
		{"/ehr/Observation?patient=" + patient, other.Secret, nil, 200},
	}
	for i, s := range steps {
		if r := g.request(t, "GET", s.path, s.secret, s.hdr, ""); r.status != s.want {
			t.Fatalf("step %d %s: %d %s", i, s.path, r.status, r.body)
		}
	}

	// rotate every key while serving; under the development master key,
	// rotate-kek needs another key (it would change nothing otherwise), so
	// the master key goes to a new file and back to the development key
	if _, errs, code := g.cli(t, g.adm, "", "keys", "rotate-kek"); code == 0 || !strings.Contains(errs, "--new-master-key") {
		t.Fatalf("rotate-kek to the development key itself: %d %s", code, errs)
	}
	newKey := filepath.Join(t.TempDir(), "new-master.key")
	mk := make([]byte, 32)
	rand.Read(mk)
	if err := os.WriteFile(newKey, mk, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"keys", "rotate-kek", "--new-master-key", "file:" + newKey},
		{"keys", "rotate-kek", "--new-master-key", "file:" + filepath.Join(dir, "dev-master.key")},
		{"keys", "rotate-dek", "audit-fields"},
		{"keys", "rotate-dek", "upstream-credentials"},
		{"keys", "rotate-dek", "token-fields"},
		{"keys", "rotate-pepper"},
	} {
		if _, errs, code := g.cli(t, g.adm, "", args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	// tokens hashed under the old pepper still work
	if r := g.request(t, "GET", "/ehr/Observation?patient="+patient, other.Secret, nil, ""); r.status != 200 {
		t.Fatalf("old-pepper token after the rotations: %d %s", r.status, r.body)
	}
	var rot client.IssuedToken
	g.mustJSON(t, g.adm, &rot, "token", "rotate", pt.ID, "--grace", "1m")
	secrets = append(secrets, rot.Secret)
	if r := g.request(t, "GET", "/ehr/Observation?patient="+patient, rot.Secret, nil, ""); r.status != 200 {
		t.Fatalf("after the rotations: %d %s", r.status, r.body)
	}
	if r := g.request(t, "GET", "/ehr/Patient/"+patient, bg.Secret, map[string]string{"X-Break-Glass": why, "X-Purpose-Of-Use": "ETREAT"}, ""); r.status != 200 {
		t.Fatalf("break-glass after the rotations: %d %s", r.status, r.body)
	}
	for _, id := range []string{pt.ID, bg.ID} {
		if _, errs, code := g.cli(t, g.adm, "", "token", "revoke", id, "--reason", "scenario over"); code != 0 {
			t.Fatalf("revoke: %s", errs)
		}
	}
	if r := g.request(t, "GET", "/ehr/Observation?patient="+patient, rot.Secret, nil, ""); r.status != 401 {
		t.Fatalf("revoked: %d %s", r.status, r.body)
	}
	// the API searches the encrypted fields by their blind index; it finds
	// the patient's accesses by any token (the system token's search for
	// the patient and the break-glass reads too), not only those of the
	// token bound to the patient
	out, errs, code := g.cli(t, g.adm, "", "audit", "search", "--patient", patient, "--json")
	if code != 0 || strings.Count(out, `"access.granted"`) < 3 || !strings.Contains(out, "batch-job") || !strings.Contains(out, `"breakglass.used"`) {
		t.Fatalf("audit search --patient: %d %s %s", code, out, errs)
	}
	out, errs, code = g.cli(t, g.adm, "", "audit", "search", "--path-prefix", "/ehr/Patient/"+patient, "--json")
	if code != 0 || strings.Count(out, `"breakglass.used"`) != 2 || strings.Count(out, why) != 4 {
		t.Fatalf("audit search --path-prefix: %d %s %s", code, out, errs)
	}
	g.stop(t)

	// a restart reads everything back with the key
	g2 := startGatewayDev(t, dir, nil, "--config", cfgFile)
	if r := g2.request(t, "GET", "/ehr/Observation?patient="+patient, other.Secret, nil, ""); r.status != 200 {
		t.Fatalf("after restart: %d %s", r.status, r.body)
	}
	g2.stop(t)

	printed := g.stdout.String() + g.stderr.String() + g2.stdout.String() + g2.stderr.String()
	haystacks := map[string][]byte{"server output": []byte(printed)}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			haystacks[p] = b
		}
		return nil
	})
	if len(haystacks) < 6 {
		t.Fatalf("only %d files searched", len(haystacks)-1)
	}
	needles := map[string]string{"the upstream credential": cred, "the patient id": patient, "the justification": why}
	for i, s := range secrets {
		needles[fmt.Sprintf("token secret %d", i)] = s
		needles[fmt.Sprintf("the random part of token secret %d", i)] = s[4:40]
	}
	for name, h := range haystacks {
		for what, s := range needles {
			if bytes.Contains(h, []byte(s)) {
				t.Errorf("%s contains %s", name, what)
			}
		}
	}

	// offline, with the key, the export opens the fields; without, it cannot
	out, errs, code = g.cli(t, "", "", "audit", "export", "--data", dir, "--decrypt", "--patient", patient)
	if code != 0 || strings.Count(out, "\n") < 4 || !strings.Contains(out, `"patient":"`+patient+`"`) {
		t.Fatalf("export --decrypt --patient: %d %s %s", code, out, errs)
	}
	out, _, code = g.cli(t, "", "", "audit", "export", "--data", dir)
	if code != 0 || strings.Contains(out, patient) || !strings.Contains(out, `"sealed":"`) {
		t.Fatalf("export without the key: %d, patient there %v", code, strings.Contains(out, patient))
	}
	if _, errs, code := g.cli(t, "", "", "audit", "verify", "--data", dir); code != 0 {
		t.Fatalf("verify: %s", errs)
	}
}
