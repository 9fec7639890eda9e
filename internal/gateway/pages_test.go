package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/token"
)

// fakeFHIR answers as a FHIR server on its own base (base is the
// upstream's absolute URL, such as https://127.0.0.1:1234/fhir/R4): 25
// Observations of p1 (o1…o25, performer Practitioner/d1, o7 also by
// Patient/p2's RelatedPerson), o-p2 of p2, Patient p1 and p2,
// Practitioner d1; searches by patient= paged by _count, with next links
// HAPI's way (hapi: ?_getpages=ID&_getpagesoffset=N&_count=N&
// _bundletype=searchset on the base) or by _offset on the search itself;
// read, vread (version 1) and instance history; _include=
// Observation:performer and Observation:subject.
type fakeFHIR struct {
	base string
	hapi bool
	mu   sync.Mutex
	// searches kept for _getpages: id → the search's query
	searches map[string]string
	// extraLink, when set, is added to every searchset's links
	extraLink string
}

func (f *fakeFHIR) obs(id, patient string) map[string]any {
	return map[string]any{"resourceType": "Observation", "id": id, "meta": map[string]any{"versionId": "1"}, "status": "final",
		"code": map[string]any{"text": "secret-of-" + patient}, "subject": map[string]any{"reference": "Patient/" + patient},
		"performer": []any{map[string]any{"reference": "Practitioner/d1"}}}
}

func (f *fakeFHIR) resource(typ, id string) map[string]any {
	switch {
	case typ == "Observation" && id == "o-p2":
		return f.obs(id, "p2")
	case typ == "Observation" && strings.HasPrefix(id, "o"):
		if n, err := strconv.Atoi(id[1:]); err == nil && n >= 1 && n <= 25 {
			return f.obs(id, "p1")
		}
	case typ == "Patient" && (id == "p1" || id == "p2"):
		return map[string]any{"resourceType": "Patient", "id": id, "name": []any{map[string]any{"text": "name-of-" + id}}}
	case typ == "Practitioner" && id == "d1":
		return map[string]any{"resourceType": "Practitioner", "id": id}
	}
	return nil
}

func (f *fakeFHIR) write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/fhir+json;charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeFHIR) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/fhir/R4")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	q := r.URL.Query()
	switch {
	case path == "" || path == "/":
		id := q.Get("_getpages")
		f.mu.Lock()
		sq, ok := f.searches[id]
		f.mu.Unlock()
		if !ok || !f.hapi {
			f.write(w, 404, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		orig, _ := urlValues(sq)
		off, _ := strconv.Atoi(q.Get("_getpagesoffset"))
		f.search(w, orig, off, id)
	case len(segs) == 1 && segs[0] == "Observation":
		id := ""
		if f.hapi {
			id = fmt.Sprintf("srch-%d", time.Now().UnixNano())
			f.mu.Lock()
			f.searches[id] = r.URL.RawQuery
			f.mu.Unlock()
		}
		off, _ := strconv.Atoi(q.Get("_offset"))
		f.search(w, q, off, id)
	case len(segs) == 2:
		res := f.resource(segs[0], segs[1])
		if res == nil {
			f.write(w, 404, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		f.write(w, 200, res)
	case len(segs) == 3 && segs[2] == "_history":
		res := f.resource(segs[0], segs[1])
		if res == nil {
			f.write(w, 404, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		f.write(w, 200, map[string]any{"resourceType": "Bundle", "type": "history", "entry": []any{
			map[string]any{"fullUrl": f.base + "/" + segs[0] + "/" + segs[1], "resource": res},
			map[string]any{"fullUrl": f.base + "/" + segs[0] + "/" + segs[1], "request": map[string]any{"method": "DELETE"}},
		}})
	case len(segs) == 4 && segs[2] == "_history" && segs[3] == "1":
		res := f.resource(segs[0], segs[1])
		if res == nil {
			f.write(w, 404, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		f.write(w, 200, res)
	default:
		f.write(w, 400, map[string]any{"resourceType": "OperationOutcome"})
	}
}

func urlValues(raw string) (map[string][]string, error) {
	return url.ParseQuery(raw)
}

// search answers page off of a search of Observations by patient.
func (f *fakeFHIR) search(w http.ResponseWriter, q map[string][]string, off int, id string) {
	get := func(k string) string {
		if vs := q[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	pid := strings.TrimPrefix(get("patient"), "Patient/")
	var all []string
	if pid == "p1" {
		for i := 1; i <= 25; i++ {
			all = append(all, "o"+strconv.Itoa(i))
		}
	} else if pid == "p2" {
		all = []string{"o-p2"}
	}
	count, _ := strconv.Atoi(get("_count"))
	if count <= 0 {
		count = 10
	}
	end := min(off+count, len(all))
	off = min(off, end)
	var entries []any
	for _, oid := range all[off:end] {
		entries = append(entries, map[string]any{"fullUrl": f.base + "/Observation/" + oid, "resource": f.resource("Observation", oid), "search": map[string]any{"mode": "match"}})
	}
	for _, inc := range q["_include"] {
		switch inc {
		case "Observation:performer":
			entries = append(entries, map[string]any{"fullUrl": f.base + "/Practitioner/d1", "resource": f.resource("Practitioner", "d1"), "search": map[string]any{"mode": "include"}})
		case "Observation:subject":
			entries = append(entries,
				map[string]any{"fullUrl": f.base + "/Patient/" + pid, "resource": f.resource("Patient", pid), "search": map[string]any{"mode": "include"}},
				// a server that includes too much
				map[string]any{"fullUrl": f.base + "/Patient/p2", "resource": f.resource("Patient", "p2"), "search": map[string]any{"mode": "include"}})
		}
	}
	self := f.base + "/Observation?patient=" + pid
	links := []any{map[string]any{"relation": "self", "url": self}}
	if end < len(all) {
		next := ""
		if f.hapi {
			next = fmt.Sprintf("%s?_getpages=%s&_getpagesoffset=%d&_count=%d&_bundletype=searchset", f.base, id, end, count)
		} else {
			next = fmt.Sprintf("%s/Observation?patient=%s&_count=%d&_offset=%d", f.base, pid, count, end)
		}
		links = append(links, map[string]any{"relation": "next", "url": next})
	}
	if off > 0 {
		links = append(links, map[string]any{"relation": "previous", "url": fmt.Sprintf("%s/Observation?patient=%s&_count=%d&_offset=%d", f.base, pid, count, max(off-count, 0))})
	}
	if f.extraLink != "" {
		links = append(links, map[string]any{"relation": "describedby", "url": f.extraLink})
	}
	f.write(w, 200, map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(all), "link": links, "entry": entries})
}

// fhirFixture is a gateway in front of a fakeFHIR.
func fhirFixture(t *testing.T, hapi bool, mutate func(*config.Upstream)) (*fixture, *fakeFHIR) {
	t.Helper()
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		if mutate != nil {
			mutate(&c.Upstreams[0])
		}
	}})
	f := &fakeFHIR{base: fx.fhir.srv.URL + "/fhir/R4", hapi: hapi, searches: map[string]string{}}
	fx.fhir.setHandler(f.ServeHTTP)
	return fx, f
}

// page is a searchset as the client sees it.
type page struct {
	Link []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (p *page) link(rel string) string {
	for _, l := range p.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// gatewayPath turns a URL of the gateway into the path fx.do takes.
func (fx *fixture) gatewayPath(t *testing.T, u string) string {
	t.Helper()
	p, ok := strings.CutPrefix(u, "https://"+fx.addr)
	if !ok {
		t.Fatalf("%q is not a gateway URL", u)
	}
	return p
}

// A search of 25 Observations paged 5 at a time reaches every page through
// the gateway, with a patient token and a user token, against an upstream
// paging HAPI's way and one paging by _offset; no upstream URL reaches the
// client.
func TestEveryPageIsReachedThroughTheGateway(t *testing.T) {
	for _, hapi := range []bool{true, false} {
		fx, _ := fhirFixture(t, hapi, nil)
		pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
		usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
		for name, s := range map[string]string{"patient": pat, "user": usr} {
			seen := map[string]bool{}
			path := "/fhir/Observation?patient=p1&_count=5"
			pages := 0
			for path != "" {
				r := fx.do(t, call{path: path, secret: s})
				if r.status != 200 {
					t.Fatalf("hapi %v, %s token, page %d (%s): %d %s", hapi, name, pages, path, r.status, r.body)
				}
				if strings.Contains(r.body, fx.fhir.srv.URL) || strings.Contains(r.body, strings.TrimPrefix(fx.fhir.srv.URL, "https://")) {
					t.Fatalf("hapi %v: an upstream URL reached the client: %s", hapi, r.body)
				}
				var p page
				if err := json.Unmarshal([]byte(r.body), &p); err != nil {
					t.Fatal(err)
				}
				for _, e := range p.Entry {
					seen[e.Resource.ID] = true
					if !strings.HasPrefix(e.FullURL, "https://"+fx.addr+"/fhir/Observation/") {
						t.Errorf("fullUrl %q", e.FullURL)
					}
				}
				path = ""
				if next := p.link("next"); next != "" {
					if !strings.Contains(next, "/fhir/_page/") {
						t.Fatalf("next link %q is not a continuation", next)
					}
					path = fx.gatewayPath(t, next)
				}
				if pages++; pages > 10 {
					t.Fatal("paging does not end")
				}
			}
			if pages != 5 || len(seen) != 25 {
				t.Errorf("hapi %v, %s token: %d pages, %d Observations; want 5 and 25", hapi, name, pages, len(seen))
			}
		}
	}
}

// A continuation handle is good only for the token it was issued to,
// unaltered, before it expires; anything else is 403 invalid_continuation
// and nothing goes upstream. HAPI's continuation is a system-level
// request: asked for directly, a patient token is refused.
func TestContinuationReplayedEditedOrExpiredIsRefused(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	other, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p1&_count=5", secret: pat})
	var p page
	json.Unmarshal([]byte(r.body), &p)
	next := fx.gatewayPath(t, p.link("next"))
	h := next[strings.LastIndex(next, "/")+1:]
	flip := func(i int) string {
		b := []byte(h)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return "/fhir/_page/" + string(b)
	}
	n := fx.fhir.count.Load()
	for name, c := range map[string]call{
		"another token":   {path: next, secret: other},
		"edited first":    {path: flip(0), secret: pat},
		"edited middle":   {path: flip(len(h) / 2), secret: pat},
		"edited last":     {path: flip(len(h) - 1), secret: pat},
		"truncated":       {path: next[:len(next)-4], secret: pat},
		"with a query":    {path: next + "?_count=100", secret: pat},
		"extra segment":   {path: next + "/x", secret: pat},
		"empty":           {path: "/fhir/_page/", secret: pat},
		"not base64":      {path: "/fhir/_page/%21%21", secret: pat},
		"getpages direct": {path: "/fhir/?_getpages=x&_getpagesoffset=5", secret: pat},
	} {
		r := fx.do(t, c)
		want := CodeInvalidContinuation
		if name == "getpages direct" {
			want = CodeInsufficientScope
		}
		if r.status != 403 || r.code != want {
			t.Errorf("%s: %d %s, want 403 %s", name, r.status, r.body, want)
		}
		if strings.Contains(r.body, fx.fhir.srv.URL) {
			t.Errorf("%s: the refusal names the upstream", name)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a refused continuation reached the upstream")
	}
	if r := fx.do(t, call{path: next, secret: pat}); r.status != 200 {
		t.Fatalf("the handle's own token: %d %s", r.status, r.body)
	}
	fx.clk.Add(config.DefaultContinuationTTL + time.Second)
	if r := fx.do(t, call{path: next, secret: pat}); r.status != 403 || r.code != CodeInvalidContinuation {
		t.Errorf("expired: %d %s", r.status, r.body)
	}
}

// Following a continuation is decided as the search it continues: its
// grant names that search and the page fetched, and a token that lost the
// scope since is refused.
func TestContinuationIsDecidedAsItsSearch(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, rec := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p1&_count=5", secret: pat})
	var p page
	json.Unmarshal([]byte(r.body), &p)
	next := fx.gatewayPath(t, p.link("next"))
	r = fx.do(t, call{path: next, secret: pat})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) < 1 || evs[0].Kind != KindGrant {
		t.Fatalf("events %+v", evs)
	}
	g := evs[0]
	if g.Path != "/fhir/Observation" || g.Query != "patient=p1&_count=5" || !strings.Contains(g.Page, "_getpages=") ||
		g.Interaction != "search-type" || g.Scope != "patient/Observation.rs" || g.TokenID != rec.ID {
		t.Errorf("grant %+v", g)
	}
	if strings.Contains(g.Path+g.Query, "_page") {
		t.Errorf("the grant records the handle: %+v", g)
	}
	if seen := fx.fhir.lastSeen(); seen.Path != "/fhir/R4" || !strings.HasPrefix(seen.RawQuery, "_getpages=") {
		t.Errorf("upstream saw %s?%s", seen.Path, seen.RawQuery)
	}
	// the token's scopes change: the same handle is refused
	if _, _, err := fx.auth.Update(t.Context(), fx.root, rec.ID, rec.Revision, func(r *token.Record) error {
		r.Scopes = []string{"patient/Patient.r"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := fx.do(t, call{path: next, secret: pat}); r.status != 403 || r.code != CodeInsufficientScope {
		t.Errorf("after the scope was removed: %d %s", r.status, r.body)
	}
}

// The public capability statement's implementation.url names the
// gateway, not the upstream, and it still declares SMART.
func TestPublicCapabilityStatementNamesTheGateway(t *testing.T) {
	fx, f := fhirFixture(t, true, nil)
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		f.write(w, 200, map[string]any{"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
			"implementation": map[string]any{"description": "upstream", "url": f.base}, "rest": []any{map[string]any{"mode": "server"}}})
	})
	r := fx.do(t, call{path: "/fhir/metadata"})
	if r.status != 200 || strings.Contains(r.body, fx.fhir.srv.URL) || !strings.Contains(r.body, `"url":"https://`+fx.addr+`/fhir/"`) || !strings.Contains(r.body, "SMART-on-FHIR") {
		t.Errorf("%d %s", r.status, r.body)
	}
}

// A server that writes its links on the gateway's base already (from
// X-Forwarded-Host, as the demo and HAPI behind a proxy do) gets its page
// links made continuations too, and they are not counted as foreign.
func TestPageLinksOnTheGatewayBecomeContinuations(t *testing.T) {
	fx, f := fhirFixture(t, false, nil)
	f.base = "https://" + fx.addr + "/fhir"
	usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p1&_count=5", secret: usr})
	var p page
	json.Unmarshal([]byte(r.body), &p)
	if next := p.link("next"); !strings.HasPrefix(next, "https://"+fx.addr+"/fhir/_page/") {
		t.Fatalf("next %q", next)
	}
	if self := p.link("self"); self != "https://"+fx.addr+"/fhir/Observation?patient=p1" {
		t.Errorf("self %q", self)
	}
	if evs := fx.rec.byRequest(t, r.rid, 2); len(evs) != 2 || evs[1].Notes != "" {
		t.Errorf("completion %+v", evs)
	}
	r = fx.do(t, call{path: fx.gatewayPath(t, p.link("next")), secret: usr})
	if r.status != 200 || !strings.Contains(r.body, `"id":"o6"`) {
		t.Errorf("next page: %d %.300s", r.status, r.body)
	}
}
