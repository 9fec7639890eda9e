package tlsutil

import (
	"crypto/tls"
	"slices"
)

// CertSource supplies the certificate for each TLS handshake.
//
// GetCertificate has the contract of tls.Config.GetCertificate. It MUST be
// safe for concurrent use and SHOULD return quickly, since it runs on every
// handshake. An error aborts that one handshake; a source that can keep
// serving a previously good certificate should do so rather than fail.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// cipherSuites are the TLS 1.2 suites phigate accepts: ECDHE key exchange
// (forward secrecy) with an AEAD cipher. TLS 1.3 suites are not configurable
// in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curvePreferences keeps Go's hybrid post-quantum key exchanges (preferred by
// Go's own ordering whenever both sides offer them) next to X25519 and P-256.
var curvePreferences = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.SecP256r1MLKEM768,
	tls.X25519,
	tls.CurveP256,
}

// ServerConfig returns phigate's server TLS configuration, serving the
// certificate that src gives for each handshake. src must not be nil. The
// returned config is new on each call and the caller may change it, though
// any change weakens the guarantees in the package documentation.
func ServerConfig(src CertSource) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     slices.Clone(cipherSuites),
		CurvePreferences: slices.Clone(curvePreferences),
		NextProtos:       []string{"h2", "http/1.1"},
		GetCertificate:   src.GetCertificate,
	}
}
