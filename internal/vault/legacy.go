package vault

// The plaintext pepper file of phigate before the vault. Create and Open
// move it into the vault (importLegacyPepper) and remove it; InitFile and
// OpenFile remain until the composition root opens the vault instead.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/phigate/phigate/internal/fsync"
)

// PepperLen is the size of a generated pepper.
const PepperLen = 32

// FileKeyring reads the pepper from DIR/keys/pepper-v1.key.
//
// Deprecated: the pepper lives in the vault (Vault.Pepper); FileKeyring
// only serves until the server opens the vault.
type FileKeyring struct {
	version int
	key     []byte
}

func pepperPath(dir string) string { return filepath.Join(dir, "keys", "pepper-v1.key") }

// InitFile generates a new pepper in dir unless one exists. It reports
// whether it created one.
func InitFile(dir string, rnd io.Reader) (created bool, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	p := pepperPath(dir)
	if _, err := os.Stat(p); err == nil {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, fmt.Errorf("vault: %w", err)
	}
	key := make([]byte, PepperLen)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return false, fmt.Errorf("vault: generate pepper: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("vault: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(p)
		return false, fmt.Errorf("vault: write pepper: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(p)
		return false, fmt.Errorf("vault: sync pepper: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("vault: %w", err)
	}
	fsync.Dir(filepath.Dir(p)) // best effort
	return true, nil
}

// OpenFile loads the pepper of dir. It refuses a key file readable by group
// or others, and one of the wrong size.
func OpenFile(dir string) (*FileKeyring, error) {
	p := pepperPath(dir)
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotInitialised
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("vault: %s is accessible by group or others (mode %v); chmod 600 it", p, st.Mode().Perm())
	}
	key, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if len(key) != PepperLen {
		return nil, fmt.Errorf("vault: %s: want %d bytes, found %d", p, PepperLen, len(key))
	}
	return &FileKeyring{version: 1, key: key}, nil
}

// Pepper implements token.Keyring.
func (k *FileKeyring) Pepper(context.Context) (int, []byte, error) { return k.version, k.key, nil }
