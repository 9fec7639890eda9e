// Package monitor watches the use of tokens on the request path and acts
// on anomalies: it refuses the request that trips an inline detector, and
// for the windowed ones it raises an alert and suspends the token within a
// second of the request that tripped it.
//
// # Where it sits
//
// The gateway (proxy and forward auth) and the admin API build one
// Observation per decision. For a request about to be granted they call
// Check BEFORE the decision is recorded: a Verdict with Block set refuses
// it (403 with the Verdict's Reason, or 429 with Retry-After for
// too_many_failures) and that refusal is what gets recorded. After the
// decision is recorded they call Observe with it (a grant, a denial with
// its reason, or an AuthFailure for a malformed, unknown, expired or
// revoked credential). Neither call allocates in the steady state or
// waits: what Observe and Check find is a fixed-size value put on a
// bounded queue (Config.Queue; when it is full the finding is dropped and
// counted in Stats.Dropped, and the request is never held), and Run,
// on its own goroutine, turns each finding into a Suspender.Suspend (when
// the detector suspends) and then a Sink.Raise. Close acts on what is
// still queued and takes a last snapshot.
//
// # Detectors
//
// Thresholds are in Config (DefaultConfig gives the defaults, documented
// on each field); a token's own TokenPolicy overrides them. Each detector
// raises at most one alert per token per Config.Cooldown (10 min); a
// blocking detector still blocks every request while cooled down, and
// break-glass is never cooled down.
//
//	detector     when                                            does               severity
//	new_network  inline: a grant from a /24 or /64 the token      alert (once per    medium (high
//	             did not use while learning (7 days from its      network), or        if blocked)
//	             first use), or outside its declared networks      block (policy
//	                                                              or config)
//	rate_spike   windowed: requests of the token in a 1 s or      alert + suspend    high
//	             10 s window above its EWMA mean + K·deviation
//	             (K 6; deviation at least √mean and 1) and above
//	             the floor (20 per 1 s, 100 per 10 s)
//	off_hours    inline: a grant in an hour that is not normal:   alert, or block    medium (high
//	             declared (policy), or learned while learning      (policy or          if blocked)
//	             (an hour is normal when used, or next to one      config)
//	             used); a token still learning is held to its
//	             subject's learned hours
//	probing      windowed: 10 denials insufficient_scope,         alert + suspend    high
//	             compartment, break_glass_denied or
//	             invalid_purpose within 10 s
//	brute_force  inline: 20 invalid credentials from one source   429 for the        high
//	             (IPv4 address, IPv6 /64) within 1 min             cool-off (5 min)
//	                                                              + alert per block
//	sharing      windowed: more distinct sources (IPv4 address,   alert + suspend    critical
//	             IPv6 /64) in a 10 min window than
//	             max(most ever + 1, 3), after learning
//	break_glass  every break-glass grant                          alert              high
//
// Learning is per token and starts at its first observation; a token that
// is forgotten (evicted, see State) learns again. Hours are learned per
// subject too, from the grants of all its tokens during the subject's own
// learning period, so that a subject's next token (a new session, a
// replaced credential) is watched from its first use. A token seen from more
// than 16 networks while learning is not watched by new_network. Rate
// windows that were spikes are not learned from, nor are sharing windows
// that tripped, so an attack does not raise the baseline it is compared
// with. Only grants teach networks, hours and sources; grants and denials
// both count toward the rate.
//
// # Token policy
//
// A token's TokenPolicy comes from the entries of its metadata whose key
// starts with "monitor." (phigate token create --meta monitor.network=block);
// ParsePolicy documents the keys. Unknown monitor.* keys are refused, so a
// typo cannot leave a token unwatched. Parse it once per token record and
// hand the same pointer with every Observation of that token.
//
// # State
//
// State is per node and in memory, bounded: at most Config.MaxTokens
// tokens (rounded up to a multiple of 64; 64 shards with a least recently
// used list each; an evicted token's state is reused for the new one), of
// fixed size each (about 1.4 KiB with its map entry: 16 learned networks,
// 24 hour bits, two EWMA windows, a ring of 32 denials, 32 distinct sources
// per sharing window); the brute-force detector is internal/bruteforce's
// Guard, which tracks at most BruteForce.MaxSources sources, never evicts
// a blocked one to make room, and keeps a count-min sketch of fixed size
// (1 MiB) so that a source evicted by a flood keeps its count; the subjects' hours are a table of
// OffHours.MaxSubjects slots of 32 bytes, allocated once, where a subject
// takes the least recently used of its two slots. Requests without a token
// (a flood of invalid ones) never create token state.
//
// Every Config.SnapshotEvery, and at Close, the learned baselines
// (first use, networks, hours, rate means and variances, most distinct
// sources; the subjects' hours) are written to the SnapshotStore under SnapshotKey; Restore,
// called before serving, loads them, so that a restart does not open a
// new learning period. The encoding (versioned, every count bounded) is
// specified in snapshot.go; a malformed snapshot is refused whole
// (ErrSnapshot) and nothing of it is loaded.
//
// # Time
//
// The monitor reads the time from Options.Now only (and from the
// Observation's Time, set by the caller from the same clock); nothing in
// it reads the wall clock.
package monitor
