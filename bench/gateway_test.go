package main

import "testing"

func TestGatewayScenario(t *testing.T) {
	rep := runJSON(t, "gateway", "-duration", "300ms", "-warmup", "50ms", "-rounds", "2", "-c", "4")
	if len(rep.Results) != 6 || rep.Results[0].Name != "baseline" || rep.Results[1].Name != "phigate" || rep.Results[2].Name != "phi-file" ||
		rep.Results[3].Name != "baseline1" || rep.Results[4].Name != "phigate1" || rep.Results[5].Name != "phi-file1" {
		t.Fatalf("results %+v", rep.Results)
	}
	if rep.Ratio <= 0 || rep.Config["fsync_p50_ns"].(float64) <= 0 {
		t.Errorf("ratio %v, config %v", rep.Ratio, rep.Config)
	}
	for _, r := range rep.Results[:3] {
		if r.BodyBytes != gatewayBody {
			t.Errorf("%s: body size %d, want %d", r.Name, r.BodyBytes, gatewayBody)
		}
	}
}
