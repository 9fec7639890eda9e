package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/phigate/phigate/internal/fsync"
)

// The journal
//
// An append is acknowledged once its batch is in the journal: one write
// and one fdatasync per group commit, of a single frame. The SQLite
// database (the index every reader uses) is written behind it by the
// indexer goroutine, in larger transactions and without an fsync of its
// own; readers see an entry once it is indexed, and a reader that starts
// after an Append returned waits until that entry is indexed (Log.visible).
//
// The journal is a ring of journalSlots files, <data>/audit.journal/N,
// written in turn. A slot is reused only once every entry in it is
// durable in SQLite: when the writer leaves a slot it asks the indexer to
// fdatasync the WAL once the slot is indexed, and before it writes into a
// slot again it waits for that (normally done long before). Reused files
// are overwritten in place, which costs the kernel much less than
// appending to a growing file (no block allocation on the fsync path).
//
// A frame is
//
//	"PGJ1" | uint32 payload length | uint32 CRC-32C of the payload | payload
//
// and its payload (integers big-endian, strings and bytes uvarint-length
// prefixed):
//
//	uint64 first seq | uint32 count | int64 time (ns) |
//	count × (token id, subject, body) |
//	uvarint n | n × (int64 tag, uvarint seq - first) |   -- blind index rows
//	checkpoint note (empty: none) | int64 checkpoint time (ns, when a note)
//
// A frame with count 0 carries only a checkpoint (first = tree size).
//
// Open replays the journal: in each slot it reads frames from the start
// while they are whole (CRC) and each continues the one before it (first =
// the previous first + count); what follows is a torn write or the stale
// frames of the slot's previous turn. The frames at or after the database's
// size are appended to it, in order and without a gap (a gap means
// acknowledged entries are missing: Open refuses with ErrTampered), and the
// database is synced before anything new is written.
//
// A failed journal write or fdatasync makes the log unavailable until it
// is reopened (see writer.go), as a failed WAL fsync did before.

// JournalDir is the journal's directory inside the data directory.
const JournalDir = "audit.journal"

const (
	journalSlots   = 4
	frameMagic     = "PGJ1"
	frameHeaderLen = 12
	// maxFramePayload bounds a frame: MaxBatch entries of MaxEntrySize and
	// their fields, generously; a longer length is garbage.
	maxFramePayload = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame is a decoded journal frame.
type frame struct {
	first  uint64
	t      int64
	rows   []row      // seq, t, tokenID, subject, body (no hashes)
	index  []indexRow // blind index rows of the frame's entries
	cpNote []byte     // nil: no checkpoint
	cpTime int64
}

func (f *frame) end() uint64 { return f.first + uint64(len(f.rows)) }

// appendFrame appends the frame holding rows (consecutive seqs from first,
// all at time t), their index rows and cp (may be nil) to b.
func appendFrame(b []byte, first uint64, t int64, rows []row, index []indexRow, cp *Checkpoint) []byte {
	start := len(b)
	b = append(b, frameMagic...)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length and CRC, below
	b = binary.BigEndian.AppendUint64(b, first)
	b = binary.BigEndian.AppendUint32(b, uint32(len(rows)))
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	for i := range rows {
		b = appendBytes(b, []byte(rows[i].tokenID))
		b = appendBytes(b, []byte(rows[i].subject))
		b = appendBytes(b, rows[i].body)
	}
	b = binary.AppendUvarint(b, uint64(len(index)))
	for _, x := range index {
		b = binary.BigEndian.AppendUint64(b, uint64(x.tag))
		b = binary.AppendUvarint(b, x.seq-first)
	}
	if cp != nil {
		b = appendBytes(b, cp.Note)
		b = binary.BigEndian.AppendUint64(b, uint64(cp.Time.UnixNano()))
	} else {
		b = appendBytes(b, nil)
	}
	payload := b[start+frameHeaderLen:]
	binary.BigEndian.PutUint32(b[start+4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+8:], crc32.Checksum(payload, castagnoli))
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// errTorn: no whole frame here (the end of a slot's valid frames).
var errTorn = errors.New("no whole frame")

// parseFrame decodes the frame at the start of b and returns it and its
// length. errTorn means b does not start with a whole frame (a short or
// torn write, stale bytes, zeros); any other error is a frame whose CRC
// matches but whose payload is malformed.
func parseFrame(b []byte) (*frame, int, error) {
	if len(b) < frameHeaderLen || string(b[:4]) != frameMagic {
		return nil, 0, errTorn
	}
	n := binary.BigEndian.Uint32(b[4:])
	if n > maxFramePayload || uint64(len(b)-frameHeaderLen) < uint64(n) {
		return nil, 0, errTorn
	}
	payload := b[frameHeaderLen : frameHeaderLen+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return nil, 0, errTorn
	}
	f, err := parsePayload(payload)
	if err != nil {
		return nil, 0, fmt.Errorf("audit: journal frame: %w", err)
	}
	return f, frameHeaderLen + int(n), nil
}

func parsePayload(p []byte) (*frame, error) {
	r := bytes.NewReader(p)
	var hdr [20]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, errors.New("short header")
	}
	f := &frame{first: binary.BigEndian.Uint64(hdr[:]), t: int64(binary.BigEndian.Uint64(hdr[12:]))}
	count := binary.BigEndian.Uint32(hdr[8:])
	// every row takes at least 3 bytes: a count over the payload is garbage
	if uint64(count)*3 > uint64(r.Len()) {
		return nil, fmt.Errorf("%d entries in %d bytes", count, r.Len())
	}
	if f.first+uint64(count) < f.first {
		return nil, errors.New("sequence numbers overflow")
	}
	f.rows = make([]row, count)
	for i := range f.rows {
		tok, err := readBytes(r, MaxEntrySize)
		if err != nil {
			return nil, fmt.Errorf("entry %d token id: %w", i, err)
		}
		subj, err := readBytes(r, MaxEntrySize)
		if err != nil {
			return nil, fmt.Errorf("entry %d subject: %w", i, err)
		}
		body, err := readBytes(r, MaxEntrySize)
		if err != nil {
			return nil, fmt.Errorf("entry %d body: %w", i, err)
		}
		f.rows[i] = row{seq: f.first + uint64(i), t: f.t, tokenID: string(tok), subject: string(subj), body: body}
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(r.Len())/9 {
		return nil, errors.New("bad index count")
	}
	f.index = make([]indexRow, n)
	for i := range f.index {
		var tag [8]byte
		if _, err := io.ReadFull(r, tag[:]); err != nil {
			return nil, errors.New("short index row")
		}
		d, err := binary.ReadUvarint(r)
		if err != nil || d >= uint64(count) {
			return nil, errors.New("index row outside the frame")
		}
		f.index[i] = indexRow{tag: int64(binary.BigEndian.Uint64(tag[:])), seq: f.first + d}
	}
	note, err := readBytes(r, MaxCheckpointSize)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if len(note) > 0 {
		var ts [8]byte
		if _, err := io.ReadFull(r, ts[:]); err != nil {
			return nil, errors.New("short checkpoint time")
		}
		f.cpNote, f.cpTime = note, int64(binary.BigEndian.Uint64(ts[:]))
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d bytes after the frame", r.Len())
	}
	return f, nil
}

func readBytes(r *bytes.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, errors.New("bad length")
	}
	if n > uint64(max) || n > uint64(r.Len()) {
		return nil, fmt.Errorf("length %d over its limit or the frame", n)
	}
	b := make([]byte, n)
	io.ReadFull(r, b)
	return b, nil
}

// journal is the writer goroutine's side of the journal.
type journal struct {
	dir      string
	slotSize int64
	files    [journalSlots]*os.File
	cur      int                  // slot being written
	off      int64                // where its next frame goes
	ends     [journalSlots]uint64 // tree size after the last frame of each slot's latest turn
	buf      []byte               // the frame being written
	syncer   *fsync.Syncer        // fdatasync without holding a P, unless the CPUs are saturated (fsync.NewForLatency)
}

func slotPath(dir string, i int) string { return filepath.Join(dir, fmt.Sprint(i)) }

// openJournal opens (creating) the journal directory. Writing starts at
// slot 0, offset 0: Open has replayed and synced everything in it.
func openJournal(dataDir string, slotSize int64) (*journal, error) {
	dir := filepath.Join(dataDir, JournalDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("audit: journal: %w", err)
	}
	return &journal{dir: dir, slotSize: slotSize, syncer: fsync.NewForLatency()}, nil
}

// file returns slot i's file, opening (creating) it.
func (j *journal) file(i int) (*os.File, error) {
	if j.files[i] != nil {
		return j.files[i], nil
	}
	f, err := os.OpenFile(slotPath(j.dir, i), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := fsync.Dir(j.dir); err != nil {
		f.Close()
		return nil, err
	}
	j.files[i] = f
	return f, nil
}

// write writes frame b, ending at tree size end, and fdatasyncs it. When
// the frame does not fit in the current slot it moves to the next one;
// reusable(i) must wait until slot i's previous turn is durable elsewhere
// (or fail). leaving(end) is told the tree size at the end of the slot it
// leaves.
func (j *journal) write(b []byte, end uint64, leaving func(uint64), reusable func(uint64) error) error {
	if j.off > 0 && j.off+int64(len(b)) > j.slotSize {
		leaving(j.ends[j.cur])
		next := (j.cur + 1) % journalSlots
		if err := reusable(j.ends[next]); err != nil {
			return err
		}
		j.cur, j.off = next, 0
	}
	f, err := j.file(j.cur)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.WriteAt(b, j.off); err != nil {
		return fmt.Errorf("journal write: %w", err)
	}
	if err := j.syncer.Datasync(f); err != nil {
		return fmt.Errorf("journal fdatasync: %w", err)
	}
	j.off += int64(len(b))
	j.ends[j.cur] = end
	return nil
}

func (j *journal) close() error {
	errs := []error{j.syncer.Close()}
	for _, f := range j.files {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// readJournal returns the frames of the journal in dataDir that a replay
// from tree size from needs, in order: they start at from and follow each
// other without a gap. None is an empty journal, or one fully indexed.
func readJournal(dataDir string, from uint64) ([]*frame, error) {
	dir := filepath.Join(dataDir, JournalDir)
	var chains [][]*frame
	for i := range journalSlots {
		b, err := os.ReadFile(slotPath(dir, i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: journal: %w", err)
		}
		var chain []*frame
		for off := 0; off < len(b); {
			f, n, err := parseFrame(b[off:])
			if errors.Is(err, errTorn) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%w: slot %d offset %d: %w", ErrTampered, i, off, err)
			}
			if len(chain) > 0 && f.first != chain[len(chain)-1].end() {
				break // a previous turn's frame
			}
			chain = append(chain, f)
			off += n
		}
		if len(chain) > 0 {
			chains = append(chains, chain)
		}
	}
	var out []*frame
	for _, c := range chains {
		for _, f := range c {
			if f.end() > from || len(f.rows) == 0 && f.first >= from {
				out = append(out, f)
			}
		}
	}
	// by first entry; at the same first, a checkpoint-only frame (a
	// checkpoint of the tree at that size, maybe of the previous run's
	// Close) goes before the entries that follow it
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].first != out[b].first {
			return out[a].first < out[b].first
		}
		return len(out[a].rows) == 0 && len(out[b].rows) > 0
	})
	next := from
	for _, f := range out {
		if f.first != next {
			return nil, fmt.Errorf("%w: the journal continues at entry %d but the log ends at %d: acknowledged entries are missing (run phigate audit verify)", ErrTampered, f.first, next)
		}
		next = f.end()
	}
	return out, nil
}

// timeOf is a frame time as a time.Time.
func timeOf(ns int64) time.Time { return time.Unix(0, ns).UTC() }
