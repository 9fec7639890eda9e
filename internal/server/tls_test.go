package server

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/testclock"
)

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Both listeners, the admin API and the gateway, refuse TLS 1.0 and 1.1
// clients at the handshake, and speak TLS 1.2 and 1.3.
func TestListenersRefuseTLSBelow12(t *testing.T) {
	cfg := config.Dev(t.TempDir())
	cfg.Admin.Listen, cfg.Gateway.Listen = freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Config: cfg, Dev: true, Console: &console{}, Now: testclock.New().Now, Ready: func(string) { close(ready) }})
	}()
	defer func() {
		cancel()
		<-errc
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("the server did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not start")
	}
	for name, addr := range map[string]string{"admin": cfg.Admin.Listen, "gateway": cfg.Gateway.Listen} {
		for _, tc := range []struct {
			name    string
			version uint16
			ok      bool
		}{
			{"TLS 1.0", tls.VersionTLS10, false},
			{"TLS 1.1", tls.VersionTLS11, false},
			{"TLS 1.2", tls.VersionTLS12, true},
			{"TLS 1.3", tls.VersionTLS13, true},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				d := &net.Dialer{Timeout: 5 * time.Second}
				c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
					InsecureSkipVerify: true, // the version is under test, not the certificate
					MinVersion:         tc.version, MaxVersion: tc.version,
				})
				if err == nil {
					defer c.Close()
				}
				switch {
				case tc.ok && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.ok && c.ConnectionState().Version != tc.version:
					t.Fatalf("negotiated %x", c.ConnectionState().Version)
				case !tc.ok && err == nil:
					t.Fatalf("accepted (negotiated %x)", c.ConnectionState().Version)
				case !tc.ok && !strings.Contains(err.Error(), "protocol version"):
					// refused for the version itself, not for want of a
					// common cipher suite
					t.Fatalf("refused, but not for its version: %v", err)
				}
			})
		}
	}
}
