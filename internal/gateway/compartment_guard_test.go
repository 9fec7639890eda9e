package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

const fhirJSON = "application/fhir+json"

// A conditional update constrained to the patient's compartment may still
// write a resource for another patient (no match: the server creates it;
// one match: it moves the resource). Its body is checked like a create's;
// a conditional patch, which the gateway cannot apply, is outside.
func TestConditionalWritesStayInTheCompartment(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.cruds"}})
	obs := func(p string) string {
		return `{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/` + p + `"}}`
	}
	txn := func(method, url, resource string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + resource + `,"request":{"method":"` + method + `","url":"` + url + `"}}]}`
	}
	if r := fx.do(t, call{method: "PUT", path: "/fhir/Observation?patient=p1&code=x", secret: pat, contentType: fhirJSON, body: obs("p1")}); r.status != 200 {
		t.Fatalf("conditional update for p1: %d %s", r.status, r.body)
	}
	if r := fx.do(t, call{method: "POST", path: "/fhir/", secret: pat, contentType: fhirJSON, body: txn("PUT", "Observation?patient=p1&code=x", obs("p1"))}); r.status != 200 {
		t.Fatalf("transaction with a conditional update for p1: %d %s", r.status, r.body)
	}
	n := fx.fhir.count.Load()
	for name, c := range map[string]call{
		"conditional update, body for p2":    {method: "PUT", path: "/fhir/Observation?patient=p1&code=x", contentType: fhirJSON, body: obs("p2")},
		"conditional update, no subject":     {method: "PUT", path: "/fhir/Observation?patient=p1&code=x", contentType: fhirJSON, body: `{"resourceType":"Observation"}`},
		"conditional update, another type":   {method: "PUT", path: "/fhir/Observation?patient=p1&code=x", contentType: fhirJSON, body: `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`},
		"conditional patch":                  {method: "PATCH", path: "/fhir/Observation?patient=p1&code=x", contentType: "application/json-patch+json", body: `[{"op":"replace","path":"/subject/reference","value":"Patient/p2"}]`},
		"transaction, conditional update p2": {method: "POST", path: "/fhir/", contentType: fhirJSON, body: txn("PUT", "Observation?patient=p1&code=x", obs("p2"))},
	} {
		c.secret = pat
		if r := fx.do(t, c); r.status != http.StatusForbidden || r.code != CodeCompartment {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a write outside the compartment reached the upstream")
	}
}

// If-None-Exist makes the server run a search, and its answer (201 or 200)
// tells whether anything matched: it needs the permission of that search.
func TestIfNoneExistIsCheckedAsASearch(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.crs"}})
	createOnly, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.c"}})
	body := `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`
	create := func(secret, ine string) reply {
		return fx.do(t, call{method: "POST", path: "/fhir/Observation", secret: secret, contentType: fhirJSON, body: body, header: map[string]string{"If-None-Exist": ine}})
	}
	if r := create(pat, "patient=p1&code=http://loinc.org|75622-1"); r.status != 200 {
		t.Fatalf("If-None-Exist in the compartment: %d %s", r.status, r.body)
	}
	// as HAPI's client sends it: a URL
	for _, ine := range []string{"https://ehr.example/fhir/Observation?patient=p1&code=x", "Observation?patient=p1", "?patient=p1"} {
		if r := create(pat, ine); r.status != 200 {
			t.Errorf("If-None-Exist %q: %d %s", ine, r.status, r.body)
		}
	}

	n := fx.fhir.count.Load()
	for name, c := range map[string]struct {
		secret, ine string
		status      int
		code        string
	}{
		"another patient":    {pat, "patient=p2&code=http://loinc.org|75622-1", 403, CodeCompartment},
		"no patient":         {pat, "code=http://loinc.org|75622-1", 403, CodeCompartment},
		"no search scope":    {createOnly, "identifier=http://sys|1", 403, CodeInsufficientScope},
		"another type":       {pat, "Condition?patient=p1", 400, CodeInvalidRequest},
		"empty":              {pat, "https://ehr.example/fhir/Observation?", 400, CodeInvalidRequest},
		"URL, other patient": {pat, "https://ehr.example/fhir/Observation?patient=p2", 403, CodeCompartment},
		"bad percent-escape": {pat, "patient=%zz", 400, CodeInvalidRequest},
	} {
		if r := create(c.secret, c.ine); r.status != c.status || r.code != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.body, c.status, c.code)
		}
	}
	// twice
	req, _ := http.NewRequest(http.MethodPost, "https://"+fx.addr+"/fhir/Observation", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+pat)
	req.Header.Set("Content-Type", fhirJSON)
	req.Header.Add("If-None-Exist", "patient=p1")
	req.Header.Add("If-None-Exist", "patient=p2")
	resp, err := fx.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two If-None-Exist: %d", resp.StatusCode)
	}
	// in a Bundle entry
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + body + `,"request":{"method":"POST","url":"Observation","ifNoneExist":"patient=p2"}}]}`
	if r := fx.do(t, call{method: "POST", path: "/fhir/", secret: pat, contentType: fhirJSON, body: bundle}); r.status != 403 || r.code != CodeCompartment {
		t.Errorf("Bundle entry ifNoneExist for p2: %d %s", r.status, r.body)
	}
	if fx.fhir.count.Load() != n {
		t.Error("a refused conditional create reached the upstream")
	}
}

// patient=pid binds a search only where the type defines the parameter:
// a lenient server ignores an unknown one and returns everything.
func TestPatientSearchNeedsTheTypesParameter(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/*.rs"}})
	for path, want := range map[string]int{
		"/fhir/EpisodeOfCare?patient=p1":            200,
		"/fhir/Observation?subject=Patient/p1":      200,
		"/fhir/Group?patient=p1":                    403, // Group has member, not patient
		"/fhir/Bundle?patient=p1":                   403,
		"/fhir/EpisodeOfCare?subject=Patient/p1":    403, // EpisodeOfCare has patient, not subject
		"/fhir/EpisodeOfCare?patient=p1&subject=p1": 403,
	} {
		r := fx.do(t, call{path: path, secret: pat, header: map[string]string{"Prefer": "handling=lenient"}})
		if r.status != want || want == 403 && r.code != CodeCompartment {
			t.Errorf("%s: %d %s, want %d", path, r.status, r.body, want)
		}
	}
}

// A FHIR upstream is asked for strict handling, so that it refuses a
// search parameter it does not know instead of dropping it; other
// preferences are kept, and http upstreams get the client's Prefer.
func TestFHIRUpstreamsGetStrictHandling(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	app, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	for prefer, want := range map[string]string{
		"":                                   "handling=strict",
		"handling=lenient":                   "handling=strict",
		"return=minimal, Handling = lenient": "return=minimal, handling=strict",
		"respond-async, wait=10":             "respond-async, wait=10, handling=strict",
	} {
		c := call{path: "/fhir/Observation?patient=p1", secret: pat}
		if prefer != "" {
			c.header = map[string]string{"Prefer": prefer}
		}
		if r := fx.do(t, c); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if got := fx.fhir.lastSeen().Header.Values("Prefer"); len(got) != 1 || got[0] != want {
			t.Errorf("Prefer %q: upstream got %q, want %q", prefer, got, want)
		}
	}
	// an operation keeps the client's Prefer (bulk $export wants
	// respond-async alone)
	fx2 := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		for i := range c.Upstreams {
			if c.Upstreams[i].Kind == config.KindFHIR {
				c.Upstreams[i].Operations = append(c.Upstreams[i].Operations, config.Operation{Name: "$export", Scope: "system/*.rs"})
			}
		}
	}})
	sys, _ := fx2.token(t, authority.Spec{Scopes: []string{"system/*.rs"}})
	if r := fx2.do(t, call{path: "/fhir/$export", secret: sys, header: map[string]string{"Prefer": "respond-async"}}); r.status != 200 {
		t.Fatalf("$export: %d %s", r.status, r.body)
	}
	if got := fx2.fhir.lastSeen().Header.Values("Prefer"); len(got) != 1 || got[0] != "respond-async" {
		t.Errorf("$export: upstream Prefer %q", got)
	}
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: app, header: map[string]string{"Prefer": "handling=lenient"}}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := fx.api.lastSeen().Header.Get("Prefer"); got != "handling=lenient" {
		t.Errorf("http upstream Prefer %q", got)
	}
}

// A patient-bound type-level operation is bound to the patient by its URL
// parameters; a POSTed Parameters body could name another patient, so
// only a GET is taken.
func TestPatientOperationParametersInTheURL(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		for i := range c.Upstreams {
			if c.Upstreams[i].Kind == config.KindFHIR {
				c.Upstreams[i].Operations = append(c.Upstreams[i].Operations, config.Operation{Name: "$lastn", Resource: "Observation", Scope: "patient/Observation.rs"})
			}
		}
	}})
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	params := `{"resourceType":"Parameters","parameter":[{"name":"patient","valueString":"p2"}]}`
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/fhir/Observation/$lastn?patient=p1", "", 200},
		{"GET", "/fhir/Observation/$lastn?patient=p2", "", 403},
		{"POST", "/fhir/Observation/$lastn?patient=p1", params, 403},
		{"POST", "/fhir/Observation/$lastn?patient=p1", "", 403},
	} {
		ct := ""
		if c.body != "" {
			ct = fhirJSON
		}
		r := fx.do(t, call{method: c.method, path: c.path, secret: pat, body: c.body, contentType: ct})
		if r.status != c.want || c.want == 403 && r.code != CodeCompartment {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.status, r.body, c.want)
		}
	}
}

// A body the gateway reads to decide is read as sent: with a
// Content-Encoding the upstream would act on other bytes than the ones
// checked, so such a body is refused (415); bodies the gateway does not
// read pass encoded.
func TestEncodedBodiesAreNotInspected(t *testing.T) {
	fx := newFixture(t)
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "billing:write"}})
	n := fx.fhir.count.Load()
	for name, c := range map[string]call{
		"POST _search": {method: "POST", path: "/fhir/Observation/_search", contentType: "application/x-www-form-urlencoded", body: "code=x"},
		"batch":        {method: "POST", path: "/fhir/", contentType: fhirJSON, body: `{"resourceType":"Bundle","type":"batch","entry":[]}`},
	} {
		c.secret = s
		c.header = map[string]string{"Content-Encoding": "gzip"}
		if r := fx.do(t, c); r.status != http.StatusUnsupportedMediaType || r.code != CodeUnsupportedMedia {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("an encoded body the gateway had to read reached the upstream")
	}
	if r := fx.do(t, call{method: "POST", path: "/fhir/Observation/_search", secret: s, contentType: "application/x-www-form-urlencoded", body: "code=x",
		header: map[string]string{"Content-Encoding": "identity"}}); r.status != 200 {
		t.Errorf("identity encoding: %d %s", r.status, r.body)
	}
	if r := fx.do(t, call{method: "POST", path: "/billing/upload", secret: s, body: "not really gzip", header: map[string]string{"Content-Encoding": "gzip"}}); r.status != 200 {
		t.Errorf("an encoded body on an http route: %d %s", r.status, r.body)
	}
}

// An http path has no patient compartment the gateway could check: a
// route needing a patient/ scope (which configuration refuses) is not
// satisfied by a token that holds it only at patient level.
func TestPatientScopeNeverSatisfiesAnHTTPRoute(t *testing.T) {
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[1].Routes = append(c.Upstreams[1].Routes, config.Route{Match: "GET /patients/*/documents", Scope: "patient/DocumentReference.r"})
	}})
	p1, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/DocumentReference.r"}})
	user, _ := fx.token(t, authority.Spec{Scopes: []string{"user/DocumentReference.r"}})
	if r := fx.do(t, call{path: "/billing/patients/p2/documents", secret: p1}); r.status != http.StatusForbidden || r.code != CodeInsufficientScope {
		t.Errorf("patient-bound token: %d %s", r.status, r.body)
	}
	if r := fx.do(t, call{path: "/billing/patients/p2/documents", secret: user}); r.status != http.StatusOK {
		t.Errorf("user token: %d %s", r.status, r.body)
	}
}

// A resource created for the patient must not reference another patient
// anywhere: Observation.performer = Patient/p2 would put it in p2's
// compartment too.
func TestCreatesReferenceNoOtherPatient(t *testing.T) {
	fx := newFixture(t)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.cu"}})
	obs := func(extra string) string {
		return `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}` + extra + `}`
	}
	for _, extra := range []string{
		`,"performer":[{"reference":"Practitioner/d1"},{"reference":"Patient/p1/_history/3"}]`,
		`,"performer":[{"reference":"https://ehr.example/fhir/Patient/p1"}]`,
		`,"hasMember":[{"reference":"#inner"}],"contained":[{"resourceType":"Observation","id":"inner","subject":{"reference":"Patient/p1"}}]`,
	} {
		if r := fx.do(t, call{method: "POST", path: "/fhir/Observation", secret: pat, contentType: fhirJSON, body: obs(extra)}); r.status != 200 {
			t.Errorf("allowed %s: %d %s", extra, r.status, r.body)
		}
	}
	n := fx.fhir.count.Load()
	for _, extra := range []string{
		`,"performer":[{"reference":"Patient?identifier=http://hospital/mrn|p2-mrn"}]`,
		`,"performer":[{"reference":"https://ehr.example/fhir/Patient?identifier=x"}]`,
		`,"performer":[{"reference":"Patient/p2"}]`,
		`,"performer":[{"reference":"https://ehr.example/fhir/Patient/p2/_history/1"}]`,
		`,"contained":[{"resourceType":"Observation","id":"x","subject":{"reference":"Patient/p2"}}]`,
		`,"focus":[{"reference":"Patient/p2?x=1"}]`,
	} {
		r := fx.do(t, call{method: "POST", path: "/fhir/Observation", secret: pat, contentType: fhirJSON, body: obs(extra)})
		if r.status != http.StatusForbidden || r.code != CodeCompartment {
			t.Errorf("denied %s: %d %s", extra, r.status, r.body)
		}
		r = fx.do(t, call{method: "PUT", path: "/fhir/Observation?patient=p1&code=x", secret: pat, contentType: fhirJSON, body: obs(extra)})
		if r.status != http.StatusForbidden || r.code != CodeCompartment {
			t.Errorf("denied conditional update %s: %d %s", extra, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("a resource referencing another patient reached the upstream")
	}
}

// The patient a request names is recorded for user/ and system/ tokens
// too, so that an accounting of who reached a patient's records (audit
// search --patient) finds them; a request naming several is not
// attributed.
func TestRecordedPatientOfUserTokens(t *testing.T) {
	fx := newFixture(t)
	u, _ := fx.token(t, authority.Spec{Scopes: []string{"user/*.rs"}})
	p1, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/*.rs"}})
	for path, want := range map[string]string{
		"/fhir/Patient/p7":                                "p7",
		"/fhir/Patient/p7/_history/2":                     "p7",
		"/fhir/Patient/p7/Observation?code=x":             "p7",
		"/fhir/Patient?_id=p7":                            "p7",
		"/fhir/Observation?patient=p7&code=x":             "p7",
		"/fhir/Observation?subject=Patient/p7":            "p7",
		"/fhir/Observation?patient=p7&subject=Patient/p7": "p7",
		"/fhir/Observation?patient=p7,p8":                 "",
		"/fhir/Observation?patient=p7&patient=p8":         "",
		"/fhir/Observation?code=x":                        "",
		"/fhir/Observation/obs-1":                         "",
		"/fhir/Observation?subject=Group/g1":              "",
	} {
		r := fx.do(t, call{path: path, secret: u})
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].Patient != want {
			t.Errorf("%s: patient %q, want %q", path, evs[0].Patient, want)
		}
	}
	// a patient-bound token's own patient, as before
	r := fx.do(t, call{path: "/fhir/Observation?patient=p1", secret: p1})
	if evs := fx.rec.byRequest(t, r.rid, 1); evs[0].Patient != "p1" {
		t.Errorf("patient-bound: %q", evs[0].Patient)
	}
}
