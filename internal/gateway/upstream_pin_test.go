package gateway

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/tlsutil/tlstest"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// leafOf issues a certificate for 127.0.0.1 with a fresh key from ca, and
// its pin.
func leafOf(t *testing.T, ca *tlstest.CA) (*tls.Certificate, tlsutil.Pin) {
	t.Helper()
	cert, pin := ca.Leaf(t)
	pins, err := tlsutil.ParsePins(pin)
	if err != nil {
		t.Fatal(err)
	}
	return &cert, pins[0]
}

// pinnedUpstream is an HTTPS upstream whose certificate can be swapped.
type pinnedUpstream struct {
	srv   *httptest.Server
	cert  atomic.Pointer[tls.Certificate]
	count atomic.Int64
}

func newPinnedUpstream(t *testing.T, cert *tls.Certificate) *pinnedUpstream {
	t.Helper()
	u := &pinnedUpstream{}
	u.cert.Store(cert)
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	// a TLS listener of our own: httptest's would serve its own
	// certificate to a client that sends no SNI (an IP address)
	u.srv.Listener = tls.NewListener(u.srv.Listener, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return u.cert.Load(), nil },
	})
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *pinnedUpstream) url() string { return "https://" + u.srv.Listener.Addr().String() }

// rollover serves cert from the next connection on.
func (u *pinnedUpstream) rollover(cert *tls.Certificate) {
	u.cert.Store(cert)
	u.srv.CloseClientConnections()
}

func TestUpstreamIsVerifiedByItsPins(t *testing.T) {
	ca := tlstest.NewCA(t)
	current, pinCurrent := leafOf(t, ca)
	backup, pinBackup := leafOf(t, ca) // the same name, another key
	for _, tc := range []struct {
		name   string
		tls    config.UpstreamTLS
		serve  *tls.Certificate
		status int
		seen   tlsutil.Pin // the pin the log must name on a refusal
	}{
		{"pin only, the pinned key", config.UpstreamTLS{Pins: []string{pinCurrent.WithPrefix()}}, current, 200, tlsutil.Pin{}},
		{"pin only, another key", config.UpstreamTLS{Pins: []string{pinBackup.WithPrefix()}}, current, 502, pinCurrent},
		{"CA and pin, right name and chain, another key", config.UpstreamTLS{CAFile: ca.File, Pins: []string{pinCurrent.String()}}, backup, 502, pinBackup},
		{"CA and pins, the backup key", config.UpstreamTLS{CAFile: ca.File, Pins: []string{pinCurrent.String(), pinBackup.String()}}, backup, 200, tlsutil.Pin{}},
		{"CA only", config.UpstreamTLS{CAFile: ca.File}, backup, 200, tlsutil.Pin{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newPinnedUpstream(t, tc.serve)
			logs := &syncBuffer{}
			fx := newFixture(t, fixtureOpts{options: func(_ *fixture, o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) }, mutate: func(c *config.Gateway) {
				c.Upstreams[1].URL, c.Upstreams[1].TLS = up.url(), tc.tls
			}})
			s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
			r := fx.do(t, call{path: "/billing/invoices/1", secret: s})
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 200 {
				return
			}
			if r.code != CodeUpstreamFailed || up.count.Load() != 0 {
				t.Fatalf("code %q, %d requests reached the upstream", r.code, up.count.Load())
			}
			log := logs.String()
			if !strings.Contains(log, "upstream TLS key is not pinned") || !strings.Contains(log, "pin_seen="+strconv.Quote(tc.seen.WithPrefix())) ||
				!strings.Contains(log, "upstream=billing") {
				t.Fatalf("the log does not name the pin seen (%s):\n%s", tc.seen.WithPrefix(), log)
			}
		})
	}
}

func TestUpstreamRolloverToTheBackupPinKeepsServing(t *testing.T) {
	ca := tlstest.NewCA(t)
	current, pinCurrent := leafOf(t, ca)
	backup, pinBackup := leafOf(t, ca)
	retired, _ := leafOf(t, ca)
	up := newPinnedUpstream(t, current)
	fx := newFixture(t, fixtureOpts{mutate: func(c *config.Gateway) {
		c.Upstreams[1].URL = up.url()
		c.Upstreams[1].TLS = config.UpstreamTLS{CAFile: ca.File, Pins: []string{pinCurrent.WithPrefix(), pinBackup.WithPrefix()}}
	}})
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	if r := fx.do(t, call{path: "/billing/invoices/1", secret: s}); r.status != 200 {
		t.Fatalf("current key: %d %s", r.status, r.body)
	}
	up.rollover(backup)
	if r := fx.do(t, call{path: "/billing/invoices/2", secret: s}); r.status != 200 {
		t.Fatalf("after the rollover to the backup key: %d %s", r.status, r.body)
	}
	// a key that is neither, on a new connection, is refused
	up.rollover(retired)
	if r := fx.do(t, call{path: "/billing/invoices/3", secret: s}); r.status != 502 {
		t.Fatalf("an unpinned key: %d %s", r.status, r.body)
	}
	if n := up.count.Load(); n != 2 {
		t.Fatalf("%d requests reached the upstream, want 2", n)
	}
}
