// Package diskspace watches the free space of a filesystem against a
// low-space watermark, so that phigate refuses work before its disk is full
// rather than after, and takes it up again by itself when space returns.
//
// A Watermark samples a Probe at most once per Config.Interval, on a ticker
// (Run): Low, which the request path calls, reads the last sample and never
// makes a system call. Space is low when the bytes available to the process
// are below the smaller of Config.MinFreeBytes and Config.MinFreePercent of
// the filesystem's size (either set to 0 leaves only the other; both 0:
// never low). The smaller of the two, so that a large disk is not refused
// with hundreds of gigabytes free and a small one still keeps its share.
//
// A failing probe counts as low space (fail closed): phigate cannot tell
// whether it can still write.
package diskspace

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Probe reports the space of the filesystem holding a path.
//
// Space returns the bytes available to an unprivileged writer and the
// filesystem's size; an error when it cannot tell.
type Probe interface {
	Space(path string) (avail, total uint64, err error)
}

// Config is the watermark.
type Config struct {
	// MinFreeBytes: low below this many bytes available (0: no byte limit).
	MinFreeBytes uint64
	// MinFreePercent: low below this share of the filesystem (0..100; 0:
	// no share).
	MinFreePercent float64
	// Interval is how often the probe is sampled; > 0.
	Interval time.Duration
}

// Defaults: 1 GiB or 5 %, whichever is smaller, sampled every second.
const (
	DefaultMinFreeBytes   = 1 << 30
	DefaultMinFreePercent = 5
	DefaultInterval       = time.Second
)

// ErrLowSpace is the error of Low when space is below the watermark (or
// cannot be measured).
var ErrLowSpace = errors.New("low disk space")

// Watermark is the last sample of one path's filesystem against Config.
type Watermark struct {
	path     string
	cfg      Config
	probe    Probe
	state    atomic.Pointer[error] // nil: enough space
	onChange func(err error)
}

// New returns a Watermark over path's filesystem and takes a first sample.
// onChange, when set, is called (from Sample) each time the state
// changes, with the new one.
func New(path string, cfg Config, probe Probe, onChange func(err error)) (*Watermark, error) {
	if cfg.Interval <= 0 || cfg.MinFreePercent < 0 || cfg.MinFreePercent > 100 {
		return nil, fmt.Errorf("diskspace: invalid config (interval %v, percent %v)", cfg.Interval, cfg.MinFreePercent)
	}
	if probe == nil {
		return nil, errors.New("diskspace: no probe")
	}
	w := &Watermark{path: path, cfg: cfg, probe: probe, onChange: onChange}
	w.Sample()
	return w, nil
}

// Low returns nil when the last sample had enough space, else an error
// that wraps ErrLowSpace and says why. It makes no system call.
func (w *Watermark) Low() error {
	if p := w.state.Load(); p != nil {
		return *p
	}
	return nil
}

// Threshold is the watermark in bytes for a filesystem of total bytes.
func (c Config) Threshold(total uint64) uint64 {
	limit := c.MinFreeBytes
	if c.MinFreePercent > 0 {
		share := uint64(float64(total) * c.MinFreePercent / 100)
		if limit == 0 || share < limit {
			limit = share
		}
	}
	return limit
}

// Sample probes once and updates the state.
func (w *Watermark) Sample() {
	var next error
	avail, total, err := w.probe.Space(w.path)
	switch {
	case err != nil:
		next = fmt.Errorf("%w: cannot measure the free space of %s: %w", ErrLowSpace, w.path, err)
	case avail < w.cfg.Threshold(total):
		next = fmt.Errorf("%w: %s has %s free, below the watermark of %s: requests are refused until space is freed",
			ErrLowSpace, w.path, bytes(avail), bytes(w.cfg.Threshold(total)))
	}
	var prev error
	if p := w.state.Load(); p != nil {
		prev = *p
	}
	if next == nil {
		w.state.Store(nil)
	} else {
		w.state.Store(&next)
	}
	if w.onChange != nil && (prev == nil) != (next == nil) {
		w.onChange(next)
	}
}

// Run samples every Interval until ctx ends.
func (w *Watermark) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Sample()
		}
	}
}

func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Manual is a Probe whose answer is set by hand: tests use it to drive a
// Watermark (low space, space back, a failing probe).
type Manual struct {
	avail, total atomic.Uint64
	err          atomic.Pointer[error]
}

// Set makes Space report avail of total bytes, and no error.
func (m *Manual) Set(avail, total uint64) {
	m.avail.Store(avail)
	m.total.Store(total)
	m.err.Store(nil)
}

// Fail makes Space report err.
func (m *Manual) Fail(err error) { m.err.Store(&err) }

// Space implements Probe.
func (m *Manual) Space(string) (avail, total uint64, err error) {
	if p := m.err.Load(); p != nil {
		return 0, 0, *p
	}
	return m.avail.Load(), m.total.Load(), nil
}
