package gateway

// Issue 14's "tests that must exist", through the real gateway in front of
// real FHIR servers (realfhir_harness_test.go): the HAPI-like and the
// _offset upstreams of fhirtest always, the node-fhir-server-core one on
// Node where it runs; each with a patient token (bound to pat-a) and a
// user token.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/fhir/fhirtest"
)

// realTokens are the tokens the tests use: two distinct patient tokens for
// the same patient (a handle of one replayed by the other must still be
// refused) and a user token.
type realTokens struct {
	patient, patientTwin, user string
}

func (rf *realFixture) tokens(t *testing.T) realTokens {
	t.Helper()
	var pat, usr []string
	for _, typ := range []string{"Patient", "Observation", "Encounter", "Condition", "MedicationRequest"} {
		pat = append(pat, "patient/"+typ+".rs")
		usr = append(usr, "user/"+typ+".rs")
	}
	// 20 h: the expired-handle test moves the clock 6 h ahead, and the
	// tokens must outlive that.
	ttl := 20 * time.Hour
	p, _ := rf.token(t, authority.Spec{Subject: "smart-app", PatientID: fhirtest.PatientA, Scopes: pat, TTL: ttl})
	p2, _ := rf.token(t, authority.Spec{Subject: "smart-app-2", PatientID: fhirtest.PatientA, Scopes: pat, TTL: ttl})
	u, _ := rf.token(t, authority.Spec{Subject: "clinician", Scopes: usr, TTL: ttl})
	return realTokens{patient: p, patientTwin: p2, user: u}
}

// getURL GETs an absolute URL the gateway handed out, which must lead to
// the gateway itself.
func (rf *realFixture) getURL(t *testing.T, raw, secret string) reply {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host != rf.addr {
		t.Fatalf("link %q does not lead to the gateway (%s)", raw, rf.addr)
	}
	return rf.do(t, call{path: u.RequestURI(), secret: secret})
}

// TestSearchPagesReachEveryPageThroughTheGatewayOnly: a search of 25
// Observations, 5 a page, reaches all 5 pages by following the next links
// the gateway returned, each a gateway URL, and no answer names an
// upstream.
func TestSearchPagesReachEveryPageThroughTheGatewayOnly(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true})
	tk := rf.tokens(t)
	rf.each(t, func(t *testing.T, u realUpstream) {
		for _, who := range []struct{ name, secret string }{{"patient", tk.patient}, {"user", tk.user}} {
			t.Run(who.name, func(t *testing.T) {
				r := rf.do(t, call{path: "/" + u.Name + "/Observation?patient=" + fhirtest.PatientA + "&_count=5", secret: who.secret})
				if r.status != 200 {
					t.Fatalf("first page: %d %s", r.status, r.body)
				}
				ids := map[string]bool{}
				pages := 0
				for {
					pages++
					rf.noUpstreamURL(t, "page", r.body)
					b := parseFHIRBundle(t, []byte(r.body))
					for _, e := range b.Entry {
						if !strings.HasPrefix(e.FullURL, rf.gatewayBase(u)) {
							t.Errorf("fullUrl %s is not on the gateway's base %s", e.FullURL, rf.gatewayBase(u))
						}
						ids[e.Resource.ID] = true
					}
					for _, l := range b.Link {
						if !strings.HasPrefix(l.URL, rf.gatewayBase(u)) {
							t.Errorf("link %s %s is not on the gateway's base", l.Relation, l.URL)
						}
					}
					next := b.link("next")
					if next == "" || pages > 10 {
						// The last page's previous link leads back
						// through the gateway too.
						if prev := b.link("previous", "prev"); pages > 1 {
							if pr := rf.getURL(t, prev, who.secret); pr.status != 200 || len(parseFHIRBundle(t, []byte(pr.body)).Entry) != 5 {
								t.Errorf("previous page: %d %.300s", pr.status, pr.body)
							}
						}
						break
					}
					r = rf.getURL(t, next, who.secret)
					if r.status != 200 {
						t.Fatalf("page %d: %d %s", pages+1, r.status, r.body)
					}
				}
				if pages != 5 || len(ids) != fhirtest.ObservationsOfA {
					t.Fatalf("%d pages, %d distinct Observations; want 5 and %d", pages, len(ids), fhirtest.ObservationsOfA)
				}
			})
		}
	})
}

// TestContinuationHandleIsRefusedToAnotherTokenEditedOrExpired: the next
// link of a page is the gateway's continuation handle; replayed with
// another token (even one for the same patient), edited, or after it
// expired, it is refused with 403 invalid_continuation, and nothing is
// fetched from the upstream.
func TestContinuationHandleIsRefusedToAnotherTokenEditedOrExpired(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true})
	tk := rf.tokens(t)
	rf.each(t, func(t *testing.T, u realUpstream) {
		for _, who := range []struct{ name, secret, other string }{
			{"patient", tk.patient, tk.patientTwin}, {"user", tk.user, tk.patient}} {
			t.Run(who.name, func(t *testing.T) {
				r := rf.do(t, call{path: "/" + u.Name + "/Observation?patient=" + fhirtest.PatientA + "&_count=5", secret: who.secret})
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				next := parseFHIRBundle(t, []byte(r.body)).link("next")
				if next == "" {
					t.Fatal("no next link")
				}
				refused := func(name, link, secret string) {
					t.Helper()
					before := upstreamCalls(u)
					r := rf.getURL(t, link, secret)
					if r.status != http.StatusForbidden || !strings.Contains(r.body, "invalid_continuation") {
						t.Errorf("%s: %d %.300s, want 403 invalid_continuation", name, r.status, r.body)
					}
					if strings.Contains(r.body, `"entry"`) {
						t.Errorf("%s: the refusal carries entries", name)
					}
					if after := upstreamCalls(u); after != before {
						t.Errorf("%s: the upstream was asked (%d requests)", name, after-before)
					}
				}
				refused("another token", next, who.other)
				for i, edited := range editLink(next) {
					refused("edited "+string(rune('a'+i)), edited, who.secret)
				}
				// The handle still works for its token: the refusals above
				// were for what they changed.
				if r := rf.getURL(t, next, who.secret); r.status != 200 {
					t.Fatalf("the handle itself: %d %s", r.status, r.body)
				}
				rf.clk.Add(6 * time.Hour)
				defer rf.clk.Add(-6 * time.Hour)
				refused("expired", next, who.secret)
			})
		}
	})
}

// editLink returns variants of a gateway link with one character of its
// query (or, without a query, of its last path segment) changed, at its
// start, middle and end, its last one moved by one, and one with a
// character appended. A character
// of the base64url alphabet is replaced by the one 32 places on, which
// changes the top bit of its six: an edit of the last character that only
// touched the unused low bits could decode to the same bytes.
func editLink(link string) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(link, '?')
	if i < 0 {
		i = strings.LastIndexByte(link, '/')
	}
	var out []string
	for _, at := range []int{i + 1, (i + 1 + len(link)) / 2, len(link) - 1} {
		if at <= i || at >= len(link) {
			continue
		}
		b := []byte(link)
		if v := strings.IndexByte(alphabet, b[at]); v >= 0 {
			b[at] = alphabet[(v+32)%64]
		} else {
			b[at] = 'A'
		}
		out = append(out, string(b))
	}
	// The last character one place on: when the handle's length leaves
	// unused low bits in it, a lenient base64 decoder would read the same
	// bytes (handles are decoded strictly).
	b := []byte(link)
	if v := strings.IndexByte(alphabet, b[len(b)-1]); v >= 0 && v < 63 {
		b[len(b)-1] = alphabet[v+1]
		out = append(out, string(b))
	}
	return append(out, link+"A")
}

// TestPatientTokenReadsItsOwnObservationAndNotAnothers: a patient token
// reads, vreads and gets the history of its patient's Observation by id;
// another patient's is refused (403 compartment, or 404 not_found when
// the upstream hides existence) and its body never reaches the client. A
// user token reads both.
func TestPatientTokenReadsItsOwnObservationAndNotAnothers(t *testing.T) {
	for _, hide := range []bool{false, true} {
		name := map[bool]string{false: "compartment", true: "hide_existence"}[hide]
		t.Run(name, func(t *testing.T) {
			rf := newRealFixture(t, realOpts{node: true, upstream: func(u *config.Upstream) {
				if hide {
					u.HideExistence = true
				}
			}})
			tk := rf.tokens(t)
			own, other := fhirtest.ObservationID(fhirtest.PatientA, 1), fhirtest.ObservationID(fhirtest.PatientB, 1)
			rf.each(t, func(t *testing.T, u realUpstream) {
				for _, p := range []string{"Observation/" + own, "Observation/" + own + "/_history/1", "Observation/" + own + "/_history"} {
					for _, secret := range []string{tk.patient, tk.user} {
						r := rf.do(t, call{path: "/" + u.Name + "/" + p, secret: secret})
						if r.status != 200 || !strings.Contains(r.body, `"`+own+`"`) {
							t.Errorf("%s: %d %.300s", p, r.status, r.body)
						}
						rf.noUpstreamURL(t, p, r.body)
					}
				}
				for _, p := range []string{"Observation/" + other, "Observation/" + other + "/_history/1", "Observation/" + other + "/_history"} {
					r := rf.do(t, call{path: "/" + u.Name + "/" + p, secret: tk.patient})
					want, code := http.StatusForbidden, "compartment"
					if hide {
						want, code = http.StatusNotFound, "not_found"
					}
					if r.status != want || !strings.Contains(r.body, code) {
						t.Errorf("%s by the patient token: %d %.300s, want %d %s", p, r.status, r.body, want, code)
					}
					for _, leak := range []string{"Patient/" + fhirtest.PatientB, `"valueQuantity"`, `"entry"`} {
						if strings.Contains(r.body, leak) {
							t.Errorf("%s: the refused body reached the client (%s): %.300s", p, leak, r.body)
						}
					}
					if r := rf.do(t, call{path: "/" + u.Name + "/" + p, secret: tk.user}); r.status != 200 {
						t.Errorf("%s by the user token: %d %.300s", p, r.status, r.body)
					}
				}
			})
		})
	}
}

// TestAnswerTooBigToCheckIsRefusedNotStreamed: with max_checked_body
// below the size of an Observation, a patient token's read by id is
// refused with 502 response_too_large and no byte of the resource reaches
// the client; a user token's read, which needs no check, is served.
func TestAnswerTooBigToCheckIsRefusedNotStreamed(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true, upstream: func(u *config.Upstream) {
		u.MaxCheckedBody = 64
	}})
	tk := rf.tokens(t)
	own := fhirtest.ObservationID(fhirtest.PatientA, 1)
	rf.each(t, func(t *testing.T, u realUpstream) {
		r := rf.do(t, call{path: "/" + u.Name + "/Observation/" + own, secret: tk.patient})
		if r.status != http.StatusBadGateway || !strings.Contains(r.body, "response_too_large") {
			t.Errorf("patient read: %d %.300s, want 502 response_too_large", r.status, r.body)
		}
		if strings.Contains(r.body, "valueQuantity") || strings.Contains(r.body, `"subject"`) {
			t.Errorf("part of the unchecked body reached the client: %.300s", r.body)
		}
		if r := rf.do(t, call{path: "/" + u.Name + "/Observation/" + own, secret: tk.user}); r.status != 200 {
			t.Errorf("user read: %d %.300s", r.status, r.body)
		}
	})
}

// TestIncludeStaysInTheCompartment: _include of Observation:encounter:Encounter
// for the patient's Observations returns the patient's Encounter, and the
// Encounter of another patient that one of them (mis)references is
// removed for a patient token; a user token gets both.
func TestIncludeStaysInTheCompartment(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true})
	tk := rf.tokens(t)
	rf.each(t, func(t *testing.T, u realUpstream) {
		q := "/" + u.Name + "/Observation?patient=" + fhirtest.PatientA + "&_id=" + fhirtest.ObservationID(fhirtest.PatientA, 1) +
			"," + fhirtest.MisfiledObservation + "&_include=Observation:encounter:Encounter"
		for _, who := range []struct {
			name, secret string
			want         map[string]bool
		}{
			{"patient", tk.patient, map[string]bool{fhirtest.EncounterID(fhirtest.PatientA): true}},
			{"user", tk.user, map[string]bool{fhirtest.EncounterID(fhirtest.PatientA): true, fhirtest.EncounterID(fhirtest.PatientB): true}},
		} {
			r := rf.do(t, call{path: q, secret: who.secret})
			if r.status != 200 {
				t.Errorf("%s: %d %.300s", who.name, r.status, r.body)
				continue
			}
			got := map[string]bool{}
			matches := 0
			for _, e := range parseFHIRBundle(t, []byte(r.body)).Entry {
				if e.Resource.ResourceType == "Encounter" {
					got[e.Resource.ID] = true
				} else {
					matches++
				}
			}
			if !reflect.DeepEqual(got, who.want) || matches != 2 {
				t.Errorf("%s: included %v and %d matches, want %v and 2", who.name, got, matches, who.want)
			}
			if who.name == "patient" && strings.Contains(r.body, "Patient/"+fhirtest.PatientB) {
				t.Errorf("patient: another patient's data reached the client: %.300s", r.body)
			}
			// The removal is recorded in the completion (grant and
			// completion: two events).
			recorded := false
			for _, ev := range rf.rec.byRequest(t, r.rid, 2) {
				b, _ := json.Marshal(ev)
				recorded = recorded || strings.Contains(string(b), "include_removed=1")
			}
			if recorded != (who.name == "patient") {
				t.Errorf("%s: include_removed=1 recorded: %v", who.name, recorded)
			}
		}
	})
}

// TestBatchAndTransactionAreDecidedPerEntry: a batch or transaction is
// forwarded when every entry is allowed on its own, and refused whole,
// naming the entry and without reaching the upstream, when one is not.
func TestBatchAndTransactionAreDecidedPerEntry(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true})
	tk := rf.tokens(t)
	bundle := func(typ string, urls ...string) string {
		var entries []map[string]any
		for _, u := range urls {
			m, p, _ := strings.Cut(u, " ")
			e := map[string]any{"request": map[string]any{"method": m, "url": p}}
			if m == "POST" {
				e["resource"] = map[string]any{"resourceType": "Observation", "status": "final",
					"subject": map[string]any{"reference": "Patient/" + fhirtest.PatientA}}
			}
			entries = append(entries, e)
		}
		b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": typ, "entry": entries})
		return string(b)
	}
	own := "GET Observation?patient=" + fhirtest.PatientA
	rf.each(t, func(t *testing.T, u realUpstream) {
		for _, typ := range []string{"batch", "transaction"} {
			for _, c := range []struct {
				name    string
				secret  string
				entries []string
				status  int
				code    string
			}{
				{"patient own data", tk.patient, []string{"GET Patient/" + fhirtest.PatientA, own}, 200, ""},
				{"patient another's in entry 1", tk.patient, []string{own, "GET Observation?patient=" + fhirtest.PatientB}, 403, "compartment"},
				{"patient a read by id of a non-Patient type in entry 1", tk.patient, []string{own, "GET Condition/" + fhirtest.ConditionID(fhirtest.PatientA)}, 403, ""},
				{"user reads of two patients", tk.user, []string{own, "GET Observation?patient=" + fhirtest.PatientB}, 200, ""},
				{"user create without c in entry 1", tk.user, []string{own, "POST Observation"}, 403, "insufficient_scope"},
			} {
				t.Run(typ+"/"+c.name, func(t *testing.T) {
					before := upstreamCalls(u)
					r := rf.do(t, call{method: http.MethodPost, path: "/" + u.Name + "/", secret: c.secret,
						contentType: "application/fhir+json", body: bundle(typ, c.entries...)})
					if r.status != c.status {
						t.Fatalf("%d %.400s, want %d", r.status, r.body, c.status)
					}
					if c.status != 200 {
						if c.code != "" && !strings.Contains(r.body, c.code) {
							t.Errorf("refusal %.300s does not say %s", r.body, c.code)
						}
						if !strings.Contains(r.body, "entry") || !strings.Contains(r.body, "1") {
							t.Errorf("refusal %.300s does not name the entry", r.body)
						}
						if after := upstreamCalls(u); after != before {
							t.Errorf("a refused Bundle reached the upstream")
						}
						return
					}
					b := parseFHIRBundle(t, []byte(r.body))
					if b.Type != typ+"-response" || len(b.Entry) != len(c.entries) {
						t.Fatalf("answer %s with %d entries: %.400s", b.Type, len(b.Entry), r.body)
					}
					for i, e := range b.Entry {
						if !strings.HasPrefix(e.Response.Status, "200") {
							t.Errorf("entry %d: %s", i, e.Response.Status)
						}
					}
				})
			}
		}
	})
}

// TestMetadataWorksWithoutATokenAndAdvertisesSMART: GET metadata needs no
// token, and its CapabilityStatement declares the SMART-on-FHIR security
// service and names the gateway, not the upstream.
func TestMetadataWorksWithoutATokenAndAdvertisesSMART(t *testing.T) {
	rf := newRealFixture(t, realOpts{node: true})
	rf.each(t, func(t *testing.T, u realUpstream) {
		r := rf.do(t, call{path: "/" + u.Name + "/metadata"})
		if r.status != 200 {
			t.Fatalf("%d %.300s", r.status, r.body)
		}
		var cs struct {
			ResourceType   string `json:"resourceType"`
			Implementation struct {
				URL string `json:"url"`
			} `json:"implementation"`
			Rest []struct {
				Security struct {
					Service []struct {
						Coding []struct{ System, Code string } `json:"coding"`
					} `json:"service"`
				} `json:"security"`
			} `json:"rest"`
		}
		if err := json.Unmarshal([]byte(r.body), &cs); err != nil || cs.ResourceType != "CapabilityStatement" || len(cs.Rest) == 0 {
			t.Fatalf("not a CapabilityStatement (%v): %.300s", err, r.body)
		}
		smart := false
		for _, s := range cs.Rest[0].Security.Service {
			for _, c := range s.Coding {
				smart = smart || (c.System == "http://terminology.hl7.org/CodeSystem/restful-security-service" && c.Code == "SMART-on-FHIR")
			}
		}
		if !smart {
			t.Errorf("rest[0].security does not declare SMART-on-FHIR: %.600s", r.body)
		}
		evs := rf.rec.byRequest(t, r.rid, 1)
		if len(evs) == 0 {
			t.Errorf("the public metadata request was not recorded")
		}
		for _, ev := range evs {
			if ev.TokenID != "" {
				t.Errorf("the public metadata request was recorded with token %s", ev.TokenID)
			}
		}
		rf.noUpstreamURL(t, "metadata", r.body)
		if !strings.HasPrefix(cs.Implementation.URL, strings.TrimSuffix(rf.gatewayBase(u), "/")) {
			t.Errorf("implementation.url %q is not the gateway's base %s", cs.Implementation.URL, rf.gatewayBase(u))
		}
	})
}

// TestRefusalsOfFHIRUpstreamsAreOperationOutcomes: each kind of refusal
// on a fhir upstream is an OperationOutcome (application/fhir+json) with
// the reason code and the request id, the challenge kept.
func TestRefusalsOfFHIRUpstreamsAreOperationOutcomes(t *testing.T) {
	rf := newRealFixture(t, realOpts{})
	tk := rf.tokens(t)
	rf.each(t, func(t *testing.T, u realUpstream) {
		for _, c := range []struct {
			name, path, secret string
			status             int
			reason, issue      string
		}{
			{"no token", "/Observation?patient=" + fhirtest.PatientA, "", 401, "missing_token", "login"},
			{"another patient", "/Observation?patient=" + fhirtest.PatientB, tk.patient, 403, "compartment", ""},
			{"no scope", "/Device?patient=" + fhirtest.PatientA, tk.user, 403, "insufficient_scope", ""},
			{"not FHIR", "/observation/x", tk.user, 400, "invalid_request", "invalid"},
		} {
			r := rf.do(t, call{path: "/" + u.Name + c.path, secret: c.secret})
			if r.status != c.status {
				t.Errorf("%s: %d %.300s, want %d", c.name, r.status, r.body, c.status)
				continue
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("%s: Content-Type %q", c.name, ct)
			}
			if (c.status == 401 || c.reason == "insufficient_scope") && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: no RFC 6750 challenge", c.name)
			}
			checkOutcome(t, []byte(r.body), c.reason, c.issue)
		}
	})
}
