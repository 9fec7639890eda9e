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

	// Syslog, when set, streams every entry to a SIEM (RFC 5424 over TLS).
	Syslog *SyslogOptions

	// ReadConns is the number of read-only connections. 0 means 4.
	ReadConns int

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

	w *writer // used by the writer goroutine only, once Open returns

	queue    chan *request
	ctl      chan func()
	mu       sync.RWMutex // guards closed and the closing of queue
	closed   bool
	isClosed atomic.Bool
	runDone  chan struct{} // the writer goroutine has ended

	failure    atomic.Pointer[failure]
	writeStart atomic.Int64 // unix ns when the pending write began; 0 when idle
	syncStart  atomic.Int64 // unix ns when the pending fdatasync began; 0 when idle

	latest    atomic.Pointer[Checkpoint]
	committed atomic.Uint64 // entries durably committed (the size readers may see)
	notifyMu  sync.Mutex
	notify    chan struct{} // closed and replaced on every commit

	witness *witness
	bgStop  context.CancelFunc
	bg      sync.WaitGroup

	stats struct{ commits, entries, largest atomic.Uint64 }
}

type failure struct {
	err   error
	since time.Time
	fatal bool // no probe can lift it (a failed fdatasync): reopen
}

// request is one entry waiting for the writer.
type request struct {
	tail    []byte // the encoded fields from tagNode on
	phi     []byte // the fields to seal (Sealer), encoded; nil when none
	index   []int64
	tokenID string
	subject string
	state   atomic.Int32
	done    chan result // buffered: the writer never blocks on a caller that left
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
		runDone: make(chan struct{}),
		notify:  make(chan struct{}),
	}
	if err := l.load(ctx); err != nil {
		st.close()
		w.close()
		return nil, err
	}
	if l.w.size > l.w.cp.Size {
		if err := l.checkpointSync(); err != nil {
			st.close()
			w.close()
			return nil, err
		}
	}
	bgCtx, stop := context.WithCancel(context.Background())
	l.bgStop = stop
	if opts.WitnessFile != "" || opts.WitnessURL != "" {
		l.witness = newWitness(opts, l.log)
		l.witness.send(l.latest.Load())
		l.goBackground(func() { l.witness.run(bgCtx) })
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
	l.committed.Store(next)
	return nil
}

// Append adds e to the log and returns its sequence number. It MUST NOT
// return nil until the entry is durably committed (in a transaction whose
// COMMIT has been fsync'd). Concurrent appends share one transaction and one
// fsync (group commit).
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
	if err := l.writable(); err != nil {
		return 0, err
	}
	c := *e
	c.Before = bytes.Clone(e.Before)
	c.After = bytes.Clone(e.After)
	if c.Node == "" {
		c.Node = l.node
	}
	c.Time = l.opts.Now() // a placeholder; the writer sets the real time
	if err := c.normalize(); err != nil {
		return 0, err
	}
	if err := c.encodable(); err != nil {
		return 0, err
	}
	c.Sealed = nil // only the writer seals
	r := &request{tokenID: c.Actor.TokenID, subject: c.Actor.Subject, done: make(chan result, 1)}
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
	if len(r.tail)+len(r.phi)+sealOverhead > MaxEntrySize {
		return 0, fmt.Errorf("%w: entry is over %d bytes", ErrInvalidEntry, MaxEntrySize)
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
			return l.accepted(e, &c, res), nil
		}
		return 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	case <-timer.C:
		if res, ok := l.giveUp(r); !ok {
			return 0, fmt.Errorf("%w: not taken by the writer within %v", ErrUnavailable, l.opts.AppendTimeout)
		} else if res.err == nil {
			return l.accepted(e, &c, res), nil
		}
		return 0, fmt.Errorf("%w: no commit within %v", ErrUnknownOutcome, l.opts.AppendTimeout)
	}
	if res.err != nil {
		return 0, res.err
	}
	return l.accepted(e, &c, res), nil
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

// Size returns the number of entries durably committed.
func (l *Log) Size() uint64 { return l.committed.Load() }

// Checkpoint returns the latest signed checkpoint. It is at most
// CheckpointInterval behind the entries (fresh forces a new one covering
// every entry committed so far).
func (l *Log) Checkpoint(ctx context.Context, fresh bool) (*Checkpoint, error) {
	if cp := l.latest.Load(); !fresh || cp.Size >= l.committed.Load() {
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
	done := make(chan error, 1)
	select {
	case l.ctl <- func() { f(done) }:
	case <-l.runDone:
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

// waitCommitted blocks until more than n entries are committed, the log
// closes or ctx ends.
func (l *Log) waitCommitted(ctx context.Context, n uint64) error {
	for {
		l.notifyMu.Lock()
		ch := l.notify
		l.notifyMu.Unlock()
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
