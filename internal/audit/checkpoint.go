package audit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds a signed checkpoint note.
const MaxCheckpointSize = 4 << 10

// Checkpoint is a signed statement of the log's size and Merkle root, in the
// C2SP tlog-checkpoint format:
//
//	phigate/node-1
//	1234
//	<base64 of the 32-byte RFC 6962 root hash>
//
//	— phigate/node-1 <base64 of key hash (4 bytes) || Ed25519 signature>
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte // 32 bytes
	// Note is the signed note, exactly as issued: what witnesses keep.
	Note []byte
	// Time is when the log issued it (not signed; informational).
	Time time.Time
}

// signCheckpoint signs the checkpoint of a tree of size with root.
func signCheckpoint(s note.Signer, size uint64, root []byte, now time.Time) (*Checkpoint, error) {
	text := tlog.Checkpoint{Origin: s.Name(), Size: size, Hash: root}.Marshal()
	msg, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return &Checkpoint{Origin: s.Name(), Size: size, Root: append([]byte(nil), root...), Note: msg, Time: now.UTC()}, nil
}

// ParseCheckpoint parses a signed checkpoint note and checks that it is
// signed by v's key and names v's log (origin = v.Name()). Extension lines
// are allowed and ignored. Every failure wraps ErrBadCheckpoint.
func ParseCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	if len(msg) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadCheckpoint, MaxCheckpointSize)
	}
	cp, _, _, err := tlog.ParseCheckpoint(msg, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	if len(cp.Hash) != 32 {
		return nil, fmt.Errorf("%w: root hash is %d bytes, not 32", ErrBadCheckpoint, len(cp.Hash))
	}
	// the size line must be canonical decimal (no sign, no leading zeros)
	lines := bytes.SplitN(msg, []byte("\n"), 3)
	if want := fmt.Sprint(cp.Size); string(lines[1]) != want {
		return nil, fmt.Errorf("%w: size %q is not canonical", ErrBadCheckpoint, lines[1])
	}
	if string(lines[2][:bytes.IndexByte(lines[2], '\n')]) != base64.StdEncoding.EncodeToString(cp.Hash) {
		return nil, fmt.Errorf("%w: root hash is not canonical base64", ErrBadCheckpoint)
	}
	// signatures in canonical base64 too: one checkpoint, one encoding
	sigs := msg[bytes.Index(msg, []byte("\n\n"))+2:]
	for _, line := range bytes.Split(bytes.TrimSuffix(sigs, []byte("\n")), []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: malformed signature line", ErrBadCheckpoint)
		}
		if _, err := base64.StdEncoding.Strict().DecodeString(string(f[2])); err != nil {
			return nil, fmt.Errorf("%w: signature is not canonical base64", ErrBadCheckpoint)
		}
	}
	return &Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Note: append([]byte(nil), msg...)}, nil
}

// SplitCheckpoints splits a file of one or more signed checkpoint notes
// (as a witness file holds them: each note followed by an empty line) into
// the notes. It does not check signatures.
func SplitCheckpoints(data []byte) ([][]byte, error) {
	var out [][]byte
	rest := data
	for {
		rest = bytes.TrimLeft(rest, "\n")
		if len(rest) == 0 {
			break
		}
		// text lines up to the blank line, then signature lines up to the
		// next blank line or the end
		i := bytes.Index(rest, []byte("\n\n"))
		if i < 0 {
			return nil, fmt.Errorf("%w: a checkpoint without signature lines", ErrBadCheckpoint)
		}
		j := bytes.Index(rest[i+2:], []byte("\n\n"))
		end := len(rest)
		if j >= 0 {
			end = i + 2 + j + 1
		}
		out = append(out, rest[:end])
		rest = rest[end:]
		if len(out) > 1<<20 {
			return nil, fmt.Errorf("%w: too many checkpoints", ErrBadCheckpoint)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint", ErrBadCheckpoint)
	}
	return out, nil
}
