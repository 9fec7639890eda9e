package main

import "testing"

func TestGatewayScenario(t *testing.T) {
	for _, alg := range []string{"HS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) { testGatewayScenario(t, alg) })
	}
}

func testGatewayScenario(t *testing.T, alg string) {
	rep := runJSON(t, "gateway", "-duration", "300ms", "-warmup", "50ms", "-rounds", "2", "-c", "4", "-identity", alg)
	want := []string{"baseline", "phigate", "phi-file", "phi-none", "baseline1", "phigate1", "phi-file1", "phi-none1"}
	if len(rep.Results) != len(want) {
		t.Fatalf("results %+v", rep.Results)
	}
	for i, r := range rep.Results {
		if r.Name != want[i] {
			t.Fatalf("result %d is %s, want %s", i, r.Name, want[i])
		}
	}
	if rep.Ratio <= 0 || rep.Config["fsync_p50_ns"].(float64) <= 0 || rep.Config["identity"] != alg {
		t.Errorf("ratio %v, config %v", rep.Ratio, rep.Config)
	}
	for _, r := range rep.Results[:4] {
		if r.BodyBytes != gatewayBody {
			t.Errorf("%s: body size %d, want %d", r.Name, r.BodyBytes, gatewayBody)
		}
	}
}

func TestFloodScenario(t *testing.T) {
	rep := runJSON(t, "flood", "-duration", "500ms", "-c", "4")
	if len(rep.Results) != 1 || rep.Results[0].Name != "anonymous" {
		t.Fatalf("results %+v", rep.Results)
	}
	if perReq, ok := rep.Config["bytes_per_request"].(float64); !ok || perReq > 200 || !rep.Pass {
		t.Errorf("aggregated anonymous flood: %v B/request, want ≤ 200 (config %v)", rep.Config["bytes_per_request"], rep.Config)
	}
}
