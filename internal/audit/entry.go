package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/token"
)

// Action names what happened. The values are part of the external contract
// (they are hashed into the log, searched, exported).
type Action string

// The actions phigate records. Append refuses any other.
const (
	ActionTokenCreated Action = "token.created"
	ActionTokenUpdated Action = "token.updated" // a permission change: Before and After are set
	ActionTokenRotated Action = "token.rotated"
	// ActionTokenRotationRetried: a retry of an idempotent rotation got the
	// answer of the rotation it repeats (no second rotation happened).
	ActionTokenRotationRetried Action = "token.rotation_retried"
	ActionTokenRevoked         Action = "token.revoked"
	ActionTokenSuspended       Action = "token.suspended"
	ActionTokenReinstated      Action = "token.reinstated"
	ActionAccessGranted        Action = "access.granted"   // the gateway's decision, before the upstream call
	ActionAccessCompleted      Action = "access.completed" // the upstream's answer: Status, Bytes, Duration
	ActionAccessDenied         Action = "access.denied"    // with Reason
	ActionAuthFailed           Action = "auth.failed"      // bad or unknown token: Source, never the secret
	ActionBreakGlassUsed       Action = "breakglass.used"  // with BreakGlass (the justification)
	ActionAlertRaised          Action = "alert.raised"     // Target: the alert id; Reason: the detector
	ActionAlertAcked           Action = "alert.acked"      // Target: the alert id; Actor: who acknowledged it
	ActionIPBlocked            Action = "ip.blocked"       // Source: the refused address; Target: the alert id
	ActionKeyRotated           Action = "key.rotated"
	ActionConfigLoaded         Action = "config.loaded"
	ActionServerStarted        Action = "server.started"
	ActionServerStopped        Action = "server.stopped"
	ActionAuditRead            Action = "audit.read" // the audit log itself was searched or a proof fetched
	ActionAuditArchived        Action = "audit.archived"
	// ActionClientRegistered and ActionClientRevoked: an OAuth client of
	// SMART Backend Services was registered or revoked (Target: its id).
	ActionClientRegistered Action = "client.registered"
	ActionClientRevoked    Action = "client.revoked"
	// ActionClientAuthFailed: the token endpoint refused a client's
	// request (Target: the client id it claimed, if any; Reason: why;
	// never the assertion).
	ActionClientAuthFailed Action = "client.auth_failed"
)

const maxActionLen = 64

var knownActions = map[Action]bool{
	ActionTokenCreated: true, ActionTokenUpdated: true, ActionTokenRotated: true, ActionTokenRevoked: true,
	ActionTokenSuspended: true, ActionTokenReinstated: true, ActionAccessGranted: true, ActionAccessCompleted: true,
	ActionAccessDenied: true, ActionAuthFailed: true, ActionBreakGlassUsed: true, ActionAlertRaised: true,
	ActionKeyRotated: true, ActionConfigLoaded: true, ActionServerStarted: true, ActionServerStopped: true,
	ActionAuditRead: true, ActionAuditArchived: true, ActionTokenRotationRetried: true,
	ActionAlertAcked: true, ActionIPBlocked: true,
	ActionClientRegistered: true, ActionClientRevoked: true, ActionClientAuthFailed: true,
}

// Known reports whether a is one of the actions above.
func (a Action) Known() bool { return knownActions[a] }

// Outcome says how it ended.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success" // allowed, done
	OutcomeDenied  Outcome = "denied"  // refused by policy (Reason says why)
	OutcomeFailure Outcome = "failure" // a technical failure (upstream error, unavailable)
)

// Valid reports whether o is one of the outcomes above.
func (o Outcome) Valid() bool {
	return o == OutcomeSuccess || o == OutcomeDenied || o == OutcomeFailure
}

// Actor is who acted: the phigate token that authenticated the request.
// It is empty for events of the server itself and for auth.failed (there
// is no valid token then).
type Actor struct {
	TokenID string `json:"token_id,omitempty"`
	Subject string `json:"subject,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

// ActorOf returns the Actor of a token record (nil: the zero Actor).
func ActorOf(r *token.Record) Actor {
	if r == nil {
		return Actor{}
	}
	return Actor{TokenID: r.ID, Subject: r.Subject, Kind: string(r.Kind)}
}

// Source is where the request came from.
type Source struct {
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Entry is one audit record. Every event has the same schema; fields that
// do not apply stay empty. There is deliberately no field for a token
// secret, and Append redacts anything in any field that looks like one.
//
// Seq, Time and (when empty) Node are set by the Log; a caller fills in the
// rest.
type Entry struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"` // UTC, nanoseconds; when the log accepted the entry
	Node string    `json:"node,omitempty"`

	Action  Action  `json:"action"`
	Outcome Outcome `json:"outcome,omitempty"`
	Actor   Actor   `json:"actor"`
	Source  Source  `json:"source"`

	RequestID string `json:"request_id,omitempty"`
	// Target is what the action was done to: a token id for token.*, an
	// alert id, a key purpose, a config file.
	Target string `json:"target,omitempty"`
	// Reason is a reason code for a denial or failure ("token_expired",
	// "network_denied"), or the operator's reason for a revocation.
	Reason string `json:"reason,omitempty"`
	// Purpose is the HL7 purpose of use of the request (TREAT, ETREAT, ...).
	Purpose string `json:"purpose_of_use,omitempty"`
	// BreakGlass is the justification of a break-glass request.
	BreakGlass string `json:"break_glass,omitempty"`
	// Patient is the patient compartment the request was bound to.
	Patient string `json:"patient,omitempty"`

	// The proxied request (access.*).
	Method   string        `json:"method,omitempty"`
	Upstream string        `json:"upstream,omitempty"`
	Path     string        `json:"path,omitempty"`
	Status   int           `json:"status,omitempty"`
	Bytes    int64         `json:"bytes,omitempty"`
	Duration time.Duration `json:"-"` // JSON: duration_ms
	// Interaction is the FHIR RESTful interaction the gateway classified
	// the request as ("read", "vread", "search-type", "search-system",
	// "search-compartment", "history-instance", "history-type",
	// "history-system", "create", "update", "patch", "delete", their
	// "conditional-" forms, "batch", "transaction", "capabilities",
	// "operation"), "route" for an http upstream, and empty when the
	// request was refused before it was classified. It is not PHI (never
	// sealed); the FHIR export derives the AuditEvent's subtype and action
	// from it.
	Interaction string `json:"interaction,omitempty"`

	// Before and After are JSON snapshots of what changed (token.updated:
	// the token's public view before and after the change).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`

	// Sealed is the PHI-bearing fields (BreakGlass, Patient, Path)
	// encrypted, as the log stores them when it has a Sealer; readers with
	// the Sealer open it back into those fields and clear it. Only a
	// reader without the key (phigate audit export without --decrypt)
	// sees it set. The Merkle leaf commits to it, so the log verifies
	// without the key.
	Sealed []byte `json:"sealed,omitempty"`
}

// Limits on the fields of an entry. Append cuts longer strings (at a UTF-8
// boundary, marked with "…") rather than refuse the entry: an over-long
// User-Agent must not make the gateway fail closed. Before and After are
// snapshots made by phigate itself, so a larger one is refused.
const (
	MaxString     = 256  // any string field without its own limit below
	MaxUserAgent  = 512  // Source.UserAgent
	MaxPath       = 2048 // Path
	MaxText       = 1024 // Reason, BreakGlass
	MaxSnapshot   = 16 << 10
	MaxEntrySize  = 64 << 10 // the encoded entry
	redactedToken = token.Prefix + "[REDACTED]"
)

// minSecretRun is the number of base62 characters after "phi_" from which
// a run is taken for a token secret (whole or mistyped) and redacted.
const minSecretRun = 32

// DurationMS is e.Duration in milliseconds.
func (e *Entry) DurationMS() float64 { return float64(e.Duration) / float64(time.Millisecond) }

type entryJSON struct {
	*entryAlias
	DurationMS float64 `json:"duration_ms,omitempty"`
}

type entryAlias Entry

// MarshalJSON writes the entry with Duration as "duration_ms".
func (e Entry) MarshalJSON() ([]byte, error) {
	a := entryAlias(e)
	a.Time = a.Time.UTC()
	return json.Marshal(entryJSON{entryAlias: &a, DurationMS: e.DurationMS()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var v entryJSON
	v.entryAlias = (*entryAlias)(e)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	e.Duration = time.Duration(math.Round(v.DurationMS * float64(time.Millisecond)))
	return nil
}

// Snapshot returns v as JSON for Entry.Before and After (nil on error,
// which cannot happen for phigate's own wire types).
func Snapshot(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// normalize makes e fit the schema in place: strings cut to their limits
// and made valid UTF-8, anything that looks like a token secret redacted,
// snapshots compacted. It refuses what cannot be fixed.
func (e *Entry) normalize() error {
	if !e.Action.Known() {
		return fmt.Errorf("%w: unknown action %q", ErrInvalidEntry, cut(string(e.Action), maxActionLen))
	}
	if e.Outcome != "" && !e.Outcome.Valid() {
		return fmt.Errorf("%w: unknown outcome %q", ErrInvalidEntry, cut(string(e.Outcome), 16))
	}
	if e.Status < 0 || e.Bytes < 0 || e.Duration < 0 {
		return fmt.Errorf("%w: negative status, bytes or duration", ErrInvalidEntry)
	}
	for _, f := range []struct {
		p   *string
		max int
	}{
		{&e.Node, 64}, {&e.Actor.TokenID, 64}, {&e.Actor.Subject, MaxString}, {&e.Actor.Kind, 16},
		{&e.Source.IP, 64}, {&e.Source.UserAgent, MaxUserAgent}, {&e.RequestID, 128},
		{&e.Target, MaxString}, {&e.Reason, MaxText}, {&e.Purpose, 64}, {&e.BreakGlass, MaxText},
		{&e.Patient, 128}, {&e.Method, 16}, {&e.Upstream, 64}, {&e.Path, MaxPath},
		{&e.Interaction, 32},
	} {
		*f.p = cut(redact(*f.p), f.max)
	}
	for _, s := range []*json.RawMessage{&e.Before, &e.After} {
		if len(*s) == 0 {
			*s = nil
			continue
		}
		var buf bytes.Buffer
		buf.Grow(len(*s)) // compacting never lengthens
		if err := json.Compact(&buf, *s); err != nil {
			return fmt.Errorf("%w: before/after is not JSON", ErrInvalidEntry)
		}
		b := []byte(redact(buf.String()))
		if len(b) > MaxSnapshot {
			return fmt.Errorf("%w: before/after is %d bytes, over %d", ErrInvalidEntry, len(b), MaxSnapshot)
		}
		*s = b
	}
	return nil
}

// cut returns s as valid UTF-8 of at most max bytes, marking a cut with "…".
func cut(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	n := max - len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// redact replaces every "phi_" followed by at least minSecretRun base62
// characters (a token secret, or one with a typo) with "phi_[REDACTED]".
// Redact returns s with anything that looks like a token secret ("phi_"
// and 32 or more base62 characters) replaced by "phi_[REDACTED]", as
// Append does to every field: for text that other stores keep next to the
// log (an alert's acknowledgement note).
func Redact(s string) string { return redact(s) }

func redact(s string) string {
	i := strings.Index(s, token.Prefix)
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		j := i + len(token.Prefix)
		k := j
		for k < len(s) && isB62(s[k]) && !strings.HasPrefix(s[k:], token.Prefix) {
			k++
		}
		if k-j >= minSecretRun {
			b.WriteString(s[:i])
			b.WriteString(redactedToken)
		} else {
			b.WriteString(s[:k])
		}
		s = s[k:]
		i = strings.Index(s, token.Prefix)
	}
	b.WriteString(s)
	return b.String()
}

func isB62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}
