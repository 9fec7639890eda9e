package main

// `phigate server --dev` with the stock FHIR client fhir-kit-client
// (internal/gateway/testdata/node/client.mjs) in front of the demo: the
// README's walk-through as an app would run it, paging, reading by id and
// meeting refusals.

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

// stockClientDir holds client.mjs and its npm packages.
const stockClientDir = "../../internal/gateway/testdata/node"

// stockClient runs client.mjs with the plan, trusting caFile, or skips
// (outside CI) or fails (CI=true) when Node or fhir-kit-client is missing.
func stockClient(t *testing.T, caFile string, plan []map[string]any) []struct {
	OK      bool              `json:"ok"`
	Pages   []json.RawMessage `json:"pages"`
	Body    json.RawMessage   `json:"body"`
	Status  int               `json:"status"`
	Data    json.RawMessage   `json:"data"`
	Message string            `json:"message"`
} {
	t.Helper()
	in, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	out := runNodeScript(t, stockClientDir, "fhir-kit-client", "client.mjs", caFile, in)
	var res []struct {
		OK      bool              `json:"ok"`
		Pages   []json.RawMessage `json:"pages"`
		Body    json.RawMessage   `json:"body"`
		Status  int               `json:"status"`
		Data    json.RawMessage   `json:"data"`
		Message string            `json:"message"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(plan) {
		t.Fatalf("client.mjs output (%v): %s", err, out)
	}
	return res
}

func TestDevGatewayServesTheDemoToAStockClient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	g := startGatewayDev(t, dir, nil)
	var app client.IssuedToken
	g.mustJSON(t, g.adm, &app, "token", "create", "--subject", "smart-app", "--scope", "patient/Observation.rs",
		"--patient", "pat-1", "--ttl", "10m")
	base := "https://" + g.gw + "/fhir/"
	plan := []map[string]any{
		{"op": "search", "base": base, "token": app.Secret, "resourceType": "Observation",
			"searchParams": map[string]string{"patient": "pat-1", "_count": "1"}, "follow": true},
		{"op": "read", "base": base, "token": app.Secret, "resourceType": "Observation", "id": "obs-1"},
		{"op": "vread", "base": base, "token": app.Secret, "resourceType": "Observation", "id": "obs-1", "version": "1"},
		{"op": "read", "base": base, "token": app.Secret, "resourceType": "Observation", "id": "obs-5"},
		{"op": "search", "base": base, "token": app.Secret, "resourceType": "Observation", "searchParams": map[string]string{"patient": "pat-2"}},
		{"op": "metadata", "base": base},
	}
	// The dev server's certificate, which the stock client must trust.
	res := stockClient(t, filepath.Join(dir, "tls", tlsutil.SelfSignedCertName), plan)

	t.Run("paging", func(t *testing.T) {
		r := res[0]
		if !r.OK || len(r.Pages) == 0 {
			t.Fatalf("search: %+v", r)
		}
		ids := map[string]bool{}
		for _, p := range r.Pages {
			var b struct {
				Entry []struct {
					Resource struct{ ID string } `json:"resource"`
				} `json:"entry"`
			}
			json.Unmarshal(p, &b)
			for _, e := range b.Entry {
				ids[e.Resource.ID] = true
			}
		}
		if len(r.Pages) != 4 || len(ids) != 4 {
			t.Fatalf("%d pages, %d Observations of pat-1; want 4 and 4", len(r.Pages), len(ids))
		}
	})
	t.Run("read by id", func(t *testing.T) {
		for _, i := range []int{1, 2} {
			if r := res[i]; !r.OK || !strings.Contains(string(r.Body), `"obs-1"`) {
				t.Errorf("%s obs-1: %d %.300s", plan[i]["op"], r.Status, r.Data)
			}
		}
		if r := res[3]; r.OK || r.Status != 403 || strings.Contains(string(r.Data), "pat-2") {
			t.Errorf("another patient's obs-5: ok=%v %d %.300s", r.OK, r.Status, r.Data)
		}
	})
	t.Run("refusals are OperationOutcomes", func(t *testing.T) {
		r := res[4]
		if r.OK || r.Status != 403 {
			t.Fatalf("pat-2's Observations: ok=%v %d", r.OK, r.Status)
		}
		if !strings.Contains(string(r.Data), `"resourceType":"OperationOutcome"`) ||
			!strings.Contains(string(r.Data), `"system":"urn:phigate:reason","code":"compartment"`) {
			t.Errorf("refusal: %s", r.Data)
		}
	})
	t.Run("metadata without a token", func(t *testing.T) {
		r := res[5]
		if !r.OK || !strings.Contains(string(r.Body), "SMART-on-FHIR") {
			t.Errorf("metadata: %d %.300s %.300s", r.Status, r.Body, r.Data)
		}
	})
}
