package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// pepperEnv is an admin API whose authority hashes with the vault's
// peppers, recording the API's refusals.
type pepperEnv struct {
	*vaultEnv
	mu       sync.Mutex
	recorded []*audit.Entry
}

func newPepperEnv(t *testing.T) *pepperEnv {
	t.Helper()
	ctx := context.Background()
	pe := &pepperEnv{vaultEnv: &vaultEnv{dir: t.TempDir()}}
	ve := pe.vaultEnv
	ve.openVault(t)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "api.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := token.NewHasher(ctx, ve.v)
	if err != nil {
		t.Fatal(err)
	}
	a := authority.New(st, h, authority.Config{Peppers: vault.PepperRing{V: ve.v}})
	if err := a.ReloadPeppers(ctx); err != nil {
		t.Fatal(err)
	}
	secret, _, err := a.Bootstrap(ctx, "root", time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &bytes.Buffer{}
	srv := httptest.NewTLSServer(New(a, Options{Ready: st.Ping, Vault: ve.v, Logger: newTestLogger(logBuf),
		Record: func(_ context.Context, e *audit.Entry) error {
			pe.mu.Lock()
			pe.recorded = append(pe.recorded, e)
			pe.mu.Unlock()
			return nil
		}}))
	t.Cleanup(srv.Close)
	ve.env = &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client(), logBuf: logBuf}
	return pe
}

func (e *pepperEnv) peppers() []client.Pepper {
	e.t.Helper()
	r := e.json("GET", "/v1/keys/peppers", e.admin, nil)
	var pl client.PepperList
	if r.status != 200 || json.Unmarshal(r.body, &pl) != nil {
		e.t.Fatalf("GET /v1/keys/peppers: %d %s", r.status, r.body)
	}
	return pl.Peppers
}

func (e *pepperEnv) lastRecorded() *audit.Entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recorded) == 0 {
		return nil
	}
	return e.recorded[len(e.recorded)-1]
}

func TestPepperEndpointsNeedAdminKeys(t *testing.T) {
	e := newPepperEnv(t)
	tokensOnly := e.create(client.CreateTokenRequest{Subject: "ops", Kind: "admin", Scopes: []string{"admin:tokens"}, TTL: "10m"})
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/keys/peppers"},
		{"POST", "/v1/keys/rotate-pepper"},
		{"POST", "/v1/keys/retire-pepper/1"},
	} {
		r := e.do(c.method, c.path, "", "", nil)
		if code, _ := errCode(t, r); r.status != 401 || code != "missing_token" {
			t.Errorf("%s %s without a token: %d %s", c.method, c.path, r.status, r.body)
		}
		r = e.do(c.method, c.path, tokensOnly.Secret, "", nil)
		if code, _ := errCode(t, r); r.status != 403 || code != "insufficient_scope" || !strings.Contains(r.header.Get("WWW-Authenticate"), `scope="admin:keys"`) {
			t.Errorf("%s %s with admin:tokens only: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if len(e.events) != 0 {
		t.Fatalf("refused requests reached the vault: %+v", e.events)
	}
	if got := e.peppers(); !slices.Equal(got, []client.Pepper{{Version: 1, Current: true, LiveSecrets: 2}}) {
		t.Fatalf("peppers after refused requests: %+v", got)
	}
}

func TestRotateAndRetirePepperOnline(t *testing.T) {
	e := newPepperEnv(t)
	ctx := context.Background()
	rootD, _ := e.auth.Verify(ctx, e.admin, authority.Request{})
	rootID := rootD.Token.ID
	old := e.create(client.CreateTokenRequest{Subject: "lab-app", Scopes: []string{"patient/Observation.rs"}, TTL: "10m"})

	r := e.json("POST", "/v1/keys/rotate-pepper", e.admin, nil)
	var pr client.PepperRotation
	if json.Unmarshal(r.body, &pr); r.status != 200 || pr.Version != 2 || pr.RotatedAt.IsZero() {
		t.Fatalf("rotate-pepper: %d %s", r.status, r.body)
	}
	if last := e.events[len(e.events)-1]; last.Kind != vault.EventPepperRotated || last.Version != 2 || last.Actor != rootID {
		t.Fatalf("vault event %+v", last)
	}
	fresh := e.create(client.CreateTokenRequest{Subject: "lab-app", Scopes: []string{"patient/Observation.rs"}, TTL: "10m"})
	for name, s := range map[string]string{"old": old.Secret, "new": fresh.Secret} {
		if r := e.json("GET", "/v1/tokens/self", s, nil); r.status != 200 {
			t.Errorf("%s token after the rotation: %d %s", name, r.status, r.body)
		}
	}
	want := []client.Pepper{{Version: 2, Current: true, LiveSecrets: 1}, {Version: 1, LiveSecrets: 2}}
	if got := e.peppers(); !slices.Equal(got, want) {
		t.Fatalf("peppers = %+v, want %+v", got, want)
	}

	for _, c := range []struct {
		path, code, field string
		status            int
	}{
		{"/v1/keys/retire-pepper/2", "pepper_current", "version", 409},
		{"/v1/keys/retire-pepper/7", "not_found", "version", 404},
		{"/v1/keys/retire-pepper/0", "not_found", "version", 404},
		{"/v1/keys/retire-pepper/one", "invalid_request", "version", 400},
		{"/v1/keys/retire-pepper/1", "pepper_in_use", "version", 409},
	} {
		r := e.do("POST", c.path, e.admin, "", nil)
		if code, field := errCode(t, r); r.status != c.status || code != c.code || field != c.field {
			t.Errorf("POST %s: %d %s", c.path, r.status, r.body)
		}
	}
	if r := e.do("POST", "/v1/keys/retire-pepper/1", e.admin, "", nil); !strings.Contains(string(r.body), "2 live token secret") {
		t.Errorf("the refusal does not say how many tokens use the pepper: %s", r.body)
	}
	if a := e.lastRecorded(); a == nil || a.Action != audit.ActionKeyRotated || a.Outcome != audit.OutcomeDenied || a.Actor.TokenID != rootID ||
		a.Target != vault.PurposePepper || !strings.Contains(a.Reason, vault.EventPepperRetired+" v1") {
		t.Fatalf("the refused retirement was not audited: %+v", a)
	}

	// The old token is revoked, the root moves to the new pepper: nothing
	// live uses version 1 any more.
	if r := e.json("DELETE", "/v1/tokens/"+old.ID, e.admin, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r = e.json("POST", "/v1/tokens/self/rotate", e.admin, client.RotateRequest{})
	var rot client.IssuedToken
	if json.Unmarshal(r.body, &rot); r.status != 200 || rot.Secret == "" {
		t.Fatalf("self rotate: %d", r.status)
	}
	oldRoot := e.admin
	e.admin = rot.Secret
	r = e.do("POST", "/v1/keys/retire-pepper/1", e.admin, "", nil)
	var ret client.PepperRetirement
	if json.Unmarshal(r.body, &ret); r.status != 200 || ret.Version != 1 || ret.RetiredAt.IsZero() {
		t.Fatalf("retire-pepper/1: %d %s", r.status, r.body)
	}
	if last := e.events[len(e.events)-1]; last.Kind != vault.EventPepperRetired || last.Version != 1 || last.Actor != rootID {
		t.Fatalf("vault event %+v", last)
	}
	if got := e.peppers(); !slices.Equal(got, []client.Pepper{{Version: 2, Current: true, LiveSecrets: 2}}) {
		t.Fatalf("peppers after the retirement: %+v", got)
	}
	for name, s := range map[string]string{"revoked, retired pepper": old.Secret, "root's previous": oldRoot} {
		if r := e.json("GET", "/v1/tokens/self", s, nil); r.status != 401 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if r := e.json("GET", "/v1/tokens/self", fresh.Secret, nil); r.status != 200 {
		t.Errorf("new token after the retirement: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/keys/retire-pepper/1", e.admin, "", nil); r.status != 404 {
		t.Errorf("retiring again: %d %s", r.status, r.body)
	}
}

func TestPepperRotationRefusedByTheAuditIs503(t *testing.T) {
	e := newPepperEnv(t)
	e.refuse = errors.New("audit log down")
	r := e.do("POST", "/v1/keys/rotate-pepper", e.admin, "", nil)
	if code, _ := errCode(t, r); r.status != 503 || code != "audit_unavailable" {
		t.Fatalf("rotate-pepper with the audit down: %d %s", r.status, r.body)
	}
	e.refuse = nil
	if got := e.peppers(); len(got) != 1 || got[0].Version != 1 {
		t.Fatalf("a refused rotation changed the peppers: %+v", got)
	}
	it := e.create(client.CreateTokenRequest{Subject: "app", Scopes: []string{"patient/Observation.rs"}, TTL: "10m"})
	if r := e.json("GET", "/v1/tokens/self", it.Secret, nil); r.status != 200 {
		t.Fatalf("token after a refused rotation: %d", r.status)
	}
}

func TestPepperEndpointsWithoutAPepperRingAnswer503(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/keys/peppers"},
		{"POST", "/v1/keys/rotate-pepper"},
		{"POST", "/v1/keys/retire-pepper/1"},
	} {
		r := e.do(c.method, c.path, e.admin, "", nil)
		if code, _ := errCode(t, r); r.status != 503 || code != "vault_unavailable" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
}
