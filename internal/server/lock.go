package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockFile is the file whose lock says a process has the data directory
// open for writing.
const LockFile = "phigate.lock"

// lockDir takes an exclusive, non-blocking lock on dir's lock file, so that
// two processes never write one data directory at once: the audit log's
// Merkle state lives in the writing process, and a second writer would fork
// the tree. The lock goes with the process (the kernel drops it on exit,
// even on a crash).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the data directory %s is in use by another phigate process (a running server?); stop it first, or use the admin API", dir)
		}
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	return f, nil
}
