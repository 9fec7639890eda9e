package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/phigate/phigate/internal/fsync"
)

// Files of the data directory.
const (
	// DBFile is the log's own SQLite database.
	DBFile = "audit.db"
	// SigningKeyFile holds the checkpoint signing key (a note signer key,
	// "PRIVATE+KEY+phigate/<node>+<hash>+<key>"), mode 0600.
	SigningKeyFile = "keys/audit-signing.key"
	// VerifierKeyFile holds the public verifier key
	// ("phigate/<node>+<hash>+<key>"), written next to it for offline
	// verification. An auditor should keep an independent copy.
	VerifierKeyFile = "keys/audit-verifier.pub"
	// OriginPrefix starts the origin of every phigate log: phigate/<node>.
	OriginPrefix = "phigate/"
)

// Keys provides the key that signs checkpoints. The file implementation is
// FileKeys; the key vault will provide one that keeps the key under
// envelope encryption.
type Keys interface {
	// CheckpointSigner returns the signer of checkpoints and its public
	// verifier key. The signer's Name is the log's origin. An error means
	// no checkpoint can be signed, and Open fails with it.
	CheckpointSigner(ctx context.Context) (note.Signer, string, error)
}

// FileKeys reads the signing key from <dataDir>/keys/audit-signing.key.
type FileKeys struct{ Dir string }

// CheckpointSigner implements Keys. It refuses a key file readable by
// group or others.
func (k FileKeys) CheckpointSigner(context.Context) (note.Signer, string, error) {
	p := filepath.Join(k.Dir, SigningKeyFile)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNoKey
	}
	if err != nil {
		return nil, "", fmt.Errorf("audit: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("audit: %s is accessible by group or others (mode %v); chmod 600 it", p, st.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("audit: %w", err)
	}
	return signerFromKey(strings.TrimSpace(string(b)))
}

// signerFromKey parses a note signer key and derives its verifier key.
func signerFromKey(skey string) (note.Signer, string, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("audit: signing key: %w", err)
	}
	// PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>; the base64 may
	// itself hold '+', the name and hash cannot
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, "", errors.New("audit: signing key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, "", errors.New("audit: signing key: not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, "", fmt.Errorf("audit: verifier key: %w", err)
	}
	return s, vkey, nil
}

// ValidNode reports whether node can name a log: 1 to 64 characters of
// A-Z a-z 0-9 . _ -.
func ValidNode(node string) bool {
	if node == "" || len(node) > 64 {
		return false
	}
	for i := 0; i < len(node); i++ {
		c := node[i]
		if !(isB62(c) || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DefaultNode is the node name used when none is configured: the host
// name, cut to what ValidNode accepts, or "phigate".
func DefaultNode() string {
	h, _ := os.Hostname()
	var b strings.Builder
	for i := 0; i < len(h) && b.Len() < 64; i++ {
		if c := h[i]; isB62(c) || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "phigate"
	}
	return b.String()
}

// InitKeys makes sure dataDir has an audit signing key, generating one for
// origin phigate/<node> (node "" means DefaultNode) from rnd (crypto/rand
// when nil) if there is none. It returns the public verifier key. An
// existing key for another node is an error: a log's origin never
// changes.
func InitKeys(dataDir, node string, rnd io.Reader) (vkey string, created bool, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if node == "" {
		node = DefaultNode()
	}
	if !ValidNode(node) {
		return "", false, fmt.Errorf("audit: node name %q: use 1 to 64 characters of A-Z a-z 0-9 . _ -", node)
	}
	origin := OriginPrefix + node
	p := filepath.Join(dataDir, SigningKeyFile)
	if _, err := os.Stat(p); err == nil {
		s, vkey, err := FileKeys{dataDir}.CheckpointSigner(context.Background())
		if err != nil {
			return "", false, err
		}
		if s.Name() != origin {
			return "", false, fmt.Errorf("audit: the log in %s is %s; it cannot become %s (a log's origin never changes)", dataDir, s.Name(), origin)
		}
		return vkey, false, writeVerifier(dataDir, vkey)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", false, fmt.Errorf("audit: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rnd, origin)
	if err != nil {
		return "", false, fmt.Errorf("audit: generate signing key: %w", err)
	}
	if err := writeFileSync(p, []byte(skey+"\n"), 0o600, true); err != nil {
		return "", false, err
	}
	return vkey, true, writeVerifier(dataDir, vkey)
}

func writeVerifier(dataDir, vkey string) error {
	p := filepath.Join(dataDir, VerifierKeyFile)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == vkey {
		return nil
	}
	return writeFileSync(p, []byte(vkey+"\n"), 0o644, false)
}

// writeFileSync writes a file durably: to a temporary name, fsync'd, then
// renamed (with excl, only if the name is free).
func writeFileSync(p string, data []byte, mode os.FileMode, excl bool) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && excl {
		if _, serr := os.Stat(p); serr == nil {
			err = fmt.Errorf("%s appeared meanwhile", p)
		}
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("audit: write %s: %w", p, err)
	}
	fsync.Dir(filepath.Dir(p)) // best effort
	return nil
}

// ReadVerifierKey returns the public verifier key kept in dataDir (see
// VerifierKeyFile), or derives it from the signing key when the public
// file is missing.
func ReadVerifierKey(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, VerifierKeyFile))
	if err == nil {
		vkey := strings.TrimSpace(string(b))
		if _, err := NewVerifier(vkey); err != nil {
			return "", err
		}
		return vkey, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("audit: %w", err)
	}
	_, vkey, err := FileKeys{dataDir}.CheckpointSigner(context.Background())
	return vkey, err
}

// NewVerifier parses a public verifier key ("phigate/<node>+<hash>+<key>")
// and checks that it names a phigate log.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	if !strings.HasPrefix(v.Name(), OriginPrefix) || !ValidNode(strings.TrimPrefix(v.Name(), OriginPrefix)) {
		return nil, fmt.Errorf("audit: verifier key is for %q, not a phigate audit log", v.Name())
	}
	return v, nil
}
