package audit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Observer is told how the log's writes go (Options.Observer).
type Observer interface {
	// ObserveAppend: one Append waited d, until its entry was durable
	// or it failed.
	ObserveAppend(d time.Duration)
	// ObserveCommit: one group commit (one fsync) made entries durable.
	ObserveCommit(entries int)
}

// DiskUsage returns the bytes of the log's journal files and of its
// database (with its WAL and shared-memory files), as the file system
// reports them now.
func (l *Log) DiskUsage() (journal, database int64, err error) {
	err = filepath.WalkDir(filepath.Join(l.dir, JournalDir), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			journal += info.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		info, err := os.Stat(filepath.Join(l.dir, DBFile+suffix))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		database += info.Size()
	}
	return journal, database, nil
}
