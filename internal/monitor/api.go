package monitor

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Kind says what an Observation is.
type Kind uint8

// Observation kinds.
const (
	// Grant: a request was allowed (recorded before it is forwarded).
	Grant Kind = iota + 1
	// Deny: a request was refused, with its Reason.
	Deny
	// Complete: the upstream's answer to a granted request.
	Complete
	// AuthFailure: a credential was malformed, unknown, expired or revoked
	// (the gateway's invalid_token denials and the admin API's failed
	// authentications); it feeds the brute-force detector.
	AuthFailure
)

func (k Kind) String() string {
	switch k {
	case Grant:
		return "grant"
	case Deny:
		return "deny"
	case Complete:
		return "complete"
	case AuthFailure:
		return "auth_failure"
	}
	return "unknown"
}

// Observation is one decision of the request path, built by the gateway
// (proxy and forward auth) from its Event, and by the admin API for its
// authentication failures. The monitor does not keep an Observation after
// Check or Observe returns (the caller may reuse it); it keeps the
// TokenID, Subject and Policy pointer in the token's state. An
// Observation never holds a token secret.
type Observation struct {
	Time       time.Time
	Kind       Kind       // Grant, Deny, Complete, AuthFailure
	TokenID    string     // "" before authentication
	Subject    string     //
	Source     netip.Addr // invalid when unknown
	Reason     string     // the reason code of a deny ("insufficient_scope", "compartment", "invalid_token", ...)
	Status     int        //
	BreakGlass bool       //
	AuditSeq   uint64     // the audit entry's sequence number when known (0 otherwise)
	// Policy is the token's monitoring policy (nil: the Config's
	// defaults). It is parsed once per token record (ParsePolicy from the
	// record's metadata) and must not change after it is handed over.
	Policy *TokenPolicy
}

// Verdict is what an inline detector decides for the request that is
// being decided. The zero Verdict lets the request go on.
type Verdict struct {
	Block      bool          // refuse this request
	Reason     string        // the reason code to answer and record ("anomaly_new_network", "off_hours", "too_many_failures", ...)
	RetryAfter time.Duration // for IP blocks (429)
}

// Reason codes of the Verdicts Check returns.
const (
	ReasonNewNetwork      = "anomaly_new_network"
	ReasonOffHours        = "off_hours"
	ReasonTooManyFailures = "too_many_failures"
)

// Detector names, as Alert.Detector holds them.
const (
	DetectorNewNetwork = "new_network"
	DetectorRateSpike  = "rate_spike"
	DetectorOffHours   = "off_hours"
	DetectorProbing    = "probing"
	DetectorBruteForce = "brute_force"
	DetectorSharing    = "sharing"
	DetectorBreakGlass = "break_glass"
	// DetectorLeak: a token's secret was reported found where it must not
	// be (POST /v1/tokens/leaked); the token is revoked (Action Revoked).
	DetectorLeak = "leak"
)

// Severity ranks alerts.
type Severity uint8

// Severities.
const (
	Low Severity = iota + 1
	Medium
	High
	Critical
)

func (s Severity) String() string {
	switch s {
	case Low:
		return "low"
	case Medium:
		return "medium"
	case High:
		return "high"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// MarshalText encodes s as its name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Action is what the monitor did about an alert.
type Action uint8

// Actions.
const (
	None      Action = iota // alert only
	Blocked                 // this request was refused
	Suspended               // the token was suspended (Suspender.Suspend)
	IPBlocked               // the source is refused (429) for a cooling-off period
	Revoked                 // the token was revoked (a leak)
)

func (a Action) String() string {
	switch a {
	case None:
		return "none"
	case Blocked:
		return "blocked"
	case Suspended:
		return "suspended"
	case IPBlocked:
		return "ip_blocked"
	case Revoked:
		return "revoked"
	}
	return "unknown"
}

// MarshalText encodes a as its name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Alert is what a detector raises. The monitor hands every alert to its
// Sink, from its own goroutine; the Sink owns the Alert afterwards.
type Alert struct {
	ID               string         // set by the sink/store
	Detector         string         // "new_network", "rate_spike", "off_hours", "probing", "brute_force", "sharing", "break_glass", "leak"
	Severity         Severity       // Low, Medium, High, Critical
	TokenID, Subject string         //
	Source           string         // an address or prefix, when it is about one
	Summary          string         // one line for people (Slack's text)
	Evidence         map[string]any // counts, prefixes, the baseline compared with (JSON-encodable)
	AuditSeqs        []uint64       // the requests that tripped it
	Action           Action         // None, Blocked (this request), Suspended (the token), IPBlocked
	At               time.Time      //
}

// Sink receives alerts (store + audit + webhook + syslog + log). Raise must
// not block for long: the monitor calls it from its own goroutine, one
// alert at a time. An error is logged; the alert is not raised again.
type Sink interface {
	Raise(ctx context.Context, a *Alert) error
}

// Suspender acts on tokens (the authority's Suspend). Called off the
// request path, from the monitor's goroutine, before the alert that says
// so is raised; an error turns the alert's Action back into None and is
// put in its Evidence ("suspend_error").
type Suspender interface {
	Suspend(ctx context.Context, tokenID, reason string) error
}

// SnapshotStore keeps the monitor's learned baselines across restarts
// (the store's meta table). Get returns (nil, nil) for a key never Put.
// Put replaces the blob of key durably before it returns nil.
type SnapshotStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, blob []byte) error
}

// Options are what a Monitor is given besides its Config. New(Config,
// Options) returns the Monitor; Check(o *Observation) Verdict is the
// inline call made BEFORE the decision is recorded (0 allocs);
// Observe(o *Observation) feeds the windowed detectors after it is
// recorded (0 allocs, never blocks); Run(ctx) raises alerts, suspends and
// snapshots (windowed detectors act within a second); Close(ctx) takes a
// last snapshot.
//
// Now is required. A nil Sink drops alerts after logging them; a nil
// Suspender leaves suspensions as alerts (Action None); a nil Store keeps
// no snapshot; a nil Logger discards logs.
type Options struct {
	Now       func() time.Time
	Sink      Sink
	Suspender Suspender
	Store     SnapshotStore
	Logger    *slog.Logger
}

// Mode says what a detector that may block does when it trips.
type Mode uint8

// Modes. The zero Mode is "the default" (the Config's, or Alert).
const (
	ModeDefault Mode = iota
	ModeOff          // the detector does not run
	ModeAlert        // alert only
	ModeBlock        // alert and refuse the request
)

// TokenPolicy is a token's own monitoring policy: what it declares and
// the thresholds it overrides. It lives in the token record's metadata
// under keys starting with "monitor." (see ParsePolicy for the keys and
// their grammar), so that `phigate token create|update --meta
// monitor.network=block` sets it without a new field in the record. The
// zero value of every field means "the Config's default".
type TokenPolicy struct {
	// Networks are the declared networks (monitor.networks=CIDR,CIDR):
	// the token is expected from these only and learns nothing.
	Networks []netip.Prefix
	// NewNetwork: what use from an unknown network does (monitor.network=off|alert|block).
	NewNetwork Mode
	// Hours are the declared hours (monitor.hours=07:00-19:00, local to
	// monitor.tz, default UTC): bit h set when hour h (0..23) is normal.
	Hours uint32
	// Loc is the zone of Hours and of the learned hours (monitor.tz).
	Loc *time.Location
	// OffHours: what use outside the normal hours does (monitor.off_hours=off|alert|block).
	OffHours Mode
	// RateK and RateFloor override RateSpike's K and its floor per second
	// (monitor.rate_k, monitor.rate_floor); 0: the Config's.
	RateK     float64
	RateFloor float64
	// ProbeDenials overrides Probing.Denials (monitor.probe_denials); 0: the Config's.
	ProbeDenials int
	// MaxSources overrides Sharing: more distinct addresses than this in
	// a window trips the detector (monitor.max_sources); 0: learned.
	MaxSources int
	// NoSuspend: the windowed detectors alert but never suspend this
	// token (monitor.suspend=false), for tokens whose owner must be paged
	// rather than cut off.
	NoSuspend bool
}

// Config holds the thresholds of the detectors. DefaultConfig gives the
// documented defaults; a zero field of a detector's config is an error
// from New except where its doc says otherwise.
type Config struct {
	// Enabled: false makes Check and Observe no-ops (default true).
	Enabled bool
	// MaxTokens bounds the tokens tracked at once (default 100,000); the
	// least recently used is forgotten when a new one comes.
	MaxTokens int
	// Queue bounds the findings waiting for Run (default 4096); when it
	// is full a finding is dropped and counted, never waited for.
	Queue int
	// SnapshotEvery is the period of snapshots (default 5 min). A
	// snapshot is one blob of about 100 to 250 bytes per tracked token
	// (some 25 MB for 100,000) and 28 per subject.
	SnapshotEvery time.Duration
	// Cooldown is the least time between two alerts of one detector about
	// one token (default 10 min); the blocking itself is not cooled down.
	Cooldown time.Duration

	NewNetwork NewNetworkConfig
	RateSpike  RateSpikeConfig
	OffHours   OffHoursConfig
	Probing    ProbingConfig
	BruteForce BruteForceConfig
	Sharing    SharingConfig
	BreakGlass BreakGlassConfig
}

// NewNetworkConfig: a token learns the /24 (IPv4) and /64 (IPv6)
// prefixes it is used from during Learning after its first use; use from
// another prefix afterwards trips the detector. In ModeAlert a new
// network is alerted on once and then known (up to MaxPrefixes; past
// that, once per Cooldown); in ModeBlock, and outside declared networks,
// it is refused every time and alerted on once per Cooldown.
type NewNetworkConfig struct {
	Mode     Mode          // default ModeAlert
	Learning time.Duration // default 7 days
	// MaxPrefixes: a token seen from more prefixes than this while
	// learning is not watched by this detector (default 16, at most 16).
	MaxPrefixes int
}

// RateSpikeConfig: the requests of a token per 1 s and per 10 s window
// are compared with their EWMA mean and deviation; a window whose count
// exceeds mean + K·deviation and the floor trips the detector (alert and
// suspend).
type RateSpikeConfig struct {
	Mode    Mode    // ModeOff or ModeAlert (suspends); default ModeAlert
	K       float64 // default 6
	Floor1s float64 // requests in one second; default 20
	// Floor10s: requests in ten seconds; default 100.
	Floor10s float64
	// Alpha is the EWMA weight of a new window (default 0.05).
	Alpha float64
}

// OffHoursConfig: a token's normal hours are declared (TokenPolicy.Hours)
// or learned during Learning (an hour is normal when the token was used
// in it or in an adjacent hour); use outside them trips the detector.
//
// A token that is still learning is held to its subject's hours, learned
// the same way from the grants of all the subject's tokens, once the
// subject's own learning is over.
type OffHoursConfig struct {
	Mode     Mode          // default ModeAlert
	Learning time.Duration // default 7 days
	// MaxSubjects bounds the subjects whose hours are learned (default
	// 100,000; 32 bytes each, allocated at New); 0: subjects learn nothing.
	MaxSubjects int
}

// ProbingConfig: Denials denials of one token with a reason in Reasons
// within Window trip the detector (alert and suspend).
type ProbingConfig struct {
	Mode    Mode          // ModeOff or ModeAlert (suspends); default ModeAlert
	Denials int           // default 10, at most 32
	Window  time.Duration // default 10 s
	// Reasons default to insufficient_scope, compartment,
	// break_glass_denied, invalid_purpose.
	Reasons []string
}

// BruteForceConfig is the brute-force limiter (internal/bruteforce):
// invalid or unknown credentials per source address (IPv4) or /64 (IPv6).
type BruteForceConfig struct {
	Mode       Mode          // ModeOff or ModeBlock (429 + alert); default ModeBlock
	SlowAfter  int           // default 5
	BlockAfter int           // default 20
	Window     time.Duration // default 1 min
	Delay      time.Duration // default 500 ms
	CoolOff    time.Duration // default 5 min
	MaxSources int           // default 100,000
	// SketchWidth is the width of the count-min sketch that keeps the
	// count of a source evicted by a flood (bruteforce.Config.SketchWidth;
	// 1 MiB at the default): 0 means the default 1<<17, < 0 none.
	SketchWidth int
}

// SharingConfig: the distinct source addresses of a token per Window are
// counted (exactly up to 32); after Learning, a window with more than
// max(the most ever seen + Margin, MinSources - 1) trips the detector
// (alert and suspend).
type SharingConfig struct {
	Mode       Mode          // ModeOff or ModeAlert (suspends); default ModeAlert
	Window     time.Duration // default 10 min
	Learning   time.Duration // default 7 days
	Margin     int           // default 1
	MinSources int           // default 4, at most 32
}

// BreakGlassConfig: every break-glass grant raises a High alert.
type BreakGlassConfig struct {
	Mode Mode // ModeOff or ModeAlert; default ModeAlert
}
