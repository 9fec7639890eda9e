package server

import (
	"slices"
	"testing"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/scope"
)

func TestIssuerURL(t *testing.T) {
	for _, c := range []struct{ issuer, bound, want string }{
		{"", "127.0.0.1:8443", "https://127.0.0.1:8443"},
		{"", "[::]:8443", "https://localhost:8443"},
		{"", "0.0.0.0:9000", "https://localhost:9000"},
		{"", "[::1]:8443", "https://[::1]:8443"},
		{"https://auth.example.org", "0.0.0.0:8443", "https://auth.example.org"},
	} {
		cfg := &config.Config{Admin: config.Listener{Issuer: c.issuer}}
		if got := issuerURL(cfg, c.bound); got != c.want {
			t.Errorf("issuer %q bound %q: %q, want %q", c.issuer, c.bound, got, c.want)
		}
	}
}

// TestAudiences: a token reaches a fhir upstream with any SMART scope and
// an http upstream with one of its routes' scopes, nothing else.
func TestAudiences(t *testing.T) {
	aud := audiences(config.Gateway{Upstreams: []config.Upstream{
		{Name: "ehr", Kind: config.KindFHIR},
		{Name: "billing", Kind: config.KindHTTP, Routes: []config.Route{{Match: "GET /i/*", Scope: "billing:read"}}},
		{Name: "records", Kind: config.KindHTTP, Routes: []config.Route{{Match: "GET /r/*", Scope: "records:read"}}},
	}})
	for _, c := range []struct {
		scopes []string
		want   []string
	}{
		{[]string{"patient/Observation.rs"}, []string{"ehr"}},
		{[]string{"billing:read"}, []string{"billing"}},
		{[]string{"system/*.rs", "records:read"}, []string{"ehr", "records"}},
		{[]string{"introspect"}, nil},
		{[]string{"billing:write"}, nil},
	} {
		set, err := scope.ParseSet(c.scopes)
		if err != nil {
			t.Fatal(err)
		}
		if got := aud(set); !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.scopes, got, c.want)
		}
	}
}

// TestLiveAudiencesFollowReload: after set with the reloaded upstreams,
// aud names the new ones only.
func TestLiveAudiencesFollowReload(t *testing.T) {
	var l liveAudiences
	set, _ := scope.ParseSet([]string{"billing:read"})
	if got := l.of(set); got != nil {
		t.Fatalf("before any config: %q", got)
	}
	l.set(config.Gateway{Upstreams: []config.Upstream{{Name: "billing", Kind: config.KindHTTP, Routes: []config.Route{{Match: "GET /*", Scope: "billing:read"}}}}})
	if got := l.of(set); !slices.Equal(got, []string{"billing"}) {
		t.Fatalf("%q", got)
	}
	l.set(config.Gateway{Upstreams: []config.Upstream{{Name: "invoices", Kind: config.KindHTTP, Routes: []config.Route{{Match: "GET /*", Scope: "billing:read"}}}}})
	if got := l.of(set); !slices.Equal(got, []string{"invoices"}) {
		t.Fatalf("after reload: %q", got)
	}
}
