package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/vault"
)

// Sealed PHI fields
//
// Three fields of an entry can name a patient: the break-glass
// justification, the patient id and the request path (with its query:
// "/fhir/Patient/123", "?patient=123"). When the Log has a Sealer, Append
// takes them out of the entry and the writer seals them together, once the
// entry has its sequence number, into one field (tagSealed) bound to that
// number: a sealed field copied into another entry fails to open, besides
// breaking the Merkle tree. Everything else stays in the clear, so the log
// is searched by token, subject, action, time and upstream as before, and
// it verifies without the key: the leaf commits to the ciphertext.
//
// Searching by patient or path prefix uses a blind index: Append computes
// a keyed hash of the patient id and of every segment prefix of the path
// from the second on (vault.PathPrefixes; the first, "/fhir", is the
// upstream's mount: a search by it alone scans, as one by upstream does),
// the writer stores the first eight bytes of each,
// with the entry's sequence number, in phi_index in the entry's
// transaction, and Search looks the hash of the value searched for up
// there, opens the candidates and keeps those that really match (eight
// bytes can collide; the key makes them meaningless to anyone without it).
// The index is a search aid outside the Merkle tree: deleting rows from it
// hides entries from a search, never from Verify or an export.

// Sealer encrypts and blind-indexes the PHI-bearing fields of entries
// (the server's is the vault, purpose audit-fields).
type Sealer interface {
	// Seal encrypts plaintext for entry seq.
	Seal(ctx context.Context, seq uint64, plaintext []byte) ([]byte, error)
	// Open decrypts what Seal returned for seq; anything else (another
	// entry's field, a changed byte) is an error, never garbage.
	Open(ctx context.Context, seq uint64, ciphertext []byte) ([]byte, error)
	// BlindIndex is a keyed hash of value (at least 8 bytes; equal values,
	// equal hashes).
	BlindIndex(value []byte) []byte
}

// sealOverhead bounds what sealing adds to an entry: the tag, the length
// and the Sealer's expansion (vault.Overhead("audit-fields") is 49 bytes).
// The writer refuses an entry a Sealer made longer than MaxEntrySize.
const sealOverhead = 128

// VaultSealer is the server's Sealer: v's audit-fields data key
// (vault.PurposeAuditFields; phigate keys rotate-dek audit-fields starts a
// new one, older entries stay readable), each field bound to its entry
// (table audit_entries, row the seq, column phi), and v's blind index.
// The data key must exist before the log is opened
// (v.EnsureDataKey(ctx, vault.PurposeAuditFields)): its creation is an
// audited event, which the writer could not record while sealing.
func VaultSealer(v *vault.Vault) Sealer { return vaultSealer{v} }

type vaultSealer struct{ v *vault.Vault }

func sealAAD(seq uint64) []byte {
	return vault.AAD("audit_entries", strconv.FormatUint(seq, 10), "phi")
}

func (s vaultSealer) Seal(ctx context.Context, seq uint64, pt []byte) ([]byte, error) {
	return s.v.EncryptField(ctx, vault.PurposeAuditFields, sealAAD(seq), pt)
}

func (s vaultSealer) Open(ctx context.Context, seq uint64, ct []byte) ([]byte, error) {
	return s.v.DecryptField(ctx, vault.PurposeAuditFields, sealAAD(seq), ct)
}

func (s vaultSealer) BlindIndex(value []byte) []byte {
	return s.v.BlindIndex(vault.PurposeAuditFields, value)
}

// phiEmpty reports whether e has none of the sealed fields.
func (e *Entry) phiEmpty() bool { return e.BreakGlass == "" && e.Patient == "" && e.Path == "" }

// takePHI encodes e's PHI fields (as the entry encoding does: tag, length,
// bytes) for sealing and clears them in e; nil when there are none.
func (e *Entry) takePHI() []byte {
	if e.phiEmpty() {
		return nil
	}
	b := make([]byte, 0, len(e.BreakGlass)+len(e.Patient)+len(e.Path)+9)
	b = appendString(b, tagBreakGlass, e.BreakGlass)
	b = appendString(b, tagPatient, e.Patient)
	b = appendString(b, tagPath, e.Path)
	e.BreakGlass, e.Patient, e.Path = "", "", ""
	return b
}

// putPHI decodes what takePHI encoded back into e.
func (e *Entry) putPHI(b []byte) error {
	last := byte(0)
	for len(b) > 0 {
		tag := b[0]
		if tag != tagBreakGlass && tag != tagPatient && tag != tagPath || tag <= last {
			return fmt.Errorf("sealed fields: unexpected tag %d", tag)
		}
		last = tag
		n, k, err := uvarint(b[1:])
		if err != nil || n == 0 || n > uint64(len(b)-1-k) {
			return fmt.Errorf("sealed fields: bad length of field %d", tag)
		}
		v := b[1+k : 1+k+int(n)]
		if !utf8.Valid(v) {
			return fmt.Errorf("sealed fields: field %d is not UTF-8", tag)
		}
		switch tag {
		case tagBreakGlass:
			e.BreakGlass = string(v)
		case tagPatient:
			e.Patient = string(v)
		case tagPath:
			e.Path = string(v)
		}
		b = b[1+k+int(n):]
	}
	if last == 0 {
		return fmt.Errorf("sealed fields: empty")
	}
	return nil
}

// Blind index values: a kind byte, then the value.
const (
	indexPatient = 'p'
	indexPath    = 'r'
)

// indexTag is the stored form of a blind index: its first 8 bytes.
func indexTag(s Sealer, kind byte, value string) int64 {
	v := make([]byte, 0, 1+len(value))
	v = append(append(v, kind), value...)
	return int64(binary.BigEndian.Uint64(s.BlindIndex(v)))
}

// indexTags returns the blind indexes of e's patient and path prefixes.
func indexTags(s Sealer, e *Entry) []int64 {
	if e.Patient == "" && e.Path == "" {
		return nil
	}
	prefixes := vault.PathPrefixes(e.Path)
	tags := make([]int64, 0, 1+len(prefixes))
	if e.Patient != "" {
		tags = append(tags, indexTag(s, indexPatient, e.Patient))
	}
	for _, p := range prefixes[min(1, len(prefixes)):] {
		tags = append(tags, indexTag(s, indexPath, p))
	}
	return tags
}

// wholePrefix is a path_prefix normalised as the index stores path
// prefixes (whole segments, no query: vault.PathPrefixes), with its
// number of segments; "" when it has none (it then filters nothing).
func wholePrefix(prefix string) (string, int) {
	ps := vault.PathPrefixes(prefix)
	if len(ps) == 0 {
		return "", 0
	}
	return ps[len(ps)-1], len(ps)
}

// queryTag returns the blind index to look q up by, if any (none without
// a sealer): the patient's when q names one, else that of the path prefix
// (want, of segs segments: see wholePrefix) when the index holds it.
func queryTag(s Sealer, q *Query, want string, segs int) (int64, bool) {
	if s == nil {
		return 0, false
	}
	if q.Patient != "" {
		return indexTag(s, indexPatient, q.Patient), true
	}
	if segs > 1 {
		return indexTag(s, indexPath, want), true
	}
	return 0, false
}

// pathHasPrefix is the path_prefix filter: whole segments of the path
// without its query ("/fhir/Patient" matches "/fhir/Patient/1?x=y" but
// not "/fhir/PatientX"), as the blind index finds them. want is the
// prefix as wholePrefix returns it.
func pathHasPrefix(path, want string) bool {
	return want == "" || slices.Contains(vault.PathPrefixes(path), want)
}

// openEntry replaces e's sealed field by the fields it holds. Without a sealer
// the entry stays sealed. A field that fails to open is tampering.
func openEntry(ctx context.Context, s Sealer, e *Entry) error {
	if s == nil || len(e.Sealed) == 0 {
		return nil
	}
	pt, err := s.Open(ctx, e.Seq, e.Sealed)
	if err != nil {
		return fmt.Errorf("%w: entry %d: its sealed fields do not open: %v", ErrTampered, e.Seq, err)
	}
	if err := e.putPHI(pt); err != nil {
		return fmt.Errorf("%w: entry %d: %v", ErrTampered, e.Seq, err)
	}
	e.Sealed = nil
	return nil
}

// seal appends the sealed field of entry seq to its encoding body (the
// writer's part of Append).
func (l *Log) seal(body []byte, seq uint64, phi []byte) ([]byte, error) {
	ct, err := l.opts.Sealer.Seal(context.Background(), seq, phi)
	if err != nil {
		return nil, fmt.Errorf("audit: sealing the PHI fields: %w", err)
	}
	if len(ct) == 0 {
		return nil, fmt.Errorf("audit: sealing the PHI fields: empty ciphertext")
	}
	body = append(body, tagSealed)
	body = binary.AppendUvarint(body, uint64(len(ct)))
	body = append(body, ct...)
	if len(body) > MaxEntrySize {
		return nil, fmt.Errorf("%w: sealed entry is %d bytes, over %d", ErrInvalidEntry, len(body), MaxEntrySize)
	}
	return body, nil
}
