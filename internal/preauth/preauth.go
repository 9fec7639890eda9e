// Package preauth records the denials of requests that never authenticated
// — no token, a malformed or unknown one, a revoked, expired or rotated-out
// one, and anything refused before a token was looked at — aggregated, so
// that an anonymous client cannot fill the audit log's disk. The server
// sends it the grants and completions of the requests it serves without a
// token (the gateway's public capability statement) too: Record takes any
// entry, and groups it by its action as well.
//
// # What is recorded
//
// Denials are grouped per window (Config.Window, fixed windows from the
// first Record) by source address, action, reason and upstream. The first
// Config.Full denials of a group in a window are appended to the audit log
// as they come, each one durably before Record returns, with the strings a
// client chose (method, path and query, User-Agent, break-glass
// justification, target)
// cut to Config.MaxField bytes and marked with "…[+N bytes]". Every
// further denial of the group is counted, and at the end of the window —
// or at Close — one summary entry per group is appended: the same action,
// outcome, source, reason and upstream, Target "summary", and in After
//
//	{"summary":true,"count":N,"window_start":"…","window_end":"…","recorded_in_full":F}
//
// with N the denials counted and not recorded one by one (F = Config.Full
// were). The log thus still proves how many there were: a denial is
// recorded once it is in an entry or in a counter a summary will be
// written from.
//
// # Bounds
//
// At most Config.MaxGroups groups are kept per window; the denials of
// further groups share one overflow group per action and reason, whose
// source is "*" (they are counted, never dropped). The bytes written per
// anonymous request are thus bounded by Full·(entry size)/(requests in the
// window) plus one summary per group: under a flood, almost nothing.
//
// # Failures
//
// Record returns an error when it cannot record: the Append of a full
// entry failed, or the last summary could not be written (its counts are
// kept and written with the next one). The caller then answers 503, as
// for a grant that cannot be recorded (fail closed).
package preauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/audit"
)

// Appender is the audit log. Append MUST NOT return nil before e is
// durably committed.
type Appender interface {
	Append(ctx context.Context, e *audit.Entry) (uint64, error)
}

// Config sets how denials are aggregated.
type Config struct {
	// Full is the number of denials of a group recorded one by one per
	// window; >= 0.
	Full int
	// Window is the span of a summary; > 0.
	Window time.Duration
	// MaxGroups bounds the groups kept per window; > 0.
	MaxGroups int
	// MaxField bounds each string a client chose, in bytes; >= 32.
	MaxField int
}

// Defaults.
const (
	DefaultFull      = 10
	DefaultWindow    = time.Minute
	DefaultMaxGroups = 10_000
	DefaultMaxField  = 256
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Full: DefaultFull, Window: DefaultWindow, MaxGroups: DefaultMaxGroups, MaxField: DefaultMaxField}
}

// ErrConfig is returned by New for settings out of range.
var ErrConfig = errors.New("preauth: invalid config")

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("preauth: closed")

// Anonymous reports whether e is a denial (auth.failed or access.denied,
// refused or failed) of a request that never authenticated: no token
// named (Actor.TokenID empty), or a token that is no longer a credential
// (expired, revoked, rotated out).
func Anonymous(e *audit.Entry) bool {
	if e.Action != audit.ActionAuthFailed && e.Action != audit.ActionAccessDenied || e.Outcome == audit.OutcomeSuccess {
		return false
	}
	if e.Actor.TokenID == "" {
		return true
	}
	switch e.Reason {
	case "token_expired", "token_revoked", "token_rotated", "invalid_token":
		return true
	}
	return false
}

type group struct {
	ip, reason, upstream string
	action               audit.Action
	outcome              audit.Outcome
}

type count struct {
	seen, counted int
	status        int
}

// Recorder aggregates anonymous denials into an Appender. Its methods are
// safe for concurrent use.
type Recorder struct {
	app Appender
	cfg Config
	now func() time.Time
	log *slog.Logger

	flushMu sync.Mutex // one flush at a time, in window order

	mu     sync.Mutex
	start  time.Time // of the current window; zero before the first Record
	groups map[group]*count
	failed error // the last summary could not be written
	closed bool
}

// New returns a Recorder appending to app, reading the time from now (nil:
// time.Now); log (nil: discard) hears of each summary written (one line per
// group and window, never one per denial) and of those that failed.
func New(app Appender, cfg Config, now func() time.Time, log *slog.Logger) (*Recorder, error) {
	if cfg.Full < 0 || cfg.Window <= 0 || cfg.MaxGroups <= 0 || cfg.MaxField < 32 {
		return nil, ErrConfig
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{app: app, cfg: cfg, now: now, log: log, groups: make(map[group]*count)}, nil
}

// Record records the anonymous denial e: appended (durably, cut to the
// field limit) when it is among the first of its group in the window,
// else counted for the window's summary. Record does not keep e.
func (r *Recorder) Record(ctx context.Context, e *audit.Entry) error {
	now := r.now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.start.IsZero() {
		r.start = now
	}
	if now.Sub(r.start) >= r.cfg.Window {
		r.mu.Unlock()
		if err := r.flush(ctx, false); err != nil {
			return err
		}
		r.mu.Lock()
	}
	g := group{ip: e.Source.IP, reason: e.Reason, upstream: e.Upstream, action: e.Action, outcome: e.Outcome}
	c := r.groups[g]
	if c == nil {
		if len(r.groups) >= r.cfg.MaxGroups {
			g.ip, g.upstream = "*", ""
			c = r.groups[g]
		}
		if c == nil {
			c = &count{}
			r.groups[g] = c
		}
	}
	c.seen++
	c.status = e.Status
	if c.seen > r.cfg.Full {
		c.counted++
		err := r.failed
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	_, err := r.app.Append(ctx, r.cut(e))
	return err
}

// cut returns a copy of e with the strings a client chose cut to MaxField.
func (r *Recorder) cut(e *audit.Entry) *audit.Entry {
	c := *e
	c.Path = Truncate(c.Path, r.cfg.MaxField)
	c.Method = Truncate(c.Method, r.cfg.MaxField)
	c.Source.UserAgent = Truncate(c.Source.UserAgent, r.cfg.MaxField)
	c.BreakGlass = Truncate(c.BreakGlass, r.cfg.MaxField)
	c.Target = Truncate(c.Target, r.cfg.MaxField)
	return &c
}

// Truncate cuts s to at most max bytes (at a UTF-8 boundary), marking the
// cut with "…[+N bytes]" (inside the max) where N is what was cut.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	// the marker's length depends on N, which depends on where the cut
	// falls: take the longest marker this s can need
	marker := "…[+" + strconv.Itoa(len(s)) + " bytes]"
	n := max - len(marker)
	if n < 0 {
		n = 0
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…[+" + strconv.Itoa(len(s)-n) + " bytes]"
}

// Run writes each window's summaries at its end until ctx ends. Without
// Run, summaries are written by the first Record after a window's end and
// by Close.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Window / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			r.flush(fctx, false)
			cancel()
		}
	}
}

// Flush ends the current window: it appends one summary per group that
// counted denials, and starts a new window. A summary that cannot be
// written keeps its count for the next Flush, and makes Record fail until
// one succeeds.
func (r *Recorder) Flush(ctx context.Context) error { return r.flush(ctx, true) }

// flush is Flush; unless force, only when the window is over (several
// Records may find it over at once: one flushes).
func (r *Recorder) flush(ctx context.Context, force bool) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	now := r.now()
	r.mu.Lock()
	if !force && (r.start.IsZero() || now.Sub(r.start) < r.cfg.Window) {
		err := r.failed
		r.mu.Unlock()
		return err
	}
	start := r.start
	groups := r.groups
	r.groups = make(map[group]*count, len(groups))
	if !r.start.IsZero() {
		r.start = now
	}
	r.mu.Unlock()

	var errs []error
	for g, c := range groups {
		if c.counted == 0 {
			continue
		}
		if err := r.summary(ctx, g, c, start, now); err != nil {
			errs = append(errs, err)
			r.mu.Lock()
			// keep the count for the next summary
			k := r.groups[g]
			if k == nil {
				k = &count{seen: r.cfg.Full}
				r.groups[g] = k
			}
			k.counted += c.counted
			r.mu.Unlock()
		}
	}
	err := errors.Join(errs...)
	r.mu.Lock()
	r.failed = nil
	if err != nil {
		r.failed = fmt.Errorf("preauth: a summary of denials could not be recorded: %w", err)
		r.log.Error("recording a summary of denials failed; anonymous denials are refused with 503 until one succeeds", "err", err)
	}
	r.mu.Unlock()
	return err
}

type summaryDoc struct {
	Summary        bool      `json:"summary"`
	Count          int       `json:"count"`
	WindowStart    time.Time `json:"window_start"`
	WindowEnd      time.Time `json:"window_end"`
	RecordedInFull int       `json:"recorded_in_full"`
}

func (r *Recorder) summary(ctx context.Context, g group, c *count, start, end time.Time) error {
	doc, err := json.Marshal(summaryDoc{Summary: true, Count: c.counted, WindowStart: start.UTC(), WindowEnd: end.UTC(), RecordedInFull: c.seen - c.counted})
	if err != nil {
		return err
	}
	e := &audit.Entry{Action: g.action, Outcome: g.outcome, Source: audit.Source{IP: g.ip}, Reason: g.reason,
		Upstream: g.upstream, Target: "summary", Status: c.status, After: doc}
	if _, err = r.app.Append(ctx, e); err == nil {
		r.log.Info("denials before authentication aggregated", "source", g.ip, "action", g.action, "reason", g.reason,
			"upstream", g.upstream, "counted", c.counted, "in_full", c.seen-c.counted, "window_start", start.UTC())
	}
	return err
}

// Close writes the summaries of the current window; Records after it fail
// with ErrClosed.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	return r.flush(ctx, true)
}
