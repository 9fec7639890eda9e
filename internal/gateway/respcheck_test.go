package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
)

// A patient token reads its own Observations by id (read, vread, history)
// and is refused another patient's, 403 compartment, without a byte of
// the other's record reaching it.
func TestPatientReadsByIDAreCheckedOnTheAnswer(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r", "patient/Practitioner.r"}})
	for _, path := range []string{"/fhir/Observation/o3", "/fhir/Observation/o3/_history/1", "/fhir/Observation/o3/_history", "/fhir/Patient/p1"} {
		r := fx.do(t, call{path: path, secret: pat})
		if r.status != 200 || !strings.Contains(r.body, "secret-of-p1") && !strings.Contains(r.body, "name-of-p1") {
			t.Errorf("own %s: %d %s", path, r.status, r.body)
		}
	}
	for _, path := range []string{"/fhir/Observation/o-p2", "/fhir/Observation/o-p2/_history/1", "/fhir/Observation/o-p2/_history", "/fhir/Practitioner/d1", "/fhir/Patient/p2"} {
		r := fx.do(t, call{path: path, secret: pat})
		if r.status != 403 || r.code != CodeCompartment {
			t.Errorf("other's %s: %d %s, want 403 compartment", path, r.status, r.body)
		}
		if strings.Contains(r.body, "p2") && !strings.Contains(r.body, "p1") || strings.Contains(r.body, "secret-of") || strings.Contains(r.body, "name-of") {
			t.Errorf("other's %s: the body reached the client: %s", path, r.body)
		}
	}
	// a read of a resource that does not exist stays the upstream's 404
	if r := fx.do(t, call{path: "/fhir/Observation/o99", secret: pat}); r.status != 404 {
		t.Errorf("missing: %d %s", r.status, r.body)
	}
}

// With hide_existence the refusal of a read outside the compartment is a
// 404, as for a resource that does not exist.
func TestHideExistenceAnswersOutsideReadsNotFound(t *testing.T) {
	fx, _ := fhirFixture(t, true, func(u *config.Upstream) { u.HideExistence = true })
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation/o-p2", secret: pat})
	if r.status != 404 || r.code != CodeNotFound || strings.Contains(r.body, "secret-of") {
		t.Errorf("%d %s, want 404 not_found", r.status, r.body)
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 || evs[1].Kind != KindComplete || evs[1].Status != 404 || evs[1].Reason != CodeNotFound {
		t.Errorf("events %+v", evs)
	}
}

// An answer larger than max_checked_body is refused with 502
// response_too_large, never streamed unchecked.
func TestAnswerTooLargeToCheckIsRefused(t *testing.T) {
	fx, _ := fhirFixture(t, true, func(u *config.Upstream) { u.MaxCheckedBody = 64 })
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	for _, chunked := range []bool{false, true} {
		fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
			body := `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"note":[{"text":"` + strings.Repeat("x", 100) + `"}]}`
			w.Header().Set("Content-Type", "application/fhir+json")
			if chunked {
				w.Write([]byte(body[:10]))
				w.(http.Flusher).Flush()
				w.Write([]byte(body[10:]))
				return
			}
			w.Write([]byte(body))
		})
		r := fx.do(t, call{path: "/fhir/Observation/o1", secret: pat})
		if r.status != 502 || r.code != CodeResponseTooLarge || strings.Contains(r.body, "xxxx") {
			t.Errorf("chunked %v: %d %s, want 502 response_too_large", chunked, r.status, r.body)
		}
	}
}

// An answer that is not FHIR JSON cannot be checked: refused.
func TestUncheckableAnswerIsRefused(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs"}})
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+xml")
		w.Write([]byte(`<Observation><subject><reference value="Patient/p2"/></subject></Observation>`))
	})
	if r := fx.do(t, call{path: "/fhir/Observation/o1?_format=xml", secret: pat}); r.status != 502 || strings.Contains(r.body, "Patient/p2") {
		t.Errorf("%d %s, want 502", r.status, r.body)
	}
}

// _include for a patient token: included entries outside the compartment
// (another patient, a practitioner) are removed and the removal recorded;
// the patient's own and the matches stay.
func TestIncludedEntriesOutsideTheCompartmentAreRemoved(t *testing.T) {
	fx, _ := fhirFixture(t, false, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r", "patient/Practitioner.r"}})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p1&_count=3&_include=Observation:subject&_include=Observation:performer", secret: pat})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var p page
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range p.Entry {
		got = append(got, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	if strings.Join(got, " ") != "Observation/o1 Observation/o2 Observation/o3 Patient/p1" {
		t.Errorf("entries %v", got)
	}
	if strings.Contains(r.body, "name-of-p2") {
		t.Error("another patient's record reached the client")
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 || evs[1].Notes != "include_removed=2" {
		t.Errorf("completion %+v", evs)
	}
	// the next page is checked the same way
	next := fx.gatewayPath(t, p.link("next"))
	r = fx.do(t, call{path: next, secret: pat})
	if r.status != 200 || strings.Contains(r.body, "name-of-p2") || strings.Contains(r.body, `"Practitioner"`) {
		t.Errorf("next page: %d %s", r.status, r.body)
	}
	// a user token needs no check: everything included stays
	usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs", "user/*.r"}})
	r = fx.do(t, call{path: "/fhir/Observation?patient=p1&_count=3&_include=Observation:subject&_include=Observation:performer", secret: usr})
	if r.status != 200 || !strings.Contains(r.body, "name-of-p2") || !strings.Contains(r.body, `"Practitioner"`) {
		t.Errorf("user token: %d %s", r.status, r.body)
	}
}

// Writes by id of other types stay refused for patient tokens (whose the
// resource is shows only once it is changed), and a batch cannot carry a
// read the gateway would have to check on the answer.
func TestPatientWritesByIDAndBatchReadsStayRefused(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.cruds"}})
	n := fx.fhir.count.Load()
	for _, c := range []call{
		{method: "DELETE", path: "/fhir/Observation/o1"},
		{method: "PUT", path: "/fhir/Observation/o1", contentType: "application/fhir+json", body: `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`},
		{method: "POST", path: "/fhir/", contentType: "application/fhir+json", body: `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/o-p2"}}]}`},
	} {
		c.secret = pat
		if r := fx.do(t, c); r.status != 403 || r.code != CodeCompartment {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	if fx.fhir.count.Load() != n {
		t.Error("forwarded")
	}
}

// A link to anywhere but the upstream is left alone and recorded in the
// completion; the gateway asks fhir upstreams for an uncompressed answer.
func TestForeignLinksAreLeftAndRecorded(t *testing.T) {
	fx, f := fhirFixture(t, false, nil)
	f.extraLink = "https://terminology.example/doc"
	usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p2", secret: usr, header: map[string]string{"Accept-Encoding": "gzip"}})
	if r.status != 200 || !strings.Contains(r.body, "https://terminology.example/doc") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if ae := fx.fhir.lastSeen().Header.Get("Accept-Encoding"); ae != "" && ae != "identity" {
		t.Errorf("the upstream was asked for %q", ae)
	}
	evs := fx.rec.byRequest(t, r.rid, 2)
	if len(evs) != 2 || evs[1].Notes != "foreign_links=1" {
		t.Errorf("completion %+v", evs)
	}
}

// A FHIR answer that is not JSON (_format=xml) passes unrewritten, and the
// completion says so.
func TestNonJSONAnswerPassesUnrewrittenAndRecorded(t *testing.T) {
	fx, _ := fhirFixture(t, false, nil)
	usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+xml")
		w.Write([]byte(`<Bundle xmlns="http://hl7.org/fhir"/>`))
	})
	r := fx.do(t, call{path: "/fhir/Observation?patient=p2&_format=xml", secret: usr})
	if r.status != 200 || r.body != `<Bundle xmlns="http://hl7.org/fhir"/>` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if evs := fx.rec.byRequest(t, r.rid, 2); len(evs) != 2 || evs[1].Notes != "not_rewritten" {
		t.Errorf("completion %+v", evs)
	}
}

// FuzzCheckBody: whatever an upstream answers, the checker never panics,
// and what it lets through is the patient's: a resource read passes only
// when it names p1; a Bundle passes only as JSON, and no included entry it
// kept lacks p1.
func FuzzCheckBody(f *testing.F) {
	f.Add(uint8(checkResource), []byte(`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}`))
	f.Add(uint8(checkHistory), []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}},{"request":{"method":"DELETE"}}]}`))
	f.Add(uint8(checkIncluded), []byte(`{"resourceType":"Bundle","entry":[{"search":{"mode":"match"},"resource":{}},{"search":{"mode":"include"},"resource":{"resourceType":"Patient","id":"p2"}}]}`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		check := checkKind(kind%3 + 1)
		out, removed, ok := checkBody(check, "Observation", "o1", "p1", body, func(string) bool { return true })
		if !ok {
			return
		}
		if removed < 0 || removed > 0 && check == checkResource {
			t.Fatalf("removed %d", removed)
		}
		if check == checkResource {
			if string(out) != string(body) || !strings.Contains(string(body), "p1") {
				t.Fatalf("passed %q", body)
			}
			return
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
				Search   struct {
					Mode string `json:"mode"`
				} `json:"search"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("passed a body that is not JSON: %q → %q", body, out)
		}
		for _, e := range b.Entry {
			if check == checkIncluded && (e.Search.Mode == "match" || e.Search.Mode == "outcome") || check == checkHistory && len(e.Resource) == 0 {
				continue
			}
			if !strings.Contains(string(e.Resource), "p1") {
				t.Fatalf("kept an entry outside the compartment: %s", e.Resource)
			}
		}
	})
}

// Keys that differ from entry, resource, search or mode only in letter
// case are refused: a Go client reads them as those, the checks would not.
func TestCaseVariantKeysAreRefused(t *testing.T) {
	all := func(string) bool { return true }
	for _, body := range []string{
		`{"resourceType":"Bundle","entrY":[{"resource":{"resourceType":"Patient","id":"p2"}}]}`,
		`{"resourceType":"Bundle","entry":[{"Resource":{"resourceType":"Patient","id":"p2"},"search":{"mode":"include"}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p2"},"Search":{"mode":"match"}}]}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p2"},"search":{"Mode":"match"}}]}`,
	} {
		if _, _, ok := checkBody(checkIncluded, "Observation", "", "p1", []byte(body), all); ok {
			t.Errorf("passed %s", body)
		}
	}
	if _, _, ok := checkBody(checkResource, "Observation", "o1", "p1", []byte(`{"resourceType":"Observation","ID":"o1","id":"o2","subject":{"reference":"Patient/p1"}}`), all); ok {
		t.Error("passed an ID in another case")
	}
}

// A 10 MiB searchset streams through the gateway rewritten, with the
// gateway's heap bounded by its buffers, not by the answer; the same
// answer to a request that must be checked is refused over
// max_checked_body rather than read further.
func TestTenMiBAnswerStreamsWithBoundedMemory(t *testing.T) {
	fx, _ := fhirFixture(t, true, func(u *config.Upstream) { u.MaxCheckedBody = 1 << 20 })
	body := bigBundle(10 << 20)
	body = bytes.ReplaceAll(body, []byte(upBase), []byte(fx.fhir.srv.URL+"/fhir/R4"))
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	usr, _ := fx.token(t, authority.Spec{Scopes: []string{"user/Observation.rs"}})
	// collect often, so that the heap in use is what is live rather than
	// the garbage the GC's pacing lets pile up over the 10 MiB held here
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodGet, "https://"+fx.addr+"/fhir/Observation?patient=p1", nil)
	req.Header.Set("Authorization", "Bearer "+usr)
	resp, err := fx.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	up := []byte(fx.fhir.srv.URL)
	var n int64
	buf := make([]byte, 64<<10)
	var tail []byte
	for {
		k, err := resp.Body.Read(buf)
		chunk := append(tail, buf[:k]...)
		if bytes.Contains(chunk, up) {
			t.Fatal("an upstream URL reached the client")
		}
		tail = append(tail[:0], chunk[max(0, len(chunk)-len(up)):]...)
		n += int64(k)
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	close(stop)
	<-done
	if resp.StatusCode != 200 || n < 9<<20 {
		t.Fatalf("%d, %d bytes", resp.StatusCode, n)
	}
	grew := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("heap in use grew by at most %d KiB while a %d KiB answer streamed", grew>>10, len(body)>>10)
	// the body held whole would be 10 MiB (and its copy 10 more); the
	// client's and the upstream's buffers are in this process too
	if grew > 6<<20 {
		t.Errorf("heap grew by %d bytes for a %d-byte answer: it was buffered", grew, len(body))
	}
	// a patient token's _include must be checked: refused, the body not read past the bound
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/Observation.rs", "patient/Patient.r"}})
	if r := fx.do(t, call{path: "/fhir/Observation?patient=p1&_include=Observation:subject", secret: pat}); r.status != 502 || r.code != CodeResponseTooLarge {
		t.Errorf("checked: %d %.200s", r.status, r.body)
	}
}

// A Group that lists the patient is in its compartment by the definition,
// but would show every other member: a patient token is refused it, and
// nothing is forwarded.
func TestAPatientTokenIsRefusedAGroupItBelongsTo(t *testing.T) {
	fx, _ := fhirFixture(t, true, nil)
	pat, _ := fx.token(t, authority.Spec{PatientID: "p1", Scopes: []string{"patient/*.rs"}})
	var asked atomic.Int64
	fx.fhir.setHandler(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write([]byte(`{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p2"}}]}`))
	})
	r := fx.do(t, call{path: "/fhir/Group/g1", secret: pat})
	if r.status != 403 || r.code != CodeCompartment || strings.Contains(r.body, "Patient/p2") {
		t.Fatalf("Group/g1: %d %s, want 403 compartment", r.status, r.body)
	}
	if asked.Load() != 0 {
		t.Fatalf("the read was forwarded %d times", asked.Load())
	}
}
