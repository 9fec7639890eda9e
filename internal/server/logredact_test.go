package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/token"
)

type stringer struct{ s string }

func (s stringer) String() string { return "stringer " + s.s }

type valuer struct{ s string }

func (v valuer) LogValue() slog.Value { return slog.StringValue("valuer " + v.s) }

type wrapped struct{ Secret string }

func genSecret(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLogLinesHoldNoTokenShapedText logs a generated secret in every place
// a log line can carry text, through both handlers the CLI builds, and
// finds each redacted.
func TestLogLinesHoldNoTokenShapedText(t *testing.T) {
	sec := genSecret(t)
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		keep string // what must still be there
	}{
		{"message", func(l *slog.Logger) { l.Info("found " + sec + " in a file") }, "in a file"},
		{"string attribute", func(l *slog.Logger) { l.Info("m", "header", "Bearer "+sec) }, "Bearer phi_[REDACTED]"},
		{"error", func(l *slog.Logger) { l.Error("m", "err", fmt.Errorf("verify: %w", errors.New("bad token "+sec))) }, "verify: bad token"},
		{"group", func(l *slog.Logger) { l.Info("m", slog.Group("req", "auth", sec, "n", 3)) }, "req"},
		{"nested group", func(l *slog.Logger) { l.Info("m", slog.Group("a", slog.Group("b", "c", sec))) }, "REDACTED"},
		{"stringer", func(l *slog.Logger) { l.Info("m", "s", stringer{sec}) }, "stringer phi_[REDACTED]"},
		{"[]string", func(l *slog.Logger) { l.Info("m", "list", []string{"tok_1", sec}) }, "tok_1"},
		{"log valuer", func(l *slog.Logger) { l.Info("m", "v", valuer{sec}) }, "valuer phi_[REDACTED]"},
		{"struct", func(l *slog.Logger) { l.Info("m", "v", wrapped{sec}) }, "REDACTED"},
		{"key", func(l *slog.Logger) { l.Info("m", sec, 1) }, "REDACTED"},
		{"with attrs", func(l *slog.Logger) { l.With("auth", sec).Info("m") }, "REDACTED"},
		{"with group", func(l *slog.Logger) { l.WithGroup(sec).Info("m", "k", "v") }, "REDACTED"},
		{"two tokens", func(l *slog.Logger) { l.Info(sec + " " + genSecret(t)) }, "phi_[REDACTED] phi_[REDACTED]"},
	}
	handlers := map[string]func(io.Writer) slog.Handler{
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	}
	for hn, mk := range handlers {
		for _, c := range cases {
			t.Run(hn+"/"+c.name, func(t *testing.T) {
				var buf bytes.Buffer
				c.log(slog.New(RedactLogs(mk(&buf))))
				out := buf.String()
				if strings.Contains(out, sec[len(token.Prefix):len(token.Prefix)+16]) {
					t.Fatalf("the secret reached the log: %s", strings.ReplaceAll(out, sec, "<SECRET>"))
				}
				if !strings.Contains(out, c.keep) {
					t.Fatalf("line %q lacks %q", out, c.keep)
				}
			})
		}
	}
}

// TestLogLinesWithoutTokensAreUnchanged: the handler changes nothing else.
func TestLogLinesWithoutTokensAreUnchanged(t *testing.T) {
	log := func(l *slog.Logger) {
		l.With("node", "n1").Info("token revoked", "token_id", "tok_abc", "phi", "phi_short", "ids", []string{"a"},
			"err", errors.New("boom"), slog.Group("g", "k", 1))
	}
	var plain, red bytes.Buffer
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	log(slog.New(slog.NewJSONHandler(&plain, opts)))
	log(slog.New(RedactLogs(slog.NewJSONHandler(&red, opts))))
	if plain.String() != red.String() {
		t.Fatalf("redacting changed a clean line:\n%s\n%s", plain.String(), red.String())
	}
}

// TestRedactLogsWrapsOnce: Run wraps the logger it is given, which the
// CLI has already wrapped; the second wrap is a no-op.
func TestRedactLogsWrapsOnce(t *testing.T) {
	h := RedactLogs(slog.NewJSONHandler(io.Discard, nil))
	if RedactLogs(h) != h {
		t.Fatal("wrapping a redacting handler again wraps it twice")
	}
}

func BenchmarkLogLine(b *testing.B) {
	sec := genSecret(b)
	for _, bc := range []struct {
		name   string
		redact bool
		msg    string
	}{{"plain", false, "token revoked"}, {"redacting/clean", true, "token revoked"}, {"redacting/token", true, "found " + sec}} {
		b.Run(bc.name, func(b *testing.B) {
			var h slog.Handler = slog.NewJSONHandler(io.Discard, nil)
			if bc.redact {
				h = RedactLogs(h)
			}
			l := slog.New(h)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(ctx, slog.LevelInfo, bc.msg, slog.String("request_id", "r-1"), slog.String("token_id", "tok_abc"),
					slog.String("subject", "svc:lab"), slog.Int("status", 200))
			}
		})
	}
}
