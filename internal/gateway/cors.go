package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/phigate/phigate/internal/config"
)

// CORS (issue 22): browser apps served from an upstream's cors.origins may
// call it through the gateway.
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method)
//     is answered by the gateway itself, without a token and without
//     reaching the upstream: 204 with Access-Control-Allow-Origin (the one
//     origin, echoed), Allow-Methods (those the upstream's routes allow;
//     for fhir upstreams the FHIR REST methods), Allow-Headers (only the
//     request headers phigate reads or forwards for FHIR:
//     corsAllowHeaders), Max-Age, and Vary: Origin. An origin not listed,
//     a method not allowed, or an upstream without cors is refused with
//     403 cors_refused and no CORS header. Preflights are recorded like
//     the requests served without a token (Event.Public; the server
//     aggregates them, see internal/preauth), refusals like anonymous
//     denials: never one audit entry per preflight under a flood.
//   - Every other answer to a request whose Origin is listed — denials
//     included, so that the app can read why it was refused — carries
//     Access-Control-Allow-Origin, Access-Control-Expose-Headers
//     (corsExposeHeaders) and Vary: Origin. Others carry no CORS header.
//     An upstream's own Access-Control-* headers are always removed: only
//     the gateway's configuration grants an origin.
//   - Access-Control-Allow-Credentials is never sent: tokens travel in
//     Authorization, there are no cookies to share.

// CodeCORSRefused: a preflight from an origin, or for a method, the
// upstream's cors section does not allow (403).
const CodeCORSRefused = "cors_refused"

// corsAllowHeaders are the request headers a browser app may send.
const corsAllowHeaders = "Authorization, Content-Type, Accept, X-Purpose-Of-Use, X-Break-Glass, Prefer, If-Match, If-None-Match, If-Modified-Since, If-None-Exist, X-Request-Id"

// corsExposeHeaders are the answer headers a browser app may read.
const corsExposeHeaders = "Location, Content-Location, ETag, Last-Modified, X-Request-Id, Retry-After, WWW-Authenticate"

// fhirMethods are the methods of the FHIR REST API.
var fhirMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// corsPolicy is an upstream's compiled cors section.
type corsPolicy struct {
	origins map[string]bool
	methods []string
	allowM  string // methods, joined
	maxAge  string // seconds
}

// compileCORS returns the policy of c for an upstream (nil: no CORS).
// Origins were validated with config.ParseOrigin.
func compileCORS(c *config.CORS, fhir bool, routes []httpRoute) *corsPolicy {
	if !c.Enabled() {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}}
	for _, o := range c.Origins {
		p.origins[o] = true
	}
	if fhir {
		p.methods = slices.Clone(fhirMethods)
	} else {
		for _, r := range routes {
			m := r.pat.Method()
			if m == "*" {
				p.methods = append(p.methods, fhirMethods...)
				continue
			}
			p.methods = append(p.methods, m)
			if m == http.MethodGet {
				p.methods = append(p.methods, http.MethodHead)
			}
		}
		slices.Sort(p.methods)
		p.methods = slices.Compact(p.methods)
	}
	p.allowM = strings.Join(p.methods, ", ")
	p.maxAge = strconv.Itoa(int(c.EffectiveMaxAge().Seconds()))
	return p
}

// allowed returns the request's origin when p allows it: exactly one
// Origin header, byte for byte one of the configured origins.
func (p *corsPolicy) allowed(h http.Header) (string, bool) {
	vs := h["Origin"]
	if p == nil || len(vs) != 1 || !p.origins[vs[0]] {
		return "", false
	}
	return vs[0], true
}

// isPreflight reports whether r is a CORS preflight.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// corsAnswer adds the headers of an answer to an allowed origin.
func corsAnswer(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	h.Add("Vary", "Origin")
}

// stripCORS removes an upstream's own CORS headers.
func stripCORS(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
}

// servePreflight answers the preflight r to up (see the top of this file).
func (g *Gateway) servePreflight(w http.ResponseWriter, r *http.Request, ev *Event, up *upstream) {
	ev.Public, ev.Subject, ev.Interaction = true, PublicSubject, "cors-preflight"
	origin, ok := up.cors.allowed(r.Header)
	want := r.Header.Get("Access-Control-Request-Method")
	if !ok {
		g.refuse(w, r, ev, deny(http.StatusForbidden, CodeCORSRefused, "this origin may not call this upstream from a browser (gateway.upstreams[].cors.origins)"))
		return
	}
	if !slices.Contains(up.cors.methods, want) {
		g.refuse(w, r, ev, deny(http.StatusForbidden, CodeCORSRefused, "this method is not allowed from a browser on this upstream"))
		return
	}
	ev.Status = http.StatusNoContent
	if !g.grant(r, ev) {
		g.writeRefusal(w, r, ev.RequestID, errAudit)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", up.cors.allowM)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", up.cors.maxAge)
	h.Add("Vary", "Origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
