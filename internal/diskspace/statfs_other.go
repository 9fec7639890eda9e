//go:build !unix

package diskspace

import "errors"

// Statfs is the Probe of a real filesystem; on this system it cannot
// measure, and the watermark then counts as low (fail closed) unless it
// is disabled.
type Statfs struct{}

// Space implements Probe.
func (Statfs) Space(path string) (avail, total uint64, err error) {
	return 0, 0, errors.New("diskspace: free space is not measured on this system")
}
