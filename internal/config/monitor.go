package config

import (
	"fmt"
	"net/url"
	"time"
)

// Monitor configures the anomaly detectors (internal/monitor) and the sinks
// of their alerts. Brute force is configured by the bruteforce section.
type Monitor struct {
	// Enabled: false turns every detector off.
	Enabled bool `yaml:"enabled"`
	// MaxTokens bounds the tokens tracked at once; > 0.
	MaxTokens int `yaml:"max_tokens"`
	// Queue bounds the findings waiting to be acted on; > 0.
	Queue int `yaml:"queue"`
	// SnapshotEvery is the period of the baselines' snapshots; > 0.
	SnapshotEvery Duration `yaml:"snapshot_every"`
	// Cooldown is the least time between two alerts of one detector about
	// one token; >= 0.
	Cooldown Duration `yaml:"cooldown"`

	NewNetwork NewNetwork `yaml:"new_network"`
	RateSpike  RateSpike  `yaml:"rate_spike"`
	OffHours   OffHours   `yaml:"off_hours"`
	Probing    Probing    `yaml:"probing"`
	Sharing    Sharing    `yaml:"sharing"`
	BreakGlass BreakGlass `yaml:"break_glass"`

	Sinks Sinks `yaml:"sinks"`
}

// Detector modes.
const (
	ModeOff   = "off"
	ModeAlert = "alert"
	ModeBlock = "block"
)

// NewNetwork: use from a prefix the token did not use while learning.
type NewNetwork struct {
	Mode        string   `yaml:"mode"` // off | alert | block
	Learning    Duration `yaml:"learning"`
	MaxPrefixes int      `yaml:"max_prefixes"` // 1..16
}

// RateSpike: a token's request rate against its own baseline.
type RateSpike struct {
	Mode     string  `yaml:"mode"` // off | alert (suspends)
	K        float64 `yaml:"k"`
	Floor1s  float64 `yaml:"floor_1s"`
	Floor10s float64 `yaml:"floor_10s"`
	Alpha    float64 `yaml:"alpha"`
}

// OffHours: use outside a token's normal hours.
type OffHours struct {
	Mode     string   `yaml:"mode"` // off | alert | block
	Learning Duration `yaml:"learning"`
	// MaxSubjects bounds the subjects whose hours are learned; >= 0 (0:
	// subjects learn nothing, tokens still do).
	MaxSubjects int `yaml:"max_subjects"`
}

// Probing: a burst of denials of one token.
type Probing struct {
	Mode    string   `yaml:"mode"` // off | alert (suspends)
	Denials int      `yaml:"denials"`
	Window  Duration `yaml:"window"`
	Reasons []string `yaml:"reasons"`
}

// Sharing: more distinct source addresses than the token ever had.
type Sharing struct {
	Mode       string   `yaml:"mode"` // off | alert (suspends)
	Window     Duration `yaml:"window"`
	Learning   Duration `yaml:"learning"`
	Margin     int      `yaml:"margin"`
	MinSources int      `yaml:"min_sources"`
}

// BreakGlass: every break-glass use raises a high alert.
type BreakGlass struct {
	Mode string `yaml:"mode"` // off | alert
}

// Sinks are where alerts go besides the store and the audit log.
type Sinks struct {
	// Log writes one server-log line per alert.
	Log bool `yaml:"log"`
	// Webhooks receive every alert, signed.
	Webhooks []Webhook `yaml:"webhooks,omitempty"`
}

// Webhook is one receiver of signed alerts.
type Webhook struct {
	URL            string `yaml:"url"`
	AllowPlainHTTP bool   `yaml:"allow_plain_http"`
	// CAFile, when set, is the only CA trusted for the receiver's
	// certificate (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// Secret is a reference (env:, file:, secret:) to the HMAC key.
	Secret     string   `yaml:"secret"`
	Queue      int      `yaml:"queue"`
	Attempts   int      `yaml:"attempts"`
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// Defaults of the monitor section (internal/monitor.DefaultConfig has the
// same; a test of the server holds them equal).
const (
	DefaultMonitorMaxTokens     = 100_000
	DefaultMonitorQueue         = 4096
	DefaultMonitorSnapshotEvery = 5 * time.Minute
	DefaultMonitorCooldown      = 10 * time.Minute
	DefaultMonitorLearning      = 7 * 24 * time.Hour
	DefaultMonitorMaxSubjects   = 100_000

	DefaultWebhookQueue      = 256
	DefaultWebhookAttempts   = 5
	DefaultWebhookBackoff    = 250 * time.Millisecond
	DefaultWebhookMaxBackoff = 10 * time.Second

	maxWebhooks = 16
)

// DefaultProbingReasons are the denials that count as probing.
var DefaultProbingReasons = []string{"insufficient_scope", "compartment", "break_glass_denied", "invalid_purpose"}

func defaultMonitor(c *Config) {
	learn := Duration(DefaultMonitorLearning)
	c.Monitor = Monitor{
		Enabled: true, MaxTokens: DefaultMonitorMaxTokens, Queue: DefaultMonitorQueue,
		SnapshotEvery: Duration(DefaultMonitorSnapshotEvery), Cooldown: Duration(DefaultMonitorCooldown),
		NewNetwork: NewNetwork{Mode: ModeAlert, Learning: learn, MaxPrefixes: 16},
		RateSpike:  RateSpike{Mode: ModeAlert, K: 6, Floor1s: 20, Floor10s: 100, Alpha: 0.05},
		OffHours:   OffHours{Mode: ModeAlert, Learning: learn, MaxSubjects: DefaultMonitorMaxSubjects},
		Probing:    Probing{Mode: ModeAlert, Denials: 10, Window: Duration(10 * time.Second), Reasons: append([]string(nil), DefaultProbingReasons...)},
		Sharing:    Sharing{Mode: ModeAlert, Window: Duration(10 * time.Minute), Learning: learn, Margin: 1, MinSources: 4},
		BreakGlass: BreakGlass{Mode: ModeAlert},
		Sinks:      Sinks{Log: true},
	}
}

// WithDefaults returns w with its absent (zero) tunables set to the
// defaults.
func (w Webhook) WithDefaults() Webhook {
	fillWebhook(&w)
	return w
}

func fillWebhook(w *Webhook) {
	if w.Queue == 0 {
		w.Queue = DefaultWebhookQueue
	}
	if w.Attempts == 0 {
		w.Attempts = DefaultWebhookAttempts
	}
	if w.Backoff == 0 {
		w.Backoff = Duration(DefaultWebhookBackoff)
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = Duration(DefaultWebhookMaxBackoff)
	}
}

func (ps *problems) mode(path, m string, block bool) {
	switch {
	case m == ModeOff || m == ModeAlert:
	case m == ModeBlock && block:
	case block:
		ps.add(path, "must be off, alert or block (got %q)", m)
	default:
		ps.add(path, "must be off or alert (got %q)", m)
	}
}

func (ps *problems) monitor(c *Config) {
	m := &c.Monitor
	if m.MaxTokens <= 0 {
		ps.add("monitor.max_tokens", "must be greater than zero (got %d)", m.MaxTokens)
	}
	if m.Queue <= 0 {
		ps.add("monitor.queue", "must be greater than zero (got %d)", m.Queue)
	}
	ps.positive("monitor.snapshot_every", m.SnapshotEvery)
	if m.Cooldown < 0 {
		ps.add("monitor.cooldown", "must not be negative (got %s)", m.Cooldown)
	}

	ps.mode("monitor.new_network.mode", m.NewNetwork.Mode, true)
	ps.positive("monitor.new_network.learning", m.NewNetwork.Learning)
	if n := m.NewNetwork.MaxPrefixes; n < 1 || n > 16 {
		ps.add("monitor.new_network.max_prefixes", "must be from 1 to 16 (got %d)", n)
	}

	r := m.RateSpike
	ps.mode("monitor.rate_spike.mode", r.Mode, false)
	for _, f := range []struct {
		path string
		v    float64
	}{{"monitor.rate_spike.k", r.K}, {"monitor.rate_spike.floor_1s", r.Floor1s}, {"monitor.rate_spike.floor_10s", r.Floor10s}} {
		if f.v <= 0 {
			ps.add(f.path, "must be greater than zero (got %g)", f.v)
		}
	}
	if r.Alpha <= 0 || r.Alpha >= 1 {
		ps.add("monitor.rate_spike.alpha", "must be between 0 and 1, both excluded (got %g)", r.Alpha)
	}

	ps.mode("monitor.off_hours.mode", m.OffHours.Mode, true)
	ps.positive("monitor.off_hours.learning", m.OffHours.Learning)
	if m.OffHours.MaxSubjects < 0 || m.OffHours.MaxSubjects > 10_000_000 {
		ps.add("monitor.off_hours.max_subjects", "must be from 0 to 10000000 (got %d)", m.OffHours.MaxSubjects)
	}

	p := m.Probing
	ps.mode("monitor.probing.mode", p.Mode, false)
	if p.Denials < 1 || p.Denials > 32 {
		ps.add("monitor.probing.denials", "must be from 1 to 32 (got %d)", p.Denials)
	}
	ps.positive("monitor.probing.window", p.Window)
	for i, r := range p.Reasons {
		if r == "" {
			ps.add(fmt.Sprintf("monitor.probing.reasons[%d]", i), "must not be empty")
		}
	}

	s := m.Sharing
	ps.mode("monitor.sharing.mode", s.Mode, false)
	ps.positive("monitor.sharing.window", s.Window)
	ps.positive("monitor.sharing.learning", s.Learning)
	if s.Margin < 0 {
		ps.add("monitor.sharing.margin", "must not be negative (got %d)", s.Margin)
	}
	if s.MinSources < 1 || s.MinSources > 32 {
		ps.add("monitor.sharing.min_sources", "must be from 1 to 32 (got %d)", s.MinSources)
	}
	ps.mode("monitor.break_glass.mode", m.BreakGlass.Mode, false)

	if len(m.Sinks.Webhooks) > maxWebhooks {
		ps.add("monitor.sinks.webhooks", "at most %d webhooks (got %d)", maxWebhooks, len(m.Sinks.Webhooks))
	}
	for i := range m.Sinks.Webhooks {
		w := m.Sinks.Webhooks[i].WithDefaults()
		at := fmt.Sprintf("monitor.sinks.webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			ps.add(at+".url", "required (where alerts are POSTed)")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			ps.add(at+".url", "must be an https URL")
		case u.Scheme == "http" && !w.AllowPlainHTTP:
			ps.add(at+".url", "plain http:// sends alerts unencrypted; use https, or set allow_plain_http: true")
		case u.User != nil:
			ps.add(at+".url", "must not hold credentials")
		}
		if err := CheckSecretRef(w.Secret); err != nil {
			ps.add(at+".secret", "%v", err)
		}
		if w.Queue < 1 || w.Queue > 100_000 {
			ps.add(at+".queue", "must be from 1 to 100000 (got %d)", w.Queue)
		}
		if w.Attempts < 1 || w.Attempts > 20 {
			ps.add(at+".attempts", "must be from 1 to 20 (got %d)", w.Attempts)
		}
		if ps.positive(at+".backoff", w.Backoff) && w.MaxBackoff < w.Backoff {
			ps.add(at+".max_backoff", "must be at least backoff (%s)", w.Backoff)
		}
	}
}
