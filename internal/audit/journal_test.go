package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkFrame compares a parsed frame with what appendFrame was given.
func checkFrame(t *testing.T, f *frame, first uint64, ts int64, rows []row, index []indexRow, cp *Checkpoint) {
	t.Helper()
	if f.first != first || f.t != ts {
		t.Fatalf("frame header: first %d time %d, want %d %d", f.first, f.t, first, ts)
	}
	if len(f.rows) != len(rows) {
		t.Fatalf("%d rows, want %d", len(f.rows), len(rows))
	}
	for i, r := range f.rows {
		w := rows[i]
		if r.seq != first+uint64(i) || r.t != ts || r.tokenID != w.tokenID || r.subject != w.subject || !bytes.Equal(r.body, w.body) {
			t.Fatalf("row %d: got seq %d t %d %q %q %d bytes, want seq %d t %d %q %q %d bytes",
				i, r.seq, r.t, r.tokenID, r.subject, len(r.body), first+uint64(i), ts, w.tokenID, w.subject, len(w.body))
		}
	}
	if len(f.index) != len(index) {
		t.Fatalf("%d index rows, want %d", len(f.index), len(index))
	}
	for i, x := range f.index {
		if x != index[i] {
			t.Fatalf("index row %d: %+v, want %+v", i, x, index[i])
		}
	}
	switch {
	case cp == nil && f.cpNote != nil:
		t.Fatalf("checkpoint %q in a frame written without one", f.cpNote)
	case cp != nil && (!bytes.Equal(f.cpNote, cp.Note) || f.cpTime != cp.Time.UnixNano()):
		t.Fatalf("checkpoint: %q at %d, want %q at %d", f.cpNote, f.cpTime, cp.Note, cp.Time.UnixNano())
	}
}

func TestFrameRoundTrip(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	ctx := context.Background()
	appendN(t, l, 3)
	cp, err := l.Checkpoint(ctx, true)
	if err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint: %+v %v", cp, err)
	}
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	const first, ts = 41, int64(1_700_000_000_123_456_789)
	rows := []row{
		{tokenID: "tok_a", subject: "svc:lab", body: []byte("an entry body")},
		{}, // no token (a server event), empty body
		{tokenID: "tok_b", subject: "user:é", body: allBytes},
		{tokenID: "tok_c", subject: "svc:big", body: bytes.Repeat([]byte{0xa5}, MaxEntrySize)},
	}
	index := []indexRow{{tag: -5, seq: first}, {tag: 1 << 62, seq: first + 2}, {tag: 0, seq: first + 3}}

	for _, c := range []struct {
		name  string
		first uint64
		rows  []row
		index []indexRow
		cp    *Checkpoint
	}{
		{"rows_index_checkpoint", first, rows, index, cp},
		{"rows_only", first, rows, nil, nil},
		{"one_row", first, rows[:1], index[:1:1], nil},
		{"checkpoint_only", 3, nil, nil, cp},
	} {
		t.Run(c.name, func(t *testing.T) {
			// appended to bytes already there, as the writer reuses its buffer
			b := appendFrame([]byte("xyz"), c.first, ts, c.rows, c.index, c.cp)
			if !bytes.Equal(b[:3], []byte("xyz")) {
				t.Fatal("appendFrame changed the bytes before the frame")
			}
			b = b[3:]
			f, n, err := parseFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b) {
				t.Fatalf("frame length %d, want %d", n, len(b))
			}
			checkFrame(t, f, c.first, ts, c.rows, c.index, c.cp)
			if f.end() != c.first+uint64(len(c.rows)) {
				t.Fatalf("end %d", f.end())
			}
			// with bytes after it (the next frame, stale bytes, zeros)
			f, n, err = parseFrame(append(append([]byte(nil), b...), 0, 0, 0, 0))
			if err != nil || n != len(b) {
				t.Fatalf("with trailing bytes: %d %v", n, err)
			}
			checkFrame(t, f, c.first, ts, c.rows, c.index, c.cp)
			// every cut is a torn frame, never an error or a frame
			for i := 0; i < len(b); i += 1 + i/64 {
				if f, n, err := parseFrame(b[:i]); !errors.Is(err, errTorn) || f != nil || n != 0 {
					t.Fatalf("cut at %d of %d: %v %v %d", i, len(b), f, err, n)
				}
			}
			// a changed byte fails the CRC (header or payload)
			for _, i := range []int{0, 5, 9, frameHeaderLen, len(b) / 2, len(b) - 1} {
				bad := bytes.Clone(b)
				bad[i] ^= 0x40
				if _, _, err := parseFrame(bad); !errors.Is(err, errTorn) {
					t.Fatalf("byte %d changed: %v", i, err)
				}
			}
		})
	}

	t.Run("back_to_back", func(t *testing.T) {
		b := appendFrame(nil, first, ts, rows, index, nil)
		n1 := len(b)
		b = appendFrame(b, first+uint64(len(rows)), ts+1, nil, nil, cp)
		n2 := len(b) - n1
		b = appendFrame(b, first+uint64(len(rows)), ts+2, rows[:2], nil, nil)
		f, n, err := parseFrame(b)
		if err != nil || n != n1 {
			t.Fatalf("first frame: %d (want %d) %v", n, n1, err)
		}
		checkFrame(t, f, first, ts, rows, index, nil)
		f, n, err = parseFrame(b[n1:])
		if err != nil || n != n2 {
			t.Fatalf("second frame: %d (want %d) %v", n, n2, err)
		}
		checkFrame(t, f, first+uint64(len(rows)), ts+1, nil, nil, cp)
		f, n, err = parseFrame(b[n1+n2:])
		if err != nil || n != len(b)-n1-n2 {
			t.Fatalf("third frame: %d (want %d) %v", n, len(b)-n1-n2, err)
		}
		checkFrame(t, f, first+uint64(len(rows)), ts+2, rows[:2], nil, nil)
		if _, _, err := parseFrame(b[len(b):]); !errors.Is(err, errTorn) {
			t.Fatalf("after the last frame: %v", err)
		}
	})

	t.Run("malformed_payload", func(t *testing.T) {
		// a whole frame (its CRC matches) that does not decode is an
		// error, not a torn write
		for name, p := range map[string][]byte{
			"short_header":  make([]byte, 19),
			"too_many_rows": fixedPayload(0, 9, []byte{0, 0, 0, 0, 0}),
			"bad_row":       fixedPayload(0, 1, []byte{0, 0, 9, 0}),
			// one empty row, one index row pointing past it, no checkpoint
			"index_outside":   fixedPayload(0, 1, []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}),
			"seq_overflow":    fixedPayload(1<<64-1, 1, []byte{0, 0, 0, 0, 0}),
			"trailing_bytes":  fixedPayload(0, 0, []byte{0, 0, 0xee}),
			"no_checkpoint_t": fixedPayload(0, 0, []byte{0, 1, 'x'}),
			"long_checkpoint": fixedPayload(0, 0, binary.AppendUvarint([]byte{0}, MaxCheckpointSize+1)),
		} {
			b := wrapPayload(p)
			if f, _, err := parseFrame(b); err == nil || errors.Is(err, errTorn) || f != nil {
				t.Errorf("%s: got %v, %v", name, f, err)
			}
		}
	})
}

// fixedPayload is a payload header (first, count, time 0) followed by rest.
func fixedPayload(first uint64, count uint32, rest []byte) []byte {
	p := binary.BigEndian.AppendUint64(nil, first)
	p = binary.BigEndian.AppendUint32(p, count)
	p = binary.BigEndian.AppendUint64(p, 0)
	return append(p, rest...)
}

// wrapPayload makes p a whole frame: magic, length and CRC.
func wrapPayload(p []byte) []byte {
	b := append([]byte(frameMagic), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[4:], uint32(len(p)))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(p, castagnoli))
	return append(b, p...)
}

// FuzzParseFrame: parseFrame never panics, never reads past its input,
// and what it accepts is exactly what appendFrame writes for the frame it
// returns. Each input is also tried as a payload under a correct header,
// so that mutations reach the payload decoder past the CRC.
func FuzzParseFrame(f *testing.F) {
	signer, _ := fuzzKeys(f)
	cp, err := signCheckpoint(signer, 7, bytes.Repeat([]byte{3}, 32), time.Unix(1700000000, 5))
	if err != nil {
		f.Fatal(err)
	}
	body, _ := exampleEntry().MarshalBinary()
	rows := []row{
		{tokenID: "tok_x", subject: "svc:fuzz", body: body},
		{},
		{tokenID: "t", subject: "s", body: []byte{0, 1, 2}},
	}
	index := []indexRow{{tag: 99, seq: 4}, {tag: -1, seq: 6}}
	whole := appendFrame(nil, 4, 1700000000000000000, rows, index, cp)
	for _, seed := range [][]byte{
		whole,
		appendFrame(nil, 4, 12345, rows, nil, nil),
		appendFrame(nil, 0, 0, rows[1:2], nil, nil),
		appendFrame(nil, 7, 1700000000000000001, nil, nil, cp),
		appendFrame(nil, 0, 0, nil, nil, nil),
		appendFrame(bytes.Clone(whole), 7, 1700000000000000002, rows[:1], nil, nil),
		whole[:len(whole)-1],
		whole[:frameHeaderLen],
		[]byte(frameMagic),
		{},
		[]byte("PGJ1\xff\xff\xff\xff\x00\x00\x00\x00garbage"),
		wrapPayload(fixedPayload(0, 1, []byte{0x80, 0x00, 0, 0, 0, 0})), // an overlong length
		bytes.Repeat([]byte{0}, 64),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkParsedFrame(t, in)
		if len(in) >= frameHeaderLen {
			checkParsedFrame(t, wrapPayload(in[frameHeaderLen:]))
		}
	})
}

func checkParsedFrame(t *testing.T, in []byte) {
	f, n, err := parseFrame(in)
	if err != nil {
		if f != nil || n != 0 {
			t.Fatalf("error %v with a frame (%v) or a length (%d)", err, f, n)
		}
		return
	}
	if n < frameHeaderLen || n > len(in) {
		t.Fatalf("frame length %d of %d bytes", n, len(in))
	}
	for i, r := range f.rows {
		if r.seq != f.first+uint64(i) || r.t != f.t {
			t.Fatalf("row %d: seq %d time %d in a frame from %d at %d", i, r.seq, r.t, f.first, f.t)
		}
	}
	for _, x := range f.index {
		if x.seq < f.first || x.seq >= f.end() {
			t.Fatalf("index row for %d outside the frame [%d, %d)", x.seq, f.first, f.end())
		}
	}
	var cp *Checkpoint
	if f.cpNote != nil {
		cp = &Checkpoint{Note: f.cpNote, Time: time.Unix(0, f.cpTime)}
	}
	again := appendFrame(nil, f.first, f.t, f.rows, f.index, cp)
	if bytes.Equal(again, in[:n]) {
		return
	}
	// parsePayload reads lengths with binary.ReadUvarint, which accepts
	// overlong encodings (0x80 0x00 for 0) that appendFrame never writes:
	// harmless (the values, and so the entries, are the same), and the
	// only way another encoding of the same frame can be accepted; it is
	// then shorter.
	g, m, err := parseFrame(again)
	if len(again) >= n || err != nil || m != len(again) || !reflect.DeepEqual(g, f) {
		t.Fatalf("the frame does not re-encode to the bytes it was parsed from:\n in    %x\n again %x", in[:n], again)
	}
}

// crashImage copies the data directory dir as a crash would leave it:
// every regular file (keys, database, WAL, journal), with its mode, but
// not SQLite's shared memory index (audit.db-shm), which does not survive
// a crash (SQLite rebuilds it from the WAL). Nothing may be writing to dir
// meanwhile.
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	image := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		to := filepath.Join(image, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o700); err != nil {
				return err
			}
			return os.Chmod(to, fi.Mode().Perm())
		case !fi.Mode().IsRegular() || d.Name() == DBFile+"-shm":
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			return err
		}
		return os.Chmod(to, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("crash image of %s: %v", dir, err)
	}
	return image
}

// slotFrame is a frame found in a journal slot file.
type slotFrame struct {
	slot, off, n int
	f            *frame
}

// journalFrames returns the frames of every slot of the journal in dir that
// Open would consider: from the start of each slot, while they are whole
// and follow each other (as readJournal reads them).
func journalFrames(t *testing.T, dir string) []slotFrame {
	t.Helper()
	var out []slotFrame
	for i := range journalSlots {
		b, err := os.ReadFile(slotPath(filepath.Join(dir, JournalDir), i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var prev *frame
		for off := 0; off < len(b); {
			f, n, err := parseFrame(b[off:])
			if errors.Is(err, errTorn) {
				break
			}
			if err != nil {
				t.Fatalf("slot %d offset %d: %v", i, off, err)
			}
			if prev != nil && f.first != prev.end() {
				break
			}
			out = append(out, slotFrame{slot: i, off: off, n: n, f: f})
			prev = f
			off += n
		}
	}
	return out
}

// journalEntry is the i-th entry a test writes: its request id and target
// tell it apart.
func journalEntry(i int) *Entry {
	e := grant(i)
	e.RequestID = fmt.Sprintf("journal-%06d", i)
	e.Target = fmt.Sprintf("target-%06d", i)
	return e
}

// appendMany appends journalEntry(from) .. journalEntry(from+n-1) from
// workers goroutines and records, by sequence number, which one each got.
func appendMany(t *testing.T, l *Log, from, n, workers int, got map[uint64]int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := from
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= from+n {
					return
				}
				seq, err := l.Append(context.Background(), journalEntry(i))
				if err != nil {
					errs <- fmt.Errorf("append %d: %w", i, err)
					return
				}
				mu.Lock()
				if j, dup := got[seq]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("entries %d and %d both got seq %d", j, i, seq)
					return
				}
				got[seq] = i
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// holdIndexer stops the indexer goroutine until release is called (also
// at the end of the test): the journal takes appends, the database none.
// crashThenClose copies dir as a crash would leave it (crashImage) while
// l's indexer is held, then releases the indexer and closes l; it returns
// the image.
func crashThenClose(t *testing.T, l *Log, dir string, release func()) string {
	t.Helper()
	image := crashImage(t, dir)
	release()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return image
}

func holdIndexer(t *testing.T, l *Log) (release func()) {
	t.Helper()
	held, free, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- l.indexControl(context.Background(), func() error {
			close(held)
			<-free
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("hold the indexer: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(free)
			if err := <-done; err != nil {
				t.Errorf("indexer hold: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

func indexedCount(t *testing.T, l *Log) uint64 {
	t.Helper()
	var n uint64
	if err := l.st.rdb.QueryRowContext(context.Background(), "SELECT count(*) FROM entries").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// heldCrash is a crash image taken while the indexer was held.
type heldCrash struct {
	image   string
	indexed uint64         // entries in its database
	size    uint64         // entries acknowledged
	wrote   map[uint64]int // seq -> journalEntry index
}

// crashWhileIndexed appends before entries, lets them be indexed, holds
// the indexer, appends during more (acknowledged from the journal alone)
// and takes a crash image.
func crashWhileIndexed(t *testing.T, slotSize int64, before, during int) heldCrash {
	t.Helper()
	// no timed checkpoint: nothing writes the journal while the image is taken
	l, dir := newTestLog(t, Options{JournalSlotSize: slotSize, CheckpointInterval: time.Hour})
	ctx := context.Background()
	wrote := map[uint64]int{}
	appendMany(t, l, 0, before, 8, wrote)
	if _, err := l.visible(ctx); err != nil {
		t.Fatal(err)
	}
	release := holdIndexer(t, l)
	indexed := indexedCount(t, l)
	if indexed != uint64(before) {
		t.Fatalf("%d entries indexed before the hold, want %d", indexed, before)
	}
	appendMany(t, l, before, during, 4, wrote)
	size := l.Size()
	if size != uint64(before+during) || len(wrote) != before+during {
		t.Fatalf("Size %d, %d appends acknowledged, want %d", size, len(wrote), before+during)
	}
	if n := indexedCount(t, l); n != indexed || n >= size {
		t.Fatalf("the database holds %d entries of %d acknowledged while the indexer is held (had %d)", n, size, indexed)
	}
	image := crashThenClose(t, l, dir, release)
	return heldCrash{image: image, indexed: indexed, size: size, wrote: wrote}
}

// checkEntries reads every entry below size and checks it is the one
// acknowledged with that seq.
func checkEntries(t *testing.T, l *Log, size uint64, wrote map[uint64]int) {
	t.Helper()
	ctx := context.Background()
	for seq := range size {
		i, ok := wrote[seq]
		if !ok {
			t.Fatalf("seq %d was never acknowledged", seq)
		}
		e, err := l.Entry(ctx, seq)
		if err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		w := journalEntry(i)
		if e.Seq != seq || e.Action != w.Action || e.Target != w.Target || e.RequestID != w.RequestID {
			t.Fatalf("entry %d is %s %s %s, want %s %s %s", seq, e.Action, e.Target, e.RequestID, w.Action, w.Target, w.RequestID)
		}
	}
	if _, err := l.Entry(ctx, size); !errors.Is(err, ErrNotFound) {
		t.Fatalf("entry %d past the end: %v", size, err)
	}
}

const replayedMsg = "entries replayed from the journal"

func TestReplayAfterCrash(t *testing.T) {
	// A grant's frame is about 400 bytes: 600 entries turn a ring of four
	// 32 KiB slots at least once; the 200 appended while the indexer is
	// held fill about 80 KiB, more than a slot (so they span two) but less
	// than the three slots the writer may move into before it needs one
	// holding entries the database lacks.
	const slotSize = 32 << 10
	c := crashWhileIndexed(t, slotSize, 600, 200)
	// offline, before any replay: verify checks what the database holds
	// and counts what only the journal holds
	if res := mustVerify(t, c.image, VerifyOptions{}); !res.OK() || res.Size != c.indexed || res.Journaled != c.size-c.indexed {
		t.Fatalf("verify of the crash image: size %d journaled %d (want %d and %d), %v", res.Size, res.Journaled, c.indexed, c.size-c.indexed, res.Problem)
	}
	frames := journalFrames(t, c.image)
	slots := map[int]bool{}
	for _, sf := range frames {
		if sf.slot == 0 && sf.off == 0 && sf.f.first == 0 {
			t.Fatal("slot 0 still holds the first frame: the ring did not turn")
		}
		if sf.f.first >= c.indexed {
			slots[sf.slot] = true
		}
	}
	if len(slots) < 2 {
		t.Fatalf("the entries appended while the indexer was held are in %d slot(s), want at least 2", len(slots))
	}

	logs := &syncBuffer{}
	ctx := context.Background()
	l, err := Open(ctx, c.image, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("open the crash image: %v", err)
	}
	defer l.Close()
	if l.Size() != c.size {
		t.Fatalf("Size %d after the crash, but %d entries were acknowledged", l.Size(), c.size)
	}
	checkEntries(t, l, c.size, c.wrote)
	if s := logs.String(); !strings.Contains(s, replayedMsg) || !strings.Contains(s, fmt.Sprintf("entries=%d", c.size-c.indexed)) {
		t.Fatalf("no notice of %d entries replayed:\n%s", c.size-c.indexed, s)
	}
	// the log goes on from there
	seq, err := l.Append(ctx, journalEntry(len(c.wrote)))
	if err != nil || seq != c.size {
		t.Fatalf("append after the replay: seq %d (want %d) %v", seq, c.size, err)
	}
	c.wrote[seq] = len(c.wrote)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, c.image, VerifyOptions{}); !res.OK() || res.Size != c.size+1 || res.Covered != c.size+1 {
		t.Fatalf("verify after the replay: %+v %v", res, res.Problem)
	}

	// nothing to replay a second time
	logs2 := &syncBuffer{}
	l2, err := Open(ctx, c.image, Options{Logger: slog.New(slog.NewTextHandler(logs2, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if l2.Size() != c.size+1 {
		t.Fatalf("Size %d on the second open, want %d", l2.Size(), c.size+1)
	}
	if strings.Contains(logs2.String(), replayedMsg) {
		t.Fatalf("the second open replayed again:\n%s", logs2.String())
	}
	checkEntries(t, l2, c.size+1, c.wrote)
}

func TestReplayTornTail(t *testing.T) {
	c := crashWhileIndexed(t, 32<<10, 300, 200)
	frames := journalFrames(t, c.image)
	last := frames[0]
	for _, sf := range frames {
		if sf.f.end() > last.f.end() {
			last = sf
		}
	}
	if last.f.end() != c.size || len(last.f.rows) == 0 {
		t.Fatalf("the last frame ends at %d with %d entries; the log acknowledged %d", last.f.end(), len(last.f.rows), c.size)
	}
	// the write of the last frame was torn halfway through its payload
	path := slotPath(filepath.Join(c.image, JournalDir), last.slot)
	if err := os.Truncate(path, int64(last.off+frameHeaderLen+(last.n-frameHeaderLen)/2)); err != nil {
		t.Fatal(err)
	}
	want := last.f.first
	if want >= c.size || want < c.indexed {
		t.Fatalf("the torn frame starts at %d, outside [%d, %d)", want, c.indexed, c.size)
	}

	l, err := Open(context.Background(), c.image, Options{})
	if err != nil {
		t.Fatalf("open after a torn journal write: %v", err)
	}
	defer l.Close()
	if l.Size() != want {
		t.Fatalf("Size %d, want %d (the whole frames; %d were indexed, %d acknowledged)", l.Size(), want, c.indexed, c.size)
	}
	checkEntries(t, l, want, c.wrote)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, c.image, VerifyOptions{}); !res.OK() || res.Size != want {
		t.Fatalf("verify: %+v %v", res, res.Problem)
	}
}

func TestReplayRefusesAGap(t *testing.T) {
	c := crashWhileIndexed(t, 32<<10, 300, 200)
	// the first frame the database lacks; later frames it lacks are in
	// another slot
	var gap *slotFrame
	for _, sf := range journalFrames(t, c.image) {
		if sf.f.end() <= c.indexed {
			continue
		}
		if gap == nil || sf.f.first < gap.f.first {
			gap = &sf
		}
	}
	if gap == nil || gap.f.first != c.indexed {
		t.Fatalf("no frame continues the database at %d: %+v", c.indexed, gap)
	}
	later := false
	for _, sf := range journalFrames(t, c.image) {
		later = later || sf.slot != gap.slot && sf.f.first > gap.f.first
	}
	if !later {
		t.Fatal("the frames the database lacks are all in one slot")
	}
	t.Run("corrupt_frame", func(t *testing.T) {
		image := crashImage(t, c.image)
		path := slotPath(filepath.Join(image, JournalDir), gap.slot)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[gap.off+frameHeaderLen+(gap.n-frameHeaderLen)/2] ^= 0x01
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := Open(context.Background(), image, Options{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "missing") {
			if err == nil {
				l.Close()
			}
			t.Fatalf("open with a corrupt journal frame before others: want ErrTampered (missing), got %v", err)
		}
	})

	t.Run("deleted_slot", func(t *testing.T) {
		image := crashImage(t, c.image)
		if err := os.Remove(slotPath(filepath.Join(image, JournalDir), gap.slot)); err != nil {
			t.Fatal(err)
		}
		if l, err := Open(context.Background(), image, Options{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "missing") {
			if err == nil {
				l.Close()
			}
			t.Fatalf("open with a journal slot deleted: want ErrTampered (missing), got %v", err)
		}
	})

	// the untouched image replays
	l, err := Open(context.Background(), c.image, Options{})
	if err != nil {
		t.Fatalf("the intact image: %v", err)
	}
	defer l.Close()
	if l.Size() != c.size {
		t.Fatalf("intact image: Size %d, want %d", l.Size(), c.size)
	}
}

// journalPos returns the journal slot the writer is in and its offset there.
func journalPos(t *testing.T, l *Log) (slot int, off int64) {
	t.Helper()
	err := l.control(context.Background(), func(done chan error) error {
		slot, off = l.w.j.cur, l.w.j.off
		done <- nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return slot, off
}

// TestReplayAfterCleanRestart: a clean Close journals its final checkpoint
// (a frame without entries at the log's size S) wherever the writer was,
// here slot 1; the next run writes from slot 0, entries from S. A crash
// before they are indexed must replay them.
func TestReplayAfterCleanRestart(t *testing.T) {
	const slotSize = 8 << 10
	opts := Options{JournalSlotSize: slotSize, CheckpointInterval: time.Hour}
	l, dir := newTestLog(t, opts)
	ctx := context.Background()
	wrote := map[uint64]int{}
	for slot, _ := journalPos(t, l); slot == 0; slot, _ = journalPos(t, l) {
		appendMany(t, l, len(wrote), 1, 1, wrote)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	closed := uint64(len(wrote))
	final := false
	for _, sf := range journalFrames(t, dir) {
		final = final || sf.slot != 0 && len(sf.f.rows) == 0 && sf.f.first == closed
	}
	if !final {
		t.Fatalf("no final checkpoint frame at %d outside slot 0", closed)
	}

	l2, err := Open(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l2.Close() })
	release := holdIndexer(t, l2)
	appendMany(t, l2, len(wrote), 3, 1, wrote)
	image := crashThenClose(t, l2, dir, release)

	l3, err := Open(ctx, image, Options{})
	if err != nil {
		t.Fatalf("open after a clean restart and a crash: %v", err)
	}
	defer l3.Close()
	if l3.Size() != closed+3 {
		t.Fatalf("Size %d, want %d", l3.Size(), closed+3)
	}
	checkEntries(t, l3, closed+3, wrote)
}

// TestReplayCheckpointAtTheRingsTurn: the last frame of slot 3 is a
// checkpoint at S without entries, the next frame (entries from S) is the
// first of slot 0; a crash before either is indexed must replay both.
func TestReplayCheckpointAtTheRingsTurn(t *testing.T) {
	const slotSize = 8 << 10
	l, dir := newTestLog(t, Options{JournalSlotSize: slotSize, CheckpointInterval: time.Hour})
	ctx := context.Background()
	wrote := map[uint64]int{}
	add := func() { appendMany(t, l, len(wrote), 1, 1, wrote) }
	for slot, _ := journalPos(t, l); slot != journalSlots-1; slot, _ = journalPos(t, l) {
		add()
	}
	if _, err := l.visible(ctx); err != nil {
		t.Fatal(err)
	}
	release := holdIndexer(t, l)
	// fill slot 3 until a checkpoint frame still fits but an entry after it
	// does not
	var entryLen int64
	for {
		_, off := journalPos(t, l)
		cp, err := signCheckpoint(l.signer, l.Size(), make([]byte, 32), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cpLen := int64(len(appendFrame(nil, l.Size(), 0, nil, nil, cp)))
		if entryLen > 0 && slotSize-off < cpLen+entryLen {
			if slotSize-off < cpLen {
				t.Fatalf("%d bytes left in the slot: no room for a %d-byte checkpoint frame", slotSize-off, cpLen)
			}
			break
		}
		add()
		_, next := journalPos(t, l)
		entryLen = next - off
	}
	slot, off := journalPos(t, l)
	cpDone := make(chan error, 1)
	go func() {
		_, err := l.Checkpoint(ctx, true) // returns once indexed: after release
		cpDone <- err
	}()
	for s, o := journalPos(t, l); s == slot && o == off; s, o = journalPos(t, l) {
		time.Sleep(time.Millisecond)
	}
	if s, _ := journalPos(t, l); s != slot {
		t.Fatalf("the checkpoint frame went to slot %d", s)
	}
	add()
	if s, _ := journalPos(t, l); s != 0 {
		t.Fatalf("the entry after the checkpoint went to slot %d, want 0", s)
	}
	image := crashImage(t, dir)
	release()
	if err := <-cpDone; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2, err := Open(ctx, image, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer l2.Close()
	if l2.Size() != uint64(len(wrote)) {
		t.Fatalf("Size %d, want %d", l2.Size(), len(wrote))
	}
	checkEntries(t, l2, uint64(len(wrote)), wrote)
}

func TestJournalSlotsAreReused(t *testing.T) {
	const slotSize = 16 << 10
	l, dir := newTestLog(t, Options{JournalSlotSize: slotSize, CheckpointInterval: time.Hour})
	ctx := context.Background()
	wrote := map[uint64]int{}
	const n = 3000
	appendMany(t, l, 0, n, 8, wrote)

	journal := filepath.Join(dir, JournalDir)
	ents, err := os.ReadDir(journal)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) == 0 || len(ents) > journalSlots {
		t.Fatalf("%d files in the journal, want 1 to %d", len(ents), journalSlots)
	}
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Size() > slotSize+64<<10 {
			t.Fatalf("journal file %s: %v, %d bytes (slots are %d)", e.Name(), fi.Mode(), fi.Size(), slotSize)
		}
		total += fi.Size()
	}
	t.Logf("%d entries, journal %d files, %d bytes", n, len(ents), total)

	// a crash now, with the last few entries acknowledged but not indexed
	if _, err := l.visible(ctx); err != nil {
		t.Fatal(err)
	}
	release := holdIndexer(t, l)
	appendMany(t, l, n, 20, 2, wrote)
	size := l.Size()
	if size != n+20 {
		t.Fatalf("Size %d, want %d", size, n+20)
	}
	image := crashThenClose(t, l, dir, release)

	l2, err := Open(ctx, image, Options{})
	if err != nil {
		t.Fatalf("open the crash image: %v", err)
	}
	defer l2.Close()
	if l2.Size() != size {
		t.Fatalf("Size %d after the crash, want %d", l2.Size(), size)
	}
	checkEntries(t, l2, size, wrote)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if res := mustVerify(t, image, VerifyOptions{}); !res.OK() || res.Size != size {
		t.Fatalf("verify: %+v %v", res, res.Problem)
	}
}

func TestAppendAsync(t *testing.T) {
	logs := &syncBuffer{}
	l, dir := newTestLog(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := context.Background()
	const n = 20
	for i := range n {
		if err := l.AppendAsync(journalEntry(i)); err != nil {
			t.Fatalf("AppendAsync %d: %v", i, err)
		}
	}
	for name, e := range map[string]*Entry{
		"no_action":      {},
		"unknown_action": {Action: "token.exploded"},
		"bad_outcome":    {Action: ActionTokenCreated, Outcome: "meh"},
		"huge_snapshot":  {Action: ActionTokenUpdated, After: []byte(`"` + strings.Repeat("a", MaxSnapshot) + `"`)},
	} {
		if err := l.AppendAsync(e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("AppendAsync of an invalid entry (%s): %v", name, err)
		}
	}
	// the queue is served in order: an Append after them commits after them
	seq, err := l.Append(ctx, journalEntry(n))
	if err != nil || seq != n {
		t.Fatalf("Append after %d AppendAsync: seq %d %v", n, seq, err)
	}
	if l.Size() != n+1 {
		t.Fatalf("Size %d, want %d", l.Size(), n+1)
	}
	if size, err := l.visible(ctx); err != nil || size != n+1 {
		t.Fatalf("visible: %d %v", size, err)
	}
	wrote := map[uint64]int{}
	for i := range n + 1 {
		wrote[uint64(i)] = i
	}
	checkEntries(t, l, n+1, wrote)
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Fatalf("errors logged:\n%s", s)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendAsync(journalEntry(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendAsync after Close: %v", err)
	}
	if res := mustVerify(t, dir, VerifyOptions{}); !res.OK() || res.Size != n+1 {
		t.Fatalf("verify: %+v %v", res, res.Problem)
	}
}
