package demo

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target, ctype, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var m map[string]any
	json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m, w.Header()
}

func total(m map[string]any) int {
	n, _ := m["total"].(float64)
	return int(n)
}

func tagged(t *testing.T, res map[string]any) {
	t.Helper()
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	if len(tags) != 1 || tags[0].(map[string]any)["display"] != "SYNTHETIC DEMO DATA" {
		t.Errorf("resource %v lacks the SYNTHETIC DEMO DATA tag", res["id"])
	}
}

func TestEveryAnswerIsLabelledSynthetic(t *testing.T) {
	s := New(Options{BaseURL: "https://gw/fhir/"})
	for _, target := range []string{"/metadata", "/Patient/pat-1", "/Observation?patient=pat-1", "/nope", "/Patient/zzz"} {
		_, m, h := get(t, s, "GET", target, "", "")
		if h.Get("X-Demo-Data") != Banner {
			t.Errorf("%s: no banner", target)
		}
		tagged(t, m)
	}
	_, m, _ := get(t, s, "GET", "/Observation?patient=pat-1", "", "")
	for _, e := range m["entry"].([]any) {
		em := e.(map[string]any)
		tagged(t, em["resource"].(map[string]any))
		if !strings.HasPrefix(em["fullUrl"].(string), "https://gw/fhir/Observation/") {
			t.Errorf("fullUrl %v", em["fullUrl"])
		}
	}
}

func TestSearch(t *testing.T) {
	s := New(Options{})
	for target, want := range map[string]int{
		"/Observation":                                   12,
		"/Observation?patient=pat-1":                     4,
		"/Observation?patient=Patient/pat-1":             4,
		"/Observation?subject=Patient/pat-2":             4,
		"/Observation?subject:Patient=pat-2":             4,
		"/Observation?patient=pat-1&category=laboratory": 2,
		"/Observation?patient=pat-1,pat-2":               8,
		"/Observation?patient=pat-1&patient=pat-2":       0,
		"/Observation?code=http://loinc.org|8867-4":      3,
		"/Observation?code=8867-4&patient=pat-3":         1,
		"/Observation?code=other|8867-4":                 0,
		"/Observation?category=vital-signs&_count=5":     6,
		"/Patient?_id=pat-2":                             1,
		"/Patient?name=alex":                             1,
		"/Patient/pat-1/Observation?category=laboratory": 2,
	} {
		code, m, _ := get(t, s, "GET", target, "", "")
		if code != 200 || total(m) != want || m["type"] != "searchset" {
			t.Errorf("%s: %d total %d, want %d", target, code, total(m), want)
		}
	}
	code, m, _ := get(t, s, "POST", "/Observation/_search", "application/x-www-form-urlencoded", "patient=pat-1&category=vital-signs")
	if code != 200 || total(m) != 2 {
		t.Errorf("POST _search: %d %d", code, total(m))
	}
}

func TestReadAndCreate(t *testing.T) {
	s := New(Options{})
	code, m, _ := get(t, s, "GET", "/Observation/obs-1", "", "")
	if code != 200 || m["resourceType"] != "Observation" || m["id"] != "obs-1" {
		t.Fatalf("%d %v", code, m)
	}
	code, m, h := get(t, s, "POST", "/Observation", "application/fhir+json",
		`{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/pat-1"},"code":{"text":"mood"}}`)
	if code != 201 || !strings.HasPrefix(h.Get("Location"), "Observation/") {
		t.Fatalf("create: %d %v", code, m)
	}
	tagged(t, m)
	if _, m, _ := get(t, s, "GET", "/Observation?patient=pat-1", "", ""); total(m) != 5 {
		t.Errorf("after create: %d", total(m))
	}
	for _, c := range []struct{ method, target, ctype, body string }{
		{"POST", "/Observation", "application/fhir+json", `{"resourceType":"Patient"}`},
		{"POST", "/Observation", "text/plain", `{}`},
		{"DELETE", "/Observation/obs-1", "", ""},
		{"GET", "/Encounter/1", "", ""},
		{"GET", "/Observation/none", "", ""},
	} {
		if code, _, _ := get(t, s, c.method, c.target, c.ctype, c.body); code < 400 {
			t.Errorf("%s %s: %d", c.method, c.target, code)
		}
	}
}

func TestVerifyRefusesRequestsWithoutIdentity(t *testing.T) {
	s := New(Options{Verify: func(r *http.Request) error {
		if r.Header.Get("X-Ok") == "" {
			return errors.New("no")
		}
		return nil
	}})
	if code, _, _ := get(t, s, "GET", "/Patient/pat-1", "", ""); code != 401 {
		t.Errorf("unverified: %d", code)
	}
	req := httptest.NewRequest("GET", "/Patient/pat-1", nil)
	req.Header.Set("X-Ok", "1")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("verified: %d", w.Code)
	}
}

// TestSearchPagesFollowNextLinksToEveryMatch: with _count a search answers
// pages whose next links, absolute on the server's base, reach every match
// once and in order; total is every match on each page.
func TestSearchPagesFollowNextLinksToEveryMatch(t *testing.T) {
	const base = "https://gw.example/fhir"
	s := New(Options{BaseURL: base + "/"})
	for _, c := range []struct {
		first string
		want  int
	}{
		{"/Observation?patient=pat-1&_count=3", 4},
		{"/Observation?_count=5", 12},
		{"/Observation?_count=1&category=laboratory", 6},
		{"/Patient/pat-2/Observation?_count=2", 4},
		{"/Observation?_count=12", 12},
	} {
		target, seen, pages := c.first, map[string]bool{}, 0
		var order []string
		for target != "" {
			pages++
			if pages > 20 {
				t.Fatalf("%s: the next links do not end", c.first)
			}
			code, m, _ := get(t, s, "GET", target, "", "")
			if code != 200 || total(m) != c.want {
				t.Fatalf("%s: page %s: %d total %d", c.first, target, code, total(m))
			}
			entries, _ := m["entry"].([]any)
			for _, e := range entries {
				id := e.(map[string]any)["resource"].(map[string]any)["id"].(string)
				if seen[id] {
					t.Errorf("%s: %s on two pages", c.first, id)
				}
				seen[id] = true
				order = append(order, id)
			}
			target = ""
			links, _ := m["link"].([]any)
			rels := map[string]string{}
			for _, l := range links {
				lm := l.(map[string]any)
				u := lm["url"].(string)
				if !strings.HasPrefix(u, base+"/") {
					t.Errorf("%s: link %s is not on the base", c.first, u)
				}
				rels[lm["relation"].(string)] = u
			}
			if rels["self"] == "" {
				t.Errorf("%s: no self link", c.first)
			}
			if pages > 1 && rels["previous"] == "" {
				t.Errorf("%s: page %d has no previous link", c.first, pages)
			}
			if next := rels["next"]; next != "" {
				target = strings.TrimPrefix(next, base)
			}
		}
		if len(seen) != c.want {
			t.Errorf("%s: the pages hold %d matches, want %d", c.first, len(seen), c.want)
		}
		for i := 1; i < len(order); i++ {
			if !idLess(order[i-1], order[i]) {
				t.Errorf("%s: %s before %s", c.first, order[i-1], order[i])
			}
		}
	}
	// a POSTed search pages as a GET carrying the form's parameters
	_, m, _ := get(t, s, "POST", "/Observation/_search", "application/x-www-form-urlencoded", "patient=pat-1&_count=2")
	var next string
	links, _ := m["link"].([]any)
	for _, l := range links {
		if lm := l.(map[string]any); lm["relation"] == "next" {
			next = lm["url"].(string)
		}
	}
	if next != base+"/Observation?_count=2&_offset=2&patient=pat-1" {
		t.Errorf("POST _search next link %q", next)
	}
}

// TestSearchRefusesMalformedPaging: a _count or _offset that is not one
// non-negative integer is a 400 OperationOutcome, not a guess.
func TestSearchRefusesMalformedPaging(t *testing.T) {
	s := New(Options{})
	for _, q := range []string{"_count=-1", "_count=x", "_offset=-5", "_count=2&_count=3", "_offset=1e3", "_count=99999999999"} {
		code, m, _ := get(t, s, "GET", "/Observation?"+q, "", "")
		if code != 400 || m["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d %v", q, code, m)
		}
	}
	// _count=0: the total alone; above MaxCount: capped
	code, m, _ := get(t, s, "GET", "/Observation?_count=0", "", "")
	if entries, _ := m["entry"].([]any); code != 200 || len(entries) != 0 || total(m) != 12 {
		t.Errorf("_count=0: %d %v", code, m)
	}
	_, m, _ = get(t, s, "GET", "/Observation?_count=1000", "", "")
	if entries, _ := m["entry"].([]any); len(entries) != 12 {
		t.Errorf("_count=1000: %d entries", len(entries))
	}
}

// TestVreadServesTheVersionItHolds: Type/id/_history/1 is the resource;
// another version, or another resource, is 404.
func TestVreadServesTheVersionItHolds(t *testing.T) {
	s := New(Options{})
	code, m, _ := get(t, s, "GET", "/Observation/obs-2/_history/1", "", "")
	if code != 200 || m["id"] != "obs-2" || m["meta"].(map[string]any)["versionId"] != "1" {
		t.Fatalf("vread: %d %v", code, m)
	}
	tagged(t, m)
	_, _, h := get(t, s, "POST", "/Patient", "application/fhir+json", `{"resourceType":"Patient"}`)
	if code, m, _ := get(t, s, "GET", "/"+h.Get("Location"), "", ""); code != 200 || m["resourceType"] != "Patient" {
		t.Errorf("vread of the created Location %s: %d", h.Get("Location"), code)
	}
	for _, target := range []string{"/Observation/obs-2/_history/2", "/Observation/none/_history/1", "/Patient/pat-9/_history/1"} {
		if code, m, _ := get(t, s, "GET", target, "", ""); code != 404 || m["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d", target, code)
		}
	}
}

// FuzzSearchQuery: any query of a search is answered 200 with a Bundle
// whose page is at most _count entries, or 400; never a panic.
func FuzzSearchQuery(f *testing.F) {
	for _, q := range []string{"_count=2&_offset=3", "_count=0", "patient=pat-1&_count=1", "_offset=99", "_count=-1", "_count=%zz"} {
		f.Add(q)
	}
	s := New(Options{BaseURL: "https://gw/fhir"})
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest("GET", "/Observation", nil)
		req.URL.RawQuery = q
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("%q: not JSON: %v", q, err)
		}
		switch w.Code {
		case 200:
			entries, _ := m["entry"].([]any)
			if n, _, _ := page(req.URL.Query()); n >= 0 && len(entries) > n {
				t.Fatalf("%q: %d entries, _count %d", q, len(entries), n)
			}
		case 400:
		default:
			t.Fatalf("%q: %d", q, w.Code)
		}
	})
}
