package token

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// HashLen is the length of a keyed token hash.
const HashLen = sha256.Size

// Hash is HMAC-SHA256(pepper, secret).
type Hash [HashLen]byte

// Equal compares two hashes in constant time.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// Keyring gives the pepper that keys token hashes. Implementations MUST return
// a key of at least 32 bytes; the returned slice MUST NOT be modified by the
// caller. Version identifies the pepper so that a later pepper rotation can
// keep older versions for tokens hashed with them. An error means the key is
// unavailable and no token can be verified (fail closed).
type Keyring interface {
	Pepper(ctx context.Context) (version int, key []byte, err error)
}

// Pepper is one version of the pepper. Key MUST NOT be modified.
type Pepper struct {
	Version int
	Key     []byte
}

// Hasher computes keyed token hashes with precomputed HMAC pads, so that
// Sum performs no heap allocation. A Hasher is safe for concurrent use.
type Hasher struct {
	version int
	ipad    [sha256.BlockSize]byte
	opad    [sha256.BlockSize]byte
}

// NewHasher returns a Hasher for the keyring's current pepper.
func NewHasher(ctx context.Context, kr Keyring) (*Hasher, error) {
	v, key, err := kr.Pepper(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: pepper: %w", err)
	}
	return NewHasherKey(v, key)
}

// NewHasherKey returns a Hasher for key, labelled with version.
func NewHasherKey(version int, key []byte) (*Hasher, error) {
	if len(key) < 32 {
		return nil, errors.New("token: pepper shorter than 32 bytes")
	}
	h := &Hasher{version: version}
	k := key
	if len(k) > sha256.BlockSize {
		s := sha256.Sum256(k)
		k = s[:]
	}
	for i := range h.ipad {
		var b byte
		if i < len(k) {
			b = k[i]
		}
		h.ipad[i] = b ^ 0x36
		h.opad[i] = b ^ 0x5c
	}
	return h, nil
}

// Version is the pepper version this Hasher uses.
func (h *Hasher) Version() int { return h.version }

// Sum returns HMAC-SHA256(pepper, secret). Secrets longer than Len are hashed
// too (the result is simply never found); Sum never allocates for secrets of
// up to 128 bytes.
func (h *Hasher) Sum(secret string) Hash {
	var inner [sha256.BlockSize + 128]byte
	var in []byte
	if len(secret) <= 128 {
		copy(inner[:], h.ipad[:])
		n := copy(inner[sha256.BlockSize:], secret)
		in = inner[:sha256.BlockSize+n]
	} else {
		in = append(append(make([]byte, 0, sha256.BlockSize+len(secret)), h.ipad[:]...), secret...)
	}
	ih := sha256.Sum256(in)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], h.opad[:])
	copy(outer[sha256.BlockSize:], ih[:])
	return Hash(sha256.Sum256(outer[:]))
}

// FingerprintPrefix starts every secret fingerprint.
const FingerprintPrefix = "fp_"

// Fingerprint names a stored secret without revealing anything of it:
// "fp_" and the first 16 hex digits of SHA-256("phigate secret fingerprint
// v1\x00" || h), h being the secret's keyed hash. It is a one-way function
// of a keyed hash, so it can appear in records, audit entries and logs; it
// identifies a link of a rotation chain, it is not a means to verify a
// secret (the same secret hashed under another pepper has another one).
func Fingerprint(h Hash) string {
	var in [len(fingerprintLabel) + HashLen]byte
	copy(in[:], fingerprintLabel)
	copy(in[len(fingerprintLabel):], h[:])
	s := sha256.Sum256(in[:])
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, len(FingerprintPrefix)+16)
	out = append(out, FingerprintPrefix...)
	for _, b := range s[:8] {
		out = append(out, hexd[b>>4], hexd[b&15])
	}
	return string(out)
}

const fingerprintLabel = "phigate secret fingerprint v1\x00"
