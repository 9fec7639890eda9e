package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// BundleFormat names the proof bundle format.
const BundleFormat = "phigate-audit-proof/1"

// maxBundle bounds a proof bundle.
const maxBundle = 256 << 10

// ProofBundle proves that one entry is in the log: the entry's canonical
// encoding, its inclusion proof, and a signed checkpoint of a tree that
// contains it. Anyone holding the log's public key can check it offline
// (VerifyBundle). In JSON, byte strings are base64:
//
//	{"format": "phigate-audit-proof/1",
//	 "seq": 41, "entry": {...}, "entry_bytes": "AQEp...",
//	 "tree_size": 1200, "inclusion": ["<32-byte hash>", ...],
//	 "checkpoint": "phigate/node-1\n1200\n...\n\n— phigate/node-1 ...\n"}
//
// "entry" is the decoded entry, for people; it must equal entry_bytes
// decoded.
type ProofBundle struct {
	Format     string   `json:"format"`
	Seq        uint64   `json:"seq"`
	Entry      *Entry   `json:"entry"`
	EntryBytes []byte   `json:"entry_bytes"`
	TreeSize   uint64   `json:"tree_size"`
	Inclusion  [][]byte `json:"inclusion"`
	Checkpoint string   `json:"checkpoint"`
}

// Proof returns the proof bundle of entry seq, against the latest
// checkpoint (a new one is signed first when the latest does not cover
// seq yet).
func (l *Log) Proof(ctx context.Context, seq uint64) (*ProofBundle, error) {
	if size, err := l.visible(ctx); err != nil {
		return nil, err
	} else if seq >= size {
		return nil, ErrNotFound
	}
	cp := l.latest.Load()
	if seq >= cp.Size {
		var err error
		if cp, err = l.Checkpoint(ctx, true); err != nil {
			return nil, err
		}
	}
	return l.st.bundle(ctx, seq, cp)
}

func (s *store) bundle(ctx context.Context, seq uint64, cp *Checkpoint) (*ProofBundle, error) {
	n, err := proof.Inclusion(seq, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	hs, body, err := s.nodesAndEntry(ctx, n.IDs, int64(seq))
	if err != nil {
		return nil, err
	}
	p, err := n.Rehash(hs, hasher.HashChildren)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = [][]byte{}
	}
	e, err := UnmarshalEntry(body)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrTampered, seq, err)
	}
	return &ProofBundle{Format: BundleFormat, Seq: seq, Entry: e, EntryBytes: body, TreeSize: cp.Size, Inclusion: p, Checkpoint: string(cp.Note)}, nil
}

// ParseBundle decodes a proof bundle (JSON, at most 256 KiB), refusing
// unknown fields, another format, hashes that are not 32 bytes. It does
// not verify it (VerifyBundle does). Every error wraps ErrBadProof.
func ParseBundle(data []byte) (*ProofBundle, error) {
	if len(data) > maxBundle {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadProof, maxBundle)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b ProofBundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the bundle", ErrBadProof)
	}
	if b.Format != BundleFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadProof, cut(b.Format, 64), BundleFormat)
	}
	if len(b.Inclusion) > 64 {
		return nil, fmt.Errorf("%w: inclusion proof of %d hashes", ErrBadProof, len(b.Inclusion))
	}
	for i, h := range b.Inclusion {
		if len(h) != 32 {
			return nil, fmt.Errorf("%w: inclusion hash %d is %d bytes", ErrBadProof, i, len(h))
		}
	}
	if len(b.EntryBytes) == 0 || b.Checkpoint == "" {
		return nil, fmt.Errorf("%w: entry_bytes and checkpoint are required", ErrBadProof)
	}
	return &b, nil
}

// VerifyBundle checks b with only the log's public verifier key: the
// checkpoint is signed by that key and names that log, the entry is a
// canonical encoding carrying seq b.Seq, and the inclusion proof leads from
// its leaf hash to the checkpoint's root. It returns the proven entry and
// checkpoint.
func VerifyBundle(b *ProofBundle, v note.Verifier) (*Entry, *Checkpoint, error) {
	cp, err := ParseCheckpoint([]byte(b.Checkpoint), v)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if cp.Size != b.TreeSize {
		return nil, nil, fmt.Errorf("%w: tree_size %d, but the checkpoint is of size %d", ErrBadProof, b.TreeSize, cp.Size)
	}
	if b.Seq >= cp.Size {
		return nil, nil, fmt.Errorf("%w: entry %d is not in a tree of size %d", ErrBadProof, b.Seq, cp.Size)
	}
	e, err := UnmarshalEntry(b.EntryBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if e.Seq != b.Seq {
		return nil, nil, fmt.Errorf("%w: the entry records seq %d, the bundle says %d", ErrBadProof, e.Seq, b.Seq)
	}
	if b.Entry != nil {
		got, err1 := json.Marshal(b.Entry)
		want, err2 := json.Marshal(e)
		if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
			return nil, nil, fmt.Errorf("%w: the entry shown differs from the entry proven (entry_bytes)", ErrBadProof)
		}
	}
	leaf := LeafHash(b.EntryBytes)
	if err := proof.VerifyInclusion(hasher, b.Seq, cp.Size, leaf[:], b.Inclusion, cp.Root); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	return e, cp, nil
}
