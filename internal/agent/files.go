package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/phigate/phigate/internal/fsync"
	"github.com/phigate/phigate/internal/token"
)

// maxSecretFile bounds a token file: a secret and some white space.
const maxSecretFile = 1 << 10

// ErrBadTokenFile is wrapped by the error of a token file that does not
// hold one phigate secret. The message never contains the file's content.
var ErrBadTokenFile = errors.New("does not hold a phigate token (phi_…) on its own")

// readSecret reads the secret in path: one phigate token, white space
// around it allowed.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s: %w (over %d bytes)", path, ErrBadTokenFile, maxSecretFile)
	}
	return parseSecret(path, b)
}

func parseSecret(what string, b []byte) (string, error) {
	s := string(bytes.TrimSpace(b))
	if token.Check(s) != nil {
		return "", fmt.Errorf("%s: %w", what, ErrBadTokenFile)
	}
	return s, nil
}

// writeSecret replaces path with secret and a newline, atomically: a
// temporary file in the same directory, mode 0600, synced, renamed over
// path, and the directory synced. A reader sees the old content or the new,
// never a part.
func writeSecret(path, secret string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := io.WriteString(f, secret+"\n"); err != nil {
		return err
	}
	if err := fsync.Datasync(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return fsync.Dir(dir)
}

// holds reports whether path already holds exactly secret (and a newline)
// with mode 0600.
func holds(path, secret string) bool {
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && string(b) == secret+"\n"
}
