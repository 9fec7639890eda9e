package gateway

import (
	"testing"

	"github.com/phigate/phigate/internal/authority"
)

// Every event of a classified request names its interaction, which the
// audit log's FHIR export codes from: a POST _search is a search, a
// compartment read of a type is a search, a transaction is not a batch.
func TestEventsNameTheirInteraction(t *testing.T) {
	fx := newFixture(t)
	sys, _ := fx.token(t, authority.Spec{Scopes: []string{"system/*.cruds", "billing:read"}})
	bundle := func(typ string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[{"request":{"method":"GET","url":"Patient/p1"}}]}`
	}
	for _, tc := range []struct {
		c    call
		want string
	}{
		{call{method: "GET", path: "/fhir/Patient/p1"}, "read"},
		{call{method: "GET", path: "/fhir/Patient/p1/_history/2"}, "vread"},
		{call{method: "GET", path: "/fhir/Observation?code=x"}, "search-type"},
		{call{method: "POST", path: "/fhir/Observation/_search", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: "code=x"}, "search-type"},
		{call{method: "GET", path: "/fhir/Patient/p1/Observation"}, "search-compartment"},
		{call{method: "POST", path: "/fhir/Observation", contentType: fhirJSON, body: `{"resourceType":"Observation"}`}, "create"},
		{call{method: "DELETE", path: "/fhir/Observation?code=x"}, "conditional-delete"},
		{call{method: "POST", path: "/fhir/", contentType: fhirJSON, body: bundle("batch")}, "batch"},
		{call{method: "POST", path: "/fhir/", contentType: fhirJSON, body: bundle("transaction")}, "transaction"},
		{call{method: "GET", path: "/fhir/metadata"}, "capabilities"},
		{call{method: "GET", path: "/billing/invoices/7"}, "route"},
	} {
		tc.c.secret = sys
		r := fx.do(t, tc.c)
		if r.status != 200 {
			t.Errorf("%s %s: %d %s", tc.c.method, tc.c.path, r.status, r.body)
			continue
		}
		evs := fx.rec.byRequest(t, r.rid, 2)
		if len(evs) != 2 {
			t.Errorf("%s %s: %d events", tc.c.method, tc.c.path, len(evs))
			continue
		}
		for _, ev := range evs {
			if ev.Interaction != tc.want {
				t.Errorf("%s %s: %s event names %q, want %q", tc.c.method, tc.c.path, ev.Kind, ev.Interaction, tc.want)
			}
		}
	}
	// a denied transaction is recorded as one too
	none, _ := fx.token(t, authority.Spec{Scopes: []string{"system/Observation.r"}})
	r := fx.do(t, call{method: "POST", path: "/fhir/", secret: none, contentType: fhirJSON, body: bundle("transaction")})
	if evs := fx.rec.byRequest(t, r.rid, 1); r.status != 403 || len(evs) != 1 || evs[0].Interaction != "transaction" {
		t.Fatalf("denied transaction: %d %+v", r.status, evs)
	}
}
