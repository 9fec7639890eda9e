package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// valid is a complete configuration; the invalid cases below each mutate
// one line of it. Line numbers are in the comments of the test table.
const valid = `data_dir: /var/lib/phigate
admin:
  listen: 127.0.0.1:8443
gateway:
  listen: 127.0.0.1:9443
tls:
  cert_file: /etc/phigate/tls.crt
  key_file: /etc/phigate/tls.key
tokens:
  default_ttl: 15m
  max_ttl: 24h
  bootstrap_ttl: 1h
  cache_size: 150000
  last_used_flush: 1s
log:
  level: info
  format: auto
limits:
  max_body_bytes: 1048576
  max_header_bytes: 65536
  read_header_timeout: 5s
  read_timeout: 30s
  write_timeout: 30s
  idle_timeout: 120s
`

// production is Default with the keys a non-dev server must have.
func production() *Config {
	c := Default()
	c.DataDir = "/var/lib/phigate"
	c.TLS = TLS{CertFile: "/etc/phigate/tls.crt", KeyFile: "/etc/phigate/tls.key"}
	return c
}

func TestExampleFileLoads(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := production()
	want.Vault.MasterKey = "file:/etc/phigate/master.key"
	want.Audit = Audit{Node: "phigate-1", WitnessFile: "/var/lib/phigate-witness/checkpoints.txt",
		Syslog: Syslog{Addr: "siem.example.org:6514", Format: "fhir"}, Anonymous: want.Audit.Anonymous}
	want.Monitor.Sinks.Webhooks = []Webhook{{URL: "https://hooks.example.org/phigate", Secret: "secret:alert-webhook"}}
	want.Store = "sqlite"
	want.Metrics = Metrics{Listen: "10.0.0.5:9100"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example.yaml = %+v\nwant %+v", c, want)
	}
}

func TestAuditKeysValidated(t *testing.T) {
	for name, doc := range map[string]string{
		"witness_url_plain_http": "audit:\n  witness_url: http://w.example/add\n",
		"syslog_format":          "audit:\n  syslog:\n    addr: siem:6514\n    format: xml\n",
		"syslog_without_addr":    "audit:\n  syslog:\n    format: json\n",
		"syslog_addr_no_port":    "audit:\n  syslog:\n    addr: siem\n",
	} {
		t.Run(name, func(t *testing.T) {
			base := "data_dir: /d\ntls:\n  cert_file: /c\n  key_file: /k\n"
			if _, err := Parse([]byte(base + doc)); err == nil || !strings.Contains(err.Error(), "line ") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestValidDocumentIsTheDefaults(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if want := production(); !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestDefaultsFillWhatTheFileLeavesOut(t *testing.T) {
	for name, doc := range map[string]string{
		"required keys only": "data_dir: /var/lib/phigate\ntls: {cert_file: /etc/phigate/tls.crt, key_file: /etc/phigate/tls.key}\n",
		"empty sections": "data_dir: /var/lib/phigate\ntls:\n  cert_file: /etc/phigate/tls.crt\n  key_file: /etc/phigate/tls.key\n" +
			"admin:\ngateway:\ntokens:\nlog:\nlimits:\n",
		"null values": "data_dir: /var/lib/phigate\ntls:\n  cert_file: /etc/phigate/tls.crt\n  key_file: /etc/phigate/tls.key\n" +
			"tokens:\n  max_ttl: ~\n  cache_size: null\nlog: {level: }\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if want := production(); !reflect.DeepEqual(c, want) {
				t.Errorf("got %+v\nwant %+v", c, want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := map[string][2]any{
		"admin.listen":                {c.Admin.Listen, "127.0.0.1:8443"},
		"gateway.listen":              {c.Gateway.Listen, "127.0.0.1:9443"},
		"tokens.default_ttl":          {c.Tokens.DefaultTTL.Duration(), 15 * time.Minute},
		"tokens.max_ttl":              {c.Tokens.MaxTTL.Duration(), 24 * time.Hour},
		"tokens.bootstrap_ttl":        {c.Tokens.BootstrapTTL.Duration(), time.Hour},
		"tokens.default_max_lifetime": {c.Tokens.DefaultMaxLifetime.Duration(), 90 * 24 * time.Hour},
		"tokens.cache_size":           {c.Tokens.CacheSize, 150000},
		"tokens.last_used":            {c.Tokens.LastUsedFlush.Duration(), time.Second},
		"log.level":                   {c.Log.Level, "info"},
		"log.format":                  {c.Log.Format, "auto"},
		"limits.max_body_bytes":       {c.Limits.MaxBodyBytes, int64(1 << 20)},
		"limits.max_header":           {c.Limits.MaxHeaderBytes, 64 << 10},
		"limits.read_header":          {c.Limits.ReadHeaderTimeout.Duration(), 5 * time.Second},
		"limits.read":                 {c.Limits.ReadTimeout.Duration(), 30 * time.Second},
		"limits.write":                {c.Limits.WriteTimeout.Duration(), 30 * time.Second},
		"limits.idle":                 {c.Limits.IdleTimeout.Duration(), 120 * time.Second},
		"data_dir":                    {c.DataDir, ""},
		"tls.cert_file":               {c.TLS.CertFile, ""},
	}
	for name, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %v, want %v", name, v[0], v[1])
		}
	}
}

func TestParseReadsEveryKey(t *testing.T) {
	doc := `data_dir: ./data
admin: {listen: ":8443"}
gateway: {listen: "[::1]:9443", metadata: {per_minute: 30, burst: 5, max_sources: 100, max_bytes: 65536}}
tls: {cert_file: c.pem, key_file: k.pem}
tokens:
  default_ttl: &short 5m
  max_ttl: 1h30m
  bootstrap_ttl: *short
  cache_size: 1_000
  last_used_flush: 250ms
  default_max_lifetime: 720h
log: {level: debug, format: json}
limits:
  max_body_bytes: 0x100000
  max_header_bytes: 4096
  read_header_timeout: 1s
  read_timeout: 2s
  write_timeout: 3s
  idle_timeout: 4m
audit:
  anonymous: {full_per_window: 3, window: 30s, max_groups: 50, max_field_bytes: 128}
bruteforce: {slow_after: 2, block_after: 7, window: 2m, delay: 1s, cool_off: 10m, max_sources: 99}
storage: {min_free_bytes: 1048576, min_free_percent: 0, check_interval: 250ms}
monitor:
  enabled: false
  max_tokens: 50
  queue: 8
  snapshot_every: 30s
  cooldown: 0s
  new_network: {mode: block, learning: 24h, max_prefixes: 4}
  rate_spike: {mode: off, k: 4.5, floor_1s: 10, floor_10s: 50.5, alpha: 0.1}
  off_hours: {mode: block, learning: 48h, max_subjects: 7}
  probing: {mode: alert, denials: 5, window: 5s, reasons: [insufficient_scope]}
  sharing: {mode: off, window: 1m, learning: 1h, margin: 0, min_sources: 2}
  break_glass: {mode: off}
  sinks:
    log: false
    webhooks:
      - {url: "https://hooks.example/a", secret: "secret:hook", queue: 3, attempts: 2, backoff: 1s, max_backoff: 2s}
store: sqlite
postgres: {ca_file: db-ca.pem, max_conns: 8, poll_interval: 500ms, max_staleness: 3s}
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DataDir: "./data",
		Admin:   Listener{Listen: ":8443"},
		Gateway: Gateway{Listen: "[::1]:9443", Limits: Default().Gateway.Limits,
			Metadata: PublicMetadata{PerMinute: 30, Burst: 5, MaxSources: 100, MaxBytes: 64 << 10}},
		TLS: TLS{"c.pem", "k.pem"},
		Tokens: Tokens{
			DefaultTTL: Duration(5 * time.Minute), MaxTTL: Duration(90 * time.Minute), BootstrapTTL: Duration(5 * time.Minute),
			CacheSize: 1000, LastUsedFlush: Duration(250 * time.Millisecond), DefaultMaxLifetime: Duration(720 * time.Hour),
		},
		Log: Log{"debug", "json"},
		Limits: Limits{
			MaxBodyBytes: 1 << 20, MaxHeaderBytes: 4096,
			ReadHeaderTimeout: Duration(time.Second), ReadTimeout: Duration(2 * time.Second),
			WriteTimeout: Duration(3 * time.Second), IdleTimeout: Duration(4 * time.Minute),
		},
		Audit: Audit{Anonymous: AnonymousDenials{FullPerWindow: 3, Window: Duration(30 * time.Second), MaxGroups: 50, MaxFieldBytes: 128}},
		BruteForce: BruteForce{SlowAfter: 2, BlockAfter: 7, Window: Duration(2 * time.Minute), Delay: Duration(time.Second),
			CoolOff: Duration(10 * time.Minute), MaxSources: 99},
		Storage: Storage{MinFreeBytes: 1 << 20, CheckInterval: Duration(250 * time.Millisecond)},
		Store:   "sqlite",
		Postgres: Postgres{CAFile: "db-ca.pem", MaxConns: 8, PollInterval: Duration(500 * time.Millisecond),
			MaxStaleness: Duration(3 * time.Second)},
		Monitor: Monitor{
			MaxTokens: 50, Queue: 8, SnapshotEvery: Duration(30 * time.Second),
			NewNetwork: NewNetwork{Mode: "block", Learning: Duration(24 * time.Hour), MaxPrefixes: 4},
			RateSpike:  RateSpike{Mode: "off", K: 4.5, Floor1s: 10, Floor10s: 50.5, Alpha: 0.1},
			OffHours:   OffHours{Mode: "block", Learning: Duration(48 * time.Hour), MaxSubjects: 7},
			Probing:    Probing{Mode: "alert", Denials: 5, Window: Duration(5 * time.Second), Reasons: []string{"insufficient_scope"}},
			Sharing:    Sharing{Mode: "off", Window: Duration(time.Minute), Learning: Duration(time.Hour), MinSources: 2},
			BreakGlass: BreakGlass{Mode: "off"},
			Sinks: Sinks{Webhooks: []Webhook{{URL: "https://hooks.example/a", Secret: "secret:hook", Queue: 3, Attempts: 2,
				Backoff: Duration(time.Second), MaxBackoff: Duration(2 * time.Second)}}},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		// Either old/new, one line of valid replaced ("" new deletes it),
		// or doc, a whole document.
		old, new, doc string
		wantLine      int
		wantErr       string // in the message, after the position
	}{
		// Values.
		{name: "max_ttl below default_ttl", old: "max_ttl: 24h", new: "max_ttl: 10m", wantLine: 11,
			wantErr: "tokens.max_ttl: must be at least tokens.default_ttl (15m)"},
		{name: "default_ttl above default max_ttl", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens:\n  default_ttl: 48h\n",
			wantLine: 4, wantErr: "tokens.default_ttl: must not exceed tokens.max_ttl (24h)"},
		{name: "default_ttl above null max_ttl", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens:\n  max_ttl:\n  default_ttl: 48h\n",
			wantLine: 5, wantErr: "tokens.default_ttl: must not exceed tokens.max_ttl (24h)"},
		{name: "bootstrap_ttl above max_ttl", old: "bootstrap_ttl: 1h", new: "bootstrap_ttl: 25h", wantLine: 11,
			wantErr: "tokens.max_ttl: must be at least tokens.bootstrap_ttl (25h)"},
		{name: "default_max_lifetime below max_ttl", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens:\n  default_max_lifetime: 1h\n",
			wantLine: 4, wantErr: "tokens.default_max_lifetime: must be at least tokens.max_ttl (24h)"},
		{name: "zero default_max_lifetime", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens:\n  default_max_lifetime: 0s\n",
			wantLine: 4, wantErr: "tokens.default_max_lifetime: must be greater than zero"},
		{name: "negative default_ttl", old: "default_ttl: 15m", new: "default_ttl: -15m", wantLine: 10,
			wantErr: "tokens.default_ttl: must be greater than zero (got -15m)"},
		{name: "zero last_used_flush", old: "last_used_flush: 1s", new: "last_used_flush: 0s", wantLine: 14,
			wantErr: "tokens.last_used_flush: must be greater than zero"},
		{name: "zero read_timeout", old: "read_timeout: 30s", new: "read_timeout: 0", wantLine: 22,
			wantErr: "limits.read_timeout: must be greater than zero"},
		{name: "duration without unit", old: "read_timeout: 30s", new: "read_timeout: 30", wantLine: 22,
			wantErr: "limits.read_timeout: must be a duration"},
		{name: "duration misspelt", old: "idle_timeout: 120s", new: "idle_timeout: 2 minutes", wantLine: 24,
			wantErr: "limits.idle_timeout: must be a duration"},
		{name: "duration as sequence", old: "write_timeout: 30s", new: "write_timeout: [30s]", wantLine: 23,
			wantErr: "limits.write_timeout: must be a duration"},
		{name: "zero cache_size", old: "cache_size: 150000", new: "cache_size: 0", wantLine: 13,
			wantErr: "tokens.cache_size: must be greater than zero (got 0)"},
		{name: "cache_size not a number", old: "cache_size: 150000", new: "cache_size: lots", wantLine: 13,
			wantErr: "tokens.cache_size: must be an integer"},
		{name: "cache_size fractional", old: "cache_size: 150000", new: "cache_size: 1.5", wantLine: 13,
			wantErr: "tokens.cache_size: must be an integer"},
		{name: "max_body_bytes with unit", old: "max_body_bytes: 1048576", new: "max_body_bytes: 1MiB", wantLine: 19,
			wantErr: "limits.max_body_bytes: must be an integer"},
		{name: "max_body_bytes beyond int64", old: "max_body_bytes: 1048576", new: "max_body_bytes: 99999999999999999999", wantLine: 19,
			wantErr: "limits.max_body_bytes: must be an integer"},
		{name: "negative max_header_bytes", old: "max_header_bytes: 65536", new: "max_header_bytes: -1", wantLine: 20,
			wantErr: "limits.max_header_bytes: must be greater than zero (got -1)"},
		{name: "unknown log level", old: "level: info", new: "level: verbose", wantLine: 16,
			wantErr: `log.level: must be one of debug, info, warn, error (got "verbose")`},
		{name: "log level in capitals", old: "level: info", new: "level: INFO", wantLine: 16, wantErr: "log.level: must be one of"},
		{name: "unknown log format", old: "format: auto", new: "format: xml", wantLine: 17,
			wantErr: `log.format: must be one of auto, json, text (got "xml")`},
		{name: "data_dir as sequence", old: "data_dir: /var/lib/phigate", new: "data_dir: [a, b]", wantLine: 1,
			wantErr: "data_dir: must be a string"},
		{name: "listen without port", old: "listen: 127.0.0.1:8443", new: "listen: 127.0.0.1", wantLine: 3,
			wantErr: `admin.listen: "127.0.0.1" is not host:port`},
		{name: "listen port out of range", old: "listen: 127.0.0.1:8443", new: "listen: 127.0.0.1:70000", wantLine: 3,
			wantErr: `admin.listen: port "70000" must be a number from 0 to 65535`},
		{name: "listen port by name", old: "listen: 127.0.0.1:9443", new: "listen: 127.0.0.1:https", wantLine: 5,
			wantErr: "gateway.listen: port"},
		{name: "listen host not an address", old: "listen: 127.0.0.1:8443", new: "listen: 127.0.0.300:8443", wantLine: 3,
			wantErr: `admin.listen: host "127.0.0.300" is neither`},
		{name: "listen unbracketed IPv6", old: "listen: 127.0.0.1:8443", new: `listen: "::1:8443"`, wantLine: 3,
			wantErr: "admin.listen:"},
		{name: "issuer not https", old: "listen: 127.0.0.1:8443", new: "listen: 127.0.0.1:8443\n  issuer: http://auth.example", wantLine: 4,
			wantErr: "admin.issuer: must be an https URL"},
		{name: "issuer with query", old: "listen: 127.0.0.1:8443", new: "listen: 127.0.0.1:8443\n  issuer: https://auth.example/?a=b", wantLine: 4,
			wantErr: "admin.issuer: must be an https URL"},
		{name: "listen empty", old: "listen: 127.0.0.1:8443", new: `listen: ""`, wantLine: 3,
			wantErr: "admin.listen: required"},
		{name: "gateway on the admin address", old: "listen: 127.0.0.1:9443", new: "listen: 127.0.0.1:8443", wantLine: 5,
			wantErr: "gateway.listen: must differ from admin.listen (127.0.0.1:8443)"},
		{name: "admin on the default gateway address", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\nadmin:\n  listen: 127.0.0.1:9443\n",
			wantLine: 4, wantErr: "admin.listen: must differ from gateway.listen"},

		// Required keys.
		{name: "data_dir removed", old: "data_dir: /var/lib/phigate", new: "", wantLine: 1, wantErr: "data_dir: required"},
		{name: "data_dir empty", old: "data_dir: /var/lib/phigate", new: "data_dir:", wantLine: 1, wantErr: "data_dir: required"},
		{name: "key_file removed", old: "  key_file: /etc/phigate/tls.key", new: "", wantLine: 6,
			wantErr: "tls.key_file: required when tls.cert_file is set"},
		{name: "cert_file empty", old: "cert_file: /etc/phigate/tls.crt", new: `cert_file: ""`, wantLine: 7,
			wantErr: "tls.cert_file: required when tls.key_file is set"},
		{name: "tls removed", doc: "data_dir: /d\n", wantLine: 1, wantErr: "tls.cert_file: required"},

		// Keys.
		{name: "unknown top-level key", old: "data_dir: /var/lib/phigate", new: "data_dir: /var/lib/phigate\ndatadir: /x", wantLine: 2,
			wantErr: "datadir: unknown key; expected one of: data_dir, admin, gateway, tls, tokens, log, limits"},
		{name: "unknown nested key", old: "listen: 127.0.0.1:8443", new: "listn: 127.0.0.1:8443", wantLine: 3,
			wantErr: "admin.listn: unknown key; expected one of: listen"},
		{name: "key in the wrong section", old: "  format: auto", new: "  format: auto\n  max_ttl: 1h", wantLine: 18,
			wantErr: "log.max_ttl: unknown key"},
		{name: "duplicate key", old: "bootstrap_ttl: 1h", new: "bootstrap_ttl: 1h\n  max_ttl: 48h", wantLine: 13,
			wantErr: "tokens.max_ttl: duplicate key (first at line 11)"},
		{name: "key not a string", old: "  level: info", new: "  level: info\n  1: x", wantLine: 17, wantErr: "log: keys must be plain strings"},
		{name: "merge key", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\nadmin: &a\n  listen: 127.0.0.1:1\ngateway:\n  <<: *a\n",
			wantLine: 6, wantErr: "gateway.<<: merge keys (<<) are not supported"},
		{name: "section as scalar", doc: "data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens: 15m\n", wantLine: 3,
			wantErr: "tokens: must be a mapping of keys: default_ttl, max_ttl"},
		{name: "top level sequence", doc: "- data_dir: d\n", wantLine: 1, wantErr: "the top level must be a mapping"},
		{name: "top level scalar", doc: "\n\nphigate\n", wantLine: 3, wantErr: "the top level must be a mapping"},

		// YAML text.
		{name: "value indented under a scalar", old: "  max_ttl: 24h", new: "   max_ttl: 24h", wantLine: 11, wantErr: "invalid YAML"},
		{name: "key outdented", old: "  max_ttl: 24h", new: " max_ttl: 24h", wantLine: 11, wantErr: "invalid YAML"},
		{name: "sequence among keys", old: "log:", new: "- log:", wantLine: 15, wantErr: "invalid YAML"},
		{name: "tab indentation", old: "  level: info", new: "\tlevel: info", wantLine: 16, wantErr: "invalid YAML"},
		{name: "unclosed flow sequence", doc: "data_dir: d\n\nadmin: [a,\n", wantLine: 3, wantErr: "invalid YAML"},
		{name: "unclosed flow sequence without final newline", doc: "[[[", wantLine: 1, wantErr: "invalid YAML"},
		{name: "unclosed quote", old: "cert_file: /etc/phigate/tls.crt", new: `cert_file: "/etc/phigate/tls.crt`, wantLine: 7,
			wantErr: "invalid YAML"},
		{name: "unknown anchor", old: "max_ttl: 24h", new: "max_ttl: *ttl", wantLine: 11, wantErr: "alias *ttl refers to no anchor"},
		{name: "undefined tag handle", old: "max_ttl: 24h", new: "max_ttl: !x!y 24h", wantLine: 11, wantErr: "invalid YAML"},
		{name: "YAML 2.0 directive", doc: "# phigate\n%YAML 2.0\n---\ndata_dir: d\n", wantLine: 2, wantErr: "invalid YAML"},
		{name: "second document", old: "  idle_timeout: 120s", new: "  idle_timeout: 120s\n---\ndata_dir: /x", wantLine: 25, // the "---"
			wantErr: "a second YAML document"},
		{name: "control character", old: "data_dir: /var/lib/phigate", new: "data_dir: /var/lib/\x01phigate", wantLine: 1,
			wantErr: "column 20: control character U+0001 is not allowed"},
		{name: "invalid UTF-8", old: "level: info", new: "level: inf\xff", wantLine: 16, wantErr: "column 13: the file is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc
			if tt.old != "" {
				if !strings.Contains(valid, tt.old) {
					t.Fatalf("%q is not in the valid document", tt.old)
				}
				doc = strings.Replace(valid, tt.old, tt.new, 1)
				if tt.new == "" {
					doc = strings.Replace(doc, "\n\n", "\n", 1)
				}
			}
			c, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Line != tt.wantLine {
				t.Errorf("line %d, want %d: %v", e.Line, tt.wantLine, err)
			}
			if !strings.HasPrefix(err.Error(), "config: line ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not read config: line N: …%s", err, tt.wantErr)
			}
		})
	}
}

func TestParseReportsEveryValidationProblemInFileOrder(t *testing.T) {
	doc := strings.NewReplacer("level: info", "level: loud", "listen: 127.0.0.1:8443", "listen: nowhere").Replace(valid)
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "config: line 3, column 11: admin.listen:") ||
		!strings.HasPrefix(lines[1], "config: line 16, column 10: log.level:") {
		t.Errorf("error:\n%v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("error names the file", func(t *testing.T) {
		name := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(name, []byte("data_dir: d\ntls: {cert_file: c, key_file: k}\nlog: {level: loud}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(name)
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+name+": line 3") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		name := filepath.Join(dir, "big.yaml")
		if err := os.WriteFile(name, make([]byte, maxFileSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(name); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	if err := Dev("./phigate-data").Validate(true); err != nil {
		t.Errorf("Dev: %v", err)
	}
	if err := Default().Validate(true); err != nil {
		t.Errorf("Default in dev mode: %v", err)
	}
	if err := production().Validate(false); err != nil {
		t.Errorf("production: %v", err)
	}

	err := Default().Validate(false)
	if err == nil {
		t.Fatal("Default accepted outside dev mode")
	}
	for _, want := range []string{"config: data_dir: required", "config: tls.cert_file: required", "config: tls.key_file: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	c := Dev("d")
	c.Tokens.DefaultTTL = Duration(48 * time.Hour)
	c.TLS.CertFile = "only.crt"
	err = c.Validate(true)
	var e *Error
	if !errors.As(err, &e) || e.Line != 0 {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"config: tls.key_file: required when tls.cert_file is set", "config: tokens.max_ttl: must be at least tokens.default_ttl (48h)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15m", 24 * time.Hour: "24h", 90 * time.Minute: "1h30m", time.Second: "1s",
		90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s", 0: "0s", -5 * time.Minute: "-5m",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(Duration(d).String()); err != nil || back != d {
			t.Errorf("%q does not parse back to %v", Duration(d), d)
		}
	}
}

func TestMarshalledConfigParsesBack(t *testing.T) {
	c := production()
	c.Tokens.MaxTTL = Duration(90 * time.Minute)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip: %+v\nwant %+v", back, c)
	}
}

func TestSlogLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got := (Log{Level: name}).SlogLevel(); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(validGateway))
	f.Add([]byte(validScopes))
	f.Add([]byte(""))
	f.Add([]byte("data_dir: d\ntls: {cert_file: c, key_file: k}\ntokens: {default_ttl: &t 1h, max_ttl: *t}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: line ") {
					t.Fatalf("error line %q names no line", line)
				}
			}
			return
		}
		if err := c.Validate(false); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
	})
}
