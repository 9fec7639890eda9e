package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// encodingVersion is the first byte of every encoded entry.
const encodingVersion = 0x01

// Field tags of the canonical encoding (see the package doc). The kind of
// each tag's value is fixed: an unsigned integer (uvarint) or a string of
// bytes (uvarint length, then the bytes).
const (
	tagSeq        = 1
	tagTime       = 2
	tagNode       = 3
	tagAction     = 4
	tagOutcome    = 5
	tagTokenID    = 6
	tagSubject    = 7
	tagKind       = 8
	tagIP         = 9
	tagUserAgent  = 10
	tagRequestID  = 11
	tagTarget     = 12
	tagReason     = 13
	tagPurpose    = 14
	tagBreakGlass = 15
	tagPatient    = 16
	tagMethod     = 17
	tagUpstream   = 18
	tagPath       = 19
	tagStatus     = 20
	tagBytes      = 21
	tagDuration   = 22
	tagBefore     = 23
	tagAfter      = 24
	// tagSealed holds the PHI-bearing fields (break-glass justification,
	// patient, path) encrypted, when the log has a Sealer: those three
	// tags are then absent from the entry (see seal.go).
	tagSealed = 25
	// tagInteraction is the FHIR interaction of a proxied request. It
	// follows tagSealed, which the writer appends to the tail when it
	// seals, so it is encoded apart (appendTrailer).
	tagInteraction = 26
	maxTag         = 26
)

// isUint reports whether tag carries an unsigned integer.
func isUint(tag byte) bool {
	switch tag {
	case tagSeq, tagTime, tagStatus, tagBytes, tagDuration:
		return true
	}
	return false
}

// MarshalBinary returns the canonical encoding of e: the bytes whose hash
// is the entry's leaf in the Merkle tree. It fails only for an entry that
// cannot be encoded (a time before 1970, an invalid UTF-8 string, a
// negative number, an entry over MaxEntrySize).
func (e *Entry) MarshalBinary() ([]byte, error) {
	if err := e.encodable(); err != nil {
		return nil, err
	}
	b := appendHead(make([]byte, 0, 256), e.Seq, e.Time)
	b = appendTrailer(appendTail(b, e), e)
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: encoded entry is %d bytes, over %d", ErrInvalidEntry, len(b), MaxEntrySize)
	}
	return b, nil
}

// encodable checks what appendHead and appendTail assume.
func (e *Entry) encodable() error {
	if !e.Time.After(time.Unix(0, 0)) || e.Time.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("%w: time %v is outside 1970..2262", ErrInvalidEntry, e.Time)
	}
	if e.Action == "" {
		return fmt.Errorf("%w: no action", ErrInvalidEntry)
	}
	if len(e.Sealed) > 0 && !e.phiEmpty() {
		return fmt.Errorf("%w: sealed fields also in the clear", ErrInvalidEntry)
	}
	if e.Status < 0 || e.Status > math.MaxInt32 || e.Bytes < 0 || e.Duration < 0 {
		return fmt.Errorf("%w: status, bytes or duration out of range", ErrInvalidEntry)
	}
	for _, s := range e.strings() {
		if !utf8.ValidString(s.v) {
			return fmt.Errorf("%w: field %d is not valid UTF-8", ErrInvalidEntry, s.tag)
		}
	}
	if !utf8.ValidString(e.Interaction) {
		return fmt.Errorf("%w: field %d is not valid UTF-8", ErrInvalidEntry, tagInteraction)
	}
	for _, s := range []json.RawMessage{e.Before, e.After} {
		if len(s) > 0 && !json.Valid(s) {
			return fmt.Errorf("%w: before/after is not JSON", ErrInvalidEntry)
		}
	}
	return nil
}

type strField struct {
	tag byte
	v   string
}

// strings lists the string fields of e in tag order.
func (e *Entry) strings() [17]strField {
	return [...]strField{
		{tagNode, e.Node}, {tagAction, string(e.Action)}, {tagOutcome, string(e.Outcome)},
		{tagTokenID, e.Actor.TokenID}, {tagSubject, e.Actor.Subject}, {tagKind, e.Actor.Kind},
		{tagIP, e.Source.IP}, {tagUserAgent, e.Source.UserAgent}, {tagRequestID, e.RequestID},
		{tagTarget, e.Target}, {tagReason, e.Reason}, {tagPurpose, e.Purpose},
		{tagBreakGlass, e.BreakGlass}, {tagPatient, e.Patient}, {tagMethod, e.Method},
		{tagUpstream, e.Upstream}, {tagPath, e.Path},
	}
}

// appendHead appends the version byte and the fields the Log assigns: seq
// (omitted when 0) and time.
func appendHead(b []byte, seq uint64, t time.Time) []byte {
	b = append(b, encodingVersion)
	if seq != 0 {
		b = append(b, tagSeq)
		b = binary.AppendUvarint(b, seq)
	}
	b = append(b, tagTime)
	return binary.AppendUvarint(b, uint64(t.UnixNano()))
}

// appendTail appends the fields from tagNode to tagSealed, each omitted
// when empty or zero. e must be encodable.
func appendTail(b []byte, e *Entry) []byte {
	for _, s := range e.strings() {
		b = appendString(b, s.tag, s.v)
	}
	b = appendUint(b, tagStatus, uint64(e.Status))
	b = appendUint(b, tagBytes, uint64(e.Bytes))
	b = appendUint(b, tagDuration, uint64(e.Duration))
	b = appendString(b, tagBefore, string(e.Before))
	b = appendString(b, tagAfter, string(e.After))
	return appendString(b, tagSealed, string(e.Sealed))
}

// appendTrailer appends the fields after tagSealed (tagInteraction), each
// omitted when empty. It returns b itself when there are none.
func appendTrailer(b []byte, e *Entry) []byte {
	return appendString(b, tagInteraction, e.Interaction)
}

func appendString(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendUint(b []byte, tag byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, tag)
	return binary.AppendUvarint(b, v)
}

// LeafHash is the RFC 6962 leaf hash of an encoded entry:
// SHA-256(0x00 || entry).
func LeafHash(encoded []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(encoded)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// parseEntry checks that b is a canonical encoding and calls f for each
// field in order, with the integer (for integer tags) or the bytes (for the
// others; they alias b).
func parseEntry(b []byte, f func(tag byte, num uint64, val []byte)) error {
	fr, err := newFieldReader(b)
	if err != nil {
		return err
	}
	for {
		tag, num, val, ok, err := fr.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		f(tag, num, val)
	}
}

// fieldReader walks a canonical encoding field by field, checking it (the
// allocation-free core of parseEntry).
type fieldReader struct {
	b    []byte
	last byte
	have uint32
}

func newFieldReader(b []byte) (fieldReader, error) {
	if len(b) > MaxEntrySize {
		return fieldReader{}, malformed("longer than %d bytes", MaxEntrySize)
	}
	if len(b) == 0 || b[0] != encodingVersion {
		return fieldReader{}, malformed("unknown version")
	}
	return fieldReader{b: b[1:]}, nil
}

// next returns the next field: its integer (for integer tags) or bytes
// (for the others; they alias the encoding). ok is false at the end, where
// next checks that the required fields were there.
func (r *fieldReader) next() (tag byte, num uint64, val []byte, ok bool, err error) {
	b := r.b
	if len(b) == 0 {
		if r.have&(1<<tagTime) == 0 || r.have&(1<<tagAction) == 0 {
			return 0, 0, nil, false, malformed("time or action missing")
		}
		if r.have&(1<<tagSealed) != 0 && r.have&(1<<tagBreakGlass|1<<tagPatient|1<<tagPath) != 0 {
			return 0, 0, nil, false, malformed("sealed fields also in the clear")
		}
		return 0, 0, nil, false, nil
	}
	tag = b[0]
	b = b[1:]
	if tag == 0 || tag > maxTag {
		return 0, 0, nil, false, malformed("unknown field tag %d", tag)
	}
	if tag <= r.last {
		return 0, 0, nil, false, malformed("field %d out of order or repeated", tag)
	}
	r.last = tag
	r.have |= 1 << tag
	v, n, err := uvarint(b)
	if err != nil {
		return 0, 0, nil, false, malformed("field %d: %v", tag, err)
	}
	b = b[n:]
	if v == 0 {
		return 0, 0, nil, false, malformed("field %d is empty or zero (it must be left out)", tag)
	}
	if isUint(tag) {
		if v > math.MaxInt64 || tag == tagStatus && v > math.MaxInt32 {
			return 0, 0, nil, false, malformed("field %d out of range", tag)
		}
		r.b = b
		return tag, v, nil, true, nil
	}
	if v > uint64(len(b)) {
		return 0, 0, nil, false, malformed("field %d: length %d past the end", tag, v)
	}
	val, r.b = b[:v], b[v:]
	if tag == tagBefore || tag == tagAfter {
		if !json.Valid(val) {
			return 0, 0, nil, false, malformed("field %d is not JSON", tag)
		}
	} else if tag != tagSealed && !utf8.Valid(val) {
		return 0, 0, nil, false, malformed("field %d is not UTF-8", tag)
	}
	return tag, 0, val, true, nil
}

// uvarint decodes a minimal uvarint (the canonical one: no redundant
// trailing zero groups).
func uvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("truncated number")
	case n < 0:
		return 0, 0, fmt.Errorf("number overflows 64 bits")
	case n > 1 && b[n-1] == 0:
		return 0, 0, fmt.Errorf("number not minimally encoded")
	}
	return v, n, nil
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedEntry, fmt.Sprintf(format, a...))
}

// UnmarshalEntry decodes the canonical encoding of an entry. It refuses
// anything MarshalBinary would not produce byte for byte: an unknown
// version or tag, fields out of order, repeated or empty, numbers not
// minimally encoded, invalid UTF-8, trailing bytes. Every failure wraps
// ErrMalformedEntry.
func UnmarshalEntry(b []byte) (*Entry, error) {
	e := &Entry{}
	err := parseEntry(b, func(tag byte, num uint64, val []byte) {
		s := string(val)
		switch tag {
		case tagSeq:
			e.Seq = num
		case tagTime:
			e.Time = time.Unix(0, int64(num)).UTC()
		case tagNode:
			e.Node = s
		case tagAction:
			e.Action = Action(s)
		case tagOutcome:
			e.Outcome = Outcome(s)
		case tagTokenID:
			e.Actor.TokenID = s
		case tagSubject:
			e.Actor.Subject = s
		case tagKind:
			e.Actor.Kind = s
		case tagIP:
			e.Source.IP = s
		case tagUserAgent:
			e.Source.UserAgent = s
		case tagRequestID:
			e.RequestID = s
		case tagTarget:
			e.Target = s
		case tagReason:
			e.Reason = s
		case tagPurpose:
			e.Purpose = s
		case tagBreakGlass:
			e.BreakGlass = s
		case tagPatient:
			e.Patient = s
		case tagMethod:
			e.Method = s
		case tagUpstream:
			e.Upstream = s
		case tagPath:
			e.Path = s
		case tagStatus:
			e.Status = int(num)
		case tagBytes:
			e.Bytes = int64(num)
		case tagDuration:
			e.Duration = time.Duration(num)
		case tagBefore:
			e.Before = json.RawMessage(s)
		case tagAfter:
			e.After = json.RawMessage(s)
		case tagSealed:
			e.Sealed = []byte(s)
		case tagInteraction:
			e.Interaction = s
		}
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}
