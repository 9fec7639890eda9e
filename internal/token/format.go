package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

const (
	// Prefix starts every token secret.
	Prefix = "phi_"
	// IDPrefix starts every public token id.
	IDPrefix = "tok_"

	entropyLen  = 43
	checksumLen = 6
	// Len is the length of a token secret in bytes.
	Len = len(Prefix) + entropyLen + checksumLen
	// idRandLen is the number of base62 characters after IDPrefix.
	idRandLen = 22
	// IDLen is the length of a public id.
	IDLen = len(IDPrefix) + idRandLen
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformed is returned for every secret that is not a well-formed phigate
// token: wrong length, prefix, alphabet or checksum. It deliberately does not
// say which.
var ErrMalformed = errors.New("token: malformed")

// isB62 maps a byte to true if it belongs to the base62 alphabet.
var isB62 = func() (t [256]bool) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = true
	}
	return t
}()

// b62val maps a base62 character to its value.
var b62val = func() (t [256]uint8) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = uint8(i)
	}
	return t
}()

// Generate returns a new token secret read from r (crypto/rand.Reader when r
// is nil).
func Generate(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [Len]byte
	copy(b[:], Prefix)
	if err := randB62(r, b[len(Prefix):len(Prefix)+entropyLen]); err != nil {
		return "", fmt.Errorf("token: generate: %w", err)
	}
	putChecksum(b[len(Prefix)+entropyLen:], crc32.ChecksumIEEE(b[:len(Prefix)+entropyLen]))
	return string(b[:]), nil
}

// NewID returns a new public token id for a token created now, with its
// random part read from r (crypto/rand.Reader when r is nil).
func NewID(r io.Reader) (string, error) { return NewIDAt(r, time.Now()) }

// idTimeLen is the number of base62 characters of an id's time prefix.
const idTimeLen = 8

// NewIDAt returns a new public token id for a token created at t. The first
// 8 characters after the prefix are the creation time in milliseconds since
// the Unix epoch (base62, big-endian, zero-padded), so ids sort by creation
// and inserts land at the end of the store's index; the remaining 14 are
// random (≈ 83 bits), so ids are unique and unguessable.
func NewIDAt(r io.Reader, t time.Time) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [IDLen]byte
	copy(b[:], IDPrefix)
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	v := uint64(ms)
	for i := len(IDPrefix) + idTimeLen - 1; i >= len(IDPrefix); i-- {
		b[i] = alphabet[v%62]
		v /= 62
	}
	if err := randB62(r, b[len(IDPrefix)+idTimeLen:]); err != nil {
		return "", fmt.Errorf("token: new id: %w", err)
	}
	return string(b[:]), nil
}

// randB62 fills dst with uniformly distributed base62 characters by rejection
// sampling: bytes ≥ 248 (the largest multiple of 62 below 256) are discarded.
func randB62(r io.Reader, dst []byte) error {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return err
		}
		for _, c := range buf {
			if c >= 248 {
				continue
			}
			dst[n] = alphabet[c%62]
			n++
			if n == len(dst) {
				break
			}
		}
	}
	return nil
}

func putChecksum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = alphabet[v%62]
		v /= 62
	}
}

// Check reports whether s is a well-formed token secret: right length,
// prefix, alphabet and checksum. It does not allocate and does not touch any
// store. Every failure is ErrMalformed.
func Check(s string) error {
	if len(s) != Len || s[:len(Prefix)] != Prefix {
		return ErrMalformed
	}
	body := s[len(Prefix):]
	for i := 0; i < len(body); i++ {
		if !isB62[body[i]] {
			return ErrMalformed
		}
	}
	// decode the checksum (6 base62 digits) and compare with the CRC
	var got uint64
	for i := len(Prefix) + entropyLen; i < Len; i++ {
		got = got*62 + uint64(b62val[s[i]])
	}
	if got != uint64(crc32IEEEString(s[:len(Prefix)+entropyLen])) {
		return ErrMalformed
	}
	return nil
}

// crcTables are slicing-by-8 tables for the IEEE polynomial.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.MakeTable(crc32.IEEE)
	for i := 0; i < 256; i++ {
		c := t[0][i]
		for j := 1; j < 8; j++ {
			c = t[0][c&0xff] ^ (c >> 8)
			t[j][i] = c
		}
	}
	return t
}()

// crc32IEEEString computes the IEEE CRC-32 of s, equal to
// crc32.ChecksumIEEE([]byte(s)), without allocating (the standard
// library's accelerated path makes its argument escape), eight bytes at a
// time.
func crc32IEEEString(s string) uint32 {
	crc := ^uint32(0)
	t := &crcTables
	for len(s) >= 8 {
		lo := crc ^ (uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
		crc = t[7][byte(lo)] ^ t[6][byte(lo>>8)] ^ t[5][byte(lo>>16)] ^ t[4][byte(lo>>24)] ^
			t[3][s[4]] ^ t[2][s[5]] ^ t[1][s[6]] ^ t[0][s[7]]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		crc = t[0][byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

// ValidID reports whether s has the shape of a public token id.
func ValidID(s string) bool {
	if len(s) != IDLen || s[:len(IDPrefix)] != IDPrefix {
		return false
	}
	for i := len(IDPrefix); i < len(s); i++ {
		if !isB62[s[i]] {
			return false
		}
	}
	return true
}

// LooksLikeToken reports whether s starts with the token prefix; scanners use
// Check for the full test.
func LooksLikeToken(s string) bool {
	return len(s) >= len(Prefix) && s[:len(Prefix)] == Prefix
}
