package vault

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/phigate/phigate/internal/fsync"
)

// DevKeyFile is the master key file DevKey generates in a data directory.
const DevKeyFile = "dev-master.key"

// DevWarning is what the console must show whenever a development master
// key is in use.
const DevWarning = "WARNING: the vault's master key is " + DevKeyFile + " in the data directory, next to the data it protects. " +
	"This is for DEVELOPMENT ONLY: anyone who copies the directory can read every secret in it. " +
	"In production set vault.master_key to file:, env:, passphrase or awskms:."

// DevKey makes sure dir holds a development master key (32 random bytes,
// mode 0600) and returns its spec ("file:DIR/dev-master.key"), whether it
// was created now, and DevWarning for the console. It is for `server
// --dev` only.
func DevKey(dir string, rnd io.Reader) (spec string, created bool, warning string, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	abs, err := filepath.Abs(filepath.Join(dir, DevKeyFile))
	if err != nil {
		return "", false, "", err
	}
	spec = Spec{Kind: KindFile, Path: abs}.String()
	if _, err := os.Stat(abs); err == nil {
		return spec, false, DevWarning, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, "", fmt.Errorf("vault: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return "", false, "", fmt.Errorf("vault: %w", err)
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return "", false, "", fmt.Errorf("vault: randomness: %w", err)
	}
	if err := writeFileSync(abs, key); err != nil {
		return "", false, "", err
	}
	return spec, true, DevWarning, nil
}

// NewKeyFile writes 32 random bytes to path (mode 0600, which must not
// exist yet): a master key for file:PATH.
func NewKeyFile(path string, rnd io.Reader) error {
	if rnd == nil {
		rnd = rand.Reader
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return fmt.Errorf("vault: randomness: %w", err)
	}
	return writeFileSync(path, key)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("vault: writing %s: %w", path, err)
	}
	fsync.Dir(filepath.Dir(path)) // best effort
	return nil
}
