package main

import "testing"

func TestGatewayScenario(t *testing.T) {
	rep := runJSON(t, "gateway", "-duration", "300ms", "-warmup", "50ms", "-rounds", "2", "-c", "4")
	if len(rep.Results) != 4 || rep.Results[0].Name != "baseline" || rep.Results[1].Name != "phigate" ||
		rep.Results[2].Name != "baseline1" || rep.Results[3].Name != "phigate1" {
		t.Fatalf("results %+v", rep.Results)
	}
	if rep.Ratio <= 0 || rep.Config["fsync_p50_ns"].(float64) <= 0 {
		t.Errorf("ratio %v, config %v", rep.Ratio, rep.Config)
	}
	if b, p := rep.Results[0].BodyBytes, rep.Results[1].BodyBytes; b != gatewayBody || p != gatewayBody {
		t.Errorf("body sizes %d %d, want %d", b, p, gatewayBody)
	}
}
