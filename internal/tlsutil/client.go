package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
)

// ClientOptions say how a client authenticates a phigate server. The zero
// value verifies the server against the system roots.
type ClientOptions struct {
	// Pins, if any, are the accepted pins of the server's leaf public key
	// (see ParsePins). Without CAFile they replace chain verification.
	Pins []Pin
	// CAFile, if set, is a PEM file whose certificates are the only roots
	// trusted for the server's chain.
	CAFile string
	// ServerName, if set, is sent as SNI and, when the chain is verified,
	// checked against the certificate. If empty, crypto/tls and net/http
	// derive it from the address dialled.
	ServerName string
}

// ClientConfig returns a client TLS configuration that authenticates the
// server as opts says (see the package documentation). It fails if CAFile
// cannot be read or holds no certificate.
func ClientConfig(opts ClientOptions) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(cipherSuites),
		ServerName:   opts.ServerName,
	}
	if opts.CAFile != "" {
		pool, err := loadCAFile(opts.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if len(opts.Pins) > 0 {
		pins := slices.Clone(opts.Pins)
		// With pins alone the chain is not verified: the pin is the trust
		// anchor. With a CA file crypto/tls verifies the chain and host name
		// first, then VerifyConnection checks the pin as well.
		cfg.InsecureSkipVerify = opts.CAFile == ""
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPin(cs, pins) }
	}
	return cfg, nil
}

// VerifyPins checks that the leaf certificate of cs carries one of pins:
// nil, or a *PinMismatchError whose Got is the pin seen (an error without
// a certificate at all). It is the VerifyConnection check of ClientConfig,
// for callers that build their own tls.Config; use it on resumptions too.
func VerifyPins(cs tls.ConnectionState, pins []Pin) error { return verifyPin(cs, pins) }

// verifyPin checks that the leaf certificate's public key is pinned. It
// runs on full handshakes and on resumptions alike.
func verifyPin(cs tls.ConnectionState, pins []Pin) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("phigate: server presented no certificate; refusing to connect")
	}
	got := pinOf(cs.PeerCertificates[0])
	if slices.Contains(pins, got) {
		return nil
	}
	return &PinMismatchError{Got: got, Want: slices.Clone(pins)}
}

func loadCAFile(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsutil: CA file %s: no PEM certificate found", name)
	}
	return pool, nil
}
