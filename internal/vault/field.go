package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
)

// EncryptField seals plaintext (an audit field, a webhook payload secret,
// ...) under purpose's active data key, bound to aad — use AAD(table, row,
// column) for where it will be stored. The result is a vault ciphertext
// (see the package documentation), Overhead(purpose) bytes longer than
// plaintext. A purpose seen for the first time gets its data key here
// (EventDEKCreated).
func (v *Vault) EncryptField(ctx context.Context, purpose string, aad, plaintext []byte) ([]byte, error) {
	return v.seal(ctx, purpose, aad, plaintext)
}

// EnsureDataKey makes sure purpose has a data key, creating it (and
// reporting EventDEKCreated) if not. Call it before handing the vault to
// code that seals where it cannot take part in recording that event (the
// audit log's writer seals audit fields while it commits: a key created
// there would wait for the very writer that creates it).
func (v *Vault) EnsureDataKey(ctx context.Context, purpose string) error {
	_, err := v.activeKey(ctx, purpose)
	return err
}

// DecryptField opens a ciphertext made by EncryptField with the same
// purpose and aad, whatever data key version sealed it. Any mismatch — a
// byte changed, another row's ciphertext, another purpose, a key version
// this vault does not have, a malformed header — is ErrTampered (a
// *TamperError), reported to OnEvent as EventTampered; no plaintext is
// returned.
func (v *Vault) DecryptField(ctx context.Context, purpose string, aad, ciphertext []byte) ([]byte, error) {
	return v.open(ctx, purpose, aad, ciphertext)
}

// BlindIndexSize is the length of a blind index.
const BlindIndexSize = sha256.Size

// BlindIndex returns HMAC-SHA256(K_purpose, value), where K_purpose =
// HMAC-SHA256(blind-index root key, "phigate blind index v1\x00" ||
// purpose). Equal values give equal indexes, so a store can find the
// entries of a patient id by the index of the id, without decrypting
// anything and without holding the id; without the vault's key the index
// reveals nothing but equality. The root key never rotates (a new one
// would orphan every index); data-key rotations do not affect it.
//
// For a search by path prefix, index every segment prefix of the path
// (PathPrefixes) and look up the index of the prefix searched for.
func (v *Vault) BlindIndex(purpose string, value []byte) []byte {
	return v.blindKey(purpose).sum(value)
}

// hmacKey is an HMAC-SHA256 key with its pads computed once.
type hmacKey struct {
	ipad, opad [sha256.BlockSize]byte
}

func newHMACKey(key []byte) *hmacKey {
	h := &hmacKey{}
	for i := range h.ipad {
		var b byte
		if i < len(key) { // keys here are 32 bytes, within a block
			b = key[i]
		}
		h.ipad[i], h.opad[i] = b^0x36, b^0x5c
	}
	return h
}

// sum is HMAC-SHA256(key, msg); it allocates only the result for
// messages of up to 192 bytes.
func (h *hmacKey) sum(msg []byte) []byte {
	var inner [sha256.BlockSize + 192]byte
	var in []byte
	if len(msg) <= 192 {
		copy(inner[:], h.ipad[:])
		n := copy(inner[sha256.BlockSize:], msg)
		in = inner[:sha256.BlockSize+n]
	} else {
		in = append(append(make([]byte, 0, sha256.BlockSize+len(msg)), h.ipad[:]...), msg...)
	}
	ih := sha256.Sum256(in)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], h.opad[:])
	copy(outer[sha256.BlockSize:], ih[:])
	s := sha256.Sum256(outer[:])
	return append(make([]byte, 0, BlindIndexSize), s[:]...)
}

func (v *Vault) blindKey(purpose string) *hmacKey {
	if k, ok := v.bkeys.Load(purpose); ok {
		return k.(*hmacKey)
	}
	m := hmac.New(sha256.New, v.bidx)
	m.Write([]byte("phigate blind index v1\x00"))
	m.Write([]byte(purpose))
	k := newHMACKey(m.Sum(nil))
	v.bkeys.Store(purpose, k)
	return k
}

// PathPrefixes returns the segment prefixes of an URL path, the values to
// blind-index so that a search by path prefix works: for
// "/fhir/Patient/123/Observation?code=x" it returns "/fhir",
// "/fhir/Patient", "/fhir/Patient/123" and "/fhir/Patient/123/Observation".
// The query is dropped and empty segments ("//", a trailing "/") are
// skipped, so a searcher normalises its prefix with the same function and
// takes the last element. At most 32 prefixes are returned (deeper
// segments are folded into the last one). Only whole segments match: a
// search for "/fhir/Pat" finds nothing. What the index reveals: that two
// entries share a prefix, and how many segments a path has.
func PathPrefixes(path string) []string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	var out []string
	var b strings.Builder
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		if len(out) == 32 {
			b.WriteByte('/')
			b.WriteString(seg)
			out[31] = b.String()
			continue
		}
		b.WriteByte('/')
		b.WriteString(seg)
		out = append(out, b.String())
	}
	return out
}
