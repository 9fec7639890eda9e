package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/fsync"
)

// Recorder records the gateway's decisions.
//
// Record MUST NOT return nil until ev is durably stored (on a disk, after
// fsync, or acknowledged by a replicated log): the gateway forwards a
// request only after Record of its grant returned nil, and refuses it with
// 503 otherwise. Record may return before ev is durable only with an error;
// an error after ctx ends is allowed even if ev is later stored. Record must
// be safe for concurrent use and must not keep ev after it returns. An event
// never holds a token secret.
type Recorder interface {
	Record(ctx context.Context, ev *Event) error
}

// AsyncRecorder is an optional capability of a Recorder: RecordAsync
// queues ev for the same durable store without waiting. The gateway uses it
// for completion events, which follow the answer and must not delay it;
// grants and denials always go through Record.
type AsyncRecorder interface {
	RecordAsync(ev *Event)
}

// EventKind says what an Event records.
type EventKind string

// Event kinds.
const (
	// KindGrant: a request was allowed, before it is forwarded (or, for
	// forward auth, before the answer).
	KindGrant EventKind = "grant"
	// KindComplete: the upstream's answer to a granted request.
	KindComplete EventKind = "complete"
	// KindDeny: a request was refused, with its reason.
	KindDeny EventKind = "deny"
)

// Event is one decision of the gateway. Path, Query and Justification are
// as the client sent them, except that anything that may hold a phigate
// token secret ("phi_" and 16 or more base62 characters) is replaced by
// "phi_[REDACTED]".
type Event struct {
	Kind      EventKind `json:"kind"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	// Via is "proxy" for requests the gateway forwards, "authz" for
	// forward-auth decisions (nginx, Envoy, Traefik forward).
	Via string `json:"via"`
	// Public marks a request served without a token (the capability
	// statement): no token id, subject PublicSubject.
	Public   bool   `json:"public,omitempty"`
	TokenID  string `json:"token_id,omitempty"`
	Subject  string `json:"subject,omitempty"`
	SourceIP string `json:"source_ip,omitempty"`
	Method   string `json:"method"`
	Upstream string `json:"upstream,omitempty"`
	Path     string `json:"path"`
	Query    string `json:"query,omitempty"`
	// Page is, for a continuation (a next or previous page of a search),
	// the upstream's page fetched, below its base; Path and Query are then
	// the search it continues.
	Page string `json:"page,omitempty"`
	// Interaction is the FHIR interaction ("read", "search-type", ...,
	// "batch", "transaction") or "route" for http upstreams.
	Interaction string `json:"interaction,omitempty"`
	Resource    string `json:"resource,omitempty"`
	// Scope is the scope that granted the request (grant) or the one that
	// was needed (deny for insufficient_scope).
	Scope   string `json:"scope,omitempty"`
	Purpose string `json:"purpose,omitempty"`
	// Patient is the patient the token is bound to, or else the one
	// patient a FHIR request names (Patient/{id}, a compartment, patient=
	// or subject=Patient/ all naming one): see targetPatient.
	Patient string `json:"patient,omitempty"`
	// BreakGlass marks a request made under break-glass; Justification is
	// the X-Break-Glass text.
	BreakGlass    bool   `json:"break_glass,omitempty"`
	Justification string `json:"justification,omitempty"`
	// Reason is the reason code of a deny.
	Reason string `json:"reason,omitempty"`
	// Notes, on a completion, says what the gateway changed in or noticed
	// about the answer: "include_removed=N" (entries outside the token's
	// patient compartment removed), "foreign_links=N" (URLs to anywhere
	// but the upstream, left as they were), "not_rewritten" (a FHIR
	// answer that is not JSON, passed on as it was); space-separated.
	Notes string `json:"notes,omitempty"`
	// Status is the HTTP status answered (deny, complete).
	Status   int           `json:"status,omitempty"`
	BytesIn  int64         `json:"bytes_in,omitempty"`
	BytesOut int64         `json:"bytes_out,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// redact replaces every substring that may hold a token secret — "phi_"
// followed by at least 16 base62 characters, the whole run — by
// "phi_[REDACTED]". A full secret is 49 characters after "phi_"; shorter
// runs are redacted too, since part of a secret is part of its entropy.
func redact(s string) string {
	const prefix, minRun = "phi_", 16
	var b []byte
	start, i := 0, 0
	for {
		k := strings.Index(s[i:], prefix)
		if k < 0 {
			break
		}
		k += i
		j := k + len(prefix)
		for j < len(s) && isBase62(s[j]) && !strings.HasPrefix(s[j:], prefix) {
			j++
		}
		if j-k-len(prefix) >= minRun {
			b = append(b, s[start:k]...)
			b = append(b, "phi_[REDACTED]"...)
			start = j
			i = j
		} else {
			i = k + 1
		}
	}
	if b == nil {
		return s
	}
	return string(append(b, s[start:]...))
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// ErrRecorderClosed is returned by Record after Close.
var ErrRecorderClosed = errors.New("gateway: recorder closed")

// FileRecorder appends events to a file, one JSON object per line (JSONL),
// durably: Record returns nil only after the line is written and the file
// fsynced. It is the stand-in for the audit log.
//
// Group commit: concurrent Records share one write and one fsync. The first
// Record to find no write in progress leads: it writes and syncs every
// event queued so far, its own included, while later Records queue for the
// next batch; when it is done, one of those leads the next batch. A lone
// client thus pays one fsync and no hand-off between goroutines. Under
// concurrent load a leader first waits, at most commitWindow, for a fill
// goal that follows the load (fillGoal): an fsync costs CPU as well as
// time, and fewer, fuller batches leave more of both to the requests.
//
// A failed write or fsync makes the recorder fail every later Record: after
// an fsync error the kernel may have dropped the data, and the file's tail
// is unknown, so the gateway stops forwarding (fail closed) until an
// operator restarts it. So does finding, after a batch, that the file at
// its path is no longer the one it writes (removed, or rotated away).
type FileRecorder struct {
	f    *os.File
	path string

	mu       sync.Mutex
	cur      *batch
	leading  bool // a batch is being written
	closed   bool
	failed   error
	timerSet bool // a flush of RecordAsync events is scheduled

	arrive       chan struct{} // a Record queued behind the leader
	concurrentAt atomic.Int64  // unix ns when two Records last waited at once
	goal         atomic.Int64  // fill goal under concurrent load

	syncs atomic.Int64 // fsyncs done (for tests)
}

type batch struct {
	buf     []byte
	n       int // events
	waiters int // Records waiting for this batch
	done    chan struct{}
	lead    chan struct{} // closed when this batch needs a leader
	err     error
}

func newBatch() *batch { return &batch{done: make(chan struct{}), lead: make(chan struct{})} }

// NewFileRecorder opens (creating, mode 0600) the append-only file at path.
// If the file ends in a torn line (a crash mid write), a newline is added
// first so that every later line parses.
func NewFileRecorder(path string) (*FileRecorder, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("gateway: recorder: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gateway: recorder: %w", err)
	}
	if err := repairTail(path, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("gateway: recorder: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// make the new file's entry durable: without it a crash could
		// lose the file with every record acknowledged in it
		if err := fsync.Dir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("gateway: recorder: %w", err)
		}
	}
	return &FileRecorder{f: f, path: path, cur: newBatch(), arrive: make(chan struct{}, 1)}, nil
}

// stillThere reports an error when the recorder's file is no longer the
// one at its path (removed, or replaced by a rotation): records written to
// it would be lost with it, so the recorder fails closed.
func (r *FileRecorder) stillThere() error {
	open, err := r.f.Stat()
	if err != nil {
		return err
	}
	named, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("%s is gone: %w", r.path, err)
	}
	if !os.SameFile(open, named) {
		return fmt.Errorf("%s is another file than the one opened (rotated?): restart to record in the new one", r.path)
	}
	return nil
}

func repairTail(path string, w *os.File) error {
	rf, err := os.Open(path)
	if err != nil {
		return err
	}
	defer rf.Close()
	st, err := rf.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	var last [1]byte
	if _, err := rf.ReadAt(last[:], st.Size()-1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	if _, err := w.Write([]byte{'\n'}); err != nil {
		return err
	}
	return w.Sync()
}

// Record implements Recorder.
func (r *FileRecorder) Record(ctx context.Context, ev *Event) error {
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return ErrRecorderClosed
	case r.failed != nil:
		r.mu.Unlock()
		return r.failed
	}
	b := r.cur
	b.buf = append(ev.AppendJSON(b.buf), '\n')
	b.n++
	b.waiters++
	if b.waiters == 2 {
		r.concurrentAt.Store(time.Now().UnixNano())
	}
	if !r.leading {
		r.leading = true
		r.mu.Unlock()
		r.leadBatch()
		return b.err
	}
	r.mu.Unlock()
	select {
	case r.arrive <- struct{}{}:
	default:
	}
	lead := b.lead
	for {
		select {
		case <-b.done:
			return b.err
		case <-lead:
			lead = nil
			r.mu.Lock()
			if !r.leading && r.cur == b {
				r.leading = true
				r.mu.Unlock()
				r.leadBatch()
				return b.err
			}
			r.mu.Unlock()
		case <-ctx.Done():
			return fmt.Errorf("gateway: recorder: %w", context.Cause(ctx))
		}
	}
}

// Under concurrent load a leader waits up to commitWindow for its fill
// goal, which is at most commitTarget.
const (
	commitWindow = 2 * time.Millisecond
	commitTarget = 32
)

// fillGoal is how many Records a leader waits for before it writes: 1
// (no wait) unless two Records waited at once within the last second; then
// the goal follows the load: it grows when a batch held more Records than
// its goal (more were coming than waited for), and drops to what came when
// the window closed first.
func (r *FileRecorder) fillGoal() int {
	if time.Since(time.Unix(0, r.concurrentAt.Load())) >= time.Second {
		return 1
	}
	return int(min(max(r.goal.Load(), 2), commitTarget))
}

func (r *FileRecorder) adaptGoal(goal, got int, reached bool) {
	switch {
	case goal <= 1:
	case !reached:
		r.goal.Store(int64(max(got, 2)))
	case got > goal:
		r.goal.Store(int64(min(got+got/2, commitTarget)))
	}
}

func (r *FileRecorder) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.waiters
}

// leadBatch writes and syncs the current batch; the caller set r.leading.
// It then hands the lead to the next batch's Records, if any wait.
func (r *FileRecorder) leadBatch() {
	goal := r.fillGoal()
	reached := true
	if goal > 1 {
		// concurrent load: let the batch fill (see FileRecorder)
		timer := time.NewTimer(commitWindow)
	fill:
		for r.waiting() < goal {
			select {
			case <-r.arrive:
			case <-timer.C:
				reached = false
				break fill
			}
		}
		timer.Stop()
	}
	r.mu.Lock()
	b := r.cur
	r.cur = newBatch()
	failed := r.failed
	r.mu.Unlock()
	r.adaptGoal(goal, b.waiters, reached)

	err := failed
	if err == nil && b.n > 0 {
		if _, err = r.f.Write(b.buf); err == nil {
			err = r.f.Sync()
			r.syncs.Add(1)
		}
		if err == nil {
			err = r.stillThere()
		}
		if err != nil {
			err = fmt.Errorf("gateway: recorder: %w", err)
		}
	}
	b.err = err
	close(b.done)

	r.mu.Lock()
	if err != nil && r.failed == nil {
		r.failed = err
	}
	r.leading = false
	next := r.cur
	switch {
	case next.waiters > 0:
		close(next.lead)
	case next.n > 0 && !r.timerSet && !r.closed:
		r.timerSet = true
		time.AfterFunc(asyncDelay, r.flushAsync)
	}
	r.mu.Unlock()
}

// asyncDelay bounds how long an event queued by RecordAsync waits for a
// Record to carry it to disk before it is synced on its own.
const asyncDelay = 100 * time.Millisecond

// RecordAsync implements AsyncRecorder: ev is written and synced with the
// next batch a Record leads, or within asyncDelay when none does, so that
// completions cost no fsync of their own under load. A failure shows in
// the Records that follow.
func (r *FileRecorder) RecordAsync(ev *Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.failed != nil {
		return
	}
	r.cur.buf = append(ev.AppendJSON(r.cur.buf), '\n')
	r.cur.n++
	if !r.timerSet {
		r.timerSet = true
		time.AfterFunc(asyncDelay, r.flushAsync)
	}
}

func (r *FileRecorder) flushAsync() {
	r.mu.Lock()
	r.timerSet = false
	if r.leading || r.cur.n == 0 {
		r.mu.Unlock() // the leader will see the events and re-arm the timer
		return
	}
	r.leading = true
	r.mu.Unlock()
	r.leadBatch()
}

// Close writes what is queued, then closes the file. Records after Close
// fail with ErrRecorderClosed.
func (r *FileRecorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for r.leading {
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
		r.mu.Lock()
	}
	r.leading = true
	r.mu.Unlock()
	r.leadBatch()
	return r.f.Close()
}
