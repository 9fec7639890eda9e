package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/vault"
)

func TestSecretAndKeysCommandsSendTheRightRequest(t *testing.T) {
	f := newFakeAPI(t)
	f.on("PUT", "/v1/secrets/ehr-api", 200, `{"name":"ehr-api","version":3,"updated_at":"2026-01-02T03:04:05Z"}`)
	f.on("GET", "/v1/secrets", 200, `{"secrets":[{"name":"ehr-api","version":3,"updated_at":"2026-01-02T03:04:05Z"},{"name":"evil\u001b[2J","version":1,"updated_at":"2026-01-02T03:04:05Z"}]}`)
	f.on("POST", "/v1/keys/rotate-kek", 200, `{"from":"file:/old (key id 01)","to":"file:/new (key id 02)","data_keys":6,"rotated_at":"2026-01-02T03:04:05Z"}`)
	f.on("POST", "/v1/keys/rotate-dek/audit-fields", 200, `{"purpose":"audit-fields","version":2,"rotated_at":"2026-01-02T03:04:05Z"}`)
	f.on("GET", "/v1/keys/peppers", 200, `{"peppers":[{"version":2,"current":true,"live_secrets":40},{"version":1,"live_secrets":3}]}`)
	f.on("POST", "/v1/keys/rotate-pepper", 200, `{"version":2,"rotated_at":"2026-01-02T03:04:05Z"}`)
	f.on("POST", "/v1/keys/retire-pepper/1", 200, `{"version":1,"retired_at":"2026-01-02T03:04:05Z"}`)
	valueFile := filepath.Join(t.TempDir(), "cred")
	os.WriteFile(valueFile, []byte("from-a-file\n"), 0o600)

	tests := []struct {
		name, stdin  string
		args         []string
		method, path string
		body         string
		stdout       []string
		noStdout     []string
	}{
		{name: "set from stdin", args: []string{"secret", "set", "ehr-api"}, stdin: "s3cret value\n",
			method: "PUT", path: "/v1/secrets/ehr-api", body: `{"value":"s3cret value"}`,
			stdout: []string{"secret ehr-api set (version 3)"}, noStdout: []string{"s3cret"}},
		{name: "set keeps inner newlines", args: []string{"secret", "set", "ehr-api"}, stdin: "line1\nline2\r\n",
			method: "PUT", path: "/v1/secrets/ehr-api", body: `{"value":"line1\nline2"}`},
		{name: "set from file", args: []string{"secret", "set", "ehr-api", "--from-file", valueFile},
			method: "PUT", path: "/v1/secrets/ehr-api", body: `{"value":"from-a-file"}`, noStdout: []string{"from-a-file"}},
		{name: "set json", args: []string{"--json", "secret", "set", "ehr-api"}, stdin: "v",
			method: "PUT", path: "/v1/secrets/ehr-api", body: `{"value":"v"}`, stdout: []string{`"version": 3`}},
		{name: "list", args: []string{"secret", "list"}, method: "GET", path: "/v1/secrets", body: "-",
			stdout: []string{"NAME", "VERSION", "ehr-api", "3", "2026-01-02T03:04:05Z", `"evil\x1b[2J"`}, noStdout: []string{"\x1b"}},
		{name: "rotate kek", args: []string{"keys", "rotate-kek", "--new-master-key", "file:/new"},
			method: "POST", path: "/v1/keys/rotate-kek", body: `{"new_master_key":"file:/new"}`,
			stdout: []string{"6 data keys re-wrapped", "file:/new (key id 02)", "vault.master_key"}},
		{name: "rotate kek in place", args: []string{"keys", "rotate-kek"},
			method: "POST", path: "/v1/keys/rotate-kek", body: `{}`, stdout: []string{"re-wrapped"}, noStdout: []string{"vault.master_key"}},
		{name: "rotate dek", args: []string{"keys", "rotate-dek", "audit-fields"},
			method: "POST", path: "/v1/keys/rotate-dek/audit-fields", body: "-",
			stdout: []string{"Data key for audit-fields rotated to version 2"}},
		{name: "peppers", args: []string{"keys", "peppers"}, method: "GET", path: "/v1/keys/peppers", body: "-",
			stdout: []string{"VERSION  CURRENT  LIVE TOKENS", "2        yes      40", "1                 3"}},
		{name: "peppers json", args: []string{"--json", "keys", "peppers"}, method: "GET", path: "/v1/keys/peppers", body: "-",
			stdout: []string{`"live_secrets": 3`}},
		{name: "rotate pepper", args: []string{"keys", "rotate-pepper"}, method: "POST", path: "/v1/keys/rotate-pepper", body: "-",
			stdout: []string{"Token pepper rotated to version 2 at 2026-01-02T03:04:05Z"}},
		{name: "retire pepper", args: []string{"keys", "retire-pepper", "1"}, method: "POST", path: "/v1/keys/retire-pepper/1", body: "-",
			stdout: []string{"Token pepper version 1 retired"}},
		{name: "retire pepper json", args: []string{"--json", "keys", "retire-pepper", "1"}, method: "POST", path: "/v1/keys/retire-pepper/1", body: "-",
			stdout: []string{`"version": 1`, `"retired_at"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, f.env(), tc.stdin, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got := f.last(t)
			if got.Method != tc.method || got.Path != tc.path || got.Auth != "Bearer "+adminToken {
				t.Fatalf("request %s %s", got.Method, got.Path)
			}
			if tc.body == "-" {
				if len(got.Body) != 0 {
					t.Fatalf("unexpected body %s", got.Body)
				}
			} else {
				jsonBodyEqual(t, got.Body, tc.body)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
			for _, s := range tc.noStdout {
				if strings.Contains(r.stdout+r.stderr, s) {
					t.Errorf("output contains %q:\n%s%s", s, r.stdout, r.stderr)
				}
			}
		})
	}
}

func TestSecretCommandsRefuseBadUse(t *testing.T) {
	f := newFakeAPI(t)
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"value_on_the_command_line", "", []string{"secret", "set", "ehr-api", "hunter2"}, "never from the command line"},
		{"no_name", "x", []string{"secret", "set"}, "needs a secret NAME"},
		{"bad_name", "x", []string{"secret", "set", "a/b"}, "secret name"},
		{"empty_value", "\n", []string{"secret", "set", "ehr-api"}, "empty"},
		{"not_utf8", "\xff\xfe", []string{"secret", "set", "ehr-api"}, "not UTF-8"},
		{"too_long", strings.Repeat("x", vault.MaxValue+1), []string{"secret", "set", "ehr-api"}, "longer than"},
		{"bad_new_key", "", []string{"keys", "rotate-kek", "--new-master-key", "passphrase:hunter2"}, "never goes in the spec"},
		{"dek_no_purpose", "", []string{"keys", "rotate-dek"}, "needs a PURPOSE"},
		{"retire_pepper_no_version", "", []string{"keys", "retire-pepper"}, "needs a pepper VERSION"},
		{"retire_pepper_not_a_number", "", []string{"keys", "retire-pepper", "v1"}, "not a pepper version"},
		{"retire_pepper_zero", "", []string{"keys", "retire-pepper", "0"}, "not a pepper version"},
		{"retire_pepper_two", "", []string{"keys", "retire-pepper", "1", "2"}, "takes one pepper VERSION"},
		{"rotate_pepper_args", "", []string{"keys", "rotate-pepper", "3"}, "takes no arguments"},
		{"offline_without_key", "", []string{"secret", "list", "--data", t.TempDir()}, "master key"},
		{"offline_kek_without_new", "", []string{"keys", "rotate-kek", "--data", t.TempDir(), "--master-key", "file:/x"}, "--new-master-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, f.env(), tc.stdin, tc.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "hunter2") {
				t.Fatal("the refused value was echoed")
			}
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}

func TestRetirePepperInUseShowsTheServersReason(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST", "/v1/keys/retire-pepper/1", 409, `{"error":{"code":"pepper_in_use","message":"pepper version 1 still hashes 3 live token secret(s); retire it once they have expired or been revoked","field":"version","request_id":"req_1"}}`)
	r := runCLI(t, f.env(), "", "keys", "retire-pepper", "1")
	if r.code != exitError || !strings.Contains(r.stderr, "pepper_in_use") || !strings.Contains(r.stderr, "3 live token secret") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestOfflineSecretAndKeyCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keys := t.TempDir()
	writeKey := func(name string) string {
		k := make([]byte, 32)
		rand.Read(k)
		p := filepath.Join(keys, name)
		os.WriteFile(p, k, 0o600)
		return "file:" + p
	}
	oldKey, newKey := writeKey("old.key"), writeKey("new.key")
	p, err := vault.ParseProvider(ctx, oldKey, vault.ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Create(ctx, dir, p, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	env := map[string]string{envMasterKey: oldKey} // no PHIGATE_TOKEN: nothing goes online

	run := func(stdin string, args ...string) result {
		t.Helper()
		r := runCLI(t, env, stdin, args...)
		if r.code != 0 {
			t.Fatalf("phigate %v: exit %d: %s", args, r.code, r.stderr)
		}
		return r
	}
	run("offline-value\n", "secret", "set", "ehr-api", "--data", dir)
	if r := run("", "secret", "list", "--data", dir); !strings.Contains(r.stdout, "ehr-api") || strings.Contains(r.stdout, "offline-value") {
		t.Fatalf("list: %s", r.stdout)
	}
	if r := run("", "keys", "rotate-dek", "upstream-credentials", "--data", dir); !strings.Contains(r.stdout, "version 2") {
		t.Fatalf("rotate-dek: %s", r.stdout)
	}
	if r := run("", "keys", "rotate-kek", "--data", dir, "--master-key", oldKey, "--new-master-key", newKey); !strings.Contains(r.stdout, "new.key") {
		t.Fatalf("rotate-kek: %s", r.stdout)
	}
	// the old key no longer opens it; the new one reads everything
	if r := runCLI(t, env, "", "secret", "list", "--data", dir); r.code != exitError || !strings.Contains(r.stderr, "wrong master key") {
		t.Fatalf("old key after rotation: %d %s", r.code, r.stderr)
	}
	p, _ = vault.ParseProvider(ctx, newKey, vault.ProviderOptions{})
	v, err = vault.Open(ctx, dir, p, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if s, ver, err := v.Secret(ctx, "ehr-api"); err != nil || string(s) != "offline-value" || ver != 1 {
		t.Fatalf("secret: %q v%d %v", s, ver, err)
	}
	if hits := grepFiles(t, dir, "offline-value"); len(hits) != 0 {
		t.Fatalf("plaintext in %v", hits)
	}
	// every offline change is in the audit log, by cli:offline, and the
	// log verifies
	r := run("", "audit", "export", "--data", dir)
	for _, want := range []string{"upstream-credentials/ehr-api\",\"reason\":\"vault.secret_set v1", "vault.dek_rotated v2", "vault.kek_rotated"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the audit log does not record %s:\n%s", want, r.stdout)
		}
	}
	if strings.Count(r.stdout, `"token_id":"cli:offline"`) < 3 {
		t.Errorf("the offline changes are not attributed to cli:offline:\n%s", r.stdout)
	}
	run("", "audit", "verify", "--data", dir)
}

func grepFiles(t *testing.T, dir, needle string) []string {
	t.Helper()
	var hits []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), needle) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	return hits
}
