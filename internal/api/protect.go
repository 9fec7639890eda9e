package api

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/phigate/phigate/internal/bruteforce"
	"github.com/phigate/phigate/internal/policy"
)

// Throttle slows and then refuses the sources that keep presenting
// invalid tokens (internal/bruteforce.Guard): Check before a token is
// verified, Fail after one was malformed or unknown. Safe for concurrent
// use.
type Throttle interface {
	Check(src netip.Addr) bruteforce.Verdict
	Fail(src netip.Addr) bruteforce.Verdict
}

// Storage reports whether the data directory's disk is below its
// low-space watermark (internal/diskspace.Watermark): nil when there is
// room, else why not. Called on every request: no system call.
type Storage interface {
	Low() error
}

// lowSpace is the refusal of a request while the disk is low (nil
// otherwise); /healthz and /readyz are answered all the same.
func (s *Server) lowSpace(r *http.Request) *apiError {
	if s.opts.Storage == nil || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		return nil
	}
	if s.opts.Storage.Low() == nil {
		return nil
	}
	return &apiError{status: http.StatusServiceUnavailable, code: "storage_low", retry: 5 * time.Second,
		msg: "phigate is low on disk space and refuses requests until space is freed; nothing was recorded or changed"}
}

// throttle applies the brute-force guard before a token is verified.
func (s *Server) throttle(r *http.Request) *apiError {
	if s.opts.Throttle == nil {
		return nil
	}
	v := s.opts.Throttle.Check(clientAddr(r))
	if v.Blocked() {
		return &apiError{status: http.StatusTooManyRequests, code: "too_many_failures", retry: v.RetryAfter,
			msg: "too many invalid tokens from this address; try again later"}
	}
	if v.Delay > 0 {
		t := time.NewTimer(v.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// the client left while slowed: refused as blocked
			return &apiError{status: http.StatusTooManyRequests, code: "too_many_failures", retry: v.Delay,
				msg: "too many invalid tokens from this address; try again later"}
		}
	}
	return nil
}

// failed tells the guard of a token that was no credential at all.
func (s *Server) failed(r *http.Request, reason policy.Reason) {
	if s.opts.Throttle != nil && (reason == policy.Malformed || reason == policy.Unknown) {
		s.opts.Throttle.Fail(clientAddr(r))
	}
}

// errAuditDenial answers a denial that could not be recorded.
var errAuditDenial = &apiError{status: http.StatusServiceUnavailable, code: "audit_unavailable", retry: time.Second,
	msg: "the request cannot be recorded in the audit log, so it is refused; try again later"}
