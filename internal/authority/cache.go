package authority

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/phigate/phigate/internal/policy"
	"github.com/phigate/phigate/internal/scope"
	"github.com/phigate/phigate/internal/token"
)

// state is the cached, per-token verification state shared by all of the
// token's secrets. rec, cons and scopes are immutable once published.
type state struct {
	rec     *token.Record
	cons    *policy.Constraints
	scopes  scope.Set
	limiter *policy.Limiter // nil without a rate limit
	hashes  []token.Hash    // secrets pointing here (guarded by cache.mu)
	peppers []int           // the pepper version of each stored secret of hashes (guarded by cache.mu)

	lastUsed atomic.Int64 // unix nanoseconds, max of stored and in-memory
	dirty    atomic.Bool  // lastUsed not yet flushed

	usesMu    sync.Mutex
	leased    int64 // uses reserved from the store, not yet spent
	exhausted bool
	dropped   bool // settled: out of the cache, its lease given back
}

type secretRef struct {
	st       *state
	notAfter int64 // unix nanoseconds; 0 for the current secret
}

// cache maps secret hashes to token state, bounded in size. The key is
// the secret's hash under the current pepper, whichever pepper hashed the
// stored secret (see Authority.load); keys made under an earlier current
// pepper are never asked for again and leave with their token. Every
// change to a token calls invalidate(id) after the store write; loads that
// raced with an invalidation are not inserted (the epoch check).
type cache struct {
	mu     sync.RWMutex
	byHash map[token.Hash]secretRef
	byID   map[string]*state
	max    int
	epoch  atomic.Uint64
}

func newCache(max int) *cache {
	if max <= 0 {
		max = 150000
	}
	return &cache{byHash: make(map[token.Hash]secretRef), byID: make(map[string]*state), max: max}
}

func (c *cache) get(h token.Hash) (secretRef, bool) {
	c.mu.RLock()
	r, ok := c.byHash[h]
	c.mu.RUnlock()
	return r, ok
}

// put inserts a loaded state for hash h, whose stored secret was hashed
// with pepper version pepper, unless an invalidation happened since epoch
// was read. It returns the state to use (an existing one for
// the same token id wins, so all secrets of a token share one state) and
// the evicted states, whose unspent leases the caller must release.
func (c *cache) put(h token.Hash, pepper int, ref secretRef, epoch uint64) (secretRef, []*state) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load() != epoch {
		return ref, nil
	}
	if existing, ok := c.byID[ref.st.rec.ID]; ok {
		if existing.rec.Revision >= ref.st.rec.Revision {
			ref.st = existing
		} else {
			// a newer revision: replace the old state entirely
			c.dropLocked(existing)
		}
	}
	var evicted []*state
	for len(c.byID) >= c.max {
		for _, victim := range c.byID { // map order: an approximately random victim
			c.dropLocked(victim)
			evicted = append(evicted, victim)
			break
		}
	}
	if _, ok := c.byID[ref.st.rec.ID]; !ok {
		c.byID[ref.st.rec.ID] = ref.st
	}
	ref.st.hashes = append(ref.st.hashes, h)
	ref.st.peppers = append(ref.st.peppers, pepper)
	c.byHash[h] = ref
	return ref, evicted
}

func (c *cache) dropLocked(st *state) {
	for _, h := range st.hashes {
		if r, ok := c.byHash[h]; ok && r.st == st {
			delete(c.byHash, h)
		}
	}
	if c.byID[st.rec.ID] == st {
		delete(c.byID, st.rec.ID)
	}
}

// invalidate forgets a token; it returns the dropped state (nil if it was
// not cached) so its lease and last-used time can be settled.
func (c *cache) invalidate(id string) *state {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	st := c.byID[id]
	if st != nil {
		c.dropLocked(st)
	}
	return st
}

// invalidateBelow forgets a token unless its cached state is at revision
// or later (a change this node has already read): it returns the dropped
// state, nil when nothing was dropped. A token that is not cached still
// bumps the epoch, so that a load racing with the change is not inserted.
func (c *cache) invalidateBelow(id string, revision int64) *state {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.byID[id]
	if st != nil && st.rec.Revision >= revision {
		return nil
	}
	c.epoch.Add(1)
	if st != nil {
		c.dropLocked(st)
	}
	return st
}

func (c *cache) lookupID(id string) *state {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

// alias makes the entry of hash from also the entry of hash to (the same
// secret's hash under a newer current pepper) and returns it; false when
// from is not cached.
func (c *cache) alias(from, to token.Hash) (secretRef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.byHash[from]
	if !ok {
		return secretRef{}, false
	}
	if _, dup := c.byHash[to]; !dup {
		i := slices.Index(r.st.hashes, from)
		r.st.hashes = append(r.st.hashes, to)
		r.st.peppers = append(r.st.peppers, r.st.peppers[i])
		c.byHash[to] = r
	}
	return r, true
}

// idsByPepper returns the ids of the cached tokens that were found through
// a secret hashed with pepper version.
func (c *cache) idsByPepper(version int) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var ids []string
	for id, st := range c.byID {
		if slices.Contains(st.peppers, version) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

func (c *cache) all() []*state {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*state, 0, len(c.byID))
	for _, st := range c.byID {
		out = append(out, st)
	}
	return out
}
