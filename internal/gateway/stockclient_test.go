package gateway

// The stock FHIR client fhir-kit-client (testdata/node/client.mjs) through
// the real gateway over TLS, trusting only the gateway's certificate, in
// front of each real upstream: it searches, pages with nextPage(), reads
// by id and parses every refusal as an OperationOutcome.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/fhir/fhirtest"
)

func TestStockClientPagesReadsAndParsesRefusalsThroughTheGateway(t *testing.T) {
	requireNode(t)
	rf := newRealFixture(t, realOpts{node: true})
	tk := rf.tokens(t)
	rf.each(t, func(t *testing.T, u realUpstream) {
		base := rf.gatewayBase(u)
		own, other := fhirtest.ObservationID(fhirtest.PatientA, 1), fhirtest.ObservationID(fhirtest.PatientB, 1)
		search := map[string]string{"patient": fhirtest.PatientA, "_count": "5"}
		steps := []clientStep{
			{Op: "search", Base: base, Token: tk.patient, ResourceType: "Observation", SearchParams: search, Follow: true},
			{Op: "search", Base: base, Token: tk.user, ResourceType: "Observation", SearchParams: search, Follow: true},
			{Op: "read", Base: base, Token: tk.patient, ResourceType: "Observation", ID: own},
			{Op: "read", Base: base, Token: tk.user, ResourceType: "Observation", ID: other},
			{Op: "read", Base: base, Token: tk.patient, ResourceType: "Observation", ID: other},
			{Op: "read", Base: base, ResourceType: "Observation", ID: own},
			{Op: "search", Base: base, Token: tk.patient, ResourceType: "Observation", SearchParams: map[string]string{"patient": fhirtest.PatientB}},
			{Op: "metadata", Base: base},
		}
		// An edited continuation handle, when the gateway issues them.
		first := rf.do(t, call{path: "/" + u.Name + "/Observation?patient=" + fhirtest.PatientA + "&_count=5", secret: tk.patient})
		var edited string
		if first.status == 200 {
			if next := parseFHIRBundle(t, []byte(first.body)).link("next"); strings.HasPrefix(next, base) {
				edited = editLink(next)[0]
				steps = append(steps, clientStep{Op: "get", Base: base, Token: tk.patient, URL: edited})
			}
		}
		res := rf.runStockClient(t, steps)
		t.Run("no upstream URL", func(t *testing.T) {
			for i, r := range res {
				rf.noUpstreamURL(t, "stock client step "+steps[i].Op, string(r.Body)+string(r.Data)+r.Message+strings.Join(rawStrings(r.Pages), ""))
			}
		})

		for i, who := range []string{"patient", "user"} {
			t.Run("paging/"+who, func(t *testing.T) {
				r := res[i]
				if !r.OK {
					t.Fatalf("search: %d %s %.300s", r.Status, r.Message, r.Data)
				}
				ids := map[string]bool{}
				for _, p := range r.Pages {
					for _, e := range parseFHIRBundle(t, p).Entry {
						ids[e.Resource.ID] = true
					}
				}
				if len(r.Pages) != 5 || len(ids) != fhirtest.ObservationsOfA {
					t.Fatalf("%d pages, %d Observations; want 5 and %d", len(r.Pages), len(ids), fhirtest.ObservationsOfA)
				}
			})
		}
		t.Run("read by id", func(t *testing.T) {
			if r := res[3]; !r.OK || !strings.Contains(string(r.Body), `"`+other+`"`) {
				t.Errorf("user reads %s: %+v", other, r)
			}
			if r := res[2]; !r.OK || !strings.Contains(string(r.Body), `"`+own+`"`) {
				t.Errorf("patient reads its own %s: %d %s %.300s", own, r.Status, r.Message, r.Data)
			}
			r := res[4]
			if r.OK || r.Status != 403 {
				t.Fatalf("patient reads another's %s: ok=%v %d, want 403", other, r.OK, r.Status)
			}
			if strings.Contains(string(r.Data), "Patient/"+fhirtest.PatientB) {
				t.Errorf("the refused body reached the client: %.300s", r.Data)
			}
		})
		t.Run("refusals are OperationOutcomes", func(t *testing.T) {
			for _, c := range []struct {
				i             int
				status        int
				reason, issue string
			}{
				{5, 401, "missing_token", "login"},
				{6, 403, "compartment", ""},
				{4, 403, "compartment", ""},
			} {
				r := res[c.i]
				if r.OK || r.Status != c.status {
					t.Errorf("step %d (%s): ok=%v status %d, want %d", c.i, steps[c.i].Op, r.OK, r.Status, c.status)
					continue
				}
				if !strings.HasPrefix(r.ContentType, "application/fhir+json") {
					t.Errorf("step %d: Content-Type %q", c.i, r.ContentType)
				}
				checkOutcome(t, r.Data, c.reason, c.issue)
			}
			if edited != "" {
				r := res[len(res)-1]
				if r.OK || r.Status != 403 {
					t.Fatalf("edited handle: ok=%v %d", r.OK, r.Status)
				}
				checkOutcome(t, r.Data, "invalid_continuation", "")
			}
		})
		t.Run("metadata without a token", func(t *testing.T) {
			r := res[7]
			if !r.OK {
				t.Fatalf("metadata: %d %s %.300s", r.Status, r.Message, r.Data)
			}
			var cs struct {
				ResourceType string `json:"resourceType"`
			}
			if json.Unmarshal(r.Body, &cs); cs.ResourceType != "CapabilityStatement" {
				t.Errorf("metadata: %.300s", r.Body)
			}
			if !strings.Contains(string(r.Body), "SMART-on-FHIR") {
				t.Errorf("metadata does not advertise SMART: %.300s", r.Body)
			}
		})
	})
}

func rawStrings(rs []json.RawMessage) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
