// Package obs holds the observations phigate's components report to an
// observer (internal/metrics), so that the components need not know the
// observer nor it them. It is a leaf: it imports nothing of phigate.
//
// Guarantees:
//
//   - Every field of a Request is drawn from a closed set (the constants
//     below, a reason code of the external contract) or is a duration:
//     an observation never carries a token, subject, patient, path,
//     address or anything else a client chooses.
//   - A Request is passed by value: reporting one allocates nothing.
package obs

import "time"

// Listeners.
const (
	ListenerAdmin       = "admin"
	ListenerGateway     = "gateway"
	ListenerForwardAuth = "forward-auth"
)

// Listeners lists the listeners (a fresh slice).
func Listeners() []string { return []string{ListenerAdmin, ListenerGateway, ListenerForwardAuth} }

// Route classes: what kind of request, never which resource.
const (
	ClassFHIRRead      = "fhir-read"      // read, vread, history
	ClassFHIRSearch    = "fhir-search"    // search of any kind, continuations
	ClassFHIRWrite     = "fhir-write"     // create, update, patch, delete, batch, transaction
	ClassFHIROperation = "fhir-operation" // $operations
	ClassFHIRMetadata  = "fhir-metadata"  // the capability statement
	ClassHTTP          = "http"           // a route of an http upstream
	ClassUnrouted      = "unrouted"       // refused before its kind was known
	ClassIntrospect    = "introspect"     // RFC 7662, RFC 7009
	ClassTokenAdmin    = "token-admin"    // /v1/tokens…
	ClassAudit         = "audit"          // /v1/audit…
	ClassKeys          = "keys"           // /v1/secrets…, /v1/keys…
	ClassAlerts        = "alerts"         // /v1/alerts…
	ClassOAuth         = "oauth"          // /v1/oauth…, /v1/clients…, /.well-known/…
	ClassConsole       = "console"        // /console/…
	ClassMeta          = "meta"           // health, readiness, /metrics, /v1/openapi.json
)

// Classes lists the route classes (a fresh slice).
func Classes() []string {
	return []string{ClassFHIRRead, ClassFHIRSearch, ClassFHIRWrite, ClassFHIROperation, ClassFHIRMetadata,
		ClassHTTP, ClassUnrouted, ClassIntrospect, ClassTokenAdmin, ClassAudit, ClassKeys, ClassAlerts,
		ClassOAuth, ClassConsole, ClassMeta}
}

// Outcomes.
const (
	OutcomeGranted = "granted" // allowed (and, for the admin API, answered 2xx or 3xx)
	OutcomeDenied  = "denied"  // refused with a 4xx
	OutcomeError   = "error"   // refused or failed with a 5xx
)

// Outcomes lists the outcomes (a fresh slice).
func Outcomes() []string { return []string{OutcomeGranted, OutcomeDenied, OutcomeError} }

// Request is one request's outcome on one listener.
type Request struct {
	Listener string // a Listener constant
	Class    string // a Class constant
	Outcome  string // an Outcome constant
	// Reason is the reason code answered (a code of the external
	// contract; "" when granted).
	Reason string
	// Decision is how long authentication and authorization took
	// (Decided: there was a decision), Upstream how long the upstream took
	// to answer (Forwarded: the request went upstream), Total the whole
	// request.
	Decision, Upstream, Total time.Duration
	Decided, Forwarded        bool
}
