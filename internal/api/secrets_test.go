package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// vaultEnv is an admin API with a vault behind it.
type vaultEnv struct {
	*env
	v      *vault.Vault
	dir    string
	events []vault.Event
	refuse error // OnEvent's answer
}

// openVault creates ve's vault in ve.dir, recording its events and
// answering them with ve.refuse.
func (ve *vaultEnv) openVault(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	p, err := vault.ParseProvider(ctx, writeKey(t, ve.dir, "master.key"), vault.ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ve.v, err = vault.Create(ctx, ve.dir, p, vault.Options{OnEvent: func(_ context.Context, e vault.Event) error {
		ve.events = append(ve.events, e)
		if e.Outcome == vault.OutcomeSuccess {
			return ve.refuse
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ve.v.Close() })
}

func newVaultEnv(t *testing.T, withVault bool) *vaultEnv {
	t.Helper()
	a, st, secret := testAuthority(t)
	ve := &vaultEnv{dir: t.TempDir()}
	opts := Options{Ready: st.Ping}
	if withVault {
		ve.openVault(t)
		opts.Vault = ve.v
	}
	logBuf := &bytes.Buffer{}
	opts.Logger = newTestLogger(logBuf)
	srv := httptest.NewTLSServer(New(a, opts))
	t.Cleanup(srv.Close)
	ve.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: logBuf}
	return ve
}

// writeKey writes a fresh 32-byte key file (mode 0600) and returns its spec.
func writeKey(t *testing.T, dir, name string) string {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return "file:" + p
}

func TestSecretEndpointsNeedAdminKeys(t *testing.T) {
	e := newVaultEnv(t, true)
	tokensOnly := e.create(client.CreateTokenRequest{Subject: "ops", Kind: "admin", Scopes: []string{"admin:tokens"}, TTL: "10m"})
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/secrets/ehr", `{"value":"x"}`},
		{"GET", "/v1/secrets", ""},
		{"POST", "/v1/keys/rotate-kek", ""},
		{"POST", "/v1/keys/rotate-dek/audit-fields", ""},
	} {
		r := e.do(c.method, c.path, "", "application/json", []byte(c.body))
		if code, _ := errCode(t, r); r.status != 401 || code != "missing_token" {
			t.Errorf("%s %s without a token: %d %s", c.method, c.path, r.status, r.body)
		}
		r = e.do(c.method, c.path, tokensOnly.Secret, "application/json", []byte(c.body))
		if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="admin:keys"`) {
			t.Errorf("%s %s with admin:tokens only: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if len(e.events) != 0 {
		t.Fatalf("refused requests reached the vault: %v", e.events)
	}
}

func TestSecretValuesGoInButNeverComeOut(t *testing.T) {
	e := newVaultEnv(t, true)
	const value = "upstream-SECRET-value-1234"
	r := e.json("PUT", "/v1/secrets/ehr-api", e.admin, client.SetSecretRequest{Value: value})
	if r.status != 200 {
		t.Fatalf("set: %d %s", r.status, r.body)
	}
	var s client.Secret
	json.Unmarshal(r.body, &s)
	if s.Name != "ehr-api" || s.Version != 1 || s.UpdatedAt.IsZero() {
		t.Fatalf("set answer %s", r.body)
	}
	r = e.json("PUT", "/v1/secrets/ehr-api", e.admin, client.SetSecretRequest{Value: value + "2"})
	json.Unmarshal(r.body, &s)
	if r.status != 200 || s.Version != 2 {
		t.Fatalf("second set: %d %s", r.status, r.body)
	}
	e.json("PUT", "/v1/secrets/lab", e.admin, client.SetSecretRequest{Value: "lab-value"})
	r = e.json("GET", "/v1/secrets", e.admin, nil)
	var list client.SecretList
	json.Unmarshal(r.body, &list)
	if r.status != 200 || len(list.Secrets) != 2 || list.Secrets[0].Name != "ehr-api" || list.Secrets[0].Version != 2 || list.Secrets[1].Name != "lab" {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	for _, out := range [][]byte{r.body, e.logBuf.Bytes()} {
		if bytes.Contains(out, []byte("SECRET-value")) || bytes.Contains(out, []byte("lab-value")) {
			t.Fatalf("a secret value came out: %s", out)
		}
	}
	if got, _, err := e.v.Secret(context.Background(), "ehr-api"); err != nil || string(got) != value+"2" {
		t.Fatalf("vault holds %q %v", got, err)
	}
	root, _ := e.auth.Verify(context.Background(), e.admin, authority.Request{})
	if len(e.events) != 3 || e.events[0].Kind != vault.EventSecretSet || e.events[0].Actor != root.Token.ID || e.events[0].Name != "ehr-api" {
		t.Fatalf("events %+v", e.events)
	}
}

func TestSecretBadInput(t *testing.T) {
	e := newVaultEnv(t, true)
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"bad_name", "PUT", "/v1/secrets/-x", "application/json", `{"value":"v"}`, 400, "invalid_request", "name"},
		{"name_too_long", "PUT", "/v1/secrets/" + strings.Repeat("a", 129), "application/json", `{"value":"v"}`, 400, "invalid_request", "name"},
		{"empty_value", "PUT", "/v1/secrets/x", "application/json", `{"value":""}`, 400, "invalid_request", "value"},
		{"no_body", "PUT", "/v1/secrets/x", "application/json", ``, 400, "invalid_request", ""},
		{"value_not_string", "PUT", "/v1/secrets/x", "application/json", `{"value":5}`, 400, "invalid_request", "value"},
		{"unknown_field", "PUT", "/v1/secrets/x", "application/json", `{"value":"v","valeu":"w"}`, 400, "invalid_request", "valeu"},
		{"text_plain", "PUT", "/v1/secrets/x", "text/plain", `{"value":"v"}`, 415, "unsupported_media_type", ""},
		{"value_too_long", "PUT", "/v1/secrets/x", "application/json", `{"value":"` + strings.Repeat("v", vault.MaxValue+1) + `"}`, 400, "invalid_request", "value"},
		{"kek_env", "POST", "/v1/keys/rotate-kek", "application/json", `{"new_master_key":"env:KEY"}`, 400, "invalid_request", "new_master_key"},
		{"kek_passphrase", "POST", "/v1/keys/rotate-kek", "application/json", `{"new_master_key":"passphrase:fd:3"}`, 400, "invalid_request", "new_master_key"},
		{"kek_garbage", "POST", "/v1/keys/rotate-kek", "application/json", `{"new_master_key":"keyfile"}`, 400, "invalid_request", "new_master_key"},
		{"kek_missing_file", "POST", "/v1/keys/rotate-kek", "application/json", `{"new_master_key":"file:/nonexistent/key"}`, 400, "invalid_request", "new_master_key"},
		{"dek_unknown_purpose", "POST", "/v1/keys/rotate-dek/nothing-here", "", ``, 404, "not_found", ""},
		{"dek_bad_purpose", "POST", "/v1/keys/rotate-dek/Audit", "", ``, 400, "invalid_request", "purpose"},
		{"secrets_delete", "DELETE", "/v1/secrets", "", ``, 405, "method_not_allowed", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, e.admin, c.ctype, []byte(c.body))
			code, field := errCode(t, r)
			if r.status != c.status || code != c.code || field != c.field {
				t.Fatalf("%d %s field=%q, want %d %s %q: %s", r.status, code, field, c.status, c.code, c.field, r.body)
			}
		})
	}
	if ls, _ := e.v.ListSecrets(context.Background()); len(ls) != 0 {
		t.Fatalf("bad input stored something: %v", ls)
	}
}

func TestRotateKEKOnline(t *testing.T) {
	e := newVaultEnv(t, true)
	ctx := context.Background()
	e.v.SetSecret(ctx, "ehr", []byte("value"))
	next := writeKey(t, e.dir, "next.key")
	r := e.json("POST", "/v1/keys/rotate-kek", e.admin, client.RotateKEKRequest{NewMasterKey: next})
	var kr client.KEKRotation
	json.Unmarshal(r.body, &kr)
	if r.status != 200 || kr.DataKeys < len(vault.DefaultPurposes()) || !strings.Contains(kr.To, "next.key") || !strings.Contains(kr.From, "master.key") || kr.RotatedAt.IsZero() {
		t.Fatalf("rotate-kek: %d %s", r.status, r.body)
	}
	// no body: re-wrap under the current key
	r = e.do("POST", "/v1/keys/rotate-kek", e.admin, "", nil)
	if json.Unmarshal(r.body, &kr); r.status != 200 || kr.From != kr.To {
		t.Fatalf("rotate-kek in place: %d %s", r.status, r.body)
	}
	e.v.Close()
	p, _ := vault.ParseProvider(ctx, next, vault.ProviderOptions{})
	v, err := vault.Open(ctx, e.dir, p, vault.Options{})
	if err != nil {
		t.Fatalf("reopen with the new key: %v", err)
	}
	defer v.Close()
	if s, _, err := v.Secret(ctx, "ehr"); err != nil || string(s) != "value" {
		t.Fatalf("after rotation: %q %v", s, err)
	}
}

func TestRotateDEKOnline(t *testing.T) {
	e := newVaultEnv(t, true)
	r := e.json("POST", "/v1/keys/rotate-dek/audit-fields", e.admin, nil)
	var dr client.DEKRotation
	json.Unmarshal(r.body, &dr)
	if r.status != 200 || dr.Purpose != "audit-fields" || dr.Version != 2 {
		t.Fatalf("rotate-dek: %d %s", r.status, r.body)
	}
	if last := e.events[len(e.events)-1]; last.Kind != vault.EventDEKRotated || last.Version != 2 || last.Actor == "" {
		t.Fatalf("event %+v", last)
	}
}

func TestVaultChangeRefusedByTheAuditIs503(t *testing.T) {
	e := newVaultEnv(t, true)
	e.refuse = errors.New("audit log down")
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/secrets/ehr", `{"value":"x"}`},
		{"POST", "/v1/keys/rotate-kek", ""},
		{"POST", "/v1/keys/rotate-dek/audit-fields", ""},
	} {
		r := e.do(c.method, c.path, e.admin, "application/json", []byte(c.body))
		if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if ls, _ := e.v.ListSecrets(context.Background()); len(ls) != 0 {
		t.Fatal("a refused secret was stored")
	}
}

func TestServerWithoutVaultAnswers503(t *testing.T) {
	e := newVaultEnv(t, false)
	r := e.json("GET", "/v1/secrets", e.admin, nil)
	if code, _ := errCode(t, r); r.status != 503 || code != "vault_unavailable" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
