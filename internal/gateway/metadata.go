package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/internal/config"
)

// The identity asserted to an upstream for a request served without a
// token: no token id has this form (they start with "tok_").
const (
	PublicSubject = "phigate:public"
	PublicTokenID = "public"
)

// CodeResponseTooLarge: an upstream's answer the gateway must read whole
// to check or change was larger than its limit (502).
const CodeResponseTooLarge = "response_too_large"

// smartConfigurationPath is the SMART App Launch discovery document below
// a fhir upstream's prefix: Options.SMARTConfiguration, or 404 without
// one (no OAuth token endpoint to name in it).
const smartConfigurationPath = "/.well-known/smart-configuration"

// smartSecurity is the rest[].security the gateway declares in a public
// CapabilityStatement, in place of the upstream's (which describes how
// the gateway reaches the upstream, not how clients reach the gateway).
// The SMART oauth-uris extension joins it once the gateway has an OAuth
// token endpoint.
const smartSecurity = `{"service":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/restful-security-service","code":"SMART-on-FHIR","display":"SMART-on-FHIR"}],` +
	`"text":"OAuth 2.0 bearer tokens with SMART on FHIR v2 scopes, issued by phigate"}],` +
	`"description":"Every request but the capability statement needs Authorization: Bearer with a phigate token; its SMART v2 scopes (patient/, user/, system/) decide what it reaches."}`

// publicMetadata reports whether a request to a fhir upstream is the
// capability statement in its public form: GET or HEAD of exactly
// "metadata" below the prefix, its query only _format (a JSON format:
// json, application/json, application/fhir+json, application/json+fhir)
// and mode (full, normative, terminology), each at most once. Anything
// else (XML, other parameters, another path) needs a token.
func publicMetadata(method, rest, rawQuery string) bool {
	if method != http.MethodGet && method != http.MethodHead || rest != "/metadata" {
		return false
	}
	var format, mode bool
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if pair == "" && rawQuery == "" {
			break
		}
		k, raw, _ := strings.Cut(pair, "=")
		v, err := url.QueryUnescape(raw)
		if err != nil {
			return false
		}
		switch {
		case k == "_format" && !format:
			format = true
			switch v {
			case "json", "application/json", "application/fhir+json", "application/json+fhir":
			default:
				return false
			}
		case k == "mode" && !mode:
			mode = true
			switch v {
			case "full", "normative", "terminology":
			default:
				return false
			}
		default:
			return false // another parameter, a repeated one, ";", an encoded name
		}
	}
	return true
}

// servePublic answers the requests to a fhir upstream that need no token,
// and reports whether r was one: the public capability statement
// (publicMetadata), rate limited per source, recorded (Event.Public, no
// token id) and forwarded with any Authorization ignored and removed; and
// the SMART configuration, 404 until the gateway has a token endpoint.
func (g *Gateway) servePublic(w http.ResponseWriter, r *http.Request, x *exchange, t *table, up *upstream, rest string, peer, client netip.Addr, xff []string) bool {
	ev := &x.ev
	if rest == smartConfigurationPath {
		g.serveSMART(w, r, ev, client)
		return true
	}
	if !publicMetadata(r.Method, rest, r.URL.RawQuery) {
		return false
	}
	ev.Public, ev.Subject, ev.Interaction = true, PublicSubject, Capabilities.String()
	if retry, ok := g.metaLimit.Load().admit(client, g.now()); !ok {
		g.refuse(w, r, ev, &denial{status: http.StatusTooManyRequests, code: "rate_limited",
			msg: "too many capability statement requests from this address; try again later", retry: retry})
		return true
	}
	if !g.grant(r, ev) {
		x.fail = errAudit
		g.writeRefusal(w, r, ev.RequestID, errAudit)
		return true
	}
	x.public, x.metaMax = true, t.metadata.MaxBytes
	x.subject, x.tokenID = PublicSubject, PublicTokenID
	x.counted.r = r.Body // a GET or HEAD: checkHeaders refused a body
	g.forward(w, r, x, t, up, rest, peer, client, xff)
	return true
}

// serveSMART answers GET or HEAD of the SMART configuration: without a
// token (an Authorization header is ignored), rate limited per source like
// the capability statement, and recorded like it (Event.Public: the server
// aggregates these entries, see internal/preauth), grant before the
// answer and completion after. Another method is 405; no configuration,
// 404.
func (g *Gateway) serveSMART(w http.ResponseWriter, r *http.Request, ev *Event, client netip.Addr) {
	doc := g.opts.SMARTConfiguration
	if len(doc) == 0 {
		g.refuse(w, r, ev, deny(http.StatusNotFound, CodeNotFound, "this gateway publishes no SMART configuration: it has no OAuth token endpoint"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		g.refuse(w, r, ev, deny(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "the SMART configuration is read with GET"))
		return
	}
	ev.Public, ev.Subject, ev.Interaction = true, PublicSubject, "smart-configuration"
	if retry, ok := g.metaLimit.Load().admit(client, g.now()); !ok {
		g.refuse(w, r, ev, &denial{status: http.StatusTooManyRequests, code: "rate_limited",
			msg: "too many discovery requests from this address; try again later", retry: retry})
		return
	}
	if !g.grant(r, ev) {
		g.writeRefusal(w, r, ev.RequestID, errAudit)
		return
	}
	start := g.now()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	n := 0
	if r.Method == http.MethodGet {
		n, _ = w.Write(doc)
	}
	c := *ev
	c.Kind, c.Status, c.BytesOut, c.Duration = KindComplete, http.StatusOK, int64(n), g.now().Sub(start)
	g.complete(&c)
}

// publicHeaders adjusts the upstream request of a public capability
// statement: JSON (the gateway adds its security declaration to it) and
// not compressed.
func publicHeaders(h http.Header) {
	h["Accept"] = []string{"application/fhir+json"}
	delete(h, "Accept-Encoding")
}

// responseRefusal is an upstream's answer that the gateway read and
// refuses (the ReverseProxy's ErrorHandler answers dn).
type responseRefusal struct{ dn *denial }

func (e *responseRefusal) Error() string { return e.dn.code + ": " + e.dn.msg }

func badMetadata(code, msg string) error {
	return &responseRefusal{dn: deny(http.StatusBadGateway, code, msg)}
}

// secureMetadata replaces the body of a 200 answer to a public capability
// statement by the same CapabilityStatement declaring the gateway's
// security (declareSecurity). It reads at most limit bytes: a larger
// answer, one that is compressed, not JSON or not a well-formed JSON
// object is refused (502), never passed on unchanged. Other statuses, and
// answers to HEAD, pass as they are (HEAD without Content-Length: the
// GET's body differs from the upstream's).
func secureMetadata(resp *http.Response, limit int64) error {
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	h := resp.Header
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		delete(h, "Content-Length")
		resp.ContentLength = -1
		return nil
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return badMetadata(CodeUpstreamFailed, "the upstream's capability statement is compressed, though the gateway asked for it uncompressed")
	}
	switch mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt {
	case "application/fhir+json", "application/json", "application/json+fhir":
	default:
		return badMetadata(CodeUpstreamFailed, "the upstream's capability statement is not JSON")
	}
	tooLarge := badMetadata(CodeResponseTooLarge, fmt.Sprintf("the upstream's capability statement is larger than %d bytes (gateway.metadata.max_bytes)", limit))
	if resp.ContentLength > limit {
		return tooLarge
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return badMetadata(CodeUpstreamFailed, "reading the upstream's capability statement failed")
	case int64(len(b)) > limit:
		return tooLarge
	}
	out, err := declareSecurity(b)
	if err != nil {
		return badMetadata(CodeUpstreamFailed, "the upstream's capability statement is not a well-formed JSON resource")
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.TransferEncoding = nil
	h.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// errNotResource: a body that is not one JSON object with unique keys.
var errNotResource = errors.New("not a JSON object with unique keys")

// member is one member of a JSON object: its key and its value as written.
type member struct {
	key string
	val json.RawMessage
}

// objectMembers splits a JSON object into its members, in order, values
// kept byte for byte. It refuses anything else, a repeated key and
// trailing data.
func objectMembers(b []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotResource
	}
	var ms []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok || seen[k] {
			return nil, errNotResource
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errNotResource
		}
		ms = append(ms, member{k, v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errNotResource
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotResource
	}
	return ms, nil
}

func encodeMembers(ms []member) []byte {
	n := 2
	for _, m := range ms {
		n += len(m.key) + len(m.val) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.key)
		b = append(b, ':')
		b = append(b, m.val...)
	}
	return append(b, '}')
}

// setMember replaces the value of key in ms, or appends the member.
func setMember(ms []member, key string, val json.RawMessage) []member {
	for i := range ms {
		if ms[i].key == key {
			ms[i].val = val
			return ms
		}
	}
	return append(ms, member{key, val})
}

func stringMember(ms []member, key string) string {
	for _, m := range ms {
		if m.key == key {
			var s string
			json.Unmarshal(m.val, &s) // not a string: ""
			return s
		}
	}
	return ""
}

// declareSecurity returns the CapabilityStatement b with smartSecurity as
// the security of each rest entry whose mode is not "client" (a rest
// entry {"mode":"server"} added when it has none), every other member as the
// upstream wrote it, in its order. A JSON resource of another type (the
// TerminologyCapabilities of mode=terminology) is returned unchanged. b
// must be one JSON object with unique keys, its rest (if any) an array
// of such objects.
func declareSecurity(b []byte) ([]byte, error) {
	ms, err := objectMembers(b)
	if err != nil {
		return nil, err
	}
	if stringMember(ms, "resourceType") != "CapabilityStatement" {
		if stringMember(ms, "resourceType") == "" {
			return nil, errNotResource
		}
		return b, nil
	}
	var rest json.RawMessage
	for _, m := range ms {
		if m.key == "rest" {
			rest = m.val
		}
	}
	if rest == nil {
		return encodeMembers(append(ms, member{"rest", json.RawMessage(`[{"mode":"server","security":` + smartSecurity + `}]`)})), nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(rest, &entries); err != nil {
		return nil, errNotResource
	}
	out, server := []byte{'['}, false
	for i, e := range entries {
		em, err := objectMembers(e)
		if err != nil {
			return nil, err
		}
		if stringMember(em, "mode") != "client" {
			e, server = encodeMembers(setMember(em, "security", json.RawMessage(smartSecurity))), true
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	if !server {
		if len(entries) > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"mode":"server","security":`+smartSecurity+`}`...)
	}
	out = append(out, ']')
	return encodeMembers(setMember(ms, "rest", out)), nil
}

// sourceLimiter limits the public requests of each source (an IPv4
// address or an IPv6 /64; an unknown address is one source) to a rate
// with a burst, in bounded memory: it keeps, per source, the time its
// allowance is spent until (GCRA). A source whose allowance is whole again
// is forgotten first when the table is full; otherwise the one of
// limiterExamine sources closest to a whole allowance is. Its methods are
// safe for concurrent use; nil allows nothing.
type sourceLimiter struct {
	cfg      config.PublicMetadata // with defaults
	interval time.Duration
	slack    time.Duration // (burst-1) intervals

	mu    sync.Mutex
	until map[netip.Prefix]time.Time
	swept time.Time
}

// limiterExamine bounds the sources looked at to make room.
const limiterExamine = 8

func newSourceLimiter(cfg config.PublicMetadata) *sourceLimiter {
	cfg = cfg.WithDefaults()
	iv := cfg.Interval()
	return &sourceLimiter{cfg: cfg, interval: iv, slack: time.Duration(cfg.Burst-1) * iv, until: make(map[netip.Prefix]time.Time)}
}

// sameLimits reports whether l already applies cfg.
func (l *sourceLimiter) sameLimits(cfg config.PublicMetadata) bool {
	c := cfg.WithDefaults()
	return l != nil && l.cfg.PerMinute == c.PerMinute && l.cfg.Burst == c.Burst && l.cfg.MaxSources == c.MaxSources
}

// sourceKey is the source a limit counts for a.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return netip.Prefix{}
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	default:
		p, _ := a.WithZone("").Prefix(64)
		return p
	}
}

// admit spends one request of src's allowance at now, or reports how long
// until it may send one.
func (l *sourceLimiter) admit(src netip.Addr, now time.Time) (retry time.Duration, ok bool) {
	if l == nil {
		return time.Second, false
	}
	k := sourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	t, known := l.until[k]
	if !known {
		if len(l.until) >= l.cfg.MaxSources {
			l.makeRoom(now)
		}
	}
	if t.Before(now) {
		t = now
	}
	if wait := t.Sub(now) - l.slack; wait > 0 {
		return wait, false
	}
	l.until[k] = t.Add(l.interval)
	return 0, true
}

// makeRoom forgets one source at least: every source whose allowance is
// whole again (at most once per interval), else the one of limiterExamine
// closest to it.
func (l *sourceLimiter) makeRoom(now time.Time) {
	if now.Sub(l.swept) >= l.interval {
		l.swept = now
		for k, t := range l.until {
			if !t.After(now) {
				delete(l.until, k)
			}
		}
		if len(l.until) < l.cfg.MaxSources {
			return
		}
	}
	var victim netip.Prefix
	var earliest time.Time
	n := 0
	for k, t := range l.until {
		if n == 0 || t.Before(earliest) {
			victim, earliest = k, t
		}
		if n++; n == limiterExamine {
			break
		}
	}
	delete(l.until, victim)
}
