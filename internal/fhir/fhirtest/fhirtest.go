// Package fhirtest is a FHIR R4 upstream for tests: an in-memory server
// over TLS that answers as HAPI FHIR documents its RESTful API, paging and
// links, or, with PagingOffset, as the servers that page by _offset do. It
// holds the SYNTHETIC seed of data.go only and is never used outside tests.
//
// # What it answers (relative to its base, "/fhir" by default)
//
//	GET  metadata                        CapabilityStatement, implementation.url = the base
//	GET  [type]/[id]                     read (ETag W/"1", meta.versionId "1")
//	GET  [type]/[id]/_history/[vid]      vread (vid 1 only; others 404)
//	GET  [type]/[id]/_history            instance history (Bundle type history)
//	GET  [type]?…, POST [type]/_search   search-type (searchset)
//	GET  Patient/[id]/[type]?…           compartment search
//	POST [type]                          create (201, Location [base]/[type]/[id]/_history/1)
//	POST (base) Bundle batch|transaction each entry as above (at most MaxEntries, none
//	                                     nested); a transaction is refused whole
//	                                     (with the failing entry's status) when one fails
//
// for Patient, Observation, Encounter, Condition and MedicationRequest,
// with the search parameters _id, patient, subject (also subject:Patient),
// _count (default 20, at most 100), _include (Observation:subject,
// Observation:patient, Observation:encounter, each also with its target
// type, as Observation:encounter:Encounter, or [type]:* and *) and the
// paging parameters below. A search parameter the server does not know is
// ignored, as HAPI does, unless the request carries Prefer: handling=strict
// (the gateway sends it): then 400 with an OperationOutcome. Errors are
// OperationOutcomes (application/fhir+json) with HAPI's statuses: 400, 404,
// 405, 410 for an expired or unknown paging id.
//
// # Links and paging
//
// Every URL in an answer is absolute on the server's own base, taken from
// the request (https, its Host, the base path), as HAPI's default address
// strategy does: Bundle.link self, next and previous, entry.fullUrl
// ([base]/[type]/[id]), CapabilityStatement.implementation.url, Location
// and Content-Location.
//
// PagingHAPI (the default) keeps each search's result (the ids, fixed when
// the search ran; at most 1000 searches, the oldest forgotten first) under
// a random id and links its pages as HAPI does:
//
//	[base]?_getpages=ID&_getpagesoffset=N&_count=N&_pretty=true&_bundletype=searchset
//
// PagingOffset links pages by repeating the search with _offset:
//
//	[base]/[type]?…&_count=N&_offset=N
//
// Server.Requests lists what reached the server (method, path and query,
// Authorization), so a test can check that a client's traffic came through
// the gateway, with the gateway's credential, and that nothing it was
// refused was fetched.
package fhirtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Paging is how the server links the pages of a search.
type Paging int

const (
	// PagingHAPI links pages with _getpages continuations, as HAPI FHIR.
	PagingHAPI Paging = iota
	// PagingOffset links pages by repeating the search with _offset.
	PagingOffset
)

func (p Paging) String() string {
	if p == PagingOffset {
		return "offset"
	}
	return "hapi"
}

// Limits of the server; every one is explicit.
const (
	// DefaultCount is the page size without _count (HAPI's default).
	DefaultCount = 20
	// MaxCount is the largest page size; a larger _count is cut to it.
	MaxCount = 100
	// MaxSearches is the number of searches kept for _getpages.
	MaxSearches = 1000
	// MaxBody is the largest request body read (413 beyond).
	MaxBody = 1 << 20
	// MaxEntries is the largest batch or transaction (413 beyond).
	MaxEntries = 100
	// MaxCreates is the number of resources a server creates in its life
	// (507 beyond), so that its memory stays bounded.
	MaxCreates = 1000
	// MaxRequests is the number of requests Requests remembers, the
	// latest kept.
	MaxRequests = 10000
)

// Options configure a server.
type Options struct {
	// Paging chooses the continuation links.
	Paging Paging
	// BasePath is the base's path, "/fhir" when empty.
	BasePath string
	// Now is the clock (meta.lastUpdated, Bundle.meta); required.
	Now func() time.Time
}

// Request is one request the server received.
type Request struct {
	Method string
	// URI is the path and query as received.
	URI           string
	Authorization string
}

// Handler is the server's http.Handler, usable without a listener.
type Handler struct {
	paging Paging
	base   string
	now    func() time.Time

	mu       sync.Mutex
	data     map[string][]resource
	searches map[string][]string // paging id -> "Type/id" of the matches, then includes marked with "+"
	order    []string            // paging ids, oldest first
	seen     []Request
	nextID   int
}

// NewHandler returns a handler holding the seed.
func NewHandler(o Options) (*Handler, error) {
	if o.Now == nil {
		return nil, errors.New("fhirtest: Options.Now is required")
	}
	base := o.BasePath
	if base == "" {
		base = "/fhir"
	}
	if !strings.HasPrefix(base, "/") || strings.HasSuffix(base, "/") {
		return nil, fmt.Errorf("fhirtest: BasePath %q must start and not end with /", base)
	}
	return &Handler{paging: o.Paging, base: base, now: o.Now, data: Seed(o.Now()),
		searches: map[string][]string{}}, nil
}

// Server is a Handler served over TLS on loopback.
type Server struct {
	*Handler
	// URL is the FHIR base: https://127.0.0.1:PORT/fhir.
	URL string
	// CAFile is a PEM file of the server's certificate, to trust it.
	CAFile string
	srv    *httptest.Server
}

// Start starts a server for the test, closed at its end.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	h, err := NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "fhirtest-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Server{Handler: h, URL: srv.URL + h.base, CAFile: ca, srv: srv}
}

// Requests returns what the server received so far.
func (h *Handler) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// served reports whether the server serves resource type t.
func served(t string) bool {
	switch t {
	case "Patient", "Observation", "Encounter", "Condition", "MedicationRequest":
		return true
	}
	return false
}

// servedTypes are the types served, in alphabetical order.
func servedTypes() []string {
	return []string{"Condition", "Encounter", "MedicationRequest", "Observation", "Patient"}
}

// includeElement is the element an _include value ("Type:param") follows.
func includeElement(inc string) (string, bool) {
	src, param, _ := strings.Cut(inc, ":")
	if src == "Patient" || !served(src) {
		return "", false
	}
	switch param {
	case "subject", "patient":
		return "subject", true
	case "encounter":
		if src != "Encounter" {
			return "encounter", true
		}
	}
	return "", false
}

// includeKey is what includeElement reads of an _include value: "Type:param",
// and "Type:param:Target" when Target is the type param refers to.
func includeKey(inc string) string {
	src, rest, _ := strings.Cut(inc, ":")
	param, target, ok := strings.Cut(rest, ":")
	if !ok {
		return inc
	}
	if want := map[string]string{"subject": "Patient", "patient": "Patient", "encounter": "Encounter"}[param]; want != target {
		return ""
	}
	return src + ":" + param
}

// httpError is an answer with an OperationOutcome.
type httpError struct {
	status int
	code   string // FHIR issue type
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, code, format string, a ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

// answer is what a request produced.
type answer struct {
	status   int
	body     any
	location string
	etag     string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, Request{Method: r.Method, URI: r.URL.RequestURI(), Authorization: r.Header.Get("Authorization")})
	if len(h.seen) > MaxRequests {
		h.seen = slices.Clone(h.seen[len(h.seen)-MaxRequests:])
	}
	h.mu.Unlock()
	base := "https://" + r.Host + h.base
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		if err != nil {
			writeError(w, fail(http.StatusBadRequest, "invalid", "unreadable body"))
			return
		}
		if len(b) > MaxBody {
			writeError(w, fail(http.StatusRequestEntityTooLarge, "too-long", "body over %d bytes", MaxBody))
			return
		}
		body = b
	}
	rest, ok := strings.CutPrefix(r.URL.Path, h.base)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		writeError(w, fail(http.StatusNotFound, "not-found", "no FHIR base at %s", r.URL.Path))
		return
	}
	query := r.URL.Query()
	if r.Method == http.MethodPost && strings.HasSuffix(rest, "/_search") {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			writeError(w, fail(http.StatusBadRequest, "invalid", "unreadable form"))
			return
		}
		for k, v := range form {
			query[k] = append(query[k], v...)
		}
	}
	strict := strings.Contains(strings.Join(r.Header.Values("Prefer"), ","), "handling=strict")
	a, herr := h.dispatch(base, r.Method, strings.TrimPrefix(rest, "/"), query, body, strict)
	if herr != nil {
		writeError(w, herr)
		return
	}
	if a.location != "" {
		w.Header().Set("Location", a.location)
		w.Header().Set("Content-Location", a.location)
	}
	if a.etag != "" {
		w.Header().Set("ETag", a.etag)
	}
	if a.body == nil {
		w.WriteHeader(a.status)
		return
	}
	writeJSON(w, a.status, a.body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	w.Header().Set("Content-Type", "application/fhir+json;charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

func outcome(e *httpError) resource {
	return resource{"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{"severity": "error", "code": e.code, "diagnostics": e.msg}}}
}

func writeError(w http.ResponseWriter, e *httpError) { writeJSON(w, e.status, outcome(e)) }

// dispatch answers one request; rest is the path below the base, without
// its leading "/". It is also what batch entries run.
func (h *Handler) dispatch(base, method, rest string, q url.Values, body []byte, strict bool) (answer, *httpError) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	seg := strings.Split(rest, "/")
	if rest == "" {
		seg = nil
	}
	switch {
	case len(seg) == 0 && method == http.MethodGet && q.Has("_getpages"):
		return h.page(base, q)
	case len(seg) == 0 && method == http.MethodPost:
		return h.bundle(base, body, strict)
	case len(seg) == 1 && seg[0] == "metadata" && method == http.MethodGet:
		return answer{status: 200, body: h.capability(base)}, nil
	}
	if len(seg) == 0 {
		return answer{}, fail(http.StatusBadRequest, "not-supported", "system-level %s is not supported", method)
	}
	typ := seg[0]
	if !served(typ) {
		return answer{}, fail(http.StatusNotFound, "not-supported", "unknown resource type %q", typ)
	}
	switch {
	case len(seg) == 1 && method == http.MethodGet:
		return h.search(base, typ, q, strict)
	case len(seg) == 2 && seg[1] == "_search" && method == http.MethodPost:
		return h.search(base, typ, q, strict)
	case len(seg) == 1 && method == http.MethodPost:
		return h.create(base, typ, body)
	case len(seg) == 2 && method == http.MethodGet:
		r, err := h.read(typ, seg[1])
		if err != nil {
			return answer{}, err
		}
		return answer{status: 200, body: r, etag: `W/"1"`}, nil
	case len(seg) == 3 && seg[2] == "_history" && method == http.MethodGet:
		return h.history(base, typ, seg[1])
	case len(seg) == 4 && seg[2] == "_history" && method == http.MethodGet:
		r, err := h.read(typ, seg[1])
		if err != nil {
			return answer{}, err
		}
		if seg[3] != versionOf(r) {
			return answer{}, fail(http.StatusNotFound, "not-found", "version %q of %s/%s is not known", seg[3], typ, seg[1])
		}
		return answer{status: 200, body: r, etag: `W/"` + seg[3] + `"`}, nil
	case len(seg) == 3 && typ == "Patient" && served(seg[2]) && method == http.MethodGet:
		if _, err := h.read("Patient", seg[1]); err != nil {
			return answer{}, err
		}
		q2 := cloneValues(q)
		if seg[2] == "Patient" {
			q2.Set("_id", seg[1])
		} else {
			q2.Set("patient", seg[1])
		}
		return h.search(base, seg[2], q2, strict)
	}
	return answer{}, fail(http.StatusMethodNotAllowed, "not-supported", "%s %s is not supported", method, rest)
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

func versionOf(r resource) string {
	if m, ok := r["meta"].(map[string]any); ok {
		if v, ok := m["versionId"].(string); ok {
			return v
		}
	}
	return "1"
}

func (h *Handler) read(typ, id string) (resource, *httpError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.data[typ] {
		if r["id"] == id {
			return r, nil
		}
	}
	return nil, fail(http.StatusNotFound, "not-found", "resource %s/%s is not known", typ, id)
}

// known reports whether k is a parameter every search takes.
func known(k string) bool {
	switch k {
	case "_id", "_count", "_include", "_pretty", "_format", "_offset", "_total":
		return true
	}
	return false
}

// patientOf returns the id of the patient a resource belongs to.
func patientOf(r resource) string {
	if r["resourceType"] == "Patient" {
		s, _ := r["id"].(string)
		return s
	}
	if s, ok := r["subject"].(map[string]any); ok {
		ref, _ := s["reference"].(string)
		return strings.TrimPrefix(ref, "Patient/")
	}
	return ""
}

// match returns the "Type/id" of the resources of typ matching q.
func (h *Handler) match(typ string, q url.Values, strict bool) ([]string, *httpError) {
	var want []func(resource) bool
	for k, vs := range q {
		if known(k) {
			continue
		}
		name, _, _ := strings.Cut(k, ":")
		switch {
		case (name == "patient" || name == "subject") && typ != "Patient":
			for _, v := range vs {
				alts := strings.Split(v, ",")
				want = append(want, func(r resource) bool {
					p := patientOf(r)
					for _, a := range alts {
						if strings.TrimPrefix(a, "Patient/") == p {
							return true
						}
					}
					return false
				})
			}
		default:
			if strict {
				return nil, fail(http.StatusBadRequest, "invalid", "unknown search parameter %q for resource type %s", k, typ)
			}
		}
	}
	for _, v := range q["_id"] {
		ids := strings.Split(v, ",")
		want = append(want, func(r resource) bool { s, _ := r["id"].(string); return slices.Contains(ids, s) })
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
next:
	for _, r := range h.data[typ] {
		for _, f := range want {
			if !f(r) {
				continue next
			}
		}
		out = append(out, typ+"/"+r["id"].(string))
	}
	return out, nil
}

// count reads _count.
func count(q url.Values) (int, *httpError) {
	v := q.Get("_count")
	if v == "" {
		return DefaultCount, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fail(http.StatusBadRequest, "invalid", "invalid _count %q", v)
	}
	return min(n, MaxCount), nil
}

func (h *Handler) search(base, typ string, q url.Values, strict bool) (answer, *httpError) {
	n, err := count(q)
	if err != nil {
		return answer{}, err
	}
	for _, inc := range q["_include"] {
		if _, ok := includeElement(includeKey(inc)); !ok && inc != "*" && inc != typ+":*" {
			return answer{}, fail(http.StatusBadRequest, "invalid", "invalid _include %q for %s", inc, typ)
		}
	}
	ids, err := h.match(typ, q, strict)
	if err != nil {
		return answer{}, err
	}
	self := base + "/" + typ
	if enc := canonical(q); enc != "" {
		self += "?" + enc
	}
	if h.paging == PagingOffset {
		off := 0
		if v := q.Get("_offset"); v != "" {
			o, e := strconv.Atoi(v)
			if e != nil || o < 0 {
				return answer{}, fail(http.StatusBadRequest, "invalid", "invalid _offset %q", v)
			}
			off = o
		}
		link := func(o int) string {
			q2 := cloneValues(q)
			q2.Set("_count", strconv.Itoa(n))
			q2.Set("_offset", strconv.Itoa(o))
			return base + "/" + typ + "?" + canonical(q2)
		}
		links := []any{map[string]any{"relation": "self", "url": self}}
		if n > 0 && off+n < len(ids) {
			links = append(links, map[string]any{"relation": "next", "url": link(off + n)})
		}
		if off > 0 && n > 0 {
			links = append(links, map[string]any{"relation": "previous", "url": link(max(0, off-n))})
		}
		return answer{status: 200, body: h.searchset(base, ids, off, n, q["_include"], links)}, nil
	}
	pid := h.keep(ids, q["_include"])
	return answer{status: 200, body: h.searchset(base, ids, 0, n, q["_include"], h.pageLinks(base, pid, self, 0, n, len(ids)))}, nil
}

// canonical encodes q sorted by name (url.Values.Encode), without the
// paging parameters the server adds itself.
func canonical(q url.Values) string {
	return q.Encode()
}

func (h *Handler) pageLinks(base, pid, self string, off, n, total int) []any {
	link := func(o int) string {
		return fmt.Sprintf("%s?_getpages=%s&_getpagesoffset=%d&_count=%d&_pretty=true&_bundletype=searchset", base, pid, o, n)
	}
	links := []any{map[string]any{"relation": "self", "url": self}}
	if n > 0 && off+n < total {
		links = append(links, map[string]any{"relation": "next", "url": link(off + n)})
	}
	if off > 0 && n > 0 {
		links = append(links, map[string]any{"relation": "previous", "url": link(max(0, off-n))})
	}
	return links
}

// keep stores a search's result under a new paging id.
func (h *Handler) keep(ids, include []string) string {
	b := make([]byte, 16)
	rand.Read(b)
	pid := hex.EncodeToString(b)
	h.mu.Lock()
	defer h.mu.Unlock()
	entry := slices.Clone(ids)
	for _, inc := range include {
		entry = append(entry, "+"+inc)
	}
	h.searches[pid] = entry
	h.order = append(h.order, pid)
	for len(h.order) > MaxSearches {
		delete(h.searches, h.order[0])
		h.order = h.order[1:]
	}
	return pid
}

func (h *Handler) page(base string, q url.Values) (answer, *httpError) {
	if h.paging != PagingHAPI {
		return answer{}, fail(http.StatusBadRequest, "not-supported", "_getpages is not supported")
	}
	pid := q.Get("_getpages")
	h.mu.Lock()
	stored, ok := h.searches[pid]
	h.mu.Unlock()
	if !ok {
		return answer{}, fail(http.StatusGone, "processing", "search id %q does not exist and may have expired", pid)
	}
	var ids, include []string
	for _, s := range stored {
		if inc, ok := strings.CutPrefix(s, "+"); ok {
			include = append(include, inc)
		} else {
			ids = append(ids, s)
		}
	}
	off, err := strconv.Atoi(q.Get("_getpagesoffset"))
	if err != nil || off < 0 {
		return answer{}, fail(http.StatusBadRequest, "invalid", "invalid _getpagesoffset")
	}
	n, herr := count(q)
	if herr != nil {
		return answer{}, herr
	}
	self := fmt.Sprintf("%s?_getpages=%s&_getpagesoffset=%d&_count=%d&_pretty=true&_bundletype=searchset", base, pid, off, n)
	links := h.pageLinks(base, pid, self, off, n, len(ids))
	return answer{status: 200, body: h.searchset(base, ids, off, n, include, links)}, nil
}

// searchset builds the page [off, off+n) of ids, with its includes.
func (h *Handler) searchset(base string, ids []string, off, n int, include []string, links []any) resource {
	entries := []any{}
	var page []resource
	for i := off; i < len(ids) && i < off+n; i++ {
		typ, id, _ := strings.Cut(ids[i], "/")
		r, err := h.read(typ, id)
		if err != nil {
			continue // deleted since
		}
		page = append(page, r)
		entries = append(entries, map[string]any{"fullUrl": base + "/" + ids[i], "resource": r,
			"search": map[string]any{"mode": "match"}})
	}
	added := map[string]bool{}
	for _, r := range page {
		for _, inc := range include {
			var elems []string
			switch {
			case inc == "*" || strings.HasSuffix(inc, ":*"):
				elems = []string{"subject", "encounter"}
			default:
				if t, _, _ := strings.Cut(inc, ":"); t != r["resourceType"] {
					continue
				}
				el, _ := includeElement(includeKey(inc))
				elems = []string{el}
			}
			for _, el := range elems {
				ref, _ := r[el].(map[string]any)
				s, _ := ref["reference"].(string)
				typ, id, ok := strings.Cut(s, "/")
				if !ok || added[s] {
					continue
				}
				inc, err := h.read(typ, id)
				if err != nil {
					continue
				}
				added[s] = true
				entries = append(entries, map[string]any{"fullUrl": base + "/" + s, "resource": inc,
					"search": map[string]any{"mode": "include"}})
			}
		}
	}
	b := make([]byte, 16)
	rand.Read(b)
	return resource{"resourceType": "Bundle", "id": hex.EncodeToString(b),
		"meta": map[string]any{"lastUpdated": h.now().UTC().Format(time.RFC3339)},
		"type": "searchset", "total": len(ids), "link": links, "entry": entries}
}

func (h *Handler) history(base, typ, id string) (answer, *httpError) {
	r, err := h.read(typ, id)
	if err != nil {
		return answer{}, err
	}
	self := base + "/" + typ + "/" + id + "/_history"
	return answer{status: 200, body: resource{"resourceType": "Bundle", "type": "history", "total": 1,
		"meta": map[string]any{"lastUpdated": h.now().UTC().Format(time.RFC3339)},
		"link": []any{map[string]any{"relation": "self", "url": self}},
		"entry": []any{map[string]any{"fullUrl": base + "/" + typ + "/" + id, "resource": r,
			"request":  map[string]any{"method": "POST", "url": typ},
			"response": map[string]any{"status": "201 Created", "etag": `W/"1"`}}}}}, nil
}

func (h *Handler) create(base, typ string, body []byte) (answer, *httpError) {
	var r resource
	if err := json.Unmarshal(body, &r); err != nil || r == nil {
		return answer{}, fail(http.StatusBadRequest, "invalid", "the body is not a JSON resource")
	}
	if r["resourceType"] != typ {
		return answer{}, fail(http.StatusBadRequest, "invalid", "resourceType is not %s", typ)
	}
	h.mu.Lock()
	if h.nextID >= MaxCreates {
		h.mu.Unlock()
		return answer{}, fail(http.StatusInsufficientStorage, "too-costly", "this test server creates at most %d resources", MaxCreates)
	}
	h.nextID++
	id := fmt.Sprintf("new-%d", h.nextID)
	r["id"] = id
	r["meta"] = map[string]any{"versionId": "1", "lastUpdated": h.now().UTC().Format(time.RFC3339)}
	h.data[typ] = append(h.data[typ], r)
	h.mu.Unlock()
	return answer{status: http.StatusCreated, body: r, location: base + "/" + typ + "/" + id + "/_history/1", etag: `W/"1"`}, nil
}

// bundle runs a batch or a transaction.
func (h *Handler) bundle(base string, body []byte, strict bool) (answer, *httpError) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Request  struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil || b.ResourceType != "Bundle" {
		return answer{}, fail(http.StatusBadRequest, "invalid", "the body is not a Bundle")
	}
	if b.Type != "batch" && b.Type != "transaction" {
		return answer{}, fail(http.StatusBadRequest, "invalid", "Bundle.type %q is neither batch nor transaction", b.Type)
	}
	if len(b.Entry) > MaxEntries {
		return answer{}, fail(http.StatusRequestEntityTooLarge, "too-long", "a Bundle of more than %d entries", MaxEntries)
	}
	entries := []any{}
	for i, e := range b.Entry {
		u, err := url.Parse(e.Request.URL)
		if err != nil || u.IsAbs() || strings.HasPrefix(u.Path, "/") {
			return answer{}, fail(http.StatusBadRequest, "invalid", "entry %d: request.url must be relative to the base", i)
		}
		if u.Path == "" {
			return answer{}, fail(http.StatusBadRequest, "invalid", "entry %d: a nested batch or transaction is not supported", i)
		}
		a, herr := h.dispatch(base, strings.ToUpper(e.Request.Method), u.Path, u.Query(), e.Resource, strict)
		if herr != nil {
			if b.Type == "transaction" {
				return answer{}, fail(herr.status, herr.code, "transaction failed at entry %d: %s", i, herr.msg)
			}
			entries = append(entries, map[string]any{"response": map[string]any{
				"status": fmt.Sprintf("%d %s", herr.status, http.StatusText(herr.status)), "outcome": outcome(herr)}})
			continue
		}
		resp := map[string]any{"status": fmt.Sprintf("%d %s", a.status, http.StatusText(a.status))}
		if a.location != "" {
			resp["location"] = a.location
		}
		if a.etag != "" {
			resp["etag"] = a.etag
		}
		entry := map[string]any{"response": resp}
		if a.body != nil {
			entry["resource"] = a.body
		}
		entries = append(entries, entry)
	}
	return answer{status: 200, body: resource{"resourceType": "Bundle", "type": b.Type + "-response",
		"link": []any{map[string]any{"relation": "self", "url": base}}, "entry": entries}}, nil
}

func (h *Handler) capability(base string) resource {
	var rs []any
	for _, t := range servedTypes() {
		params := []any{map[string]any{"name": "_id", "type": "token"}}
		if t != "Patient" {
			params = append(params, map[string]any{"name": "patient", "type": "reference"},
				map[string]any{"name": "subject", "type": "reference"})
		}
		rs = append(rs, map[string]any{"type": t,
			"interaction": []any{map[string]any{"code": "read"}, map[string]any{"code": "vread"},
				map[string]any{"code": "history-instance"}, map[string]any{"code": "search-type"}, map[string]any{"code": "create"}},
			"searchParam": params})
	}
	return resource{"resourceType": "CapabilityStatement", "status": "active",
		"date": h.now().UTC().Format(time.RFC3339), "kind": "instance",
		"software":       map[string]any{"name": "fhirtest (answers as HAPI FHIR Server)", "version": "1"},
		"implementation": map[string]any{"description": "phigate test upstream (" + h.paging.String() + " paging)", "url": base},
		"fhirVersion":    "4.0.1", "format": []any{"application/fhir+json", "json"},
		"rest": []any{map[string]any{"mode": "server", "resource": rs,
			"interaction": []any{map[string]any{"code": "batch"}, map[string]any{"code": "transaction"}}}}}
}
