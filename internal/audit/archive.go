package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// ArchiveFormat names the archive format.
const ArchiveFormat = "phigate-audit-archive/1"

// archiveHeader is the first line of an archive.
type archiveHeader struct {
	Format     string `json:"format"`
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Checkpoint string `json:"checkpoint"`
}

// Retention
//
// The log never deletes or edits an entry, and no API does. Entries older
// than Options.Retention (six years by default) may only leave the log as
// a whole prefix: Archive writes entries 0..size-1 with a checkpoint signed
// for exactly that size, which VerifyArchive checks with the public key
// alone. Removing an archived prefix from the database is NOT implemented:
// the log keeps every entry; Expired says how many could be archived.

// Expired returns how many entries, from the first, are older than the
// retention period at now.
func (l *Log) Expired(ctx context.Context, now time.Time) (uint64, error) {
	size, err := l.visible(ctx)
	if err != nil {
		return 0, err
	}
	return l.st.timeBound(ctx, now.Add(-l.opts.Retention), size)
}

// Archive writes the first size entries of the log to w:
//
//	{"format":"phigate-audit-archive/1","origin":"phigate/n1","size":N,"checkpoint":"<signed note for size N>"}
//	<base64 of entry 0's canonical encoding>
//	...
//	<base64 of entry N-1's>
//
// The checkpoint for size N is signed now, after the stored tree at size N
// has been proven consistent with the latest signed checkpoint; while
// writing, every entry is re-hashed and the rebuilt root compared with it.
// Archive fails (ErrTampered) rather than sign a prefix that does not
// match. An audit.archived entry records the archive.
func (l *Log) Archive(ctx context.Context, w io.Writer, size uint64) (*Checkpoint, error) {
	have, err := l.visible(ctx)
	if err != nil {
		return nil, err
	}
	if size == 0 || size > have {
		return nil, fmt.Errorf("audit: archive: size %d: the log has %d entries", size, have)
	}
	latest, err := l.Checkpoint(ctx, true)
	if err != nil {
		return nil, err
	}
	rng, err := l.st.rangeAt(ctx, size)
	if err != nil {
		return nil, err
	}
	root := rootOf(rng)
	cons, err := l.st.consistencyProof(ctx, size, latest.Size)
	if err == nil {
		err = proof.VerifyConsistency(hasher, size, latest.Size, cons, root, latest.Root)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the stored tree at size %d is not consistent with the latest checkpoint: %v", ErrTampered, size, err)
	}
	cp, err := signCheckpoint(l.signer, size, root, l.opts.Now())
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	hdr, _ := json.Marshal(archiveHeader{Format: ArchiveFormat, Origin: l.Origin(), Size: size, Checkpoint: string(cp.Note)})
	bw.Write(append(hdr, '\n'))
	check := rangeFactory.NewEmptyRange(0)
	for next := uint64(0); next < size; {
		bodies, err := l.st.rawRange(ctx, next, int(min(size-next, 1000)))
		if err != nil {
			return nil, err
		}
		if len(bodies) == 0 {
			return nil, fmt.Errorf("%w: entry %d missing", ErrTampered, next)
		}
		for _, b := range bodies {
			leaf := LeafHash(b)
			check.Append(leaf[:], nil)
			line := make([]byte, base64.StdEncoding.EncodedLen(len(b))+1)
			base64.StdEncoding.Encode(line, b)
			line[len(line)-1] = '\n'
			if _, err := bw.Write(line); err != nil {
				return nil, fmt.Errorf("audit: archive: %w", err)
			}
		}
		next += uint64(len(bodies))
	}
	if !bytes.Equal(rootOf(check), root) {
		return nil, fmt.Errorf("%w: the entries do not reproduce the stored tree at size %d; discard this archive", ErrTampered, size)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("audit: archive: %w", err)
	}
	if _, err := l.Append(ctx, &Entry{Action: ActionAuditArchived, Outcome: OutcomeSuccess, Target: "entries 0-" + strconv.FormatUint(size-1, 10)}); err != nil {
		return nil, err
	}
	return cp, nil
}

// VerifyArchive checks an archive written by Archive with only the log's
// public key: the checkpoint's signature, and that the entries (each a
// canonical encoding, numbered 0, 1, ...) reproduce its root. It returns
// the checkpoint.
func VerifyArchive(r io.Reader, v note.Verifier) (*Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 2*MaxEntrySize)
	if !sc.Scan() {
		return nil, errors.New("audit: archive: empty")
	}
	var h archiveHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != ArchiveFormat {
		return nil, errors.New("audit: archive: not a phigate audit archive")
	}
	cp, err := ParseCheckpoint([]byte(h.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	if cp.Size != h.Size {
		return nil, fmt.Errorf("audit: archive: header says %d entries, checkpoint %d", h.Size, cp.Size)
	}
	rng := rangeFactory.NewEmptyRange(0)
	for sc.Scan() {
		b, err := base64.StdEncoding.DecodeString(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("audit: archive: entry %d: %w", rng.End(), err)
		}
		e, err := UnmarshalEntry(b)
		if err != nil {
			return nil, fmt.Errorf("audit: archive: entry %d: %w", rng.End(), err)
		}
		if e.Seq != rng.End() {
			return nil, fmt.Errorf("audit: archive: entry %d records seq %d", rng.End(), e.Seq)
		}
		leaf := LeafHash(b)
		rng.Append(leaf[:], nil)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: archive: %w", err)
	}
	if rng.End() != cp.Size || !bytes.Equal(rootOf(rng), cp.Root) {
		return nil, fmt.Errorf("%w: the archive's %d entries do not reproduce its checkpoint", ErrTampered, rng.End())
	}
	return cp, nil
}
