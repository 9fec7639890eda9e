package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// An idempotent rotation's answer is kept sealed under the vault's
// rotation-replay data key, survives a restart, and the new secret is in
// no file of the store.
func TestRotationReplayIsSealedUnderItsOwnDataKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	admin, _, err := n.bootstrap(ctx, config.Dev(dir), false, RootLifetime{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(n *node) *httptest.Server {
		srv := httptest.NewTLSServer(api.New(n.auth, api.Options{Vault: n.vault}))
		t.Cleanup(srv.Close)
		return srv
	}
	call := func(srv *httptest.Server, path, bearer, key string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest("POST", srv.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+bearer)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	srv := serve(n)
	var it client.IssuedToken
	s, b := call(srv, "/v1/tokens", admin, "", client.CreateTokenRequest{Subject: "app", Scopes: []string{"billing:read"}, TTL: "30m", Grace: "10m"})
	if s != 201 || json.Unmarshal(b, &it) != nil {
		t.Fatalf("create: %d %s", s, b)
	}
	s, first := call(srv, "/v1/tokens/self/rotate", it.Secret, "k-1", nil)
	var rot client.IssuedToken
	if s != 200 || json.Unmarshal(first, &rot) != nil {
		t.Fatalf("rotate: %d %s", s, first)
	}
	key := sha256.Sum256([]byte("k-1"))
	rp, err := n.store.Replay(ctx, it.ID, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := vault.ParseHeader(rp.Sealed)
	if err != nil || h.Purpose != vault.PurposeRotationReplay {
		t.Fatalf("replay sealed under %+v (%v), want purpose %s", h, err, vault.PurposeRotationReplay)
	}
	closeNode(t, n)
	for p, b := range storeFiles(t, dir) {
		if bytes.Contains(b, []byte(rot.Secret)) {
			t.Errorf("%s holds the new secret in plaintext", filepath.Base(p))
		}
	}
	// after a restart the retry still gets the same answer
	n = openDev(t, dir)
	defer closeNode(t, n)
	srv = serve(n)
	if s, again := call(srv, "/v1/tokens/self/rotate", it.Secret, "k-1", nil); s != 200 || !bytes.Equal(again, first) {
		t.Fatalf("retry after a restart: %d %s\nwant %s", s, again, first)
	}
	if s, b := call(srv, "/v1/tokens/self/rotate", it.Secret, "k-2", nil); s != 409 || !strings.Contains(string(b), "already_rotated") {
		t.Fatalf("old secret, another key: %d %s", s, b)
	}
}
