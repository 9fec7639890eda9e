package tlsutil

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Pin is the SHA-256 digest of a DER-encoded SubjectPublicKeyInfo.
type Pin [sha256.Size]byte

// String returns the pin in standard base64 with padding, without the
// "sha256//" prefix.
func (p Pin) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// WithPrefix returns the pin as configuration files and curl write it:
// "sha256//" and String.
func (p Pin) WithPrefix() string { return pinPrefix + p.String() }

// pinPrefix is the optional prefix curl and HPKP put before a SHA-256 pin.
const pinPrefix = "sha256//"

// ErrInvalidPin is wrapped by every error ParsePins returns.
var ErrInvalidPin = errors.New("invalid pin")

func pinOf(cert *x509.Certificate) Pin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// SPKIPin returns the pin of cert's public key: standard base64 (with
// padding) of SHA-256 over cert.RawSubjectPublicKeyInfo.
func SPKIPin(cert *x509.Certificate) string { return pinOf(cert).String() }

// PinFromFile returns the SPKIPin of the first certificate in the PEM file
// certFile.
func PinFromFile(certFile string) (string, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return "", fmt.Errorf("tlsutil: %w", err)
	}
	cert, err := firstCertificate(data)
	if err != nil {
		return "", fmt.Errorf("tlsutil: %s: %w", certFile, err)
	}
	return SPKIPin(cert), nil
}

func firstCertificate(pemData []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// ParsePins parses one or more pins separated by commas or white space. Each
// pin is the standard base64 (with padding) of 32 bytes, optionally prefixed
// with "sha256//". Duplicates are dropped. An empty list is an error: a
// caller that has nothing to pin should not call ParsePins. Every error wraps
// ErrInvalidPin and says which pin, counting from 1, is wrong.
func ParsePins(s string) ([]Pin, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(fields) == 0 {
		return nil, fmt.Errorf("tlsutil: %w: no pin given (want base64 SHA-256 of the server's SubjectPublicKeyInfo)", ErrInvalidPin)
	}
	pins := make([]Pin, 0, len(fields))
	for i, f := range fields {
		p, err := parsePin(f)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: %w %d (%s): %s", ErrInvalidPin, i+1, quoteShort(f), err)
		}
		if !slices.Contains(pins, p) {
			pins = append(pins, p)
		}
	}
	return pins, nil
}

func parsePin(s string) (Pin, error) {
	if len(s) >= len(pinPrefix) && strings.EqualFold(s[:len(pinPrefix)], pinPrefix) {
		s = s[len(pinPrefix):]
	}
	var p Pin
	// 32 bytes encode to exactly 44 characters; checking first keeps a long
	// input from being decoded at all.
	if n := base64.StdEncoding.EncodedLen(len(p)); len(s) != n {
		return p, fmt.Errorf("is %d characters after any %q prefix, want %d (standard base64 of a 32-byte SHA-256 digest)", len(s), pinPrefix, n)
	}
	var buf [33]byte // DecodedLen of 44 characters
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil {
		return p, errors.New("is not standard base64 (A-Z a-z 0-9 + /, padded with =)")
	}
	if n != len(p) {
		return p, fmt.Errorf("decodes to %d bytes, want %d (a SHA-256 digest)", n, len(p))
	}
	copy(p[:], buf[:n])
	return p, nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const limit = 60
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// PinMismatchError is the error of a handshake in which the server's leaf
// certificate did not carry a pinned public key.
type PinMismatchError struct {
	// Got is the pin of the public key the server presented.
	Got Pin
	// Want are the pins the client accepts.
	Want []Pin
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("phigate: server public key does not match PHIGATE_PIN (got sha256 pin %q); refusing to connect. "+
		"If the server's key was replaced on purpose, confirm the new pin out of band and update PHIGATE_PIN", e.Got.String())
}
