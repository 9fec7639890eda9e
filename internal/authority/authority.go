package authority

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/token"
)

// Config tunes an Authority. Zero values take the defaults noted.
type Config struct {
	DefaultTTL time.Duration // default 15m
	MaxTTL     time.Duration // default 24h
	// MaxGrace bounds a rotation's grace period (default 24h).
	MaxGrace time.Duration
	// DefaultMaxLifetime is the max_lifetime of a token created without
	// one (default 90 days; never less than the token's ttl). It bounds
	// the token's rotation chain. The bootstrap token takes none.
	DefaultMaxLifetime time.Duration
	// CacheSize bounds the verification cache in tokens (default 150000; about 2 KiB of memory per cached token).
	CacheSize int
	// FlushInterval is how often last-used times are written (default 1s).
	FlushInterval time.Duration
	// UseLease is the most uses reserved from the store at once (default 16).
	UseLease int64
	// ResourceTypes is what the scopes of a new token, and the scopes a
	// change adds, may name as resource type (the zero value: "*" and the
	// FHIR R4 types). Stored tokens are not checked: they load whatever
	// types they name.
	ResourceTypes scope.ResourceTypes
	Now           func() time.Time // default time.Now
	Rand          io.Reader        // default crypto/rand.Reader
	Logger        *slog.Logger     // default: discard
	// Recorder, when set, records every change before it is made (and
	// every refused one); a recorder failure refuses the change.
	Recorder Recorder
	// Peppers, when set, is the keyring of token peppers: secrets hashed
	// with any live version verify, and RotatePepper and RetirePepper
	// work (see ReloadPeppers). Without it, only the Hasher given to New
	// is used.
	Peppers PepperRing
	// Sealer, when set, encrypts the PHI of a token record (its patient
	// id) before it reaches the store and opens it on every read, so that
	// callers only ever see plaintext. Without it, records are stored as
	// given.
	Sealer FieldSealer
	// ReplaySealer, when set, encrypts the answer of an idempotent
	// rotation, kept for the rotation's grace period so that a retry
	// with the same idempotency key gets it again (see RotateWith). It
	// MUST use a data key of its own and bind the ciphertext to the token
	// id and the field (the key's hash). Without it, a rotation with an
	// idempotency key fails with ErrIdempotencyUnavailable.
	ReplaySealer FieldSealer
	// Fresh, when set, is asked before every verification, cache hits
	// included; an error refuses it as a technical failure (Unavailable,
	// fail closed). A cluster node says through it that its view of other
	// nodes' changes (revocations) is too old to trust (see Refresh).
	Fresh func() error
	// SharedStore says that other nodes use the store too (a cluster):
	// their uses of a token reach this node only through the store's
	// last-used time, so an idle timeout is judged on it before a token
	// is refused as idle.
	SharedStore bool
	// Cache, when set, is told whether each verification was answered
	// from the verification cache or read the store (metrics). Its methods
	// are called on the request path: they MUST NOT block.
	Cache CacheObserver
}

// CacheObserver counts the verification cache's hits and misses.
type CacheObserver interface {
	CacheHit()
	CacheMiss()
}

// Authority issues and verifies tokens. Create it with New, start its
// background flusher with Run, and Close it at shutdown.
type Authority struct {
	st    store.Store
	cfg   Config
	cache *cache
	log   *slog.Logger

	// hashers is the hasher of every live pepper version. pepperMu is held
	// for reading from hashing a new secret to storing it, and for writing
	// to publish a new set; keysMu serialises pepper rotations.
	hashers  atomic.Pointer[hasherSet]
	pepperMu sync.RWMutex
	keysMu   sync.Mutex

	dirtyMu sync.Mutex
	dirty   []*state

	releaseMu sync.Mutex
	release   map[string]int64 // leases to give back

	// carried holds the rate limiters of invalidated states by token id,
	// for the token's next state: a change to a token (a rotation the
	// token may ask for itself, say) must not refill its bucket.
	carryMu sync.Mutex
	carried map[string]*policy.Limiter

	closeOnce sync.Once
	done      chan struct{}
	flushed   chan struct{}
}

// New returns an Authority over st, hashing secrets with h. With
// Config.Peppers, call ReloadPeppers before use so that secrets hashed with
// older live peppers verify too.
func New(st store.Store, h *token.Hasher, cfg Config) *Authority {
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = 15 * time.Minute
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.MaxGrace <= 0 {
		cfg.MaxGrace = 24 * time.Hour
	}
	if cfg.DefaultMaxLifetime <= 0 {
		cfg.DefaultMaxLifetime = DefaultMaxLifetime
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.UseLease <= 0 {
		cfg.UseLease = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authority{
		st: st, cfg: cfg, cache: newCache(cfg.CacheSize), log: cfg.Logger,
		release: map[string]int64{}, done: make(chan struct{}), flushed: make(chan struct{}),
	}
	a.hashers.Store(&hasherSet{current: h})
	return a
}

// DefaultMaxLifetime is Config.DefaultMaxLifetime's default: 90 days.
const DefaultMaxLifetime = 90 * 24 * time.Hour

// Config returns the effective configuration.
func (a *Authority) Config() Config { return a.cfg }

// Request describes the circumstances of one use of a token.
type Request struct {
	// Addr is the client's address (zero when unknown: refused by tokens
	// restricted to networks).
	Addr netip.Addr
	// Purpose is the HL7 PurposeOfUse code the request names, if any.
	Purpose string
	// Scope, when not empty, is a plain scope (such as "admin:tokens") the
	// token must hold.
	Scope string
	// Now is the time of the request (zero: the authority's clock).
	Now time.Time
}

// Decision is the outcome of Verify. Token is the cached record: shared and
// immutable, never to be modified. It is set whenever the secret was found,
// even when Reason is a deny (for auditing who was refused).
type Decision struct {
	Reason     policy.Reason
	Token      *token.Record
	Scopes     scope.Set
	RetryAfter time.Duration
	// Superseded: the secret presented is no longer the token's current
	// one (a rotation replaced it and it lives out its grace period).
	Superseded bool
}

// Allowed reports whether the decision is an allow.
func (d Decision) Allowed() bool { return d.Reason == policy.OK }

// Handle is an authenticated token whose request has not been admitted yet
// (see Authenticate and Admit).
type Handle struct {
	st         *state
	now        time.Time
	superseded bool
}

// Token returns the handle's record (shared, immutable).
func (h Handle) Token() *token.Record {
	if h.st == nil {
		return nil
	}
	return h.st.rec
}

// Scopes returns the handle's parsed scopes.
func (h Handle) Scopes() scope.Set {
	if h.st == nil {
		return scope.Set{}
	}
	return h.st.scopes
}

// Verify authenticates secret and admits one request under the token's
// constraints: status, expiry, idle timeout, network, hours, purpose, the
// plain scope req.Scope if set, rate and remaining uses. It returns an error
// only for a technical failure (the caller fails closed); every deny is a
// Decision with its Reason. An allowed Verify counts as a use.
func (a *Authority) Verify(ctx context.Context, secret string, req Request) (Decision, error) {
	if token.Check(secret) != nil { // the cheapest refusal first, without the store or the clock
		return Decision{Reason: policy.Malformed}, nil
	}
	h, d, err := a.authenticate(ctx, secret, req)
	if err != nil || d.Reason != policy.ReasonNone {
		return d, err
	}
	if req.Scope != "" && !h.st.scopes.Has(req.Scope) {
		return Decision{Reason: policy.Scope, Token: h.st.rec, Scopes: h.st.scopes}, nil
	}
	return a.Admit(ctx, h)
}

// Authenticate finds the token for secret and checks what does not depend
// on the resource requested: the secret's validity, status, expiry, idle
// timeout, network, hours and purpose. On success it returns a Handle and
// a zero Decision (Reason None); otherwise the deny. Nothing is consumed:
// call Admit once the resource-specific checks (scopes) passed.
func (a *Authority) Authenticate(ctx context.Context, secret string, req Request) (Handle, Decision, error) {
	if token.Check(secret) != nil { // before anything else, even the clock
		return Handle{}, Decision{Reason: policy.Malformed}, nil
	}
	return a.authenticate(ctx, secret, req)
}

// authenticate is Authenticate for a secret that passed token.Check.
func (a *Authority) authenticate(ctx context.Context, secret string, req Request) (Handle, Decision, error) {
	now := req.Now
	if now.IsZero() {
		now = a.cfg.Now()
	}
	ref, reason, err := a.find(ctx, secret, now, true)
	if err != nil || reason != policy.ReasonNone {
		d := Decision{Reason: reason}
		if ref.st != nil {
			d.Token, d.Scopes = ref.st.rec, ref.st.scopes
		}
		return Handle{}, d, err
	}
	st := ref.st
	r := policy.ReasonNone
	switch {
	case !st.cons.Network(req.Addr):
		r = policy.Network
	case !st.cons.Hours(now):
		r = policy.Hours
	case !st.cons.Purpose(req.Purpose):
		r = policy.Purpose
	}
	if r != policy.ReasonNone {
		return Handle{}, Decision{Reason: r, Token: st.rec, Scopes: st.scopes}, nil
	}
	return Handle{st: st, now: now, superseded: ref.notAfter != 0}, Decision{}, nil
}

// find locates the token of secret and checks the credential itself: secret
// validity (rotation grace), status, expiry and idle timeout. Reason None
// means valid. ref.st is set whenever the token was found.
func (a *Authority) find(ctx context.Context, secret string, now time.Time, checked bool) (secretRef, policy.Reason, error) {
	if !checked && token.Check(secret) != nil {
		return secretRef{}, policy.Malformed, nil
	}
	if a.cfg.Fresh != nil {
		if err := a.cfg.Fresh(); err != nil {
			return secretRef{}, policy.Unavailable, fmt.Errorf("authority: %w", err)
		}
	}
	hs := a.hashers.Load()
	h := hs.current.Sum(secret)
	ref, ok := a.cache.get(h)
	if o := a.cfg.Cache; o != nil {
		if ok {
			o.CacheHit()
		} else {
			o.CacheMiss()
		}
	}
	if !ok {
		var err error
		ref, ok, err = a.load(ctx, hs, h, secret)
		if err != nil {
			return secretRef{}, policy.Unavailable, err
		}
		if !ok {
			return secretRef{}, policy.Unknown, nil
		}
	}
	st := ref.st
	rec := st.rec
	n := now.UnixNano()
	switch {
	case ref.notAfter != 0 && n >= ref.notAfter:
		return ref, policy.Rotated, nil
	case rec.Status == token.StatusRevoked:
		return ref, policy.Revoked, nil
	case rec.Status == token.StatusSuspended:
		return ref, policy.Suspended, nil
	case n >= rec.ExpiresAt.UnixNano():
		return ref, policy.Expired, nil
	case rec.IdleTimeout > 0 && n-st.lastUsed.Load() > int64(rec.IdleTimeout):
		if a.cfg.SharedStore && a.storedLastUsed(ctx, st) && n-st.lastUsed.Load() <= int64(rec.IdleTimeout) {
			break // used on another node meanwhile
		}
		return ref, policy.Idle, nil
	}
	return ref, policy.ReasonNone, nil
}

// storedLastUsed raises st's last-used time to the store's (other nodes'
// uses, flushed there) and reports whether it read it.
func (a *Authority) storedLastUsed(ctx context.Context, st *state) bool {
	rec, err := a.st.Token(ctx, st.rec.ID)
	if err != nil {
		return false
	}
	n := rec.LastUsedAt.UnixNano()
	if rec.LastUsedAt.IsZero() {
		return true
	}
	for {
		old := st.lastUsed.Load()
		if n <= old || st.lastUsed.CompareAndSwap(old, n) {
			return true
		}
	}
}

// Admit consumes the request: rate limit, then one use, then records the
// last-used time. It returns the final Decision.
func (a *Authority) Admit(ctx context.Context, h Handle) (Decision, error) {
	st := h.st
	if st == nil {
		return Decision{Reason: policy.ReasonNone}, nil
	}
	if st.limiter != nil {
		if ok, wait := st.limiter.Allow(h.now); !ok {
			return Decision{Reason: policy.RateLimited, Token: st.rec, Scopes: st.scopes, RetryAfter: wait}, nil
		}
	}
	if st.rec.RemainingUses != nil {
		ok, err := a.takeUse(ctx, st)
		if err != nil {
			return Decision{Reason: policy.Unavailable, Token: st.rec, Scopes: st.scopes}, err
		}
		if !ok {
			return Decision{Reason: policy.UsesExhausted, Token: st.rec, Scopes: st.scopes}, nil
		}
	}
	a.touch(st, h.now)
	return Decision{Reason: policy.OK, Token: st.rec, Scopes: st.scopes, Superseded: h.superseded}, nil
}

// Refund gives back what Admit took for h (a rate token and a use) when
// the request was refused afterwards without being carried out: the
// gateway could not record its grant, say. A use goes back to the lease,
// or, when the token's state was dropped meanwhile, to the store with the
// rest of its unspent lease.
func (a *Authority) Refund(h Handle) {
	st := h.st
	if st == nil {
		return
	}
	if st.limiter != nil {
		st.limiter.Return()
	}
	if st.rec.RemainingUses == nil {
		return
	}
	st.usesMu.Lock()
	dropped := st.dropped
	if !dropped {
		st.leased++
	}
	st.usesMu.Unlock()
	if dropped {
		a.releaseMu.Lock()
		a.release[st.rec.ID]++
		a.releaseMu.Unlock()
	}
}

// takeUse spends one use from the lease, reserving more from the store when
// the lease is empty.
func (a *Authority) takeUse(ctx context.Context, st *state) (bool, error) {
	st.usesMu.Lock()
	defer st.usesMu.Unlock()
	if st.leased == 0 {
		if st.exhausted {
			return false, nil
		}
		n := a.cfg.UseLease
		if hint := *st.rec.RemainingUses / 4; hint < n {
			n = max(hint, 1)
		}
		got, err := a.st.ReserveUses(ctx, st.rec.ID, n)
		if err != nil {
			return false, fmt.Errorf("authority: reserve uses: %w", err)
		}
		if got == 0 {
			st.exhausted = true
			return false, nil
		}
		st.leased = got
	}
	st.leased--
	return true, nil
}

func (a *Authority) touch(st *state, now time.Time) {
	n := now.UnixNano()
	for {
		old := st.lastUsed.Load()
		if n <= old || st.lastUsed.CompareAndSwap(old, n) {
			break
		}
	}
	if !st.dirty.Load() && st.dirty.CompareAndSwap(false, true) {
		a.dirtyMu.Lock()
		a.dirty = append(a.dirty, st)
		a.dirtyMu.Unlock()
	}
}

// load reads a secret's token from the store (trying every live pepper,
// see bySecret) and caches it under h, the secret's hash under the current
// pepper, so that its next use is found at once whichever pepper hashed
// it. A token cached under an older pepper's hash (before a rotation) is
// taken from the cache, without a store lookup.
func (a *Authority) load(ctx context.Context, hs *hasherSet, h token.Hash, secret string) (secretRef, bool, error) {
	for _, o := range hs.older {
		if ref, ok := a.cache.alias(o.Sum(secret), h); ok {
			return ref, true, nil
		}
	}
	epoch := a.cache.epoch.Load()
	rec, sec, pepper, err := a.bySecret(ctx, hs, h, secret)
	if errors.Is(err, store.ErrNotFound) {
		return secretRef{}, false, nil
	}
	if err != nil {
		return secretRef{}, false, fmt.Errorf("authority: load token: %w", err)
	}
	if err := a.openRecord(ctx, rec); err != nil {
		return secretRef{}, false, err
	}
	st, err := a.newState(rec)
	if err != nil {
		return secretRef{}, false, err
	}
	ref := secretRef{st: st}
	if !sec.NotAfter.IsZero() {
		ref.notAfter = sec.NotAfter.UnixNano()
	}
	ref, evicted := a.cache.put(h, pepper, ref, epoch)
	for _, v := range evicted {
		a.settle(v)
	}
	return ref, true, nil
}

func (a *Authority) newState(rec *token.Record) (*state, error) {
	cons, err := policy.Compile(rec)
	if err != nil {
		return nil, fmt.Errorf("authority: token %s has invalid constraints: %w", rec.ID, err)
	}
	set, err := scope.ParseSet(rec.Scopes)
	if err != nil {
		return nil, fmt.Errorf("authority: token %s has invalid scopes: %w", rec.ID, err)
	}
	st := &state{rec: rec, cons: cons, scopes: set}
	if rec.Rate != nil {
		if l := a.takeLimiter(rec.ID); l != nil && l.Same(rec.Rate.PerSecond, rec.Rate.Burst) {
			st.limiter = l
		} else {
			st.limiter = policy.NewLimiter(rec.Rate.PerSecond, rec.Rate.Burst, a.cfg.Now())
		}
	}
	lu := rec.LastUsedAt
	if lu.IsZero() || lu.Before(rec.CreatedAt) {
		lu = rec.CreatedAt
	}
	st.lastUsed.Store(lu.UnixNano())
	return st, nil
}

// settle queues a dropped state's unspent lease for release; its last-used
// time stays in the dirty list if it has not been flushed.
func (a *Authority) settle(st *state) {
	st.usesMu.Lock()
	n := st.leased
	st.leased = 0
	st.exhausted = true // a dropped state must not spend again
	st.dropped = true   // and a refund goes back to the store
	st.usesMu.Unlock()
	if n > 0 {
		a.releaseMu.Lock()
		a.release[st.rec.ID] += n
		a.releaseMu.Unlock()
	}
}

// Invalidate makes this node forget a token so the next Verify reads it from
// the store. Changes made through the Authority call it themselves; a
// cluster calls it when another node reports a change.
func (a *Authority) Invalidate(id string) {
	if st := a.cache.invalidate(id); st != nil {
		a.carryLimiter(st)
		a.settle(st)
	}
}

// Refresh is Invalidate for a change another node made, named by the
// token's revision after it: a cached state at that revision or later is
// kept (this node read the change already), an older one is forgotten so
// the next Verify reads the store. A cluster's change feed calls it for
// every change it learns of, each possibly more than once.
func (a *Authority) Refresh(id string, revision int64) {
	if st := a.cache.invalidateBelow(id, revision); st != nil {
		a.carryLimiter(st)
		a.settle(st)
	}
}

// maxCarried bounds the limiters kept for tokens not loaded again.
const maxCarried = 65536

// carryLimiter keeps st's rate limiter for the token's next state.
func (a *Authority) carryLimiter(st *state) {
	if st.limiter == nil {
		return
	}
	a.carryMu.Lock()
	defer a.carryMu.Unlock()
	if a.carried == nil || len(a.carried) >= maxCarried {
		a.carried = make(map[string]*policy.Limiter) // forget the rest: a full bucket at worst
	}
	a.carried[st.rec.ID] = st.limiter
}

// takeLimiter returns (and forgets) the limiter carried for token id.
func (a *Authority) takeLimiter(id string) *policy.Limiter {
	a.carryMu.Lock()
	defer a.carryMu.Unlock()
	l := a.carried[id]
	if l != nil {
		delete(a.carried, id)
	}
	return l
}

// CacheLen reports how many tokens are cached.
func (a *Authority) CacheLen() int { return a.cache.len() }

// Run writes last-used times and gives back released leases every
// FlushInterval until ctx ends or Close is called.
func (a *Authority) Run(ctx context.Context) {
	defer close(a.flushed)
	t := time.NewTicker(a.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.done:
			return
		case <-t.C:
			if err := a.Flush(ctx); err != nil {
				a.log.Warn("flushing token usage failed; will retry", "err", err)
			}
		}
	}
}

// Flush writes pending last-used times and releases returned leases now.
func (a *Authority) Flush(ctx context.Context) error {
	a.dirtyMu.Lock()
	batch := a.dirty
	a.dirty = nil
	a.dirtyMu.Unlock()
	var errs []error
	if len(batch) > 0 {
		used := make(map[string]time.Time, len(batch))
		for _, st := range batch {
			st.dirty.Store(false)
			t := time.Unix(0, st.lastUsed.Load()).UTC()
			if cur, ok := used[st.rec.ID]; !ok || t.After(cur) {
				used[st.rec.ID] = t
			}
		}
		if err := a.st.TouchLastUsed(ctx, used); err != nil {
			// put them back so the next flush retries
			for _, st := range batch {
				if st.dirty.CompareAndSwap(false, true) {
					a.dirtyMu.Lock()
					a.dirty = append(a.dirty, st)
					a.dirtyMu.Unlock()
				}
			}
			errs = append(errs, fmt.Errorf("authority: touch last used: %w", err))
		}
	}
	a.releaseMu.Lock()
	rel := a.release
	a.release = map[string]int64{}
	a.releaseMu.Unlock()
	for id, n := range rel {
		if err := a.st.ReleaseUses(ctx, id, n); err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("authority: release uses: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Close stops Run, gives back every unspent use lease and flushes last-used
// times. The store stays open (its owner closes it).
func (a *Authority) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { close(a.done) })
	for _, st := range a.cache.all() {
		a.settle(st)
	}
	return a.Flush(ctx)
}
