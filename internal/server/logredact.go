package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/token"
)

// RedactLogs wraps h so that nothing of token shape ("phi_" and a run of
// 32 or more base62 characters, the shape audit.Redact removes) reaches
// it: the message, every attribute's key and value (strings, errors,
// fmt.Stringers, []string, groups, LogValuers, attributes given to
// WithAttrs, group names, and any other value as fmt prints it) are
// redacted before h sees them. It is defence in depth: no code is meant to
// log a secret, and a line that holds none passes through unchanged, with
// no allocation. Run wraps the logger it is given; wrapping twice is a
// no-op.
func RedactLogs(h slog.Handler) slog.Handler {
	if _, ok := h.(*redactHandler); ok {
		return h
	}
	return &redactHandler{h: h}
}

type redactHandler struct{ h slog.Handler }

func (r *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	dirty := suspect(rec.Message)
	if !dirty {
		rec.Attrs(func(a slog.Attr) bool {
			dirty = attrSuspect(a)
			return !dirty
		})
	}
	if !dirty {
		return r.h.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, audit.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = redactAttr(a)
	}
	return &redactHandler{h: r.h.WithAttrs(clean)}
}

func (r *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{h: r.h.WithGroup(audit.Redact(name))}
}

// suspect reports whether s may hold a token: the cheap test; audit.Redact
// decides.
func suspect(s string) bool { return strings.Contains(s, token.Prefix) }

// attrSuspect reports whether a may hold a token anywhere.
func attrSuspect(a slog.Attr) bool {
	if suspect(a.Key) {
		return true
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return suspect(v.String())
	case slog.KindGroup:
		for _, g := range v.Group() {
			if attrSuspect(g) {
				return true
			}
		}
		return false
	case slog.KindAny:
		_, dirty := anyText(v.Any())
		return dirty
	}
	// numbers, bools, times, durations hold no text
	return false
}

// anyText returns the text a handler would write for x, when x is of a
// kind that can carry one, and whether it may hold a token.
func anyText(x any) (string, bool) {
	var s string
	switch v := x.(type) {
	case nil:
		return "", false
	case error:
		s = v.Error()
	case fmt.Stringer:
		s = v.String()
	case string:
		s = v
	case []string:
		for _, e := range v {
			if suspect(e) {
				return "", true
			}
		}
		return "", false
	case []byte:
		s = string(v)
	default:
		s = fmt.Sprint(v)
	}
	return s, suspect(s)
}

// redactAttr returns a with every token-shaped run redacted. A value that
// needs it becomes a string (an error, a Stringer or any other value: its
// text), a []string stays a []string.
func redactAttr(a slog.Attr) slog.Attr {
	a.Key = audit.Redact(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if suspect(v.String()) {
			v = slog.StringValue(audit.Redact(v.String()))
		}
	case slog.KindGroup:
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		for i, e := range g {
			clean[i] = redactAttr(e)
		}
		v = slog.GroupValue(clean...)
	case slog.KindAny:
		if ss, ok := v.Any().([]string); ok {
			clean := make([]string, len(ss))
			for i, e := range ss {
				clean[i] = audit.Redact(e)
			}
			v = slog.AnyValue(clean)
		} else if s, dirty := anyText(v.Any()); dirty {
			v = slog.StringValue(audit.Redact(s))
		}
	}
	a.Value = v
	return a
}
