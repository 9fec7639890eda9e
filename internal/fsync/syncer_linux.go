//go:build linux && (amd64 || arm64)

package fsync

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// <linux/aio_abi.h>
const (
	iocbCmdFdsync = 3 // IOCB_CMD_FDSYNC
	iocbFlagResfd = 1 // IOCB_FLAG_RESFD: signal aio_resfd on completion
)

// iocb is struct iocb on a little-endian machine (amd64, arm64).
type iocb struct {
	data      uint64
	key       uint32
	rwFlags   int32
	opcode    uint16
	reqprio   int16
	fildes    uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resfd     uint32
}

// ioEvent is struct io_event.
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

// Syncer syncs files through Linux AIO; see the package documentation.
// Its methods may be called from several goroutines; they take turns.
type Syncer struct {
	mu      sync.Mutex
	ctx     uintptr  // aio_context_t; 0 once closed or never set up
	efd     *os.File // the eventfd, non-blocking: read through the poller
	efdNum  int      // its descriptor (efd.Fd would make it blocking)
	cb      iocb
	cbp     [1]*iocb
	ev      [1]ioEvent
	blocked bool // AIO is not used: Datasync from now on
	always  bool // AIO for every sync, however idle the process (tests)

	// latency: AIO is left alone while it is starved (NewForLatency);
	// blockingTime is how long fdatasync on the calling thread took
	// lately, aioSlow the share of recent AIO syncs that were slow
	// (noteAIO), skipped how many syncs went without AIO since it last
	// looked starved
	latency      bool
	blockingTime ewma
	aioSlow      float64
	skipped      int

	runnable [1]metrics.Sample
}

// New returns a Syncer, falling back to fdatasync when AIO cannot be set
// up here.
func New() *Syncer { return newSyncer(true) }

// NewForLatency returns a Syncer that also stops using AIO while AIO
// syncs are starved of CPU (aioStarved) and no other sync of this package
// is in flight, except for a probe now and then. It is for a commit loop
// whose commits cost little CPU and whose callers wait on nothing else
// (the audit journal under the gateway's grants: a write and an
// fdatasync). While another loop syncs too (token creation waits on the
// token store and the audit log), a quick journal sync would gain its
// callers nothing, and holding a P for it costs them. A loop whose
// commits are costly (the token store's SQLite transactions) uses New: a
// slow sync makes the next group commit bigger, and the CPU that saves
// goes to requests. Measured on two cores at 64 clients, alternating with
// New: the gateway 0.54-0.59 of the bare proxy against 0.49-0.55, at
// 185-188% CPU against 166-171%; token creation 0.28-0.31 against
// 0.25-0.29 (0.22-0.26 when the journal left AIO whatever else synced).
// The audit log's pure append benchmark (64 goroutines appending sealed
// entries) batches less: 44-55k entries/s against 52-57k.
func NewForLatency() *Syncer {
	s := newSyncer(true)
	s.latency = true
	return s
}

func newSyncer(useAIO bool) *Syncer {
	s := &Syncer{blocked: true}
	s.runnable[0].Name = "/sched/goroutines/runnable:goroutines"
	if !useAIO {
		return s
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return s
	}
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		unix.Close(fd)
		return s
	}
	s.ctx, s.efdNum, s.blocked = ctx, fd, false
	s.efd = os.NewFile(uintptr(fd), "fsync-eventfd")
	return s
}

// Async reports whether s syncs through AIO (false: fdatasync).
func (s *Syncer) Async() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.blocked
}

// Datasync makes f's data durable, like fdatasync(2), and returns its
// error.
func (s *Syncer) Datasync(f *os.File) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	aio := !s.blocked && (s.always || s.worthFreeing())
	syncsInFlight.Add(1)
	defer syncsInFlight.Add(-1)
	if !aio {
		blockingSyncs.Add(1)
		defer blockingSyncs.Add(-1)
		start := time.Now()
		err := Datasync(f)
		s.blockingTime.add(time.Since(start))
		return err
	}
	start := time.Now()
	err, refused, never := s.aioSync(f)
	if refused {
		// nothing was submitted: fdatasync this time, and from now on when
		// this kernel has no AIO at all
		s.blocked = never
		return Datasync(f)
	}
	s.noteAIO(time.Since(start))
	return err
}

// ewma is a moving average of sync durations (zero: none seen yet).
type ewma time.Duration

func (e *ewma) add(d time.Duration) {
	if *e == 0 {
		*e = ewma(d)
		return
	}
	*e += (ewma(d) - *e) / 4
}

// noteAIO records how long a sync through AIO took: slow when it took
// more than twice what fdatasync on the calling thread takes lately, plus
// aioSlack. Called with s.mu held.
func (s *Syncer) noteAIO(d time.Duration) {
	slow := 0.0
	if d > 2*time.Duration(s.blockingTime)+aioSlack {
		slow = 1
	}
	s.aioSlow += (slow - s.aioSlow) / 8
}

// aioStarved reports whether most syncs through AIO have lately been
// slow. The kernel runs an AIO fsync in a worker thread bound to the
// submitting CPU, which waits for its turn when this process keeps every
// core busy. Measured on two cores with the gateway at 64 clients, the
// median sync of the audit journal took 1.4-1.9 ms through AIO against
// 0.07-0.10 ms with fdatasync (see NewForLatency for what that cost the
// gateway). Called with s.mu held.
func (s *Syncer) aioStarved() bool { return s.aioSlow > 0.5 }

// aioSlack: see noteAIO. A healthy AIO round trip costs 30-80 µs more
// than fdatasync.
const aioSlack = 250 * time.Microsecond

// aioProbe: while AIO is starved, every aioProbe-th sync that would use it
// still does, so that aioSlow follows when the CPUs free up.
const aioProbe = 32

// aioSync submits one IOCB_CMD_FDSYNC of f and waits for it. refused
// reports that AIO would not take it (nothing is in flight then); never,
// that it never will here. EINVAL is a file without asynchronous fsync,
// or a kernel older than 4.18: fdatasync then, and AIO again next time.
func (s *Syncer) aioSync(f *os.File) (err error, refused, never bool) {
	sc, err := f.SyscallConn()
	if err != nil {
		return err, false, false
	}
	var submitErr unix.Errno
	if cerr := sc.Control(func(fd uintptr) {
		s.cb = iocb{opcode: iocbCmdFdsync, fildes: uint32(fd), flags: iocbFlagResfd, resfd: uint32(s.efdNum)}
		s.cbp[0] = &s.cb
		for {
			_, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, s.ctx, 1, uintptr(unsafe.Pointer(&s.cbp[0])))
			if e != unix.EINTR {
				submitErr = e
				return
			}
		}
	}); cerr != nil {
		return cerr, false, false
	}
	switch submitErr {
	case 0:
	case unix.EINVAL, unix.EAGAIN:
		return nil, true, false
	case unix.ENOSYS, unix.EPERM, unix.EOPNOTSUPP:
		return nil, true, true
	default:
		return fmt.Errorf("fsync: io_submit: %w", submitErr), false, false
	}
	var b [8]byte
	for {
		if _, rerr := s.efd.Read(b[:]); rerr != nil {
			// the sync is in flight: wait for it without the poller, so
			// that the kernel is done with s.cb before it is reused
			res, gerr := s.reap(true)
			if gerr != nil {
				return fmt.Errorf("fsync: waiting for the completion: %w (eventfd: %v)", gerr, rerr), false, false
			}
			return resultErr(res), false, false
		}
		res, gerr := s.reap(false)
		if errors.Is(gerr, errPending) {
			continue // woken before the completion was posted
		}
		if gerr != nil {
			return fmt.Errorf("fsync: io_getevents: %w", gerr), false, false
		}
		return resultErr(res), false, false
	}
}

var errPending = errors.New("no completion yet")

// reap collects the completion: without block, errPending when there is
// none yet.
func (s *Syncer) reap(block bool) (int64, error) {
	var zero unix.Timespec
	for {
		var n uintptr
		var e unix.Errno
		if block { // a nil timeout waits
			n, _, e = unix.Syscall6(unix.SYS_IO_GETEVENTS, s.ctx, 1, 1, uintptr(unsafe.Pointer(&s.ev[0])), 0, 0)
		} else {
			n, _, e = unix.Syscall6(unix.SYS_IO_GETEVENTS, s.ctx, 1, 1, uintptr(unsafe.Pointer(&s.ev[0])), uintptr(unsafe.Pointer(&zero)), 0)
		}
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, e
		case n == 0:
			return 0, errPending
		}
		return s.ev[0].res, nil
	}
}

func resultErr(res int64) error {
	if res < 0 {
		return fmt.Errorf("fsync: fdatasync: %w", unix.Errno(-res))
	}
	return nil
}

// blockingSyncs counts the goroutines in a fdatasync of this package
// that holds its P; syncsInFlight, those in any sync of a Syncer.
var blockingSyncs, syncsInFlight atomic.Int32

// worthFreeing reports whether this sync should leave its P to others:
// when another sync already holds one, or when goroutines are queued two
// deep for every P. Otherwise fdatasync on this thread is quicker: the AIO
// round trip through a kernel worker and the poller adds 30-80 µs that a
// request waits for. Measured on two cores, alternating with plain
// fdatasync:
//   - token creation at 64 clients: 0.26-0.35 of the baseline against
//     0.13-0.14 (AIO only while another sync holds a P: 0.16-0.17);
//   - the audit log's append latency at 2,000 entries/s, p50: 363-470 µs
//     against 369-475 µs (AIO as soon as every P had one goroutine
//     queued: 555-659 µs against 465-582 µs);
//   - the gateway at 64 clients and at one: unchanged (on that VM; on a
//     later, faster one the audit journal's AIO syncs were starved, hence
//     NewForLatency).
//
// A Syncer made by NewForLatency also declines while AIO is starved. One
// read of a runtime metric, about 60 ns. Called with s.mu held.
func (s *Syncer) worthFreeing() bool {
	if !s.wantsFreeing() {
		return false
	}
	if s.latency && s.aioStarved() && syncsInFlight.Load() == 0 {
		s.skipped++
		if s.skipped < aioProbe {
			return false
		}
	}
	s.skipped = 0
	return true
}

// wantsFreeing: see worthFreeing.
func (s *Syncer) wantsFreeing() bool {
	if blockingSyncs.Load() > 0 {
		return true
	}
	metrics.Read(s.runnable[:])
	v := s.runnable[0].Value
	return v.Kind() == metrics.KindUint64 && v.Uint64() >= uint64(2*runtime.GOMAXPROCS(0))
}

// Close releases the AIO context. Datasync still works afterwards, with
// fdatasync.
func (s *Syncer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == 0 {
		return nil
	}
	_, _, e := unix.Syscall(unix.SYS_IO_DESTROY, s.ctx, 0, 0)
	s.ctx, s.blocked = 0, true
	err := s.efd.Close()
	if e != 0 {
		return fmt.Errorf("fsync: io_destroy: %w", e)
	}
	return err
}
