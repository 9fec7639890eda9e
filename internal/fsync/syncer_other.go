//go:build !linux || !(amd64 || arm64)

package fsync

import "os"

// Syncer is fdatasync where Linux AIO is not used (see the package
// documentation).
type Syncer struct {
	always bool // unused here (tests set it)
}

// New returns a Syncer.
func New() *Syncer { return &Syncer{} }

// NewForLatency returns a Syncer (see the Linux version).
func NewForLatency() *Syncer { return &Syncer{} }

func newSyncer(bool) *Syncer { return &Syncer{} }

// Async reports whether s syncs through AIO: never here.
func (*Syncer) Async() bool { return false }

// Datasync makes f's data durable with fdatasync.
func (*Syncer) Datasync(f *os.File) error { return Datasync(f) }

// Close does nothing.
func (*Syncer) Close() error { return nil }
