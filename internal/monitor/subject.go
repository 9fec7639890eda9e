package monitor

import (
	"sync"
	"time"
)

// The subjects' learned hours: a new token of a subject (a user's next
// session token, a service's new credential) is held to the hours its
// subject keeps while the token has not learned its own. The table is of
// fixed size (OffHours.MaxSubjects slots, allocated once), in 64 locked
// stripes; a subject hashes to two slots of its stripe and takes the one
// used least recently when neither is its own, so a crowd of new subjects
// makes the monitor forget old ones, never grow. A forgotten subject
// learns again, and while it learns it alerts on nothing.
type subjectTable struct {
	stripes [nShards]subjectStripe
}

type subjectStripe struct {
	mu    sync.Mutex
	slots []subjectSlot
}

type subjectSlot struct {
	key   uint64 // fnv-1a of the subject; 0: empty
	first int64  // unix ns of its first grant
	last  int64  // of its last use
	hours uint32 // bit h: used in hour h while learning
}

func newSubjectTable(n int) *subjectTable {
	if n <= 0 {
		return nil
	}
	per := max((n+nShards-1)/nShards, 2)
	st := &subjectTable{}
	for i := range st.stripes {
		st.stripes[i].slots = make([]subjectSlot, per)
	}
	return st
}

// subjectKey is the 64-bit FNV-1a hash of s (stable across restarts, so
// that snapshots keep it), never 0.
func subjectKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h | 1
}

func (t *subjectTable) stripe(key uint64) (*subjectStripe, int, int) {
	s := &t.stripes[key%nShards]
	n := uint64(len(s.slots))
	i, j := int((key>>6)%n), int((key>>35)%n)
	if i == j {
		j = (i + 1) % int(n)
	}
	return s, i, j
}

// hours returns the subject's learned hours once its learning is over
// (0 otherwise), and whether its learning is over.
func (t *subjectTable) hours(key uint64, now time.Time, learning time.Duration) (uint32, bool) {
	s, i, j := t.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range [2]int{i, j} {
		if sl := &s.slots[k]; sl.key == key {
			sl.last = now.UnixNano()
			if now.UnixNano()-sl.first < int64(learning) {
				return 0, false
			}
			return sl.hours, true
		}
	}
	return 0, false
}

// learn records a grant of the subject in hour h; it reports whether the
// subject's learning is over (then the caller need not tell it again).
func (t *subjectTable) learn(key uint64, h int, now time.Time, learning time.Duration) bool {
	ns := now.UnixNano()
	s, i, j := t.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := &s.slots[i]
	switch {
	case sl.key == key:
	case s.slots[j].key == key:
		sl = &s.slots[j]
	default:
		if s.slots[j].last < sl.last {
			sl = &s.slots[j]
		}
		*sl = subjectSlot{key: key, first: ns}
	}
	sl.last = ns
	if ns-sl.first >= int64(learning) {
		return true
	}
	sl.hours |= 1 << h
	return false
}

// put restores a slot (from a snapshot).
func (t *subjectTable) put(sl subjectSlot) {
	s, i, j := t.stripe(sl.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := i
	if s.slots[i].key != sl.key && (s.slots[j].key == sl.key || s.slots[j].last < s.slots[i].last) {
		k = j
	}
	s.slots[k] = sl
}

// each calls f with every slot in use.
func (t *subjectTable) each(f func(subjectSlot)) {
	for i := range t.stripes {
		s := &t.stripes[i]
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl.key != 0 {
				f(sl)
			}
		}
		s.mu.Unlock()
	}
}
