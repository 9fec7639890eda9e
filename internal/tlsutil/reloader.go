package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// checkInterval is the least time between two looks at the files.
const checkInterval = time.Second

// Reloader is a CertSource that serves the certificate and private key held
// in two PEM files and follows changes to them.
//
// On GetCertificate it compares the files' modification times and sizes with
// those of the loaded pair at most once per checkInterval (one second), and
// reloads the pair when they differ. Only one handshake at a time does that
// work; concurrent handshakes are served the current certificate meanwhile.
// A reload that fails keeps the current certificate in service, is logged
// once at level Error for each distinct failure, and is retried at the next
// check. Log records carry file names, the certificate's subject, expiry and
// pin, and error messages from the PEM and X.509 parsers; never key bytes.
//
// A Reloader is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	cur       atomic.Pointer[tls.Certificate]
	lastCheck atomic.Pointer[time.Time]

	mu        sync.Mutex // held while checking the files; guards the fields below
	stamp     fileStamp  // of the files behind cur
	lastError string     // of the last failed reload, to log each failure once
}

// fileStamp identifies a version of the pair of files.
type fileStamp struct {
	certMod, keyMod   int64 // modification times, ns since the epoch
	certSize, keySize int64
}

// NewReloader loads the pair from certFile and keyFile and returns a Reloader
// serving it. It fails if the initial load fails. A nil logger discards log
// records; a nil now means time.Now.
func NewReloader(certFile, keyFile string, logger *slog.Logger, now func() time.Time) (*Reloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: logger, now: now}
	st, err := r.statFiles()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.stamp = st
	r.cur.Store(cert)
	t := now()
	r.lastCheck.Store(&t)
	r.warnIfExpired(cert, t)
	return r, nil
}

// GetCertificate returns the current certificate, first reloading it if a
// check is due and the files changed. It never fails after NewReloader
// succeeded.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.cur.Load(), nil
}

// Leaf returns the parsed leaf of the certificate currently served.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().Leaf }

func (r *Reloader) due(now time.Time) bool {
	since := now.Sub(*r.lastCheck.Load())
	// A clock that went backwards must not postpone checks indefinitely.
	return since >= checkInterval || since < 0
}

func (r *Reloader) maybeReload() {
	now := r.now()
	if !r.due(now) || !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if now = r.now(); !r.due(now) { // another handshake checked while we took the lock
		return
	}
	checked := now // a copy, so that only this slow path allocates
	r.lastCheck.Store(&checked)

	st, err := r.statFiles()
	if err == nil && st == r.stamp && r.lastError == "" {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = r.load()
	}
	if err != nil {
		if msg := err.Error(); msg != r.lastError {
			r.lastError = msg
			r.log.Error("tls: certificate reload failed; still serving the previous certificate",
				"cert_file", r.certFile, "key_file", r.keyFile, "err", msg)
		}
		return
	}
	r.stamp, r.lastError = st, ""
	r.cur.Store(cert)
	r.log.Info("tls: certificate reloaded",
		"cert_file", r.certFile, "subject", cert.Leaf.Subject.String(),
		"not_after", cert.Leaf.NotAfter, "spki_pin", SPKIPin(cert.Leaf))
	r.warnIfExpired(cert, now)
}

func (r *Reloader) warnIfExpired(cert *tls.Certificate, now time.Time) {
	if now.After(cert.Leaf.NotAfter) || now.Before(cert.Leaf.NotBefore) {
		r.log.Warn("tls: serving a certificate outside its validity period",
			"cert_file", r.certFile, "not_before", cert.Leaf.NotBefore, "not_after", cert.Leaf.NotAfter)
	}
}

func (r *Reloader) statFiles() (fileStamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("tlsutil: certificate: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("tlsutil: private key: %w", err)
	}
	return fileStamp{
		certMod: c.ModTime().UnixNano(), certSize: c.Size(),
		keyMod: k.ModTime().UnixNano(), keySize: k.Size(),
	}, nil
}

// load reads and checks the pair. The stamp is taken before load, so a file
// that changes in between is loaded again at the next check.
func (r *Reloader) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: private key: %w", err)
	}
	// The parsers' errors name PEM block types and ASN.1 problems, never
	// the bytes they were given, so they are safe to log.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %s, %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsutil: %s: %w", r.certFile, err)
		}
	}
	return &cert, nil
}
