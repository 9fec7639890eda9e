package config

import (
	"errors"
	"strings"
	"testing"
)

func TestMonitorSectionRefusesBadValues(t *testing.T) {
	const head = "data_dir: d\ntls: {cert_file: c, key_file: k}\nmonitor:\n"
	hook := func(fields string) string {
		return "  sinks:\n    webhooks:\n      - {" + fields + "}\n"
	}
	tests := []struct {
		name, body string
		line       int
		want       string
	}{
		{"UnknownMode", "  new_network: {mode: stop}\n", 4, `monitor.new_network.mode: must be off, alert or block (got "stop")`},
		{"BlockOnAnAlertOnlyDetector", "  rate_spike: {mode: block}\n", 4, `monitor.rate_spike.mode: must be off or alert (got "block")`},
		{"KNotANumber", "  rate_spike: {k: many}\n", 4, "monitor.rate_spike.k: must be a number"},
		{"KInfinite", "  rate_spike: {k: .inf}\n", 4, "monitor.rate_spike.k: must be a finite number"},
		{"ZeroK", "  rate_spike: {k: 0}\n", 4, "monitor.rate_spike.k: must be greater than zero"},
		{"AlphaOne", "  rate_spike: {alpha: 1}\n", 4, "monitor.rate_spike.alpha: must be between 0 and 1"},
		{"ProbingDenialsOver32", "  probing: {denials: 33}\n", 4, "monitor.probing.denials: must be from 1 to 32"},
		{"EmptyProbingReason", "  probing: {reasons: [\"\"]}\n", 4, "monitor.probing.reasons[0]: must not be empty"},
		{"ZeroMaxTokens", "  max_tokens: 0\n", 4, "monitor.max_tokens: must be greater than zero"},
		{"NegativeCooldown", "  cooldown: -1s\n", 4, "monitor.cooldown: must not be negative"},
		{"TooManyPrefixes", "  new_network: {max_prefixes: 17}\n", 4, "monitor.new_network.max_prefixes: must be from 1 to 16"},
		{"SharingMinSourcesZero", "  sharing: {min_sources: 0}\n", 4, "monitor.sharing.min_sources: must be from 1 to 32"},
		{"UnknownKey", "  detectors: {}\n", 4, "monitor.detectors"},
		{"WebhookWithoutURL", hook("secret: 'secret:h'"), 6, "monitor.sinks.webhooks[0].url: required"},
		{"WebhookPlainHTTP", hook("url: 'http://h.example/x', secret: 'secret:h'"), 6, "monitor.sinks.webhooks[0].url: plain http://"},
		{"WebhookURLWithCredentials", hook("url: 'https://u:p@h.example/x', secret: 'secret:h'"), 6, "monitor.sinks.webhooks[0].url: must not hold credentials"},
		{"WebhookSecretInline", hook("url: 'https://h.example/x', secret: hunter2hunter2"), 6, "monitor.sinks.webhooks[0].secret: must be env:NAME"},
		{"WebhookWithoutSecret", hook("url: 'https://h.example/x'"), 6, "monitor.sinks.webhooks[0].secret: required"},
		{"WebhookAttemptsOver20", hook("url: 'https://h.example/x', secret: 'env:H', attempts: 21"), 6, "monitor.sinks.webhooks[0].attempts: must be from 1 to 20"},
		{"WebhookMaxBackoffBelowBackoff", hook("url: 'https://h.example/x', secret: 'env:H', backoff: 2s, max_backoff: 1s"), 6, "monitor.sinks.webhooks[0].max_backoff: must be at least backoff (2s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head + tc.body))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse = %v, want an *Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if e.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", e.Line, tc.line, err)
			}
		})
	}
}

func TestMonitorSectionDefaultsAreValid(t *testing.T) {
	c, err := Parse([]byte("data_dir: d\ntls: {cert_file: c, key_file: k}\nmonitor:\n  sinks:\n    webhooks:\n      - {url: 'https://h.example/x', secret: 'secret:alert-webhook'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Monitor
	if !m.Enabled || !m.Sinks.Log || m.RateSpike.K != 6 || m.NewNetwork.Mode != ModeAlert {
		t.Errorf("defaults not applied: %+v", m)
	}
	w := m.Sinks.Webhooks[0].WithDefaults()
	if w.Queue != DefaultWebhookQueue || w.Attempts != DefaultWebhookAttempts || w.Backoff.Duration() != DefaultWebhookBackoff {
		t.Errorf("webhook defaults: %+v", w)
	}
}
