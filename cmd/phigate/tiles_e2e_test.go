package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type bearerTransport struct {
	tok  string
	base http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

// TestEndToEndTilesListenerWithTokenAccess: the real server with
// audit.tiles {access: token}: without a token 401, with a token lacking
// audit:read-tiles 403; with one, torchwood's tlog client follows the log
// over HTTPS, its root matching the checkpoint signed by the log's key.
func TestEndToEndTilesListenerWithTokenAccess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := pl.Addr().String()
	pl.Close()
	tmp := t.TempDir()
	certFile, keyFile, err := tlsutil.GenerateSelfSigned(filepath.Join(tmp, "tls"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(tmp, "phigate.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("data_dir: %s\ntls: {cert_file: %s, key_file: %s}\naudit:\n  tiles: {listen: %s, access: token}\n", dir, certFile, keyFile, addr)), 0o600)
	s := startDev(t, dir, "--config", cfgFile)
	var keyOut []byte
	var tiles, other client.IssuedToken
	s.mustJSON(t, s.adm, &tiles, "token", "create", "--subject", "monitor", "--scope", "audit:read-tiles", "--ttl", "10m")
	s.mustJSON(t, s.adm, &other, "token", "create", "--subject", "app", "--scope", "patient/Observation.rs", "--ttl", "10m")
	keyOut, err = exec.Command(phigateBinary(t), "audit", "key", "--data", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	base := s.http(t)
	status := func(tok string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+"/checkpoint", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		r, err := base.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return r.StatusCode
	}
	if st := status(""); st != 401 {
		t.Errorf("no token: %d", st)
	}
	if st := status(other.Secret); st != 403 {
		t.Errorf("a token without audit:read-tiles: %d", st)
	}
	hc := &http.Client{Transport: bearerTransport{tiles.Secret, base.Transport}}
	v, err := note.NewVerifier(strings.TrimSpace(string(keyOut)))
	if err != nil {
		t.Fatal(err)
	}
	var cp torchwood.Checkpoint
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, err := hc.Get("https://" + addr + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		cpNote, _ := io.ReadAll(r.Body)
		r.Body.Close()
		n, err := note.Open(cpNote, note.VerifierList(v))
		if err != nil {
			t.Fatalf("%d %q: %v", r.StatusCode, cpNote, err)
		}
		if cp, err = torchwood.ParseCheckpoint(n.Text); err != nil {
			t.Fatal(err)
		}
		if cp.N >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the checkpoint stays at %d", cp.N)
		}
	}
	f, err := torchwood.NewTileFetcher("https://"+addr, torchwood.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if root, err := tlog.TreeHash(cp.N, torchwood.TileHashReaderWithContext(ctx, cp.Tree, f)); err != nil || root != cp.Hash {
		t.Fatalf("root from the tiles: %v", err)
	}
	c, _ := torchwood.NewClient(f)
	if _, _, err := c.Entry(ctx, cp.Tree, cp.N-1); err != nil {
		t.Fatalf("inclusion of the last entry: %v", err)
	}
}
