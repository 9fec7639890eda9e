package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/vault"
	"github.com/phigate/phigate/pkg/client"
)

// Under the development master key, rotate-kek to the same key (none
// named, or a copy of the file) would report a rotation and change
// nothing: it is refused, saying how to rotate; a rotation to another key
// goes through, and so does one back to the development key.
func TestDevMasterKeyRotationToTheSameKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openDev(t, dir)
	defer closeNode(t, n)
	admin, _, err := n.bootstrap(ctx, config.Dev(dir), false, RootLifetime{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api.New(n.auth, api.Options{Vault: n.keyVault()}))
	defer srv.Close()
	c, err := client.New(srv.URL, client.WithToken(admin), client.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	devKey, err := os.ReadFile(filepath.Join(dir, vault.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(keys, "copy.key")
	if err := os.WriteFile(cp, devKey, 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(keys, "fresh.key")
	if err := vault.NewKeyFile(fresh, nil); err != nil {
		t.Fatal(err)
	}
	for _, c2 := range []struct {
		name, next string
		refused    bool
	}{
		{"no new key", "", true},
		{"a copy of the development key", "file:" + cp, true},
		{"another key", "file:" + fresh, false},
		{"that key again", "", false}, // the vault is under it now: an honest re-wrap
		{"back to the development key", "file:" + filepath.Join(dir, vault.DevKeyFile), false},
		{"no new key, under the development key again", "", true},
	} {
		r, err := c.RotateKEK(ctx, client.RotateKEKRequest{NewMasterKey: c2.next})
		var ae *client.APIError
		switch {
		case c2.refused && (!errors.As(err, &ae) || ae.Status != 400 || ae.Field != "new_master_key" ||
			!strings.Contains(ae.Message, vault.DevKeyFile) || !strings.Contains(ae.Message, "--new-master-key")):
			t.Errorf("%s: %v, want a 400 on new_master_key saying how to rotate", c2.name, err)
		case !c2.refused && (err != nil || r.From == r.To && c2.next != ""):
			t.Errorf("%s: %+v %v, want a rotation", c2.name, r, err)
		}
	}
}

// Outside dev mode, the key endpoints use the vault itself.
func TestOnlyTheDevMasterKeyIsGuarded(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(t.TempDir(), "master.key")
	if err := vault.NewKeyFile(kf, nil); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []bool{false, true} {
		n, err := open(context.Background(), config.Dev(dir), "file:"+kf, dev, time.Now, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := n.keyVault().(*vault.Vault); !ok {
			t.Errorf("dev=%v with a named master key: the key endpoints get %T", dev, n.keyVault())
		}
		closeNode(t, n)
	}
}
