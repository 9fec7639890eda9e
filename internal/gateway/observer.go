package gateway

import "github.com/phigate/phigate/internal/obs"

// Observer is told the outcome of every request the gateway decides or
// refuses (internal/metrics counts them). ObserveRequest is called on the
// request path once the answer is given: it MUST NOT block, and should
// take no lock and allocate nothing. The observation carries only values
// of closed sets (see package obs): no token, subject, patient or path.
type Observer interface {
	ObserveRequest(obs.Request)
}

// observe reports x's outcome to the observer: its listener (the proxy or
// forward auth), route class, outcome and reason, and how long the
// decision, the upstream and the whole request took. A granted exchange
// that failed afterwards (the upstream timed out or broke off, the client
// went away) is an error with the completion's reason. /healthz and the
// identity key are not reported.
func (g *Gateway) observe(x *exchange) {
	if x.unobserved {
		return
	}
	ev := &x.ev
	o := obs.Request{Listener: obs.ListenerGateway, Class: routeClass(ev.Interaction),
		Decision: x.decision, Upstream: x.upstream, Total: g.now().Sub(x.start),
		Decided: x.decided, Forwarded: x.forwarded}
	if ev.Via == "authz" {
		o.Listener = obs.ListenerForwardAuth
	}
	status, reason := ev.Status, ev.Reason
	if x.fail != nil { // refused after its grant was recorded
		status, reason = x.fail.status, x.fail.code
	}
	switch {
	case x.fail == nil && ev.Kind == KindComplete && ev.Reason != "":
		// granted, but the exchange failed (upstream_timeout,
		// upstream_unavailable, response_too_large, aborted)
		o.Outcome, o.Reason = obs.OutcomeError, reason
	case x.fail == nil && ev.Kind != KindDeny:
		o.Outcome = obs.OutcomeGranted
	case status >= 500:
		o.Outcome, o.Reason = obs.OutcomeError, reason
	default:
		o.Outcome, o.Reason = obs.OutcomeDenied, reason
	}
	g.opts.Observer.ObserveRequest(o)
}

// routeClass is the class of a recorded interaction ("" before one was
// known).
func routeClass(interaction string) string {
	switch interaction {
	case "route":
		return obs.ClassHTTP
	case "read", "vread", "history-instance", "history-type", "history-system":
		return obs.ClassFHIRRead
	case "search-type", "search-system", "search-compartment":
		return obs.ClassFHIRSearch
	case "create", "update", "patch", "delete", "conditional-update", "conditional-patch", "conditional-delete", "batch", "transaction":
		return obs.ClassFHIRWrite
	case "capabilities":
		return obs.ClassFHIRMetadata
	case "operation":
		return obs.ClassFHIROperation
	}
	return obs.ClassUnrouted
}

// ReasonCodes lists the reason codes the gateway answers besides those
// of policy.Reason (a fresh slice): the closed set of the metrics'
// reason label.
func ReasonCodes() []string {
	return []string{CodeMissingToken, CodeCompartment, CodeNoRoute, CodeBreakGlass, CodeBreakGlassDenied,
		CodeInvalidRequest, CodeInvalidPurpose, CodeAmbiguousFraming, CodeUnsupportedMedia, CodeTooLarge,
		CodeNotFound, CodeAuditUnavailable, CodeUpstreamFailed, CodeUpstreamTimeout, CodeBodyUnavailable,
		CodeMethodNotAllowed, CodeInsufficientScope, CodeInvalidContinuation, CodeAborted, CodeResponseTooLarge,
		CodeTooManyFailures, CodeStorageLow, CodeCORSRefused, "internal"}
}
