package config

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestMetricsListenIsPrivateUnlessAllowedPublic(t *testing.T) {
	for _, c := range []struct {
		listen string
		public bool
		bad    string // the key blamed, "" when valid
	}{
		{"", false, ""},
		{"127.0.0.1:9100", false, ""},
		{"10.0.0.5:9100", false, ""},
		{"[fd00::5]:9100", false, ""},
		{"[fe80::1]:9100", false, ""},
		{"192.168.1.2:9100", false, ""},
		{"203.0.113.7:9100", false, "metrics.listen"},
		{"0.0.0.0:9100", false, "metrics.listen"},
		{":9100", false, "metrics.listen"},
		{"metrics.example.org:9100", false, "metrics.listen"},
		{"203.0.113.7:9100", true, ""},
		{":9100", true, ""},
		{"", true, "metrics.allow_public"},
		{"10.0.0.5", false, "metrics.listen"},
		{"127.0.0.1:8443", false, "metrics.listen"}, // the admin listener's
	} {
		cfg := Default()
		cfg.DataDir = "/tmp/x"
		cfg.Metrics = Metrics{Listen: c.listen, AllowPublic: c.public}
		err := cfg.Validate(true)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%q public=%v: %v", c.listen, c.public, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%q public=%v: %v, want a problem with %s", c.listen, c.public, err, c.bad)
		}
	}
}

// FuzzPrivateListen: never a panic, and an address it calls private is
// an IP literal of a private, loopback or link-local range.
func FuzzPrivateListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9100", "[::1]:1", "10.0.0.5:9100", "0.0.0.0:9100", ":9100", "host:1", "[::ffff:10.0.0.1]:1", "x", "[fe80::1%eth0]:9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if !PrivateListen(addr) {
			return
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%q: private but not host:port", addr)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsUnspecified() || a.IsGlobalUnicast() && !a.Unmap().IsPrivate() {
			t.Fatalf("%q: called private", addr)
		}
	})
}
