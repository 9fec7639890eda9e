// Package demo is a small FHIR R4 server that holds SYNTHETIC DEMO DATA
// only: a few made-up patients and their observations, kept in memory. It
// exists so that `phigate server --dev` shows the gateway in action within
// minutes; it is never started outside dev mode and must never hold real
// data.
//
// Every resource it returns carries the meta.tag
//
//	{"system": "https://phigate.dev/fhir/tags", "code": "SYNTHETIC", "display": "SYNTHETIC DEMO DATA"}
//
// and every response the header "X-Demo-Data: SYNTHETIC DEMO DATA".
//
// Interactions (JSON only, relative to the server's root):
//
//	GET  metadata                          the CapabilityStatement
//	GET  Patient/{id}, Observation/{id}    read
//	GET  {type}/{id}/_history/{vid}        vread (every resource is at version 1)
//	GET  Patient?_id=&name=                search (POST Patient/_search with a form too)
//	GET  Observation?patient=&subject=&category=&code=
//	GET  Patient/{id}/Observation?…        compartment search
//	POST Patient, Observation              create (201 with Location)
//
// A search parameter given several times must match each time (AND); a
// comma separates alternatives (OR); unknown parameters are ignored, as
// FHIR servers do by default.
//
// Searches page: _count=N (0 to MaxCount; larger values are capped at
// MaxCount, as FHIR lets a server do; without it every match is one page)
// returns N matches from _offset (default 0), and the searchset Bundle's
// link holds "self" and, when there are more matches after (or before)
// the page, "next" (and "previous"): absolute URLs on Options.BaseURL, the
// search as a GET with its parameters (those of a POSTed form included)
// in the canonical order of url.Values.Encode, _count and the new
// _offset. total is always the number of every match. A _count or
// _offset that is not a non-negative integer is refused (400, an
// OperationOutcome with code invalid). With Options.Verify set, a request whose
// phigate identity does not verify is refused with 401, which shows how an
// upstream checks that a request came through the gateway.
package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure the demo server.
type Options struct {
	// BaseURL is the server's base as clients see it (through the
	// gateway), e.g. https://127.0.0.1:9443/fhir; it makes the fullUrl of
	// search results. Default: relative references only.
	BaseURL string
	// Verify, when set, checks the gateway's identity assertion of each
	// request; an error refuses the request with 401.
	Verify func(r *http.Request) error
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// The meta.tag on every resource: TagSystem, TagCode and Banner as display.
const (
	TagSystem = "https://phigate.dev/fhir/tags"
	TagCode   = "SYNTHETIC"
)

// tag returns the meta.tag coding (a new map: stored resources own theirs).
func tag() map[string]any {
	return map[string]any{"system": TagSystem, "code": TagCode, "display": Banner}
}

// Banner is the value of the X-Demo-Data header of every response.
const Banner = "SYNTHETIC DEMO DATA"

// maxBody bounds a created resource.
const maxBody = 256 << 10

// Server is the demo FHIR server, an http.Handler.
type Server struct {
	opts Options

	mu    sync.RWMutex
	store map[string]map[string]map[string]any // type → id → resource
	seq   int
}

// New returns a demo server holding the synthetic patients pat-1, pat-2
// and pat-3 and their observations.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	s := &Server{opts: opts, store: map[string]map[string]map[string]any{"Patient": {}, "Observation": {}}}
	for _, p := range []struct{ id, family, given, gender, birth string }{
		{"pat-1", "Synthetic", "Alex", "female", "1980-04-12"},
		{"pat-2", "Example", "Blake", "male", "1975-09-30"},
		{"pat-3", "Demo", "Casey", "other", "2001-01-05"},
	} {
		s.put("Patient", p.id, map[string]any{
			"resourceType": "Patient", "id": p.id, "active": true, "gender": p.gender, "birthDate": p.birth,
			"name": []any{map[string]any{"family": p.family, "given": []any{p.given}, "text": p.given + " " + p.family + " (synthetic)"}},
		})
	}
	n := 0
	for _, pid := range []string{"pat-1", "pat-2", "pat-3"} {
		for _, o := range []struct {
			cat, code, display, unit string
			value                    float64
		}{
			{"vital-signs", "8867-4", "Heart rate", "/min", 72},
			{"vital-signs", "29463-7", "Body weight", "kg", 70.5},
			{"laboratory", "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 95},
			{"laboratory", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.9},
		} {
			n++
			id := fmt.Sprintf("obs-%d", n)
			s.put("Observation", id, observation(id, pid, o.cat, o.code, o.display, o.unit, o.value+float64(n%3)))
		}
	}
	return s
}

func observation(id, pid, cat, code, display, unit string, value float64) map[string]any {
	return map[string]any{
		"resourceType": "Observation", "id": id, "status": "final",
		"category": []any{map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": cat,
		}}}},
		"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": code, "display": display}}, "text": display},
		"subject":           map[string]any{"reference": "Patient/" + pid},
		"effectiveDateTime": "2026-01-15T09:30:00Z",
		"valueQuantity":     map[string]any{"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
	}
}

func (s *Server) put(typ, id string, res map[string]any) {
	s.seq++
	res["meta"] = map[string]any{"versionId": "1", "lastUpdated": s.opts.Now().UTC().Format(time.RFC3339), "tag": []any{tag()}}
	s.store[typ][id] = res
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Demo-Data", Banner)
	if s.opts.Verify != nil {
		if err := s.opts.Verify(r); err != nil {
			outcome(w, http.StatusUnauthorized, "security", "the request does not carry a valid phigate identity: it did not come through the gateway")
			return
		}
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	switch {
	case len(segs) == 1 && segs[0] == "metadata" && method == http.MethodGet:
		s.capabilities(w)
	case len(segs) == 1 && s.known(segs[0]) && method == http.MethodGet:
		s.search(w, segs[0], r.URL.Query(), "")
	case len(segs) == 2 && s.known(segs[0]) && segs[1] == "_search" && method == http.MethodPost:
		q, ok := s.form(w, r)
		if ok {
			s.search(w, segs[0], q, "")
		}
	case len(segs) == 1 && s.known(segs[0]) && method == http.MethodPost:
		s.create(w, r, segs[0])
	case len(segs) == 2 && s.known(segs[0]) && method == http.MethodGet:
		s.read(w, segs[0], segs[1], "")
	case len(segs) == 4 && s.known(segs[0]) && segs[2] == "_history" && method == http.MethodGet:
		s.read(w, segs[0], segs[1], segs[3])
	case len(segs) == 3 && segs[0] == "Patient" && segs[2] == "Observation" && method == http.MethodGet:
		s.search(w, "Observation", r.URL.Query(), segs[1])
	case len(segs) >= 1 && s.known(segs[0]):
		outcome(w, http.StatusMethodNotAllowed, "not-supported", "the demo server supports read, vread, search and create only")
	default:
		outcome(w, http.StatusNotFound, "not-found", "the demo server knows Patient and Observation only")
	}
}

func (s *Server) known(typ string) bool { _, ok := s.store[typ]; return ok }

func (s *Server) form(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		outcome(w, http.StatusUnsupportedMediaType, "not-supported", "POST _search takes a form")
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(b) > maxBody {
		outcome(w, http.StatusBadRequest, "invalid", "the form could not be read")
		return nil, false
	}
	q := r.URL.Query()
	f, err := url.ParseQuery(string(b))
	if err != nil {
		outcome(w, http.StatusBadRequest, "invalid", "the form is malformed")
		return nil, false
	}
	for k, vs := range f {
		q[k] = append(q[k], vs...)
	}
	return q, true
}

func (s *Server) capabilities(w http.ResponseWriter) {
	res := func(typ string, params ...string) map[string]any {
		var sp []any
		for _, p := range params {
			sp = append(sp, map[string]any{"name": p, "type": "token"})
		}
		return map[string]any{"type": typ, "interaction": []any{
			map[string]any{"code": "read"}, map[string]any{"code": "vread"}, map[string]any{"code": "search-type"}, map[string]any{"code": "create"},
		}, "searchParam": sp}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
		"date": "2026-01-01", "format": []any{"json"}, "meta": map[string]any{"tag": []any{tag()}},
		"software":    map[string]any{"name": "phigate demo FHIR server (SYNTHETIC DEMO DATA)"},
		"description": "A demo server holding synthetic data only, started by phigate server --dev.",
		"rest": []any{map[string]any{"mode": "server", "resource": []any{
			res("Patient", "_id", "name"), res("Observation", "patient", "subject", "category", "code"),
		}}},
	})
}

// read answers typ/id, or its version vid when vid is set (vread): the
// demo keeps one version of each resource, its meta.versionId.
func (s *Server) read(w http.ResponseWriter, typ, id, vid string) {
	s.mu.RLock()
	res, ok := s.store[typ][id]
	var b []byte
	if ok && vid != "" {
		meta, _ := res["meta"].(map[string]any)
		ok = meta["versionId"] == vid
	}
	if ok {
		b, _ = json.Marshal(res)
	}
	s.mu.RUnlock()
	if !ok {
		what := typ + "/" + id
		if vid != "" {
			what += " at version " + vid
		}
		outcome(w, http.StatusNotFound, "not-found", what+" does not exist")
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// MaxCount is the largest page a search answers (_count above it is
// capped).
const MaxCount = 100

// page reads _count and _offset: count -1 means no _count (one page of
// everything).
func page(q url.Values) (count, offset int, ok bool) {
	count = -1
	for _, p := range []struct {
		name string
		v    *int
	}{{"_count", &count}, {"_offset", &offset}} {
		vs := q[p.name]
		if len(vs) == 0 {
			continue
		}
		n, err := strconv.Atoi(vs[0])
		if len(vs) > 1 || err != nil || n < 0 || len(vs[0]) > 9 {
			return 0, 0, false
		}
		*p.v = n
	}
	return min(count, MaxCount), offset, true
}

// search answers a searchset Bundle, paged by _count and _offset.
// compartment, when set, restricts to that patient.
func (s *Server) search(w http.ResponseWriter, typ string, q url.Values, compartment string) {
	count, offset, ok := page(q)
	if !ok {
		outcome(w, http.StatusBadRequest, "invalid", "_count and _offset must each be given once, as a non-negative integer")
		return
	}
	s.mu.RLock()
	var ids []string
	for id, res := range s.store[typ] {
		if compartment != "" && ref(res, "subject") != "Patient/"+compartment {
			continue
		}
		if matches(typ, res, q) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) })
	all := len(ids)
	pageIDs := ids[min(offset, all):]
	if count >= 0 {
		pageIDs = pageIDs[:min(count, len(pageIDs))]
	}
	entries := make([]any, 0, len(pageIDs))
	for _, id := range pageIDs {
		e := map[string]any{"resource": s.store[typ][id], "search": map[string]any{"mode": "match"}}
		if s.opts.BaseURL != "" {
			e["fullUrl"] = s.opts.BaseURL + "/" + typ + "/" + id
		}
		entries = append(entries, e)
	}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle", "type": "searchset", "total": all,
		"meta":  map[string]any{"lastUpdated": s.opts.Now().UTC().Format(time.RFC3339), "tag": []any{tag()}},
		"link":  s.links(typ, q, compartment, count, offset, all),
		"entry": entries,
	})
	s.mu.RUnlock()
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// links are the Bundle's self, next and previous links: the search as a
// GET on the server's base, with _count and _offset set for each page.
func (s *Server) links(typ string, q url.Values, compartment string, count, offset, all int) []any {
	path := s.opts.BaseURL + "/" + typ
	if compartment != "" {
		path = s.opts.BaseURL + "/Patient/" + compartment + "/" + typ
	}
	at := func(off int) string {
		v := url.Values{}
		for k, vs := range q {
			if k != "_count" && k != "_offset" {
				v[k] = vs
			}
		}
		if count >= 0 {
			v.Set("_count", strconv.Itoa(count))
			if off > 0 {
				v.Set("_offset", strconv.Itoa(off))
			}
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	links := []any{map[string]any{"relation": "self", "url": at(offset)}}
	if count > 0 && offset+count < all {
		links = append(links, map[string]any{"relation": "next", "url": at(offset + count)})
	}
	if count > 0 && offset > 0 {
		links = append(links, map[string]any{"relation": "previous", "url": at(max(offset-count, 0))})
	}
	return links
}

// idLess orders "obs-2" before "obs-10".
func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func matches(typ string, res map[string]any, q url.Values) bool {
	for name, values := range q {
		for _, v := range values { // each occurrence must hold (AND)
			if !matchParam(typ, res, name, v) {
				return false
			}
		}
	}
	return true
}

// matchParam applies one search parameter; alternatives separated by
// commas (OR). Unknown parameters match everything.
func matchParam(typ string, res map[string]any, name, value string) bool {
	for _, v := range strings.Split(value, ",") {
		var ok bool
		switch {
		case name == "_id":
			ok = res["id"] == v
		case typ == "Patient" && name == "name":
			b, _ := json.Marshal(res["name"])
			ok = v != "" && strings.Contains(strings.ToLower(string(b)), strings.ToLower(v))
		case typ == "Observation" && (name == "patient" || name == "subject" || name == "patient:Patient" || name == "subject:Patient"):
			r := ref(res, "subject")
			ok = r == v || r == "Patient/"+v
		case typ == "Observation" && name == "category":
			ok = hasCoding(res["category"], "", v)
		case typ == "Observation" && name == "code":
			system, code, found := strings.Cut(v, "|")
			if !found {
				system, code = "", v
			}
			ok = hasCoding([]any{res["code"]}, system, code)
		default:
			return true
		}
		if ok {
			return true
		}
	}
	return false
}

func ref(res map[string]any, field string) string {
	m, _ := res[field].(map[string]any)
	s, _ := m["reference"].(string)
	return s
}

// hasCoding reports whether one of the CodeableConcepts in ccs has a
// coding with code (and system, when given).
func hasCoding(ccs any, system, code string) bool {
	list, _ := ccs.([]any)
	for _, cc := range list {
		m, _ := cc.(map[string]any)
		codings, _ := m["coding"].([]any)
		for _, c := range codings {
			cm, _ := c.(map[string]any)
			if cm["code"] == code && (system == "" || cm["system"] == system) {
				return true
			}
		}
	}
	return false
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, typ string) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/fhir+json" && mt != "application/json" {
		outcome(w, http.StatusUnsupportedMediaType, "not-supported", "the demo server takes application/fhir+json")
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(b) > maxBody {
		outcome(w, http.StatusRequestEntityTooLarge, "too-costly", "the resource is too large for the demo server")
		return
	}
	var res map[string]any
	if err := json.Unmarshal(b, &res); err != nil || res["resourceType"] != typ {
		outcome(w, http.StatusBadRequest, "invalid", "the body must be a JSON "+typ+" resource")
		return
	}
	s.mu.Lock()
	if len(s.store[typ]) >= 10000 {
		s.mu.Unlock()
		outcome(w, http.StatusInsufficientStorage, "too-costly", "the demo server is full; restart it")
		return
	}
	id := fmt.Sprintf("%s-new-%d", strings.ToLower(typ[:3]), s.seq+1)
	res["id"] = id
	s.put(typ, id, res)
	out, _ := json.Marshal(res)
	s.mu.Unlock()
	w.Header().Set("Location", typ+"/"+id+"/_history/1")
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusCreated)
	w.Write(out)
}

func outcome(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{
		"resourceType": "OperationOutcome", "meta": map[string]any{"tag": []any{tag()}},
		"issue": []any{map[string]any{"severity": "error", "code": code, "diagnostics": msg}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
