package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Ciphertext format, version 1 (see the package documentation).
const (
	magic        = "pgv"
	formatV1     = 0x01
	maxPurpose   = 32
	nonceSize    = 12
	tagSize      = 16
	dataKeySize  = 32
	minHeaderLen = len(magic) + 1 + 1 + 1 + 4 // purpose of one byte
)

// Header is the clear part of a vault ciphertext: which data key sealed it.
type Header struct {
	// Purpose names the data key's purpose ("audit-fields", ...).
	Purpose string
	// Version is the data key's version, 1 or more.
	Version uint32
}

// Overhead is the number of bytes a ciphertext of purpose adds to its
// plaintext.
func Overhead(purpose string) int { return len(magic) + 2 + len(purpose) + 4 + nonceSize + tagSize }

// appendHeader appends the header of h (everything up to the nonce).
func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, magic...)
	dst = append(dst, formatV1, byte(len(h.Purpose)))
	dst = append(dst, h.Purpose...)
	return binary.BigEndian.AppendUint32(dst, h.Version)
}

// ParseHeader parses the header of a vault ciphertext. It returns the
// header, its length in bytes (the nonce follows), and ErrTampered for
// anything that is not a well-formed version-1 ciphertext: wrong magic or
// format version, a purpose that is not [a-z][a-z0-9-]{0,31}, version 0,
// or fewer bytes than a nonce and a tag after the header. It never panics.
func ParseHeader(ct []byte) (Header, int, error) {
	purpose, version, hl, why := parseHeader(ct)
	if why != "" {
		return Header{}, 0, &TamperError{Reason: "malformed ciphertext: " + why}
	}
	return Header{Purpose: string(purpose), Version: version}, hl, nil
}

// parseHeader is ParseHeader without allocating: the purpose is a slice
// of ct, and why is empty on success.
func parseHeader(ct []byte) (purpose []byte, version uint32, hl int, why string) {
	if len(ct) < minHeaderLen+nonceSize+tagSize {
		return nil, 0, 0, "too short"
	}
	if string(ct[:len(magic)]) != magic {
		return nil, 0, 0, "not a vault ciphertext"
	}
	if ct[len(magic)] != formatV1 {
		return nil, 0, 0, "unknown format version"
	}
	p := int(ct[len(magic)+1])
	off := len(magic) + 2
	if p == 0 || p > maxPurpose || len(ct) < off+p+4+nonceSize+tagSize {
		return nil, 0, 0, "bad purpose length"
	}
	purpose = ct[off : off+p]
	if !validPurpose(string(purpose)) {
		return nil, 0, 0, "bad purpose"
	}
	off += p
	version = binary.BigEndian.Uint32(ct[off:])
	if version == 0 {
		return nil, 0, 0, "key version 0"
	}
	return purpose, version, off + 4, ""
}

// validPurpose: [a-z][a-z0-9-]{0,31}.
func validPurpose(s string) bool {
	if s == "" || len(s) > maxPurpose || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// AAD encodes where a ciphertext lives (table, row id, column) as
// additional authenticated data: "phigate-aad-v1", then each of the three
// as a uvarint length and its bytes. A ciphertext sealed for one location
// fails to open (ErrTampered) at any other.
func AAD(table, row, column string) []byte {
	b := make([]byte, 0, 14+len(table)+len(row)+len(column)+6)
	b = append(b, "phigate-aad-v1"...)
	for _, s := range [...]string{table, row, column} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// dataKey is one unwrapped data key, ready to use.
type dataKey struct {
	purpose string
	version uint32
	key     []byte // kept to re-wrap it under a new KEK
	aead    cipher.AEAD
	header  []byte // the ciphertext header for this key
}

func newDataKey(purpose string, version uint32, key []byte) (*dataKey, error) {
	if len(key) != dataKeySize {
		return nil, fmt.Errorf("vault: data key %s v%d has %d bytes, want %d", purpose, version, len(key), dataKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &dataKey{purpose: purpose, version: version, key: key, aead: aead,
		header: appendHeader(nil, Header{Purpose: purpose, Version: version})}, nil
}

// seal encrypts plaintext bound to aad with a fresh nonce from rnd. The
// GCM additional data is the header followed by aad, so that the purpose
// and version are authenticated too. It makes one allocation: the
// additional data is assembled in the spare capacity past the ciphertext
// (it is not secret).
func (k *dataKey) seal(rnd io.Reader, aad, plaintext []byte) ([]byte, error) {
	hl := len(k.header)
	n := hl + nonceSize + len(plaintext) + tagSize
	buf := make([]byte, n+hl+len(aad))
	ad := buf[n:]
	copy(ad, k.header)
	copy(ad[hl:], aad)
	out := buf[:hl+nonceSize]
	copy(out, k.header)
	nonce := out[hl:]
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("vault: randomness: %w", err)
	}
	ct := k.aead.Seal(out, nonce, plaintext, ad)
	return ct[:len(ct):len(ct)], nil
}

// open decrypts a ciphertext whose header (of length hl) names this key.
func (k *dataKey) open(ct []byte, hl int, aad []byte) ([]byte, error) {
	body := ct[hl+nonceSize:]
	n := len(body) - tagSize
	buf := make([]byte, n+hl+len(aad))
	ad := buf[n:]
	copy(ad, ct[:hl])
	copy(ad[hl:], aad)
	pt, err := k.aead.Open(buf[:0:n], ct[hl:hl+nonceSize], body, ad)
	if err != nil {
		return nil, &TamperError{Purpose: k.purpose, Version: k.version, Reason: "authentication failed (altered, moved to another row, or sealed by another key)"}
	}
	return pt, nil
}

// versionOf converts a stored version to uint32.
func versionOf(v int64) (uint32, error) {
	if v < 1 || v > math.MaxUint32 {
		return 0, errors.New("vault: data key version out of range")
	}
	return uint32(v), nil
}
