package token

import (
	"crypto/sha256"
	"hash/crc32"
)

// CheckBytes is Check for a byte slice, for scanners that search large
// buffers: it does not allocate. Every failure is ErrMalformed.
func CheckBytes(b []byte) error {
	if len(b) != Len || b[0] != 'p' || b[1] != 'h' || b[2] != 'i' || b[3] != '_' {
		return ErrMalformed
	}
	for _, c := range b[len(Prefix):] {
		if !isB62[c] {
			return ErrMalformed
		}
	}
	var got uint64
	for _, c := range b[len(Prefix)+entropyLen:] {
		got = got*62 + uint64(b62val[c])
	}
	if got != uint64(crc32.ChecksumIEEE(b[:len(Prefix)+entropyLen])) {
		return ErrMalformed
	}
	return nil
}

// IsB62 reports whether c belongs to the token alphabet (0-9, A-Z, a-z).
func IsB62(c byte) bool { return isB62[c] }

// PublicFingerprintPrefix starts every public fingerprint.
const PublicFingerprintPrefix = "phi_…"

// PublicFingerprint names a token secret found in the wild without
// revealing it, computable by anyone from the string alone (no pepper):
// "phi_…", the last 4 characters of the secret (checksum characters), "_"
// and the first 12 hex digits of SHA-256 of the whole secret, for example
// "phi_…x9Qa_3f1c0a9b2d4e". The secret carries 256 bits of entropy, so the
// hash prefix cannot be reversed; the server's answers use the keyed-hash
// Fingerprint instead.
func PublicFingerprint(secret string) string {
	s := sha256.Sum256([]byte(secret))
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, len(PublicFingerprintPrefix)+4+1+12)
	out = append(out, PublicFingerprintPrefix...)
	if len(secret) >= 4 {
		out = append(out, secret[len(secret)-4:]...)
	}
	out = append(out, '_')
	for _, b := range s[:6] {
		out = append(out, hexd[b>>4], hexd[b&15])
	}
	return string(out)
}
