package bruteforce

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// sketchDepth is the number of rows of the sketch.
const sketchDepth = 4

// sketch is a count-min sketch of the failures of every source in the
// current window (windows aligned on Window), updated conservatively (only
// the smallest counters grow), so that an estimate is at least the true
// count and rarely more. Its size is fixed: sketchDepth × width uint16.
type sketch struct {
	seed  maphash.Seed
	width uint64
	rows  []uint16 // sketchDepth rows of width counters
	idx   int64    // the window counted
	win   int64    // its length, ns
}

func newSketch(width int, window time.Duration) *sketch {
	return &sketch{seed: maphash.MakeSeed(), width: uint64(width), rows: make([]uint16, sketchDepth*width), win: int64(window)}
}

// add counts one failure of k at now and returns the estimate of its
// failures in the window, this one included.
func (s *sketch) add(k netip.Prefix, now time.Time) int {
	idx := now.UnixNano() / s.win
	if now.UnixNano()%s.win < 0 {
		idx--
	}
	if idx != s.idx {
		clear(s.rows)
		s.idx = idx
	}
	h := maphash.Comparable(s.seed, k)
	h1, h2 := h&0xffffffff, h>>32|1
	var cells [sketchDepth]*uint16
	est := uint16(0xffff)
	for i := range uint64(sketchDepth) {
		c := &s.rows[i*s.width+(h1+i*h2)%s.width]
		cells[i] = c
		est = min(est, *c)
	}
	if est < 0xffff {
		est++
	}
	for _, c := range cells {
		if *c < est {
			*c = est
		}
	}
	return int(est)
}
