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
