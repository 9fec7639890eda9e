package monitor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// SnapshotKey is the key the monitor's snapshot is kept under in its
// SnapshotStore.
const SnapshotKey = "monitor.baselines.v1"

// ErrSnapshot is returned by Restore for a snapshot that is not one.
var ErrSnapshot = errors.New("monitor: malformed snapshot")

// Snapshot encoding (version 1), all integers little-endian or unsigned
// varints (uv):
//
//	"PGM1"                      magic and version
//	uv n                        number of tokens (at most MaxTokens are read)
//	n times:
//	  uv len, id                token id (1..255 bytes)
//	  uv len, subject           (0..1024 bytes)
//	  int64 first               unix ns of its first observation
//	  byte flags                bit 0: roaming
//	  byte np                   learned networks (0..16), then np times:
//	    byte 4 + 3 bytes        an IPv4 /24, or
//	    byte 6 + 8 bytes        an IPv6 /64
//	  uint32 hours              learned hours (bits 0..23)
//	  4 × float64               1 s mean, variance; 10 s mean, variance
//	  byte maxEver              most distinct sources in a sharing window
//	uv m                        number of subjects (at most the table's size are kept)
//	m times:
//	  uint64 key                FNV-1a 64 of the subject, bit 0 set
//	  int64 first, last         unix ns of its first grant, of its last use
//	  uint32 hours              learned hours (bits 0..23)
//
// Windows in progress, denial bursts and cooldowns are not kept: after a
// restart they start empty, the baselines they are compared with do not.
const snapshotMagic = "PGM1"

const (
	maxIDLen      = 255
	maxSubjectLen = 1024
)

// Snapshot writes the learned baselines of every tracked token to the
// SnapshotStore (a no-op without one).
func (m *Monitor) Snapshot(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	blob := m.encode()
	if err := m.store.Put(ctx, SnapshotKey, blob); err != nil {
		return fmt.Errorf("monitor: snapshot: %w", err)
	}
	return nil
}

// Restore loads the last snapshot (nothing if there is none). Call it
// before serving: tokens already tracked are replaced by their snapshot.
// A malformed snapshot is an error (ErrSnapshot) and nothing is loaded.
func (m *Monitor) Restore(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	blob, err := m.store.Get(ctx, SnapshotKey)
	if err != nil {
		return fmt.Errorf("monitor: restore: %w", err)
	}
	if blob == nil {
		return nil
	}
	states, subjects, err := decodeSnapshot(blob, m.cfg.MaxTokens)
	if err != nil {
		return err
	}
	if m.subjects != nil {
		for _, sl := range subjects {
			m.subjects.put(sl)
		}
	}
	for _, st := range states {
		sh := m.shard(st.id)
		sh.mu.Lock()
		if old := sh.m[st.id]; old != nil {
			sh.unlink(old)
			delete(sh.m, st.id)
		}
		if len(sh.m) >= m.perCap && sh.tail != nil {
			old := sh.tail
			sh.unlink(old)
			delete(sh.m, old.id)
		}
		sh.m[st.id] = st
		sh.touch(st)
		sh.mu.Unlock()
	}
	return nil
}

func (m *Monitor) encode() []byte {
	var body []byte
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for st := sh.head; st != nil; st = st.next {
			body = appendState(body, st)
			n++
		}
		sh.mu.Unlock()
	}
	var subj []byte
	ns := 0
	if m.subjects != nil {
		m.subjects.each(func(sl subjectSlot) {
			subj = appendSubject(subj, sl)
			ns++
		})
	}
	b := make([]byte, 0, len(snapshotMagic)+2*binary.MaxVarintLen64+len(body)+len(subj))
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, body...)
	b = binary.AppendUvarint(b, uint64(ns))
	return append(b, subj...)
}

const subjectSize = 8 + 8 + 8 + 4

func appendSubject(b []byte, sl subjectSlot) []byte {
	b = binary.LittleEndian.AppendUint64(b, sl.key)
	b = binary.LittleEndian.AppendUint64(b, uint64(sl.first))
	b = binary.LittleEndian.AppendUint64(b, uint64(sl.last))
	return binary.LittleEndian.AppendUint32(b, sl.hours)
}

func appendState(b []byte, st *tokenState) []byte {
	id, subj := st.id, st.subject
	if len(id) > maxIDLen {
		id = id[:maxIDLen]
	}
	if len(subj) > maxSubjectLen {
		subj = subj[:maxSubjectLen]
	}
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(subj)))
	b = append(b, subj...)
	b = binary.LittleEndian.AppendUint64(b, uint64(st.first))
	var flags byte
	if st.roaming {
		flags |= 1
	}
	b = append(b, flags, st.nPrefix)
	for i := range st.nPrefix {
		p := st.prefixes[i]
		if p.v4 {
			b = append(b, 4)
			b = append(b, p.a[:3]...)
		} else {
			b = append(b, 6)
			b = append(b, p.a[:8]...)
		}
	}
	b = binary.LittleEndian.AppendUint32(b, st.hours)
	for _, x := range [4]float64{st.r1.mean, st.r1.varnc, st.r10.mean, st.r10.varnc} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return append(b, st.maxEver)
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) n(k int) []byte {
	if r.err || k < 0 || len(r.b) < k {
		r.err = true
		return nil
	}
	v := r.b[:k]
	r.b = r.b[k:]
	return v
}

func (r *reader) uv(limit uint64) uint64 {
	if r.err {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > limit {
		r.err = true
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) byte1() byte {
	if b := r.n(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) f64() float64 {
	b := r.n(8)
	if b == nil {
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(b))
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		r.err = true
	}
	return x
}

// decodeSnapshot parses a snapshot, keeping at most limit tokens and
// 100 × limit subjects.
func decodeSnapshot(b []byte, limit int) ([]*tokenState, []subjectSlot, error) {
	if len(b) < len(snapshotMagic) || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return nil, nil, ErrSnapshot
	}
	r := &reader{b: b[len(snapshotMagic):]}
	n := r.uv(math.MaxInt32)
	// each token takes at least 27 bytes: no count larger than the blob
	if r.err || n > uint64(len(r.b))/27 {
		return nil, nil, ErrSnapshot
	}
	states := make([]*tokenState, 0, min(int(n), limit))
	seen := make(map[string]bool, min(int(n), limit))
	for range n {
		st := &tokenState{}
		st.id = string(r.n(int(r.uv(maxIDLen))))
		st.subject = string(r.n(int(r.uv(maxSubjectLen))))
		if b := r.n(8); b != nil {
			st.first = int64(binary.LittleEndian.Uint64(b))
		}
		flags := r.byte1()
		st.roaming = flags&1 != 0
		st.nPrefix = r.byte1()
		if flags&^1 != 0 || st.nPrefix > maxPrefixes || st.id == "" {
			return nil, nil, ErrSnapshot
		}
		for i := range st.nPrefix {
			p := &st.prefixes[i]
			switch r.byte1() {
			case 4:
				p.v4 = true
				copy(p.a[:3], r.n(3))
			case 6:
				copy(p.a[:8], r.n(8))
			default:
				return nil, nil, ErrSnapshot
			}
		}
		if b := r.n(4); b != nil {
			st.hours = binary.LittleEndian.Uint32(b)
		}
		st.r1.mean, st.r1.varnc, st.r10.mean, st.r10.varnc = r.f64(), r.f64(), r.f64(), r.f64()
		st.maxEver = r.byte1()
		if r.err || st.hours>>24 != 0 || st.maxEver > maxSources || seen[st.id] {
			return nil, nil, ErrSnapshot
		}
		if st.subject != "" {
			st.subjectKey = subjectKey(st.subject)
		}
		seen[st.id] = true
		if len(states) < limit {
			states = append(states, st)
		}
	}
	ns := r.uv(math.MaxInt32)
	if r.err || ns > uint64(len(r.b))/subjectSize || uint64(len(r.b)) != ns*subjectSize {
		return nil, nil, ErrSnapshot
	}
	subjects := make([]subjectSlot, 0, min(int(ns), 100*limit))
	for range ns {
		b := r.n(subjectSize)
		sl := subjectSlot{key: binary.LittleEndian.Uint64(b), first: int64(binary.LittleEndian.Uint64(b[8:])),
			last: int64(binary.LittleEndian.Uint64(b[16:])), hours: binary.LittleEndian.Uint32(b[24:])}
		if sl.key&1 == 0 || sl.hours>>24 != 0 {
			return nil, nil, ErrSnapshot
		}
		if len(subjects) < cap(subjects) {
			subjects = append(subjects, sl)
		}
	}
	return states, subjects, nil
}
