// Package vault keeps phigate's secrets at rest: the token pepper, the
// audit checkpoint signing key, the credentials injected upstream, webhook
// secrets, and the PHI-bearing fields of audit entries and token records
// (a token's patient id). Everything it
// stores is encrypted with AES-256-GCM under data keys (DEKs) that are
// themselves wrapped by a master key (the key-encryption key, KEK) which
// never sits in the vault's storage: envelope encryption.
//
// # Guarantees
//
//   - No plaintext secret, key or field reaches the storage; the master key
//     stays with its Provider (a file, an environment variable, a
//     passphrase, or AWS KMS).
//   - Every ciphertext names its data key (purpose and version) in a clear
//     header and is bound, as additional authenticated data, to that header
//     and to where it lives (AAD(table, row, column)): a ciphertext altered,
//     truncated, moved to another row, or sealed by another vault fails with
//     ErrTampered — never garbage, never partial plaintext.
//   - Open with a wrong or missing master key fails with a clear error
//     (ErrWrongMasterKey says what wrapped the keys) and writes nothing.
//   - Rotation without downtime: RotateKEK re-wraps the data keys in one
//     transaction while readers go on with the cached keys; RotateDEK starts
//     a new data key version while every older one stays readable;
//     RotatePepper adds a pepper version and keeps the old ones until
//     RetirePepper. Each change is handed to Options.OnEvent first (for the
//     audit log), which can refuse it.
//   - Hot paths do no storage or AES work for what they have seen once:
//     data keys are unwrapped at Open, and Get/Secret serve a decrypted
//     secret from memory after its first read.
//
// # Usage
//
//	p, err := vault.ParseProvider(ctx, "file:/etc/phigate/master.key", vault.ProviderOptions{})
//	if err != nil {
//		return err // missing key, or a key file readable by group/others
//	}
//	v, err := vault.Open(ctx, dataDir, p, vault.Options{OnEvent: recordInAudit})
//	if err != nil {
//		return err // wrong key: nothing was changed
//	}
//	defer v.Close()
//	hasher, err := token.NewHasher(ctx, v) // *Vault is a token.Keyring
//	cred, _, err := v.Secret(ctx, "ehr-api") // cached after the first call
//	ct, err := v.EncryptField(ctx, vault.PurposeAuditFields, vault.AAD("audit", "42", "path"), []byte(path))
//	idx := v.BlindIndex("audit-patient", []byte(patientID))
//
// # Master-key providers
//
// A spec string chooses the provider (ParseSpec, ParseProvider):
//
//	file:PATH          32 random bytes, or their base64; the file must not be
//	                   accessible by group or others (refused otherwise)
//	env:NAME           the base64 of 32 random bytes in variable NAME
//	passphrase         a passphrase typed at the terminal, stretched with
//	                   argon2id (parameters and salt stored in each wrap)
//	passphrase:fd:N    the passphrase read from file descriptor N (never argv)
//	awskms:KEY[?region=R&endpoint=URL]
//	                   AWS KMS Encrypt/Decrypt of the data keys under KEY
//
// DevKey makes a file key inside the data directory for development, with
// a warning for the console.
//
// # Ciphertext format (version 1)
//
//	offset  size  field
//	0       3     magic "pgv"
//	3       1     format version, 0x01
//	4       1     P, the length of the purpose (1..32)
//	5       P     purpose, [a-z][a-z0-9-]*
//	5+P     4     data key version, big-endian uint32, >= 1
//	9+P     12    GCM nonce (random)
//	21+P    n+16  AES-256-GCM ciphertext of the n-byte plaintext, and tag
//
// The header is bytes 0 to 9+P (the nonce excluded). The GCM additional
// data is header || aad, where aad is what the caller binds the value to;
// AAD(table, row, column) encodes a location as "phigate-aad-v1" followed
// by each of the three as a uvarint length and its bytes. Example, the
// 5-byte plaintext "hello" of purpose "webhook" (7 bytes), key version 2:
//
//	70 67 76 01 07 77 65 62 68 6f 6f 6b 00 00 00 02 | 12-byte nonce | 5 + 16 bytes
//
// a ciphertext of 3+1+1+7+4+12+5+16 = 49 bytes (Overhead("webhook") = 44).
// ParseHeader parses a header; every malformed input is ErrTampered.
//
// Items the vault keeps itself (secrets, key blobs, peppers) are sealed
// for AAD("items", PURPOSE "/" NAME "/" VERSION, "ciphertext").
//
// # Wrapped data keys
//
// Data key (PURPOSE, VERSION) is wrapped with the label
// "dek:PURPOSE:vVERSION". Local providers write
//
//	"pgk" 0x01 | kind | key id (8) | [argon2id params (9) | salt (16)] | nonce (12) | sealed key (48)
//
// with kind 1 for a raw key (file:, env:), 2 for a passphrase (the params
// are time and memory in KiB as big-endian uint32, then the lane count as
// one byte); the key id is HMAC-SHA256(KEK, "phigate vault key id")[:8],
// and the GCM additional data is every byte before the nonce, then the
// label. AWS KMS wraps are "pgk" 0x01 0x03 followed by the KMS ciphertext
// blob, encrypted with the encryption context {"phigate-vault": label}.
//
// # Blind indexes
//
// BlindIndex(purpose, value) is HMAC-SHA256 under a per-purpose key
// derived from a root key kept in the vault: a store can keep the index
// of a patient id next to the encrypted entry and find the entries of a
// patient without decrypting any. For a path-prefix search, index each
// segment prefix of the path (PathPrefixes) and search for the index of
// the prefix. Indexes leak equality (and, for paths, the number of
// segments), nothing else, to whoever does not hold the vault.
//
// # Storage
//
// Storage is a small interface; SQLiteStorage keeps the file vault.db in
// the data directory (WAL, synchronous=FULL, secure_delete, mode 0600),
// with the tables data_keys(purpose, version, wrapped, created_at),
// items(purpose, name, version, dek_version, ciphertext, created_at) and
// vault_meta(key, value). Package storagetest is the conformance suite
// every Storage must pass.
//
// # Limits
//
// AES-GCM with random nonces must not seal more than 2^32 values under
// one data key: rotate the data key of a high-volume purpose (audit
// fields) well before that, e.g. daily. The blind-index root key does not
// rotate.
package vault
