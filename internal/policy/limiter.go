package policy

import (
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket: PerSecond tokens are added each second up to
// Burst; each allowed request takes one. Safe for concurrent use; Allow
// does not allocate.
type Limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   int64 // unix nanoseconds of the last refill
}

// Return gives back one request Allow admitted (one that was refused
// later, before it did anything), up to the burst.
func (l *Limiter) Return() {
	l.mu.Lock()
	l.tokens = math.Min(l.burst, l.tokens+1)
	l.mu.Unlock()
}

// Same reports whether l limits at rate with burst (so that it can carry
// over to a new state of the same token).
func (l *Limiter) Same(rate float64, burst int) bool {
	return l.rate == rate && l.burst == float64(max(burst, 1))
}

// NewLimiter returns a full bucket. rate must be > 0 and burst ≥ 1.
func NewLimiter(rate float64, burst int, now time.Time) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: rate, burst: float64(burst), tokens: float64(burst), last: now.UnixNano()}
}

// Allow takes one token if there is one. Otherwise it reports how long until
// one will be there.
func (l *Limiter) Allow(now time.Time) (bool, time.Duration) {
	n := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n > l.last {
		l.tokens = math.Min(l.burst, l.tokens+float64(n-l.last)/1e9*l.rate)
		l.last = n
	}
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	wait := time.Duration((1 - l.tokens) / l.rate * 1e9)
	if wait < time.Millisecond {
		wait = time.Millisecond
	}
	return false, wait
}
