package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// openDev opens a node in dir in dev mode (the development master key).
func openDev(t *testing.T, dir string) *node {
	t.Helper()
	n, err := open(context.Background(), config.Dev(dir), "", true, time.Now, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// closeNode closes what openDev opened.
func closeNode(t *testing.T, n *node) {
	t.Helper()
	n.auth.Close(context.Background())
	if err := n.close(); err != nil {
		t.Fatal(err)
	}
}

// storeFiles returns the bytes of the token store and its journal files.
func storeFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		p := filepath.Join(dir, DBFile+suffix)
		if b, err := os.ReadFile(p); err == nil {
			out[p] = b
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s in %s", DBFile, dir)
	}
	return out
}

func TestTokenPatientIDNeverInPlaintextInTheStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	admin, _, err := n.bootstrap(ctx, config.Dev(dir), false, RootLifetime{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api.New(n.auth, api.Options{Vault: n.vault}))
	defer srv.Close()
	call := func(method, path string, body any, out any) int {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+admin)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}

	rb := make([]byte, 16)
	rand.Read(rb)
	patient := "pt-" + hex.EncodeToString(rb) // made now: in no file before this test
	var it client.IssuedToken
	if s := call("POST", "/v1/tokens", client.CreateTokenRequest{Subject: "lab-app", Scopes: []string{"patient/Observation.rs"}, TTL: "10m", PatientID: patient}, &it); s != 201 || it.PatientID != patient {
		t.Fatalf("create: %d, patient %q", s, it.PatientID)
	}
	var shown client.Token
	if s := call("GET", "/v1/tokens/"+it.ID, nil, &shown); s != 200 || shown.PatientID != patient {
		t.Fatalf("show: %d, patient %q", s, shown.PatientID)
	}
	var list client.TokenList
	if s := call("GET", "/v1/tokens?subject=lab-app", nil, &list); s != 200 || len(list.Tokens) != 1 || list.Tokens[0].PatientID != patient {
		t.Fatalf("list: %d %+v", s, list)
	}
	d, err := n.auth.Verify(ctx, it.Secret, authority.Request{})
	if err != nil || !d.Allowed() || d.Token.PatientID != patient {
		t.Fatalf("verify: %v %v", d.Reason, err)
	}
	// a second token, to swap ciphertexts with
	var other client.IssuedToken
	call("POST", "/v1/tokens", client.CreateTokenRequest{Subject: "other-app", Scopes: []string{"patient/Observation.rs"}, TTL: "10m", PatientID: "pt-other"}, &other)

	for p, b := range storeFiles(t, dir) {
		if bytes.Contains(b, []byte(patient)) {
			t.Errorf("%s holds the patient id in plaintext", filepath.Base(p))
		}
	}
	// and after a checkpoint, with everything in the main file
	closeNode(t, n)
	for p, b := range storeFiles(t, dir) {
		if bytes.Contains(b, []byte(patient)) {
			t.Errorf("%s holds the patient id in plaintext after close", filepath.Base(p))
		}
	}

	// Reopened, the patient id reads back; moved to another token's row,
	// it is tampering.
	n = openDev(t, dir)
	defer closeNode(t, n)
	if d, err := n.auth.Verify(ctx, it.Secret, authority.Request{}); err != nil || d.Token.PatientID != patient {
		t.Fatalf("verify after reopening: %v %v", d.Reason, err)
	}
	a, err := n.store.Token(ctx, it.ID)
	if err != nil || !strings.HasPrefix(a.PatientID, "enc:v1:") {
		t.Fatalf("stored patient id: %v", err)
	}
	b, err := n.store.Token(ctx, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.PatientID = a.PatientID
	if err := n.store.UpdateToken(ctx, b); err != nil {
		t.Fatal(err)
	}
	n.auth.Invalidate(other.ID)
	var tamper *vault.TamperError
	if _, err := n.auth.Verify(ctx, other.Secret, authority.Request{}); !errors.Is(err, authority.ErrSealed) || !errors.As(err, &tamper) {
		t.Fatalf("verify with another token's ciphertext: %v, want ErrSealed and a vault.TamperError", err)
	}
}

func TestPepperRotationSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	admin, _, err := n.bootstrap(ctx, config.Dev(dir), false, RootLifetime{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	d, err := n.auth.Verify(ctx, admin, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatal(d.Reason, err)
	}
	root := authority.ActorOf(d)
	old, _, err := n.auth.Create(ctx, root, authority.Spec{Subject: "app", Scopes: []string{"patient/Observation.rs"}, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, err := n.auth.RotatePepper(ctx, root)
	if err != nil || v != 2 {
		t.Fatalf("RotatePepper = %d, %v", v, err)
	}
	fresh, rec, err := n.auth.Create(ctx, root, authority.Spec{Subject: "app", Scopes: []string{"patient/Observation.rs"}, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if secs, _ := n.store.Secrets(ctx, rec.ID); len(secs) != 1 || secs[0].PepperVersion != 2 {
		t.Fatalf("a token created after the rotation: %+v", secs)
	}
	closeNode(t, n)

	n = openDev(t, dir)
	defer closeNode(t, n)
	for name, s := range map[string]string{"old": old, "new": fresh, "root": admin} {
		if d, err := n.auth.Verify(ctx, s, authority.Request{}); err != nil || !d.Allowed() {
			t.Errorf("%s token after a restart: %v %v", name, d.Reason, err)
		}
	}
}
