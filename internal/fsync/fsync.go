// Package fsync makes file data durable without holding one of the Go
// runtime's processors while the disk works.
//
// A goroutine blocked in fdatasync(2) keeps its P (one of GOMAXPROCS)
// until the runtime's monitor notices and hands it off, which takes from
// 20 µs to 10 ms depending on how busy the monitor has been. Goroutines
// queued on that P wait meanwhile. With two group-commit loops syncing at
// once (the token store's WAL and the audit journal, on token creation),
// both Ps of a two-core machine sat in fdatasync while requests were
// ready to run: creation used 122-128% of two cores and reached 0.13-0.15
// of the bare baseline; with two extra Ps (GOMAXPROCS=4, a diagnostic) it
// reached 0.26-0.28 at 176%.
//
// When another sync already holds a P, or goroutines are queued for the
// Ps, a Syncer asks the kernel to run the fdatasync in its own worker (Linux
// AIO, IOCB_CMD_FDSYNC, Linux 4.18 and later) and waits for the completion
// on an eventfd through the runtime's network poller, the way a socket
// read waits: no thread and no P is held. Otherwise it calls fdatasync on
// its own thread, which is quicker when nobody needs the P. Where AIO is
// missing or refused (another OS, an old kernel, a seccomp profile, the
// aio-max-nr limit) a Syncer always calls fdatasync, as Datasync does. The
// durability is the same either way.
//
// The kernel runs an AIO fsync in a worker thread of the submitting CPU,
// which must wait for its turn on that CPU. When this process keeps every
// core busy, AIO syncs take milliseconds instead of a tenth of one. For a
// commit loop whose callers wait on every sync and whose commits cost
// little CPU (the audit journal), NewForLatency returns a Syncer that then
// goes back to fdatasync, unless another sync is in flight; a loop whose
// commits cost much CPU (the token store) gains from the bigger group
// commits that slow syncs bring, and uses New.
package fsync

import (
	"os"
	"syscall"
)

// Datasync flushes f's data (and the metadata needed to read it back) to
// stable storage with fdatasync(2), retrying on EINTR. It blocks the
// calling thread.
func Datasync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if cerr := sc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); cerr != nil {
		return cerr
	}
	return serr
}

// Dir makes the entries of directory dir durable (a file created, renamed
// or removed in it), with fsync(2) on the directory.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
