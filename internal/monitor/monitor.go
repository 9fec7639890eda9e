package monitor

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/bruteforce"
)

// ErrConfig is returned by New for a Config out of range.
var ErrConfig = errors.New("monitor: invalid config")

// DefaultSketchWidth is BruteForceConfig.SketchWidth's default.
const DefaultSketchWidth = 1 << 17

// nShards is the number of independently locked parts of the token table.
const nShards = 64

// Limits of the per-token state (they bound its size).
const (
	maxPrefixes = 16 // learned networks
	maxDenials  = 32 // probing ring
	maxSources  = 32 // distinct sources counted exactly per sharing window
	nSeqs       = 8  // audit sequence numbers kept for evidence
	maxGap      = 256
)

// Monitor runs the detectors. Its methods are safe for concurrent use.
type Monitor struct {
	cfg   Config
	now   func() time.Time
	sink  Sink
	susp  Suspender
	store SnapshotStore
	log   *slog.Logger

	seed     maphash.Seed
	shards   [nShards]shard
	perCap   int
	guard    *bruteforce.Guard
	subjects *subjectTable // nil: off
	reasons  []string      // probing
	queue    chan finding
	dropped  atomic.Uint64
	raised   atomic.Uint64
}

type shard struct {
	mu         sync.Mutex
	m          map[string]*tokenState
	head, tail *tokenState // most and least recently used
	_          [40]byte    // keep shards on their own cache lines
}

// tokenState is what the monitor knows of one token. Its size is fixed
// (about 1 KiB with its map entry), whatever the traffic.
type tokenState struct {
	id         string
	prev, next *tokenState
	subject    string
	policy     *TokenPolicy

	first     int64 // unix ns of the first observation
	lastAlert [nDetectors]int64

	// new network
	prefixes [maxPrefixes]prefix
	nPrefix  uint8
	roaming  bool // more prefixes than MaxPrefixes while learning

	// off hours: bit h = used in hour h (in the policy's zone) while learning
	hours       uint32
	subjectKey  uint64 // of subject; 0: none
	subjectDone bool   // the subject's learning is over: stop telling it

	// rate spike
	r1, r10 rateWindow

	// probing
	denials  [maxDenials]int64
	denySeqs [maxDenials]uint64
	nDenials uint32

	// sharing
	swin     int64
	sset     [maxSources]uint32
	sn       uint8
	maxEver  uint8
	stripped bool

	seqs  [nSeqs]uint64 // the last audit sequence numbers
	nSeqs uint32
}

type prefix struct {
	a  [16]byte // the address, masked
	v4 bool
}

func (p prefix) netip() netip.Prefix {
	if p.v4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(p.a[:4])), 24)
	}
	return netip.PrefixFrom(netip.AddrFrom16(p.a), 64)
}

// networkOf is the /24 or /64 of a.
func networkOf(a netip.Addr) prefix {
	a = a.Unmap()
	var p prefix
	if a.Is4() {
		b := a.As4()
		p.v4 = true
		p.a[0], p.a[1], p.a[2] = b[0], b[1], b[2]
		return p
	}
	b := a.As16()
	copy(p.a[:8], b[:8])
	return p
}

// rateWindow is an EWMA of the requests per window.
type rateWindow struct {
	idx     int64 // the window being counted
	count   float64
	mean    float64
	varnc   float64
	tripped bool
	started bool
}

// finding is what a detector reports to Run. It is a value: sending it
// does not allocate.
type finding struct {
	det      detector
	action   Action
	at       time.Time
	tokenID  string
	subject  string
	source   netip.Prefix
	seqs     [nSeqs]uint64
	nseq     uint8
	count    float64
	base     float64
	dev      float64
	limit    float64
	window   time.Duration
	hour     int8
	learned  uint32
	declared bool
	known    [maxKnown]prefix // new network: the first networks known, for the evidence
	nknown   uint8
}

// maxKnown is the number of known networks an alert names.
const maxKnown = 4

type detector uint8

const (
	detNewNetwork detector = iota
	detRateSpike           // both windows: one cooldown
	detOffHours
	detProbing
	detBruteForce
	detSharing
	detBreakGlass
	nDetectors
)

func (d detector) name() string {
	switch d {
	case detNewNetwork:
		return DetectorNewNetwork
	case detRateSpike:
		return DetectorRateSpike
	case detOffHours:
		return DetectorOffHours
	case detProbing:
		return DetectorProbing
	case detBruteForce:
		return DetectorBruteForce
	case detSharing:
		return DetectorSharing
	}
	return DetectorBreakGlass
}

// New returns a Monitor with cfg and opts. It validates cfg (ErrConfig).
// Call Restore before serving to load the last snapshot, and Run to act.
func New(cfg Config, opts Options) (*Monitor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		return nil, fmt.Errorf("%w: Options.Now is required", ErrConfig)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Monitor{cfg: cfg, now: opts.Now, sink: opts.Sink, susp: opts.Suspender, store: opts.Store, log: log,
		seed: maphash.MakeSeed(), perCap: (cfg.MaxTokens + nShards - 1) / nShards,
		reasons: append([]string(nil), cfg.Probing.Reasons...), queue: make(chan finding, cfg.Queue)}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*tokenState)
	}
	if cfg.OffHours.Mode != ModeOff {
		m.subjects = newSubjectTable(cfg.OffHours.MaxSubjects)
	}
	if cfg.BruteForce.Mode != ModeOff {
		b := cfg.BruteForce
		width := b.SketchWidth
		switch {
		case width == 0:
			width = DefaultSketchWidth
		case width < 0:
			width = 0
		}
		g, err := bruteforce.New(bruteforce.Config{SlowAfter: b.SlowAfter, BlockAfter: b.BlockAfter, Window: b.Window,
			Delay: b.Delay, CoolOff: b.CoolOff, MaxSources: b.MaxSources, SketchWidth: width}, opts.Now)
		if err != nil {
			return nil, fmt.Errorf("%w: brute_force: %w", ErrConfig, err)
		}
		m.guard = g
	}
	return m, nil
}

// at is the time of o: its own, or the monitor's clock.
func (m *Monitor) at(o *Observation) time.Time {
	if o.Time.IsZero() {
		return m.now()
	}
	return o.Time
}

// Check is the inline call, made for a request about to be granted (Kind
// Grant), BEFORE the decision is recorded; for a request not yet
// authenticated (TokenID "") it checks the source only. A blocking
// Verdict names its reason: too_many_failures (the source is cooling off:
// answer 429 with RetryAfter), anomaly_new_network or off_hours (the
// token's policy blocks: answer 403). Check does not allocate.
func (m *Monitor) Check(o *Observation) Verdict {
	if !m.cfg.Enabled {
		return Verdict{}
	}
	if m.guard != nil {
		if v := m.guard.Check(o.Source); v.Blocked() {
			return Verdict{Block: true, Reason: ReasonTooManyFailures, RetryAfter: v.RetryAfter}
		}
	}
	if o.TokenID == "" || o.Kind != Grant {
		return Verdict{}
	}
	t := m.at(o)
	sh := m.shard(o.TokenID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[o.TokenID]
	if st == nil {
		// its first use: held to what it declares, and to its subject's hours
		st = m.track(sh, o, t)
	}
	sh.touch(st)
	if o.Policy != nil {
		st.policy = o.Policy
	}
	var v Verdict
	var f finding
	if found, block := m.checkNetwork(st, o, t, &f); found {
		if block {
			v = Verdict{Block: true, Reason: ReasonNewNetwork}
		}
		if m.emit(st, &f, t) && !block && !f.declared {
			// alerted on: the network is known from now on (while there
			// is room), so that one new network is one alert
			m.know(st, o.Source)
		}
	}
	if found, block := m.checkHours(st, o, t, &f); found {
		if block && !v.Block {
			v = Verdict{Block: true, Reason: ReasonOffHours}
		}
		m.emit(st, &f, t)
	}
	return v
}

func (m *Monitor) learning(st *tokenState, t time.Time, d time.Duration) bool {
	return t.UnixNano()-st.first < int64(d)
}

func mode(p Mode, c Mode) Mode {
	if p != ModeDefault {
		return p
	}
	return c
}

// checkNetwork is the new-network detector. It fills f and reports found
// when the request is from an unknown network, and whether to block.
func (m *Monitor) checkNetwork(st *tokenState, o *Observation, t time.Time, f *finding) (found, block bool) {
	p := st.policy
	md := m.cfg.NewNetwork.Mode
	if p != nil {
		md = mode(p.NewNetwork, md)
	}
	if md == ModeOff || !o.Source.IsValid() {
		return false, false
	}
	src := o.Source.Unmap()
	declared := p != nil && len(p.Networks) > 0
	if declared {
		for _, n := range p.Networks {
			if n.Contains(src) {
				return false, false
			}
		}
	} else {
		if st.roaming || m.learning(st, t, m.cfg.NewNetwork.Learning) {
			return false, false
		}
		n := networkOf(src)
		for i := range st.nPrefix {
			if st.prefixes[i] == n {
				return false, false
			}
		}
	}
	*f = finding{det: detNewNetwork, at: t, source: networkOf(src).netip(), declared: declared, count: float64(st.nPrefix)}
	if !declared {
		f.nknown = uint8(copy(f.known[:], st.prefixes[:st.nPrefix]))
	}
	if md == ModeBlock {
		f.action = Blocked
	}
	return true, md == ModeBlock
}

// normalHours is the token's mask of normal hours and whether it is
// declared: declared, or learned by the token, or else learned by its
// subject; 0 when not known yet.
func (m *Monitor) normalHours(st *tokenState, t time.Time) (uint32, bool) {
	if p := st.policy; p != nil && p.Hours != 0 {
		return p.Hours, true
	}
	h := st.hours
	if m.learning(st, t, m.cfg.OffHours.Learning) || h == 0 {
		// the token is new: its subject's hours, if they are known
		if m.subjects == nil || st.subjectKey == 0 {
			return 0, false
		}
		if h, _ = m.subjects.hours(st.subjectKey, t, m.cfg.OffHours.Learning); h == 0 {
			return 0, false
		}
	}
	// an hour next to a learned one is normal too
	const all = 1<<24 - 1
	return (h | h<<1 | h>>1 | h<<23 | h>>23) & all, false
}

func (st *tokenState) hourOf(t time.Time) int {
	if p := st.policy; p != nil && p.Loc != nil {
		return t.In(p.Loc).Hour()
	}
	return t.UTC().Hour()
}

func (m *Monitor) checkHours(st *tokenState, o *Observation, t time.Time, f *finding) (found, block bool) {
	md := m.cfg.OffHours.Mode
	if st.policy != nil {
		md = mode(st.policy.OffHours, md)
	}
	if md == ModeOff {
		return false, false
	}
	mask, declared := m.normalHours(st, t)
	h := st.hourOf(t)
	if mask == 0 || mask&(1<<h) != 0 {
		return false, false
	}
	*f = finding{det: detOffHours, at: t, hour: int8(h), learned: mask, declared: declared}
	if o.Source.IsValid() {
		f.source = netip.PrefixFrom(o.Source.Unmap(), o.Source.Unmap().BitLen())
	}
	if md == ModeBlock {
		f.action = Blocked
	}
	return true, md == ModeBlock
}

// Observe feeds a recorded decision to the windowed detectors. It does
// not allocate (but for the first observation of a token while the table
// is not full) and never blocks: what it finds goes to a bounded queue
// that Run empties, and a finding that does not fit is dropped and
// counted (Stats).
func (m *Monitor) Observe(o *Observation) {
	if !m.cfg.Enabled {
		return
	}
	t := m.at(o)
	if o.Kind == AuthFailure {
		m.failSource(o.Source, t)
		return
	}
	if o.TokenID == "" || (o.Kind != Grant && o.Kind != Deny) {
		return
	}
	sh := m.shard(o.TokenID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[o.TokenID]
	if st == nil {
		st = m.track(sh, o, t)
	}
	sh.touch(st)
	if o.Policy != nil {
		st.policy = o.Policy
	}
	if o.Subject != "" && st.subject != o.Subject {
		st.subject, st.subjectKey, st.subjectDone = o.Subject, subjectKey(o.Subject), false
	}
	if o.AuditSeq != 0 {
		st.seqs[st.nSeqs%nSeqs] = o.AuditSeq
		st.nSeqs++
	}
	m.observeRate(st, t)
	if o.Kind == Deny {
		m.observeDenial(st, o, t)
		return
	}
	m.learn(st, o, t)
	m.observeSharing(st, o, t)
	if o.BreakGlass && m.cfg.BreakGlass.Mode != ModeOff {
		f := &finding{}
		*f = finding{det: detBreakGlass, at: t}
		if o.Source.IsValid() {
			f.source = netip.PrefixFrom(o.Source.Unmap(), o.Source.Unmap().BitLen())
		}
		m.send(st, f)
	}
}

// know adds the network of a to the token's known ones; it reports false
// when there is no room.
func (m *Monitor) know(st *tokenState, a netip.Addr) bool {
	n := networkOf(a)
	for i := range st.nPrefix {
		if st.prefixes[i] == n {
			return true
		}
	}
	if int(st.nPrefix) >= m.cfg.NewNetwork.MaxPrefixes {
		return false
	}
	st.prefixes[st.nPrefix] = n
	st.nPrefix++
	return true
}

// learn records the network and the hour of a grant while the token is
// learning.
func (m *Monitor) learn(st *tokenState, o *Observation, t time.Time) {
	if o.Source.IsValid() && !st.roaming && m.learning(st, t, m.cfg.NewNetwork.Learning) && !m.know(st, o.Source) {
		st.roaming = true
	}
	if m.learning(st, t, m.cfg.OffHours.Learning) {
		st.hours |= 1 << st.hourOf(t)
	}
	if m.subjects != nil && st.subjectKey != 0 && !st.subjectDone {
		st.subjectDone = m.subjects.learn(st.subjectKey, st.hourOf(t), t, m.cfg.OffHours.Learning)
	}
}

// observeRate counts a use of the token in its 1 s and 10 s windows and
// reports a spike.
func (m *Monitor) observeRate(st *tokenState, t time.Time) {
	c := &m.cfg.RateSpike
	if c.Mode == ModeOff {
		return
	}
	k, floor1, floor10 := c.K, c.Floor1s, c.Floor10s
	if p := st.policy; p != nil {
		if p.RateK > 0 {
			k = p.RateK
		}
		if p.RateFloor > 0 {
			floor1, floor10 = p.RateFloor, c.Floor10s*p.RateFloor/c.Floor1s
		}
	}
	sec := t.Unix()
	if m.rate(&st.r1, floorDiv(sec, 1), k, floor1, c.Alpha) {
		m.spike(st, &st.r1, k, floor1, time.Second, t)
	}
	if m.rate(&st.r10, floorDiv(sec, 10), k, floor10, c.Alpha) {
		m.spike(st, &st.r10, k, floor10, 10*time.Second, t)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// limit is the count above which a window is a spike.
func (w *rateWindow) limit(k, floor float64) float64 {
	dev := math.Sqrt(w.varnc)
	dev = max(dev, math.Sqrt(w.mean), 1)
	return max(w.mean+k*dev, floor)
}

// rate counts one request in window idx of w and reports whether it is the
// one that makes the window a spike. A window that was a spike is not
// learned from.
func (m *Monitor) rate(w *rateWindow, idx int64, k, floor, alpha float64) bool {
	if !w.started {
		w.started, w.idx = true, idx
	}
	if idx != w.idx {
		if idx > w.idx {
			if !w.tripped {
				w.add(w.count, alpha)
			}
			for range min(idx-w.idx-1, maxGap) {
				w.add(0, alpha)
			}
		}
		w.idx, w.count, w.tripped = idx, 0, false
	}
	w.count++
	if !w.tripped && w.count > w.limit(k, floor) {
		w.tripped = true
		return true
	}
	return false
}

func (w *rateWindow) add(x, alpha float64) {
	d := x - w.mean
	inc := alpha * d
	w.mean += inc
	w.varnc = (1 - alpha) * (w.varnc + d*inc)
}

func (m *Monitor) spike(st *tokenState, w *rateWindow, k, floor float64, win time.Duration, t time.Time) {
	f := &finding{}
	*f = finding{det: detRateSpike, at: t, action: m.suspendAction(st), count: w.count, base: w.mean,
		dev: math.Sqrt(w.varnc), limit: w.limit(k, floor), window: win}
	m.emit(st, f, t)
}

func (m *Monitor) suspendAction(st *tokenState) Action {
	if st.policy != nil && st.policy.NoSuspend {
		return None
	}
	return Suspended
}

func (m *Monitor) isProbe(reason string) bool {
	for _, r := range m.reasons {
		if r == reason {
			return true
		}
	}
	return false
}

// observeDenial is the probing detector: Denials denials within Window.
func (m *Monitor) observeDenial(st *tokenState, o *Observation, t time.Time) {
	c := &m.cfg.Probing
	if c.Mode == ModeOff || !m.isProbe(o.Reason) {
		return
	}
	n := c.Denials
	if p := st.policy; p != nil && p.ProbeDenials > 0 {
		n = p.ProbeDenials
	}
	ns := t.UnixNano()
	i := st.nDenials % maxDenials
	st.denials[i], st.denySeqs[i] = ns, o.AuditSeq
	st.nDenials++
	if int(st.nDenials) < n {
		return
	}
	oldest := st.denials[(st.nDenials-uint32(n))%maxDenials]
	if ns-oldest > int64(c.Window) {
		return
	}
	f := &finding{}
	*f = finding{det: detProbing, at: t, action: m.suspendAction(st), count: float64(n), window: c.Window, limit: float64(n)}
	for j := range min(n, nSeqs) {
		if s := st.denySeqs[(st.nDenials-1-uint32(j))%maxDenials]; s != 0 {
			f.seqs[f.nseq] = s
			f.nseq++
		}
	}
	if m.emit(st, f, t) {
		st.nDenials = 0 // a new burst is counted afresh
	}
}

// sourceKey is the address of a (IPv4) or its /64 (IPv6), hashed.
func (m *Monitor) sourceKey(a netip.Addr) uint32 {
	n := networkOf(a)
	if a.Unmap().Is4() {
		b := a.Unmap().As4()
		n.a[3] = b[3]
	}
	h := maphash.Comparable(m.seed, n)
	return uint32(h) | 1 // never 0
}

// observeSharing is the sharing detector: distinct sources per window.
func (m *Monitor) observeSharing(st *tokenState, o *Observation, t time.Time) {
	c := &m.cfg.Sharing
	if c.Mode == ModeOff || !o.Source.IsValid() {
		return
	}
	win := floorDiv(t.UnixNano(), int64(c.Window))
	if win != st.swin {
		if !st.stripped && st.sn > st.maxEver {
			st.maxEver = st.sn
		}
		st.swin, st.sn, st.stripped = win, 0, false
	}
	k := m.sourceKey(o.Source)
	for i := range st.sn {
		if st.sset[i] == k {
			return
		}
	}
	if int(st.sn) >= maxSources {
		return
	}
	st.sset[st.sn] = k
	st.sn++
	if st.stripped || m.learning(st, t, c.Learning) {
		return
	}
	limit := max(int(st.maxEver)+c.Margin, c.MinSources-1)
	if p := st.policy; p != nil && p.MaxSources > 0 {
		limit = p.MaxSources
	}
	if int(st.sn) <= limit {
		return
	}
	st.stripped = true
	f := &finding{}
	*f = finding{det: detSharing, at: t, action: m.suspendAction(st), count: float64(st.sn), base: float64(st.maxEver),
		limit: float64(limit), window: c.Window, source: netip.PrefixFrom(o.Source.Unmap(), o.Source.Unmap().BitLen())}
	m.emit(st, f, t)
}

// emit sends f unless an alert of its detector about the token was raised
// within the Cooldown; it reports whether f was queued.
func (m *Monitor) emit(st *tokenState, f *finding, t time.Time) bool {
	ns := t.UnixNano()
	if last := st.lastAlert[f.det]; last != 0 && ns-last < int64(m.cfg.Cooldown) {
		return false
	}
	if !m.send(st, f) {
		return false
	}
	st.lastAlert[f.det] = ns
	return true
}

// send queues f with the token's identity and its last audit sequence
// numbers, without waiting.
func (m *Monitor) send(st *tokenState, f *finding) bool {
	f.tokenID, f.subject = st.id, st.subject
	if f.nseq == 0 {
		for j := range min(st.nSeqs, nSeqs) {
			f.seqs[j] = st.seqs[(st.nSeqs-1-j)%nSeqs]
			f.nseq++
		}
	}
	select {
	case m.queue <- *f:
		return true
	default:
		m.dropped.Add(1)
		return false
	}
}

// failSource counts an authentication failure of a source.
func (m *Monitor) failSource(a netip.Addr, t time.Time) bruteforce.Verdict {
	if m.guard == nil {
		return bruteforce.Verdict{}
	}
	v, blocked := m.guard.FailBlocking(a)
	if blocked {
		f := finding{det: detBruteForce, at: t, action: IPBlocked, count: float64(m.cfg.BruteForce.BlockAfter),
			window: m.cfg.BruteForce.Window, limit: float64(m.cfg.BruteForce.BlockAfter)}
		if a.IsValid() {
			a = a.Unmap()
			if a.Is4() {
				f.source = netip.PrefixFrom(a, 32)
			} else {
				f.source, _ = a.WithZone("").Prefix(64)
			}
		}
		select {
		case m.queue <- f:
		default:
			m.dropped.Add(1)
		}
	}
	return v
}

// Throttle is the brute-force detector as the gateway's throttle (Check
// before a credential is verified, Fail after one was refused). A refused
// credential is counted either here or as an AuthFailure Observation,
// never both.
type Throttle struct{ m *Monitor }

// Throttle returns the monitor's brute-force detector as a throttle; nil
// when the detector is off.
func (m *Monitor) Throttle() *Throttle {
	if m.guard == nil {
		return nil
	}
	return &Throttle{m}
}

// Check says how the next attempt of src may proceed.
func (t *Throttle) Check(src netip.Addr) bruteforce.Verdict {
	if !t.m.cfg.Enabled {
		return bruteforce.Verdict{}
	}
	return t.m.guard.Check(src)
}

// Fail counts a refused credential of src (and alerts on the failure that
// blocks it).
func (t *Throttle) Fail(src netip.Addr) bruteforce.Verdict {
	if !t.m.cfg.Enabled {
		return bruteforce.Verdict{}
	}
	return t.m.failSource(src, t.m.now())
}

func (m *Monitor) shard(id string) *shard {
	return &m.shards[maphash.String(m.seed, id)%nShards]
}

// track adds the state of o's token, reusing the least recently used one
// when the shard is full.
func (m *Monitor) track(sh *shard, o *Observation, t time.Time) *tokenState {
	var st *tokenState
	if len(sh.m) >= m.perCap && sh.tail != nil {
		st = sh.tail
		sh.unlink(st)
		delete(sh.m, st.id)
		*st = tokenState{}
	} else {
		st = new(tokenState)
	}
	st.id, st.subject, st.policy, st.first = o.TokenID, o.Subject, o.Policy, t.UnixNano()
	if o.Subject != "" {
		st.subjectKey = subjectKey(o.Subject)
	}
	sh.m[st.id] = st
	return st
}

func (sh *shard) unlink(st *tokenState) {
	if st.prev != nil {
		st.prev.next = st.next
	} else if sh.head == st {
		sh.head = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else if sh.tail == st {
		sh.tail = st.prev
	}
	st.prev, st.next = nil, nil
}

// touch makes st the most recently used of its shard.
func (sh *shard) touch(st *tokenState) {
	if sh.head == st {
		return
	}
	sh.unlink(st)
	st.next = sh.head
	if sh.head != nil {
		sh.head.prev = st
	}
	sh.head = st
	if sh.tail == nil {
		sh.tail = st
	}
}

// Stats are counters of a Monitor.
type Stats struct {
	Tokens  int    // tracked
	Sources int    // tracked by the brute-force detector
	Raised  uint64 // alerts handed to the Sink
	Dropped uint64 // findings dropped because the queue was full
}

// Stats returns the monitor's counters.
func (m *Monitor) Stats() Stats {
	s := Stats{Raised: m.raised.Load(), Dropped: m.dropped.Load()}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		s.Tokens += len(sh.m)
		sh.mu.Unlock()
	}
	if m.guard != nil {
		s.Sources = m.guard.Len()
	}
	return s
}
