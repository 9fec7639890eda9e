package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// DefaultRetention is six years (45 CFR 164.316(b)(2)).
const DefaultRetention = 6 * 8766 * time.Hour

// Options configure a Log. The zero value is the production default.
type Options struct {
	// Node names this server; the log's origin is phigate/<Node>. Empty
	// means the node the signing key was made for. A Node that differs
	// from the key's is an error: a log's origin never changes.
	Node string
	// Keys provides the checkpoint signing key (nil: FileKeys of the data
	// directory, made by InitKeys).
	Keys Keys
	// Logger receives alerts (the log cannot be written, a witness failed)
	// and notices. nil discards.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// QueueSize bounds the appends waiting for the writer; when it is full
	// Append fails at once with ErrPushback. 0 means 4096.
	QueueSize int
	// MaxBatch bounds the entries committed in one transaction. 0: 1024.
	MaxBatch int
	// GroupWait: when at least two appends wait for the same group commit
	// and the process's CPUs are saturated, the writer waits up to this
	// long for more before writing it (see gatherAppends). 0 means 1ms;
	// negative, never.
	GroupWait time.Duration
	// CheckpointInterval: while entries arrive, a signed checkpoint is
	// issued at least this often. 0 means 1s.
	CheckpointInterval time.Duration
	// ProbeInterval: after a write failure, how often the writer tries to
	// write again. 0 means 1s.
	ProbeInterval time.Duration
	// StallTimeout: a commit pending for longer makes Ready fail and
	// Append refuse with ErrUnavailable (a hung disk). 0 means 5s.
	StallTimeout time.Duration
	// AppendTimeout bounds how long Append waits for its commit when its
	// context has no earlier deadline. 0 means 10s.
	AppendTimeout time.Duration
	// Retention is how long entries must be kept (Expired counts those
	// older). Nothing is ever deleted by the log. 0 means DefaultRetention.
	Retention time.Duration

	// WitnessFile, when set, gets every checkpoint appended (each signed
	// note followed by an empty line), fsync'd.
	WitnessFile string
	// WitnessURL, when set, gets every checkpoint POSTed as text/plain
	// (best effort: a failure is logged, the next checkpoint is sent
	// anyway; each checkpoint covers all before it).
	WitnessURL string
	// WitnessClient is the HTTP client for WitnessURL (nil: a client with
	// a 10s timeout).
	WitnessClient *http.Client
	// Witnesses get every new checkpoint with its consistency proof (C2SP
	// tlog-witness) and their cosignatures are kept (see cosign.go).
	Witnesses []WitnessConfig
	// WitnessQuorum is how many witnesses must cosign each checkpoint;
	// fewer is logged as an alert.
	WitnessQuorum int

	// Syslog, when set, streams every entry to a SIEM (RFC 5424 over TLS).
	Syslog *SyslogOptions

	// ReadConns is the number of read-only connections. 0 means 4.
	ReadConns int

	// Observer, when set, is told how long each Append waited and how
	// many entries each group commit made durable (metrics). It MUST NOT
	// block: ObserveCommit is called from the writer goroutine.
	Observer Observer

	// JournalSlotSize is the size of each of the journal's files (see
	// journal.go); a batch larger than a slot gets a slot of its own. 0
	// means 4 MiB.
	JournalSlotSize int64

	// Sealer, when set, encrypts the PHI-bearing fields of every entry
	// appended (break-glass justification, patient, path and query) and
	// keeps the blind index that searches them; readers open them with
	// it. See seal.go.
	Sealer Sealer
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	if o.GroupWait == 0 {
		o.GroupWait = time.Millisecond
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 5 * time.Second
	}
	if o.AppendTimeout <= 0 {
		o.AppendTimeout = 10 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.ReadConns <= 0 {
		o.ReadConns = 4
	}
	if o.JournalSlotSize <= 0 {
		o.JournalSlotSize = 4 << 20
	}
	return o
}

// Log is the audit log of one node. It is safe for concurrent use.
type Log struct {
	opts   Options
	dir    string
	log    *slog.Logger
	st     *store
	signer note.Signer
	vkey   string
	verif  note.Verifier
	node   string

	w *writer // see writer: shared by the writer and indexer goroutines

	queue    chan *request
	ctl      chan func()      // run on the writer goroutine
	idx      chan *indexBatch // journaled batches, for the indexer
	ictl     chan func()      // run on the indexer goroutine
	kick     chan struct{}    // a reader waits for the indexer
	idxDone  chan struct{}    // the indexer has ended
	mu       sync.RWMutex     // guards closed and the closing of queue
	closed   bool
	isClosed atomic.Bool
	runDone  chan struct{} // the writer goroutine has ended

	failure    atomic.Pointer[failure]
	writeStart atomic.Int64 // unix ns when the pending write began; 0 when idle
	syncStart  atomic.Int64 // unix ns when the pending fdatasync began; 0 when idle

	latest    atomic.Pointer[Checkpoint]
	durable   atomic.Uint64 // entries in the journal: acknowledged
	committed atomic.Uint64 // entries indexed: the size readers see
	syncWant  atomic.Uint64 // the journal wants the WAL synced once this many are indexed
	synced    atomic.Uint64 // entries durable in the database
	notifyMu  sync.Mutex
	notify    chan struct{} // closed and replaced on every commit

	witness *witness
	cosign  *cosigner
	bgStop  context.CancelFunc
	bg      sync.WaitGroup

	stats    struct{ commits, entries, largest atomic.Uint64 }
	runnable [1]metrics.Sample // the writer's (gatherAppends)
	answered uint64            // the writer's: callers its last commit woke
}

type failure struct {
	err   error
	since time.Time
	fatal bool // no probe can lift it (a failed fdatasync): reopen
}

// request is one entry waiting for the writer.
type request struct {
	tail    []byte // the encoded fields from tagNode to tagSealed
	trailer []byte // the encoded fields after tagSealed (nil: none)
	phi     []byte // the fields to seal (Sealer), encoded; nil when none
	index   []int64
	tokenID string
	subject string
	state   atomic.Int32
	done    chan result // buffered: the writer never blocks on a caller that left; nil: AppendAsync
}

type result struct {
	seq uint64
	t   int64
	err error
}

// Life cycle of a request (as in the token store's group commit).
const (
	reqPending int32 = iota
	reqClaimed
	reqWithdrawn
)

// Open opens (creating if needed) the audit log in dataDir/audit.db. The
// data directory must exist and hold a signing key (InitKeys) unless
// opts.Keys provides one. Open checks the entries written since the latest
// checkpoint against the stored tree and that checkpoint's signature, and
// refuses a log that does not match (ErrTampered: run Verify); then it
// signs a checkpoint covering every entry, so that a crash never leaves
// acknowledged entries unsigned for longer than the next Open.
func Open(ctx context.Context, dataDir string, opts Options) (*Log, error) {
	opts = opts.withDefaults()
	keys := opts.Keys
	if keys == nil {
		keys = FileKeys{dataDir}
	}
	signer, vkey, err := keys.CheckpointSigner(ctx)
	if err != nil {
		return nil, err
	}
	verif, err := NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	if verif.Name() != signer.Name() || verif.KeyHash() != signer.KeyHash() {
		return nil, errors.New("audit: the signing key and the verifier key do not match")
	}
	node := strings.TrimPrefix(signer.Name(), OriginPrefix)
	if opts.Node != "" && opts.Node != node {
		return nil, fmt.Errorf("audit: the audit log of %s is %s; it cannot become %s%s (a log's origin never changes)", dataDir, signer.Name(), OriginPrefix, opts.Node)
	}
	path, err := dbPath(dataDir)
	if err != nil {
		return nil, err
	}
	if err := createFile(path); err != nil {
		return nil, err
	}
	w, err := openWriter(ctx, path, signer, opts.Now())
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, path, opts.ReadConns)
	if err != nil {
		w.close()
		return nil, err
	}
	st.sealer = opts.Sealer
	l := &Log{
		opts: opts, dir: dataDir, log: opts.Logger, st: st, signer: signer, vkey: vkey, verif: verif, node: node,
		w:       w,
		queue:   make(chan *request, opts.QueueSize),
		ctl:     make(chan func()),
		idx:     make(chan *indexBatch, indexQueue),
		ictl:    make(chan func()),
		kick:    make(chan struct{}, 1),
		idxDone: make(chan struct{}),
		runDone: make(chan struct{}),
		notify:  make(chan struct{}),
	}
	l.runnable[0].Name = "/sched/goroutines/runnable:goroutines"
	if err := l.recover(ctx); err != nil {
		st.close()
		w.close()
		return nil, err
	}
	bgCtx, stop := context.WithCancel(context.Background())
	l.bgStop = stop
	if opts.WitnessFile != "" || opts.WitnessURL != "" {
		l.witness = newWitness(opts, l.log)
		l.witness.send(l.latest.Load())
		l.goBackground(func() { l.witness.run(bgCtx) })
	}
	if len(opts.Witnesses) > 0 {
		c, err := newCosigner(l, dataDir, opts, l.log)
		if err != nil {
			l.bgStop()
			l.bg.Wait()
			st.close()
			w.close()
			return nil, err
		}
		l.cosign = c
		c.send(l.latest.Load())
		l.goBackground(func() { c.run(bgCtx) })
	}
	if opts.Syslog != nil {
		f, err := newForwarder(l, *opts.Syslog)
		if err != nil {
			l.bgStop()
			l.bg.Wait()
			st.close()
			w.close()
			return nil, err
		}
		l.goBackground(func() { f.run(bgCtx) })
	}
	l.goBackground(func() { l.walCheckpoints(bgCtx) })
	go l.index()
	go func() {
		defer close(l.runDone)
		l.run()
	}()
	return l, nil
}

func (l *Log) goBackground(f func()) {
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		f()
	}()
}

// createFile makes sure path exists with mode 0600 before SQLite opens it.
func createFile(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("audit: data directory %s does not exist", dir)
	case err != nil:
		return fmt.Errorf("audit: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("audit: %s is not a directory", dir)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return f.Close()
}

// load reads the tree state, checks the entries written since the latest
// checkpoint, and sets the writer's state.
func (l *Log) load(ctx context.Context) error {
	size, err := l.st.size(ctx)
	if err != nil {
		return fmt.Errorf("audit: read log size: %w", err)
	}
	sc, err := l.st.latestCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("audit: read checkpoint: %w", err)
	}
	if sc == nil {
		return fmt.Errorf("%w: no checkpoint at all (run phigate audit verify)", ErrTampered)
	}
	cp, err := ParseCheckpoint(sc.note, l.verif)
	if err != nil || cp.Size != sc.size {
		return fmt.Errorf("%w: the latest checkpoint (size %d) is not signed by this log's key (run phigate audit verify)", ErrTampered, sc.size)
	}
	cp.Time = sc.time
	if cp.Size > size {
		return fmt.Errorf("%w: the signed checkpoint covers %d entries but only %d remain (run phigate audit verify)", ErrTampered, cp.Size, size)
	}
	rng, err := l.st.rangeAt(ctx, cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(rootOf(rng), cp.Root) {
		return fmt.Errorf("%w: the stored tree does not match the latest signed checkpoint (run phigate audit verify)", ErrTampered)
	}
	// recompute the entries after the checkpoint
	var lastTime int64
	if cp.Size > 0 {
		if lastTime, err = l.st.entryTime(ctx, cp.Size-1); err != nil {
			return err
		}
	}
	rows, err := l.st.rdb.QueryContext(ctx, "SELECT seq, time, token_id, subject, hashes, body FROM entries WHERE seq >= ? ORDER BY seq", int64(cp.Size))
	if err != nil {
		return err
	}
	defer rows.Close()
	next := cp.Size
	var r dbRow
	rc := newRowChecker(rng, nil, nil)
	for rows.Next() {
		if err := rows.Scan(&r.seq, &r.t, &r.tokenID, &r.subject, &r.hashes, &r.body); err != nil {
			return err
		}
		if p := rc.check(&r); p != nil {
			return fmt.Errorf("%w: %s (run phigate audit verify)", ErrTampered, p.Error())
		}
		if r.t < lastTime {
			return fmt.Errorf("%w: entry %d: its time goes back (run phigate audit verify)", ErrTampered, next)
		}
		next++
		lastTime = r.t
	}
	if err := rows.Err(); err != nil {
		return err
	}
	tiles, err := l.st.loadTiles(ctx, next)
	if err != nil {
		return err
	}
	w := l.w
	w.size, w.rng, w.lastTime, w.cp, w.tiles = next, rng, lastTime, cp, tiles
	l.latest.Store(cp)
	return nil
}

// recover loads the tree state, replays the journal into the database,
// signs a checkpoint covering every entry when the latest does not, syncs
// the database, and opens the journal for writing.
func (l *Log) recover(ctx context.Context) error {
	if err := l.load(ctx); err != nil {
		return err
	}
	n, err := l.replay()
	if err != nil {
		return err
	}
	// the journal's slots are overwritten from now on: what they hold must
	// be durable in the database first, including what the last run
	// committed there without a sync
	w := l.w
	if w.size > w.cp.Size {
		err = l.checkpointSync()
	} else {
		err = w.sync()
	}
	if err != nil {
		return fmt.Errorf("audit: open: %w", err)
	}
	if n > 0 {
		l.log.Warn("audit: entries replayed from the journal (the last run did not close the log)", "entries", n, "size", w.size)
	}
	if w.j, err = openJournal(l.dir, l.opts.JournalSlotSize); err != nil {
		return err
	}
	l.committed.Store(w.size)
	l.durable.Store(w.size)
	l.synced.Store(w.size)
	return nil
}

// replay appends to the database the entries (and checkpoints) of the
// journal that it lacks, checking each against what the writer journaled
// with it, and returns how many entries it added.
func (l *Log) replay() (int, error) {
	w := l.w
	frames, err := readJournal(l.dir, w.size)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range frames {
		if len(f.rows) > 0 && f.t < w.lastTime {
			return n, fmt.Errorf("%w: journal entry %d: its time goes back (run phigate audit verify)", ErrTampered, f.first)
		}
		var tiles []tileRow
		for i := range f.rows {
			r := &f.rows[i]
			e, err := UnmarshalEntry(r.body)
			if err != nil || e.Seq != r.seq || e.Time.UnixNano() != r.t || e.Actor.TokenID != r.tokenID || e.Actor.Subject != r.subject {
				return n, fmt.Errorf("%w: journal entry %d does not match its frame (run phigate audit verify)", ErrTampered, r.seq)
			}
			r.hashes = w.appendLeaf(w.rng, r.seq, r.body, &tiles)
		}
		var cps []*Checkpoint
		if f.cpNote != nil {
			cp, err := ParseCheckpoint(f.cpNote, l.verif)
			if err != nil || cp.Size != w.rng.End() || !bytes.Equal(cp.Root, rootOf(w.rng)) {
				return n, fmt.Errorf("%w: the journal's checkpoint at %d does not match its entries (run phigate audit verify)", ErrTampered, w.rng.End())
			}
			cp.Time = timeOf(f.cpTime)
			if cp.Size > w.cp.Size {
				cps = append(cps, cp)
			}
		}
		if err := w.write(f.rows, f.index, tiles, cps); err != nil {
			return n, fmt.Errorf("audit: replaying the journal: %w", err)
		}
		w.size = w.rng.End()
		if len(f.rows) > 0 {
			w.lastTime = f.t
		}
		if len(cps) > 0 {
			w.cp = cps[0]
			l.latest.Store(w.cp)
		}
		n += len(f.rows)
	}
	return n, nil
}

// Append adds e to the log and returns its sequence number. It MUST NOT
// return nil until the entry is durably committed (in a journal frame that
// has been fsync'd; see writer.go). Concurrent appends share one frame and
// one fsync (group commit).
//
// Append never blocks indefinitely: it fails at once with ErrPushback when
// too many appends are waiting, with ErrUnavailable while the log cannot be
// written (see Ready), and with ErrUnknownOutcome (or ctx's error, when
// the entry had not been taken yet) when ctx ends or AppendTimeout passes
// first. Any error means the caller must treat its action as not audited.
//
// Append copies e: the caller may reuse it. On success it sets e.Seq,
// e.Time and e.Node to what was recorded; strings over their limits were
// cut and anything that looks like a token secret was redacted (see
// Entry).
func (l *Log) Append(ctx context.Context, e *Entry) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("audit: append: %w", err)
	}
	if o := l.opts.Observer; o != nil {
		start := l.opts.Now()
		defer func() { o.ObserveAppend(l.opts.Now().Sub(start)) }()
	}
	c, r, err := l.prepare(e, true)
	if err != nil {
		return 0, err
	}
	if err := l.enqueue(r); err != nil {
		return 0, err
	}
	timer := time.NewTimer(l.opts.AppendTimeout)
	defer timer.Stop()
	var res result
	select {
	case res = <-r.done:
	case <-ctx.Done():
		if res, ok := l.giveUp(r); !ok {
			return 0, fmt.Errorf("audit: append: %w", ctx.Err())
		} else if res.err == nil {
			return l.accepted(e, c, res), nil
		}
		return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-timer.C:
		if res, ok := l.giveUp(r); !ok {
			return 0, fmt.Errorf("%w: not taken by the writer within %v", ErrUnavailable, l.opts.AppendTimeout)
		} else if res.err == nil {
			return l.accepted(e, c, res), nil
		}
		return 0, fmt.Errorf("%w: no commit within %v", ErrUnknownOutcome, l.opts.AppendTimeout)
	}
	if res.err != nil {
		return 0, res.err
	}
	return l.accepted(e, c, res), nil
}

// AppendAsync queues e to be appended and returns without waiting: the
// entry is committed with the next group commit, and a failure to commit
// it is logged by the log itself (Options.Logger). It fails at once, like
// Append, when e is invalid, the queue is full or the log cannot be
// written. It is for records that must not hold their caller up (the
// gateway's completions, which follow a grant already durable).
func (l *Log) AppendAsync(e *Entry) error {
	_, r, err := l.prepare(e, false)
	if err != nil {
		return err
	}
	return l.enqueue(r)
}

// prepare checks and encodes a copy of e for the writer.
func (l *Log) prepare(e *Entry, wait bool) (*Entry, *request, error) {
	if err := l.writable(); err != nil {
		return nil, nil, err
	}
	c := *e
	c.Before = bytes.Clone(e.Before)
	c.After = bytes.Clone(e.After)
	if c.Node == "" {
		c.Node = l.node
	}
	c.Time = l.opts.Now() // a placeholder; the writer sets the real time
	if err := c.normalize(); err != nil {
		return nil, nil, err
	}
	if err := c.encodable(); err != nil {
		return nil, nil, err
	}
	c.Sealed = nil // only the writer seals
	r := &request{tokenID: c.Actor.TokenID, subject: c.Actor.Subject}
	if wait {
		r.done = make(chan result, 1)
	}
	if l.opts.Sealer != nil && !c.phiEmpty() {
		// the PHI fields go to the writer apart, to be sealed under the
		// entry's seq; the caller gets c with them in the clear
		r.index = indexTags(l.opts.Sealer, &c)
		pc := c
		r.phi = pc.takePHI()
		r.tail = appendTail(make([]byte, 0, 256), &pc)
	} else {
		r.tail = appendTail(make([]byte, 0, 256), &c)
	}
	r.trailer = appendTrailer(nil, &c)
	if len(r.tail)+len(r.phi)+len(r.trailer)+sealOverhead > MaxEntrySize {
		return nil, nil, fmt.Errorf("%w: entry is over %d bytes", ErrInvalidEntry, MaxEntrySize)
	}
	return &c, r, nil
}

// giveUp withdraws r if the writer has not taken it (ok false), or returns
// its result if it arrived meanwhile (ok true, err nil), or reports that
// the outcome is unknown (ok true, err set).
func (l *Log) giveUp(r *request) (result, bool) {
	select {
	case res := <-r.done:
		return res, true
	default:
	}
	if r.state.CompareAndSwap(reqPending, reqWithdrawn) {
		return result{}, false
	}
	return result{err: ErrUnknownOutcome}, true
}

func (l *Log) accepted(e, c *Entry, res result) uint64 {
	*e = *c
	e.Seq, e.Time = res.seq, time.Unix(0, res.t).UTC()
	return res.seq
}

// enqueue hands r to the writer without waiting.
func (l *Log) enqueue(r *request) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.queue <- r:
		return nil
	default:
		return ErrPushback
	}
}

// writable returns why appends are refused right now, or nil.
func (l *Log) writable() error {
	if l.isClosed.Load() {
		return ErrClosed
	}
	if f := l.failure.Load(); f != nil {
		return fmt.Errorf("%w since %s: %w", ErrUnavailable, f.since.UTC().Format(time.RFC3339), f.err)
	}
	for _, since := range []int64{l.writeStart.Load(), l.syncStart.Load()} {
		if since == 0 {
			continue
		}
		if d := time.Since(time.Unix(0, since)); d > l.opts.StallTimeout {
			return fmt.Errorf("%w: a commit has been pending for %v (storage stalled?)", ErrUnavailable, d.Round(time.Millisecond))
		}
	}
	return nil
}

// Ready reports whether the log accepts appends: nil, or why not (closed,
// a write failure that a probe has not yet seen fixed, a stalled commit).
func (l *Log) Ready() error { return l.writable() }

// Close stops accepting appends, commits those already accepted, signs a
// final checkpoint and closes the database. Later calls return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.isClosed.Store(true)
	close(l.queue)
	l.mu.Unlock()
	<-l.runDone
	l.bgStop()
	l.bg.Wait()
	l.notifyAll()
	return errors.Join(l.st.close(), l.w.close())
}

// PublicKey returns the note verifier key of the log
// ("phigate/<node>+<hash>+<key>"): what an auditor needs, and all.
func (l *Log) PublicKey() string { return l.vkey }

// Origin returns the log's origin, phigate/<node>.
func (l *Log) Origin() string { return l.signer.Name() }

// Size returns the number of entries durably committed (acknowledged).
func (l *Log) Size() uint64 { return l.durable.Load() }

// Checkpoint returns the latest signed checkpoint. It is at most
// CheckpointInterval behind the entries (fresh forces a new one covering
// every entry committed so far).
func (l *Log) Checkpoint(ctx context.Context, fresh bool) (*Checkpoint, error) {
	if cp := l.latest.Load(); !fresh || cp.Size >= l.durable.Load() {
		return cp, nil
	}
	if err := l.control(ctx, l.checkpointAsync); err != nil {
		return nil, err
	}
	return l.latest.Load(), nil
}

// control has the writer goroutine run f, and waits for the outcome f
// reports on done.
func (l *Log) control(ctx context.Context, f func(done chan error) error) error {
	return runOn(ctx, l.ctl, l.runDone, func(done chan error) { f(done) })
}

// runOn has the goroutine serving ch (until ended is closed) run f, and
// waits for the outcome f reports on done.
func runOn(ctx context.Context, ch chan func(), ended chan struct{}, f func(done chan error)) error {
	done := make(chan error, 1)
	select {
	case ch <- func() { f(done) }:
	case <-ended:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Commits counts the fsyncs that made entries durable (each covers
	// every transaction committed since the previous one).
	Commits uint64
	// Entries counts the entries made durable.
	Entries uint64
	// LargestBatch is the most entries one fsync made durable.
	LargestBatch uint64
}

// Stats returns the writer's counters (Entries/Commits is the mean number
// of entries per fsync).
func (l *Log) Stats() Stats {
	return Stats{Commits: l.stats.commits.Load(), Entries: l.stats.entries.Load(), LargestBatch: l.stats.largest.Load()}
}

// waitCommitted blocks until more than n entries are indexed, the log
// closes or ctx ends.
func (l *Log) waitCommitted(ctx context.Context, n uint64) error {
	for {
		ch := l.notified()
		if l.committed.Load() > n {
			return nil
		}
		if l.isClosed.Load() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// visible returns the size readers see, once every entry acknowledged
// before the call is indexed (read your writes). While the database cannot
// be written it returns what is indexed without waiting.
func (l *Log) visible(ctx context.Context) (uint64, error) {
	want := l.durable.Load()
	for {
		ch := l.notified()
		c := l.committed.Load()
		if c >= want || l.failure.Load() != nil {
			return c, nil
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
		if l.isClosed.Load() {
			return 0, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// notified returns the channel closed by the next notifyAll.
func (l *Log) notified() chan struct{} {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	return l.notify
}

// indexControl runs f on the indexer goroutine (tests).
func (l *Log) indexControl(ctx context.Context, f func() error) error {
	return runOn(ctx, l.ictl, l.idxDone, func(done chan error) { done <- f() })
}

func (l *Log) notifyAll() {
	l.notifyMu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.notifyMu.Unlock()
}

// walCheckpoints copies the WAL into the database file in the background,
// once it holds more than walCheckpointSize. The writer connection never
// does it (but as a safety net at 80 MB): a checkpoint inside a commit adds
// its writes and fsyncs to an append's latency, and fewer, larger
// checkpoints disturb the appends' fsyncs less often.
func (l *Log) walCheckpoints(ctx context.Context) {
	db, err := sql.Open("sqlite", dsn(l.st.path, 5*time.Second))
	if err != nil {
		l.log.Warn("audit: WAL checkpointer not started", "err", err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fi, err := os.Stat(l.st.path + "-wal")
			if err != nil || fi.Size() < walCheckpointSize {
				continue
			}
			if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil && ctx.Err() == nil {
				l.log.Warn("audit: WAL checkpoint failed", "err", err)
			}
		}
	}
}

// walCheckpointSize: see walCheckpoints.
const walCheckpointSize = 16 << 20
