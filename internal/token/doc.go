// Package token defines phigate's token format, its generation and parsing, the
// keyed hash the store keeps instead of the secret, and the token record.
//
// # Format
//
// A token secret is 53 ASCII characters:
//
//	phi_ <43 base62 characters of entropy> <6 base62 characters of checksum>
//
// The entropy part is 43 characters drawn uniformly (by rejection sampling of
// crypto/rand bytes) from the alphabet
//
//	0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
//
// which carries 43·log2(62) ≈ 256.03 bits. The checksum is the CRC-32 (IEEE)
// of the first 47 bytes ("phi_" and the entropy), written as a big-endian
// base62 number left-padded with '0' to 6 characters. Shape (E: entropy,
// C: checksum):
//
//	phi_<43 entropy characters><6 checksum characters>
//
// The checksum lets a scanner recognise a phigate token and lets the server
// reject a typo or a random string without touching the store. It is not a
// security control: a valid checksum says nothing about validity.
//
// Every malformed-secret case (length, prefix, alphabet, checksum) is reported
// as the single error ErrMalformed, so nothing tells a caller which part was
// wrong.
//
// CheckBytes is Check for a byte slice (scanners use it on their buffers).
// PublicFingerprint names a found secret without revealing it and without
// the pepper: "phi_…", its last 4 characters, "_" and 12 hex digits of
// SHA-256 of the whole secret (the server's Fingerprint is keyed instead).
//
// # Public id
//
// Every token also has a public id, "tok_" followed by 22 base62 characters:
// 8 for the creation time in milliseconds since the Unix epoch (big-endian,
// zero-padded, so ids sort by creation time) and 14 random (≈ 83 bits). The
// id is used in every reference: API, CLI, logs and audit. It is not a
// secret and grants nothing.
//
// # Keyed hash
//
// The store keeps only HMAC-SHA256(pepper, secret). The pepper comes from a
// Keyring; Hasher precomputes the HMAC pads so that hashing a secret performs
// no allocation. Hashes are compared with crypto/subtle.
package token
