package fhirtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/testclock"
)

type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        int    `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Response struct {
			Status   string `json:"status"`
			Location string `json:"location"`
		} `json:"response"`
	} `json:"entry"`
}

func (b bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func get(t *testing.T, s *Server, u string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func decode(t *testing.T, b []byte) bundle {
	t.Helper()
	var out bundle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return out
}

// TestPagesReachEveryMatchOnTheServersOwnBase: 25 Observations, 5 a page,
// are 5 pages whose every link and fullUrl is absolute on the server's
// base, for each paging style, with the continuation form each documents.
func TestPagesReachEveryMatchOnTheServersOwnBase(t *testing.T) {
	for _, p := range []Paging{PagingHAPI, PagingOffset} {
		t.Run(p.String(), func(t *testing.T) {
			s := Start(t, Options{Paging: p, Now: testclock.New().Now})
			u := s.URL + "/Observation?patient=" + PatientA + "&_count=5"
			seen := map[string]bool{}
			pages := 0
			for u != "" {
				pages++
				if pages > 10 {
					t.Fatal("more than 10 pages")
				}
				st, b, _ := get(t, s, u)
				if st != 200 {
					t.Fatalf("%s: %d %s", u, st, b)
				}
				bd := decode(t, b)
				if bd.Total != ObservationsOfA || bd.Type != "searchset" {
					t.Fatalf("total %d type %q", bd.Total, bd.Type)
				}
				for _, l := range bd.Link {
					if !strings.HasPrefix(l.URL, s.URL) {
						t.Errorf("link %s not on the base %s", l.URL, s.URL)
					}
				}
				for _, e := range bd.Entry {
					if !strings.HasPrefix(e.FullURL, s.URL+"/Observation/") {
						t.Errorf("fullUrl %s", e.FullURL)
					}
					seen[e.Resource["id"].(string)] = true
				}
				u = bd.link("next")
				if u != "" {
					switch p {
					case PagingHAPI:
						if !strings.HasPrefix(u, s.URL+"?_getpages=") || !strings.Contains(u, "&_getpagesoffset=") ||
							!strings.HasSuffix(u, "&_count=5&_pretty=true&_bundletype=searchset") {
							t.Errorf("next %s is not a HAPI continuation", u)
						}
					case PagingOffset:
						if !strings.HasPrefix(u, s.URL+"/Observation?") || !strings.Contains(u, "_offset=") {
							t.Errorf("next %s is not an _offset link", u)
						}
					}
				}
				if pages > 1 && bd.link("previous") == "" {
					t.Errorf("page %d has no previous link", pages)
				}
			}
			if pages != 5 || len(seen) != ObservationsOfA {
				t.Fatalf("%d pages, %d distinct Observations", pages, len(seen))
			}
		})
	}
}

func TestUnknownPagingIDIsGone(t *testing.T) {
	s := Start(t, Options{Now: testclock.New().Now})
	st, b, _ := get(t, s, s.URL+"?_getpages=feedface&_getpagesoffset=5&_count=5&_bundletype=searchset")
	if st != http.StatusGone || !strings.Contains(string(b), "OperationOutcome") {
		t.Fatalf("%d %s", st, b)
	}
}

func TestStrictHandlingRefusesAnUnknownParameter(t *testing.T) {
	s := Start(t, Options{Now: testclock.New().Now})
	u := s.URL + "/Observation?patient=" + PatientA + "&colour=blue"
	if st, b, _ := get(t, s, u, "Prefer", "handling=strict"); st != 400 || !strings.Contains(string(b), "OperationOutcome") {
		t.Fatalf("strict: %d %s", st, b)
	}
	if st, _, _ := get(t, s, u); st != 200 {
		t.Fatalf("lenient: %d", st)
	}
}

func TestReadVreadHistoryAndCapability(t *testing.T) {
	s := Start(t, Options{Now: testclock.New().Now})
	id := ObservationID(PatientB, 1)
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/Observation/" + id, 200, `"id":"` + id + `"`},
		{"/Observation/" + id + "/_history/1", 200, `"versionId":"1"`},
		{"/Observation/" + id + "/_history/2", 404, "OperationOutcome"},
		{"/Observation/" + id + "/_history", 200, `"type":"history"`},
		{"/Observation/nope", 404, "OperationOutcome"},
		{"/Patient/" + PatientB + "/Condition", 200, ConditionID(PatientB)},
		{"/metadata", 200, `"url":"` + s.URL + `"`},
	} {
		st, b, _ := get(t, s, s.URL+c.path)
		if st != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s, want %d with %s", c.path, st, b, c.status, c.want)
		}
	}
}

func TestIncludeAddsTheReferencedResources(t *testing.T) {
	s := Start(t, Options{Now: testclock.New().Now})
	st, b, _ := get(t, s, s.URL+"/Observation?_id="+MisfiledObservation+","+ObservationID(PatientA, 1)+"&_include=Observation:encounter:Encounter")
	if st != 200 {
		t.Fatalf("%d %s", st, b)
	}
	inc := map[string]bool{}
	for _, e := range decode(t, b).Entry {
		if e.Search.Mode == "include" {
			inc[e.Resource["id"].(string)] = true
		}
	}
	if !inc[EncounterID(PatientA)] || !inc[EncounterID(PatientB)] || len(inc) != 2 {
		t.Fatalf("includes %v", inc)
	}
}

func TestBatchRunsEachEntryAndTransactionIsAllOrNothing(t *testing.T) {
	s := Start(t, Options{Now: testclock.New().Now})
	post := func(body string) (int, bundle) {
		resp, err := s.srv.Client().Post(s.URL, "application/fhir+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return resp.StatusCode, bundle{}
		}
		return resp.StatusCode, decode(t, b)
	}
	st, bd := post(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/` + PatientA + `"}},
		{"request":{"method":"GET","url":"Observation/nope"}},
		{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/` + PatientA + `"}}}]}`)
	if st != 200 || bd.Type != "batch-response" || len(bd.Entry) != 3 ||
		bd.Entry[0].Response.Status != "200 OK" || bd.Entry[1].Response.Status != "404 Not Found" ||
		!strings.HasPrefix(bd.Entry[2].Response.Location, s.URL+"/Observation/new-") {
		t.Fatalf("batch: %d %+v", st, bd)
	}
	if st, _ := post(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"GET","url":"Observation/nope"}}]}`); st != 404 {
		t.Fatalf("transaction with a failing entry: %d", st)
	}
}

func TestNowIsRequired(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Fatal("no error without Now")
	}
}

// FuzzHandler: no request line or body makes the server panic, and every
// answer but a 204 is JSON.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{"GET /fhir/Observation?patient=pat-a&_count=5", "GET /fhir?_getpages=x&_getpagesoffset=-1",
		"GET /fhir/Observation/obs-a-1/_history/1", "POST /fhir", "GET /fhir/Patient/pat-a/Observation?_include=*"} {
		m, p, _ := strings.Cut(s, " ")
		f.Add(m, p, `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/pat-a"}}]}`)
	}
	h, err := NewHandler(Options{Now: testclock.New().Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		switch method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
		default:
			return
		}
		req, err := http.NewRequest(method, "https://example.test"+u.RequestURI(), strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: %d not JSON: %q", method, target, rec.Code, rec.Body.String())
		}
	})
}
