package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/fsync"
)

// Names of the files GenerateSelfSigned writes in its directory.
const (
	SelfSignedCertName = "tls.crt"
	SelfSignedKeyName  = "tls.key"
)

const (
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedMinLeft is how long a certificate must still be valid to be
	// reused rather than replaced.
	selfSignedMinLeft = 7 * 24 * time.Hour
)

// GenerateSelfSigned makes sure dir holds a self-signed certificate and its
// key for localhost, 127.0.0.1, ::1 and hosts (host names or IP addresses),
// and returns the paths of the two files (SelfSignedCertName and
// SelfSignedKeyName in dir).
//
// If both files exist, form a matching pair, cover every requested name, are
// valid at now for at least seven more days and the key file is readable by
// its owner only, they are reused unchanged, so the certificate's pin stays
// the same across restarts. Otherwise a new ECDSA P-256 key and certificate,
// valid for one year from now, replace them. The key file is written with
// mode 0600 and the certificate with 0644, each atomically (a temporary file
// renamed into place); dir is created with mode 0700 if missing.
func GenerateSelfSigned(dir string, hosts []string, now time.Time) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, SelfSignedCertName)
	keyFile = filepath.Join(dir, SelfSignedKeyName)

	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			return "", "", errors.New("tlsutil: self-signed certificate: empty host name")
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}

	if reusable(certFile, keyFile, names, now) {
		return certFile, keyFile, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	certPEM, keyPEM, err := newSelfSigned(names, now)
	if err != nil {
		return "", "", fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	// The key goes first: a crash between the two renames leaves a pair that
	// does not match, which the next call replaces.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	clear(keyPEM)
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	return certFile, keyFile, nil
}

// reusable reports whether the pair already on disk meets every condition
// of GenerateSelfSigned for reuse. Any error means "no".
func reusable(certFile, keyFile string, names []string, now time.Time) bool {
	fi, err := os.Stat(keyFile)
	if err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0) {
		return false
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < selfSignedMinLeft {
		return false
	}
	for _, n := range names {
		if !hasSAN(leaf, n) {
			return false
		}
	}
	return true
}

// hasSAN reports whether name is literally one of cert's subject alternative
// names (no wildcard matching: a requested wildcard must be present as such).
func hasSAN(cert *x509.Certificate, name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		return slices.ContainsFunc(cert.IPAddresses, ip.Equal)
	}
	return slices.ContainsFunc(cert.DNSNames, func(d string) bool { return strings.EqualFold(d, name) })
}

func newSelfSigned(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "phigate self-signed", Organization: []string{"phigate development"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return certPEM, keyPEM, nil
}

// writeFileAtomic writes data to name with mode perm, through a temporary
// file in the same directory that is synced and then renamed over name.
func writeFileAtomic(name string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp") // created 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), name); err != nil {
		return err
	}
	fsync.Dir(filepath.Dir(name)) // make the rename durable (best effort)
	return nil
}
