package client

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// pinPrefix is the optional prefix of a pin, as in HPKP and curl's
// --pinnedpubkey.
const pinPrefix = "sha256//"

// PinMismatchError reports that the server presented a public key that
// matches none of the configured pins. It is a hard failure: the connection
// is closed before a request (and its bearer token) is sent.
type PinMismatchError struct {
	// Presented is the pin of the key the server presented, in the form
	// PHIGATE_PIN takes (base64 of the SHA-256 of the leaf certificate's
	// SubjectPublicKeyInfo).
	Presented string
	// Expected are the configured pins.
	Expected []string
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("phigate: server public key does not match PHIGATE_PIN: the server presented pin %s, expected %s "+
		"(if the server's key was changed on purpose, update PHIGATE_PIN; otherwise something is intercepting the connection)",
		e.Presented, strings.Join(e.Expected, " or "))
}

// UntrustedCertificateError reports that the server's certificate chain
// did not verify: against the system roots when neither pins nor a CA file
// were given (the self-signed certificate of `phigate server --dev`, say),
// or against the CA file. Presented is the pin of the key the server
// presented, so that the user can compare it with the one the server
// printed; it is never trusted for that. No request was sent.
type UntrustedCertificateError struct {
	// Presented is the pin of the server's leaf certificate, in the form
	// PHIGATE_PIN takes ("" when the server presented no certificate).
	Presented string
	// CAFile is the CA file the chain was verified against ("" for the
	// system roots).
	CAFile string
	// Err is the verification error (an x509 error).
	Err error
}

func (e *UntrustedCertificateError) Error() string {
	var b strings.Builder
	if e.CAFile != "" {
		fmt.Fprintf(&b, "phigate: the server's certificate does not verify against the CA file %s (%v)", e.CAFile, e.Err)
	} else {
		fmt.Fprintf(&b, "phigate: the server's certificate is not trusted by this machine (%v): set %s to the server's SPKI pin "+
			"(phigate server prints it at start as \"SPKI pin:\"), or %s to the PEM file of the CA that signed its certificate", e.Err, EnvPin, EnvCACert)
	}
	if e.Presented != "" {
		fmt.Fprintf(&b, "; the server presented pin %s (compare it with the server's output before using it: it is not trusted by being shown)", e.Presented)
	}
	return b.String()
}

func (e *UntrustedCertificateError) Unwrap() error { return e.Err }

// untrusted returns the *UntrustedCertificateError of a failed handshake
// whose chain did not verify, and nil for any other error.
func untrusted(err error, caFile string) error {
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		return nil
	}
	e := &UntrustedCertificateError{CAFile: caFile, Err: ve.Err}
	if len(ve.UnverifiedCertificates) > 0 {
		e.Presented = SPKIPin(ve.UnverifiedCertificates[0])
	}
	return e
}

// SPKIPin returns the pin of a certificate: the standard base64 encoding of
// the SHA-256 of its DER SubjectPublicKeyInfo, without prefix.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// ParsePins splits s on commas and white space and parses each part as a pin
// (base64 SHA-256, optionally prefixed "sha256//"). The returned pins have no
// prefix. An invalid entry is reported by position, never echoed, in case
// something secret was pasted into the wrong variable.
func ParsePins(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	pins := make([]string, 0, len(fields))
	for i, f := range fields {
		p, err := normalizePin(f)
		if err != nil {
			return nil, fmt.Errorf("pin #%d: %w", i+1, err)
		}
		pins = append(pins, p)
	}
	return pins, nil
}

var errBadPin = errors.New("not a pin: want the base64 SHA-256 of the server's SubjectPublicKeyInfo (44 characters), optionally prefixed sha256//")

func normalizePin(p string) (string, error) {
	p = strings.TrimPrefix(strings.TrimSpace(p), pinPrefix)
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(b) != sha256.Size {
		return "", errBadPin
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// clientTLS builds the TLS configuration of the SDK: TLS 1.2 at least, and
//   - with pins only: the leaf's public key must match a pin; the chain and
//     the name are not verified (the pin is the server's identity);
//   - with a CA file: the chain must verify to a certificate of that file
//     (instead of the system roots), and the pins, if any, must match too;
//   - with neither: the system roots.
func clientTLS(pins []string, caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("phigate: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("phigate: CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if len(pins) == 0 {
		return cfg, nil
	}
	want := make([][]byte, len(pins))
	norm := make([]string, len(pins))
	for i, p := range pins {
		n, err := normalizePin(p)
		if err != nil {
			return nil, fmt.Errorf("phigate: pin #%d: %w", i+1, err)
		}
		norm[i] = n
		want[i], _ = base64.StdEncoding.DecodeString(n)
	}
	if caFile == "" {
		// The pin replaces chain verification; VerifyConnection still runs.
		cfg.InsecureSkipVerify = true
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &PinMismatchError{Presented: "(no certificate)", Expected: norm}
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
		for _, w := range want {
			if subtle.ConstantTimeCompare(sum[:], w) == 1 {
				return nil
			}
		}
		return &PinMismatchError{Presented: base64.StdEncoding.EncodeToString(sum[:]), Expected: norm}
	}
	return cfg, nil
}
