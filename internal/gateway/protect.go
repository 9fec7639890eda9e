package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/phigate/phigate/internal/bruteforce"
	"github.com/phigate/phigate/internal/policy"
)

// Throttle slows and then refuses the sources that keep presenting
// invalid tokens (internal/bruteforce.Guard). Check is asked before a
// token is verified, Fail told after one was malformed or unknown; both
// must be safe for concurrent use and cheap.
type Throttle interface {
	Check(src netip.Addr) bruteforce.Verdict
	Fail(src netip.Addr) bruteforce.Verdict
}

// Storage reports whether the disk decisions are recorded on is below its
// low-space watermark (internal/diskspace.Watermark): Low returns nil
// when there is room, else why not. It is called on every request and
// must not make a system call.
type Storage interface {
	Low() error
}

// Reason codes of the protections against floods.
const (
	// CodeTooManyFailures: the source sent too many invalid tokens and is
	// refused for a while (429, Retry-After).
	CodeTooManyFailures = "too_many_failures"
	// CodeStorageLow: the disk is below its low-space watermark; nothing
	// is recorded or forwarded until space returns (503, Retry-After).
	CodeStorageLow = "storage_low"
)

var errStorageLow = &denial{status: http.StatusServiceUnavailable, code: CodeStorageLow,
	msg: "phigate is low on disk space and refuses requests until space is freed; nothing was recorded or forwarded", retry: 5 * time.Second}

// lowSpace returns the refusal of every request while the disk is below
// its watermark (nil otherwise). Nothing is recorded for it: recording is
// what must stop.
func (g *Gateway) lowSpace() *denial {
	if g.opts.Storage == nil {
		return nil
	}
	if err := g.opts.Storage.Low(); err != nil {
		return errStorageLow
	}
	return nil
}

// answersItself reports whether path is one the gateway answers from
// memory, recording nothing (liveness and its public key): those are
// served whatever the disk.
func answersItself(path string) bool { return path == "/healthz" || path == IdentityKeyPath }

// throttle applies the brute-force guard to src before its token is
// verified: a blocked source is refused (429), a slowed one waits first
// (until ctx ends, then refused as unavailable).
func (g *Gateway) throttle(ctx context.Context, src netip.Addr) *denial {
	if g.opts.Throttle == nil {
		return nil
	}
	v := g.opts.Throttle.Check(src)
	if v.Blocked() {
		return &denial{status: http.StatusTooManyRequests, code: CodeTooManyFailures,
			msg: "too many invalid tokens from this address; try again later", retry: v.RetryAfter}
	}
	if v.Delay > 0 {
		t := time.NewTimer(v.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			// the client left while slowed: refused as blocked (an
			// anonymous denial, recorded aggregated like the others)
			return &denial{status: http.StatusTooManyRequests, code: CodeTooManyFailures,
				msg: "too many invalid tokens from this address; try again later", retry: v.Delay}
		}
	}
	return nil
}

// failed tells the brute-force guard of a token that was no credential
// at all (malformed or unknown): the guesses it counts.
func (g *Gateway) failed(src netip.Addr, r policy.Reason) {
	if g.opts.Throttle != nil && (r == policy.Malformed || r == policy.Unknown) {
		g.opts.Throttle.Fail(src)
	}
}
