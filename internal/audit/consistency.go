package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// ConsistencyFormat names the consistency proof format.
const ConsistencyFormat = "phigate-audit-consistency/1"

// maxProofHashes bounds a consistency proof (at most 2·64 hashes for any
// tree of 2^64 leaves).
const maxProofHashes = 128

// ErrBadRange: a consistency proof was asked between sizes that are not
// 0 ≤ from ≤ to ≤ the latest checkpoint's size (a client error).
var ErrBadRange = errors.New("audit: no consistency proof between these sizes")

// ConsistencyProof proves that the log of size To extends the log of size
// From unchanged (RFC 6962 §2.1.2): anyone holding two signed checkpoints
// of these sizes checks it with VerifyConsistency, or with any RFC 6962
// verifier (proof.VerifyConsistency of transparency-dev/merkle). In JSON,
// hashes are base64:
//
//	{"format": "phigate-audit-consistency/1", "origin": "phigate/node-1",
//	 "from": 1200, "to": 5000, "proof": ["<32-byte hash>", ...],
//	 "from_checkpoint": "phigate/node-1\n1200\n...",
//	 "to_checkpoint": "phigate/node-1\n5000\n..."}
//
// from_checkpoint and to_checkpoint are the signed checkpoints the log
// issued at exactly these sizes, when it issued one (left out otherwise);
// a verifier checks against checkpoints it saved itself, not these.
type ConsistencyProof struct {
	Format         string   `json:"format"`
	Origin         string   `json:"origin"`
	From           uint64   `json:"from"`
	To             uint64   `json:"to"`
	Proof          [][]byte `json:"proof"`
	FromCheckpoint string   `json:"from_checkpoint,omitempty"`
	ToCheckpoint   string   `json:"to_checkpoint,omitempty"`
}

// Consistency returns the consistency proof between the trees of sizes
// from and to, where to is at most the latest checkpoint's size (ErrBadRange
// otherwise).
func (l *Log) Consistency(ctx context.Context, from, to uint64) (*ConsistencyProof, error) {
	latest := l.latest.Load()
	if from > to || to > latest.Size {
		return nil, fmt.Errorf("%w: from %d, to %d (want 0 ≤ from ≤ to ≤ %d, the latest checkpoint's size)", ErrBadRange, from, to, latest.Size)
	}
	p, err := l.st.consistencyProof(ctx, from, to)
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = [][]byte{}
	}
	out := &ConsistencyProof{Format: ConsistencyFormat, Origin: l.Origin(), From: from, To: to, Proof: p}
	// the signed checkpoints at both sizes: the latest from memory, the
	// others in one query
	var want []int64
	for _, size := range []uint64{from, to} {
		if size != latest.Size {
			want = append(want, int64(size))
		}
	}
	notes, err := l.st.checkpointNotes(ctx, want)
	if err != nil {
		return nil, err
	}
	notes[latest.Size] = latest.Note
	out.FromCheckpoint, out.ToCheckpoint = string(notes[from]), string(notes[to])
	return out, nil
}

// checkpointNotes returns the stored checkpoints of these sizes (absent
// ones left out).
func (s *store) checkpointNotes(ctx context.Context, sizes []int64) (map[uint64][]byte, error) {
	out := make(map[uint64][]byte, 2)
	if len(sizes) == 0 {
		return out, nil
	}
	err := s.query(ctx, "SELECT size, note FROM checkpoints WHERE size IN (?"+strings.Repeat(",?", len(sizes)-1)+")", sizes, func(rows *sql.Rows) error {
		var size int64
		var n []byte
		if err := rows.Scan(&size, &n); err != nil {
			return err
		}
		out[uint64(size)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	return out, nil
}

// ParseConsistency decodes a consistency proof (JSON, at most 256 KiB),
// refusing unknown fields, another format, more than 128 hashes, hashes
// that are not 32 bytes, from > to. It does not verify it
// (VerifyConsistency does). Every error wraps ErrBadProof.
func ParseConsistency(data []byte) (*ConsistencyProof, error) {
	if len(data) > maxBundle {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadProof, maxBundle)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p ConsistencyProof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the proof", ErrBadProof)
	}
	if p.Format != ConsistencyFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadProof, cut(p.Format, 64), ConsistencyFormat)
	}
	if p.From > p.To {
		return nil, fmt.Errorf("%w: from %d > to %d", ErrBadProof, p.From, p.To)
	}
	if len(p.Proof) > maxProofHashes {
		return nil, fmt.Errorf("%w: consistency proof of %d hashes", ErrBadProof, len(p.Proof))
	}
	for i, h := range p.Proof {
		if len(h) != 32 {
			return nil, fmt.Errorf("%w: proof hash %d is %d bytes", ErrBadProof, i, len(h))
		}
	}
	return &p, nil
}

// VerifyConsistency checks that p proves the checkpoint newer extends
// older: both are signed checkpoints of the same log (already checked
// with the key, ParseCheckpoint), of sizes p.From and p.To, and the proof
// leads from older's root to newer's. Every failure wraps ErrBadProof.
func VerifyConsistency(p *ConsistencyProof, older, newer *Checkpoint) error {
	if older.Origin != newer.Origin {
		return fmt.Errorf("%w: the checkpoints are of two logs (%q, %q)", ErrBadProof, cut(older.Origin, 64), cut(newer.Origin, 64))
	}
	if p.From != older.Size || p.To != newer.Size {
		return fmt.Errorf("%w: the proof is from %d to %d, the checkpoints are of sizes %d and %d", ErrBadProof, p.From, p.To, older.Size, newer.Size)
	}
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, p.Proof, older.Root, newer.Root); err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	return nil
}

// LastCheckpoint returns the last signed checkpoint of a file of one or
// more (as audit checkpoint and witness files hold them), checked with v.
func LastCheckpoint(data []byte, v note.Verifier) (*Checkpoint, error) {
	notes, err := SplitCheckpoints(data)
	if err != nil {
		return nil, err
	}
	return ParseCheckpoint(notes[len(notes)-1], v)
}
