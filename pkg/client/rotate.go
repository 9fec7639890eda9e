package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// HeaderIdempotencyKey is the header that makes a self-rotation safe to
// retry: the server answers a retry carrying the same key, by the same
// token, within the grace period, with the same new secret.
const HeaderIdempotencyKey = "Idempotency-Key"

// maxIdempotencyKey is the longest key the server takes.
const maxIdempotencyKey = 128

// ErrBadIdempotencyKey is returned for a key that is empty, longer than 128
// bytes or not printable ASCII (without space).
var ErrBadIdempotencyKey = errors.New("phigate: an idempotency key is 1 to 128 printable ASCII characters")

// NewIdempotencyKey returns a fresh random key (22 characters, base64url of
// 16 bytes read from r; crypto/rand when r is nil).
func NewIdempotencyKey(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("phigate: idempotency key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func checkIdempotencyKey(k string) error {
	if k == "" || len(k) > maxIdempotencyKey {
		return ErrBadIdempotencyKey
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f {
			return ErrBadIdempotencyKey
		}
	}
	return nil
}

// RotateSelfIdempotent is RotateSelf with an Idempotency-Key: a caller
// that lost the answer retries with the same key (and the same, old,
// secret) and receives the same new secret, instead of rotating twice.
// Once the token was rotated, the old secret with another key is refused
// with 409 already_rotated (see IsAlreadyRotated).
func (c *Client) RotateSelfIdempotent(ctx context.Context, key string, req RotateRequest) (*IssuedToken, error) {
	if err := checkIdempotencyKey(key); err != nil {
		return nil, err
	}
	var out IssuedToken
	r := request{method: http.MethodPost, path: "/v1/tokens/self/rotate", json: req, auth: true,
		header: http.Header{HeaderIdempotencyKey: {key}}, redact: []string{key}}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// IsAlreadyRotated reports whether err is the server's 409
// already_rotated: the token was rotated by an earlier request whose answer
// this caller may have lost.
func IsAlreadyRotated(err error) bool { return apiCode(err, http.StatusConflict, "already_rotated") }

func apiCode(err error, status int, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status && ae.Code == code
}

// ErrRotationEnded is wrapped by the error RotatingSource.Run returns when
// the token can no longer be rotated: it was refused (revoked, suspended,
// past its lifetime, its issuer revoked), its secret stopped working, or
// the server failed its pin or CA check (a *PinMismatchError or
// *UntrustedCertificateError, in the chain). A person must act.
var ErrRotationEnded = errors.New("phigate: the token can no longer be rotated")

// ErrTokenExpired is returned by RotatingSource.Token once the current
// secret is past its expiry and no rotation replaced it.
var ErrTokenExpired = errors.New("phigate: the rotating token has expired")

// Rotation fractions: a token is rotated at 2/3 of its rotation period,
// give or take 1/15 of it, so that several processes started together do not
// rotate in step.
const (
	rotateAt     = 2.0 / 3.0
	rotateJitter = 1.0 / 15.0
)

// RotatingOptions configure a RotatingSource. The zero value rotates with
// the server's defaults on the wall clock.
type RotatingOptions struct {
	// Grace, when not zero, is the grace period asked for at each
	// rotation (how long the previous secret keeps working); zero leaves it
	// to the server (the token's own grace).
	Grace time.Duration
	// TTL, when not zero, is the TTL asked for at each rotation; zero
	// leaves it to the server (the token's rotation period).
	TTL time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed attempts
	// (defaults 1s, capped at a twentieth of the rotation period, and 1m).
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Sleep waits d or until ctx is done (a timer when nil).
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand is the source of idempotency keys and jitter (crypto/rand when
	// nil).
	Rand io.Reader
	// Logger receives the source's events; it never receives a secret
	// (discarded when nil).
	Logger *slog.Logger
	// OnUpdate, when set, is called from Run once the token was checked at
	// start (Update.Rotated false) and after every rotation (true), before
	// Run does anything else. It is where the new secret is persisted; it
	// should return only once that is done (or ctx is done).
	OnUpdate func(ctx context.Context, u Update)
}

// Update is a new state of a RotatingSource's token. Printing it (%v, or
// through slog) shows everything but the secret.
type Update struct {
	Rotated bool
	TokenID string
	Secret  string
	// ExpiresAt is when Secret expires unless rotated again.
	ExpiresAt time.Time
	// PreviousNotAfter, after a rotation, is when the previous secret stops
	// working.
	PreviousNotAfter time.Time
	At               time.Time
}

func (u Update) String() string {
	return fmt.Sprintf("token %s rotated=%t expires %s", u.TokenID, u.Rotated, u.ExpiresAt.Format(time.RFC3339))
}

// LogValue keeps the secret out of structured logs.
func (u Update) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token_id", u.TokenID), slog.Bool("rotated", u.Rotated),
		slog.Time("expires_at", u.ExpiresAt))
}

// RotationState is a snapshot of a RotatingSource, for health reports. It
// holds no secret.
type RotationState struct {
	// Status is "starting", "ok", "retrying", "warning" (the token stops
	// working soon and rotation keeps failing) or "ended".
	Status       string        `json:"status"`
	TokenID      string        `json:"token_id,omitempty"`
	ExpiresAt    time.Time     `json:"expires_at,omitzero"`
	Period       time.Duration `json:"-"`
	PeriodText   string        `json:"rotation_period,omitempty"`
	NextRotation time.Time     `json:"next_rotation,omitzero"`
	LastRotation time.Time     `json:"last_rotation,omitzero"`
	Rotations    int           `json:"rotations"`
	Failures     int           `json:"consecutive_failures"`
	LastError    string        `json:"last_error,omitempty"`
}

// RotatingSource is a TokenSource that keeps a token fresh by rotating it
// itself (POST /v1/tokens/self/rotate) in the background, so that a Go
// program needs no agent. Run does the work; Token, State and Client may be
// used from any goroutine.
//
// The rotation period is the token's TTL: its expiry minus its last
// rotation (or issue). The source rotates at about two thirds of it, with
// jitter. Each rotation attempt draws one random idempotency key, kept in
// memory only, and sends it with the current secret on every retry of that
// attempt, so that an answer lost to the network cannot burn the chain;
// 409 already_rotated means the rotation happened and the source keeps
// retrying with the same key. It never starts a second rotation from a
// secret it has seen superseded. Failures are retried with exponential
// backoff until the current secret expires; refusals that no retry can
// change (401, 403, lifetime_ended, issuer_revoked, a revoked or suspended
// token) end Run with an error wrapping ErrRotationEnded.
type RotatingSource struct {
	c    *Client
	opts RotatingOptions
	log  *slog.Logger

	mu      sync.RWMutex
	secret  string
	st      RotationState
	ended   bool
	running bool
}

// NewRotatingSource returns a source that rotates secret, a token of the
// server at addr reached with opts (pins, CA file…; any token option is
// replaced by the source itself). Call Run to start it.
func NewRotatingSource(addr, secret string, ro RotatingOptions, opts ...Option) (*RotatingSource, error) {
	if err := checkToken(secret); err != nil {
		return nil, err
	}
	if ro.Now == nil {
		ro.Now = time.Now
	}
	if ro.Sleep == nil {
		ro.Sleep = sleepCtx
	}
	if ro.Rand == nil {
		ro.Rand = rand.Reader
	}
	if ro.MaxBackoff <= 0 {
		ro.MaxBackoff = time.Minute
	}
	if ro.Grace < 0 || ro.TTL < 0 || ro.MinBackoff < 0 {
		return nil, errors.New("phigate: rotating source: negative grace, TTL or backoff")
	}
	s := &RotatingSource{opts: ro, secret: secret, st: RotationState{Status: "starting"}}
	s.log = ro.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	c, err := New(addr, append(opts[:len(opts):len(opts)], WithTokenSource(s))...)
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// Client returns a client of the admin API that authenticates with the
// source's current secret.
func (s *RotatingSource) Client() *Client { return s.c }

// Token returns the current secret. After the secret's expiry with no
// rotation to replace it, it returns ErrTokenExpired.
func (s *RotatingSource) Token(context.Context) (string, error) {
	s.mu.RLock()
	sec, exp := s.secret, s.st.ExpiresAt
	s.mu.RUnlock()
	if !exp.IsZero() && !s.opts.Now().Before(exp) {
		return "", ErrTokenExpired
	}
	return sec, nil
}

// String keeps the secret out of %v.
func (s *RotatingSource) String() string { return "phigate rotating token source" }

// State returns a snapshot of the source.
func (s *RotatingSource) State() RotationState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.st
	if st.Period > 0 {
		st.PeriodText = st.Period.String()
	}
	return st
}

// Run checks the token, then rotates it for as long as ctx lasts. It
// returns ctx's error when ctx is done, or an error wrapping
// ErrRotationEnded when the token cannot be rotated any more (the current
// secret keeps being served by Token until it expires). Run may be called
// once.
func (s *RotatingSource) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("phigate: RotatingSource.Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	if err := s.start(ctx); err != nil {
		return s.end(err)
	}
	for {
		if err := s.waitForRotation(ctx); err != nil {
			return err
		}
		if err := s.rotate(ctx); err != nil {
			return s.end(err)
		}
	}
}

func (s *RotatingSource) end(err error) error {
	if errors.Is(err, ErrRotationEnded) {
		s.mu.Lock()
		s.st.Status, s.st.LastError, s.ended = "ended", err.Error(), true
		s.mu.Unlock()
		s.log.Error("token rotation stopped: a person must act", "token_id", s.State().TokenID, "err", err)
	}
	return err
}

// start learns the token's id, expiry and rotation period.
func (s *RotatingSource) start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		t, err := s.c.Self(ctx)
		if err == nil {
			now := s.opts.Now()
			period := periodOf(t)
			s.mu.Lock()
			s.st.TokenID, s.st.ExpiresAt, s.st.Period = t.ID, t.ExpiresAt, period
			s.st.Status, s.st.Failures, s.st.LastError = "ok", 0, ""
			if t.RotatedAt != nil {
				s.st.LastRotation = *t.RotatedAt
			}
			s.schedule(t.ExpiresAt.Add(-period))
			sec := s.secret
			s.mu.Unlock()
			if g, _ := time.ParseDuration(t.Grace); g <= 0 && s.opts.Grace <= 0 {
				s.log.Warn("the token has no grace period: its previous secret stops at each rotation, so a reader of the old one "+
					"sees 401 until it reloads, and a rotation whose answer is lost cannot be retried (set one with phigate token update --grace)",
					"token_id", t.ID)
			}
			if !now.Before(t.ExpiresAt) {
				return fmt.Errorf("%w: the token expired at %s", ErrRotationEnded, t.ExpiresAt.UTC().Format(time.RFC3339))
			}
			s.log.Info("token checked", "token_id", t.ID, "expires_at", t.ExpiresAt, "rotation_period", s.State().Period.String(), "next_rotation", s.State().NextRotation)
			if s.opts.OnUpdate != nil {
				s.opts.OnUpdate(ctx, Update{TokenID: t.ID, Secret: sec, ExpiresAt: t.ExpiresAt, At: now})
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			return fmt.Errorf("%w: %w", ErrRotationEnded, err)
		}
		s.failed(err, "checking the token")
		if err := s.opts.Sleep(ctx, s.backoff(attempt)); err != nil {
			return err
		}
	}
}

// periodOf is a token's rotation period: its ttl, or (from a server that
// does not say) its expiry minus its last rotation or change.
func periodOf(t *Token) time.Duration {
	if d, err := time.ParseDuration(t.TTL); err == nil && d > 0 {
		return d
	}
	last := t.UpdatedAt
	if t.RotatedAt != nil {
		last = *t.RotatedAt
	}
	if last.IsZero() || last.Before(t.CreatedAt) {
		last = t.CreatedAt
	}
	return t.ExpiresAt.Sub(last)
}

// schedule sets NextRotation from the last rotation; s.mu is held.
func (s *RotatingSource) schedule(last time.Time) {
	p := s.st.Period
	if p <= 0 {
		s.st.NextRotation = last
		return
	}
	f := rotateAt + rotateJitter*(2*s.unit()-1)
	s.st.NextRotation = last.Add(time.Duration(float64(p) * f))
}

// unit returns a uniform number in [0, 1) from Rand (0.5 if it fails).
func (s *RotatingSource) unit() float64 {
	var b [8]byte
	if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
		return 0.5
	}
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}

// maxNap bounds one sleep, so that a clock that jumps (a suspended
// machine) is noticed within a minute.
const maxNap = time.Minute

func (s *RotatingSource) waitForRotation(ctx context.Context) error {
	for {
		s.mu.RLock()
		next := s.st.NextRotation
		s.mu.RUnlock()
		d := next.Sub(s.opts.Now())
		if d <= 0 {
			return nil
		}
		if err := s.opts.Sleep(ctx, min(d, maxNap)); err != nil {
			return err
		}
	}
}

// rotate performs one rotation attempt, retried with one idempotency key
// until it succeeds, ctx is done, or it cannot succeed.
func (s *RotatingSource) rotate(ctx context.Context) error {
	key, err := NewIdempotencyKey(s.opts.Rand)
	if err != nil {
		return err
	}
	req := RotateRequest{}
	if s.opts.Grace > 0 {
		req.Grace = s.opts.Grace.String()
	}
	if s.opts.TTL > 0 {
		req.TTL = s.opts.TTL.String()
	}
	alreadyRotated := false
	for attempt := 0; ; attempt++ {
		at := s.opts.Now()
		var it *IssuedToken
		if key != "" {
			it, err = s.c.RotateSelfIdempotent(ctx, key, req)
		} else {
			it, err = s.c.RotateSelf(ctx, req)
		}
		if err == nil && checkToken(it.Secret) != nil {
			err = errors.New("phigate: the rotation's answer carries no usable secret")
		}
		if err == nil {
			s.applied(ctx, it, at)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case key != "" && apiCode(err, http.StatusServiceUnavailable, "idempotency_unavailable"):
			// The server keeps no answers to replay: it refused before
			// rotating. Rotating without a key is better than letting the
			// token expire, but a lost answer will then end the chain.
			s.log.Warn("the server cannot replay rotations (idempotency_unavailable): rotating without an Idempotency-Key",
				"token_id", s.State().TokenID)
			key = ""
			continue
		case IsAlreadyRotated(err):
			// The rotation happened (an earlier attempt's answer was lost,
			// or another process holds this secret): only this key can get
			// the new secret back.
			if !alreadyRotated {
				s.log.Error("the server says this token was already rotated: retrying with the same idempotency key; "+
					"the previous secret works only for the grace period", "token_id", s.State().TokenID)
			}
			alreadyRotated = true
			s.failed(err, "rotating")
		case permanent(err):
			return fmt.Errorf("%w: %w", ErrRotationEnded, err)
		default:
			s.failed(err, "rotating")
		}
		s.mu.RLock()
		exp := s.st.ExpiresAt
		s.mu.RUnlock()
		if !s.opts.Now().Before(exp) {
			return fmt.Errorf("%w: the token expired at %s before a rotation succeeded (last error: %w)", ErrRotationEnded, exp.UTC().Format(time.RFC3339), err)
		}
		if err := s.opts.Sleep(ctx, min(s.backoff(attempt), max(exp.Sub(s.opts.Now())/4, time.Millisecond))); err != nil {
			return err
		}
	}
}

func (s *RotatingSource) applied(ctx context.Context, it *IssuedToken, at time.Time) {
	now := s.opts.Now()
	u := Update{Rotated: true, TokenID: it.ID, Secret: it.Secret, ExpiresAt: it.ExpiresAt, At: now}
	if it.PreviousNotAfter != nil {
		u.PreviousNotAfter = *it.PreviousNotAfter
	}
	s.mu.Lock()
	s.secret = it.Secret
	s.st.TokenID, s.st.ExpiresAt = it.ID, it.ExpiresAt
	if p := periodOf(&it.Token); p > 0 {
		s.st.Period = p
	}
	s.st.LastRotation = now
	s.st.Rotations++
	s.st.Status, s.st.Failures, s.st.LastError = "ok", 0, ""
	s.schedule(at)
	next := s.st.NextRotation
	s.mu.Unlock()
	s.log.Info("token rotated", "token_id", it.ID, "expires_at", it.ExpiresAt, "previous_not_after", u.PreviousNotAfter, "next_rotation", next)
	if s.opts.OnUpdate != nil {
		s.opts.OnUpdate(ctx, u)
	}
}

// failed records a failed attempt and warns, loudly once the token is in
// the last sixth of its period.
func (s *RotatingSource) failed(err error, what string) {
	now := s.opts.Now()
	s.mu.Lock()
	s.st.Failures++
	s.st.LastError = err.Error()
	left := s.st.ExpiresAt.Sub(now)
	loud := !s.st.ExpiresAt.IsZero() && left <= s.st.Period/6
	if loud {
		s.st.Status = "warning"
	} else {
		s.st.Status = "retrying"
	}
	id, n := s.st.TokenID, s.st.Failures
	s.mu.Unlock()
	if loud {
		s.log.Error("TOKEN ABOUT TO STOP WORKING: rotation keeps failing", "token_id", id, "what", what,
			"time_left", left.Round(time.Millisecond).String(), "failures", n, "err", err)
		return
	}
	s.log.Warn("rotation attempt failed; retrying", "token_id", id, "what", what, "failures", n, "err", err)
}

// backoff is the wait after the attempt-th consecutive failure: doubling
// from MinBackoff to MaxBackoff, with up to half of it as jitter.
func (s *RotatingSource) backoff(attempt int) time.Duration {
	s.mu.RLock()
	p := s.st.Period
	s.mu.RUnlock()
	lo := s.opts.MinBackoff
	if lo == 0 {
		lo = time.Second
		if p > 0 {
			lo = min(lo, max(p/20, 10*time.Millisecond))
		}
	}
	d := lo
	for i := 0; i < attempt && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	return d/2 + time.Duration(float64(d/2)*s.unit())
}

// permanent reports whether no retry can change err: the server refused
// the token or the rotation itself (4xx other than 408, 409
// already_rotated and 429), or the server is not the one pinned.
func permanent(err error) bool {
	var pe *PinMismatchError
	var ue *UntrustedCertificateError
	if errors.As(err, &pe) || errors.As(err, &ue) {
		return true // a mismatch fails hard
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch {
	case ae.Status == http.StatusRequestTimeout, ae.Status == http.StatusTooManyRequests:
		return false
	case ae.Status == http.StatusConflict && ae.Code == "already_rotated":
		return false
	}
	return ae.Status >= 400 && ae.Status < 500
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
