//go:build unix

package diskspace

import "syscall"

// Statfs is the Probe of a real filesystem (statfs(2)).
type Statfs struct{}

// Space implements Probe: Bavail (the blocks an unprivileged writer may
// use) and Blocks, in bytes.
func (Statfs) Space(path string) (avail, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}
