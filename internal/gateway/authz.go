package gateway

import (
	"net/http"
	"net/netip"
	"strings"
)

// serveAuthz is the forward-auth endpoint: it decides the original request
// a proxy (nginx auth_request, Envoy ext_authz, Traefik ForwardAuth) asks
// about, records the decision, and answers 200 with the identity headers or
// the refusal. It never forwards anything itself.
func (g *Gateway) serveAuthz(w http.ResponseWriter, r *http.Request, x *exchange) {
	ev, start := &x.ev, x.start
	t := g.table.Load()
	peer := peerAddr(r)
	trustedPeer := t.trusted.contains(peer)
	client := peer
	if trustedPeer {
		client = authzClient(peer, r.Header, t.trusted)
	}
	if client.IsValid() {
		ev.SourceIP = client.String()
	}
	sub := strings.TrimPrefix(r.URL.EscapedPath(), authzPath)
	if originalSources(r.Header, sub) > 1 {
		g.refuse(w, r, ev, badRequest("forward auth got the original request more than once (X-Original-*, X-Forwarded-Method/Uri, a path after /v1/authz): the client may have sent its own; configure the proxy to set one and drop the others"))
		return
	}
	orig, ok := parseOriginal(r.Header, r.Method, sub, r.URL.RawQuery)
	if !ok {
		g.refuse(w, r, ev, badRequest("forward auth needs the original request: X-Original-Method and X-Original-URI (nginx), X-Forwarded-Method and X-Forwarded-Uri (Traefik), or the original path after /v1/authz (Envoy)"))
		return
	}
	ev.Method, ev.Path, ev.Query = orig.method, redact(orig.path), redact(orig.query)
	if dn := checkMethod(orig.method); dn != nil {
		g.refuse(w, r, ev, dn)
		return
	}
	// the proxy passes the client's headers on to the app: an override
	// there would run another method than the one decided here
	if dn := checkMethodOverride(r.Header, orig.query); dn != nil {
		g.refuse(w, r, ev, dn)
		return
	}
	if !canonicalPath(orig.path) {
		g.refuse(w, r, ev, badRequest("the original path must be canonical: no empty, . or .. segments, no encoded / or \\"))
		return
	}
	up, rest := t.match(orig.path)
	if up == nil {
		g.refuse(w, r, ev, deny(http.StatusForbidden, CodeNotFound, "no upstream is configured for this path"))
		return
	}
	ev.Upstream = up.name
	secret, purpose, justification, bg, ok := g.caller(w, r, ev)
	if !ok {
		return
	}
	q := &request{
		secret: secret, addr: client, purpose: purpose, justification: justification, breakGlass: bg,
		method: orig.method, path: rest, query: orig.query, contentType: r.Header.Get("Content-Type"),
		up: up, maxEntries: t.limits.MaxBundleEntries, now: start,
		body:         nil,  // a forward-auth call carries no body
		answerUnseen: true, // nor does the gateway see the answer
	}
	q.setIfNoneExist(r.Header)
	v := g.decideObserved(r.Context(), q, x)
	fillEvent(ev, &v)
	if v.deny != nil {
		g.refuse(w, r, ev, v.deny)
		return
	}
	if !g.grant(r, ev) {
		g.auth.Refund(v.admitted) // nothing was forwarded: the use and the rate token are the token's again
		x.fail = errAudit
		writeError(w, ev.RequestID, errAudit)
		return
	}
	h := w.Header()
	h.Set(HeaderSubject, v.rec.Subject)
	h.Set(HeaderTokenID, v.rec.ID)
	if purpose != "" {
		h.Set(HeaderPurpose, purpose)
	}
	if bg {
		h.Set(HeaderBreakGlass, "true")
	}
	h.Set(HeaderIdentity, up.ident.sign(&Identity{
		Subject: v.rec.Subject, TokenID: v.rec.ID, Purpose: purpose, Method: orig.method, Path: orig.path, QueryHash: QueryHash(orig.query),
		RequestID: ev.RequestID, Audience: up.name, BreakGlass: bg, IssuedAt: start.Unix(), Expires: start.Add(IdentityTTL).Unix(),
	}))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// authzClient is the client address a trusted proxy reports to forward
// auth: X-Forwarded-For walked as for the proxy, or X-Real-IP when there
// is no X-Forwarded-For; when both are there and name different clients,
// one of them is the client's own (nginx passes on the client's
// X-Forwarded-For, Envoy its X-Real-IP), and the client is unknown (the
// zero Addr: network-restricted tokens refuse).
func authzClient(peer netip.Addr, h http.Header, tr trusted) netip.Addr {
	ip, ok := single(h, "X-Real-Ip")
	if !ok {
		return netip.Addr{}
	}
	var real netip.Addr
	if ip = strings.TrimSpace(ip); ip != "" {
		a, valid := parseForwardedAddr(ip)
		if !valid {
			return netip.Addr{}
		}
		real = a.Unmap()
	}
	xff := h.Values("X-Forwarded-For")
	if len(xff) == 0 {
		if real.IsValid() {
			return real
		}
		return peer
	}
	fwd := clientAddr(peer, xff, tr).Unmap()
	if real.IsValid() && real != fwd {
		return netip.Addr{}
	}
	return fwd
}
