package tlsutil

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestServerConfigOffersOnlyECDHEWithAEADUnderTLS12(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	cfg := ServerConfig(newTestReloader(t, certFile, keyFile))
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if len(cfg.CipherSuites) == 0 {
		t.Fatal("CipherSuites empty: Go's defaults would include CBC suites")
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE with an AEAD", name)
		}
	}
	if got := strings.Join(cfg.NextProtos, ","); got != "h2,http/1.1" {
		t.Errorf("NextProtos = %q", got)
	}
}

func TestServerNegotiatesTLS13AndHybridKeyExchangeByDefault(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	addr, _ := serveSource(t, newTestReloader(t, certFile, keyFile))

	client := pinnedClient(t, certFile)
	client.NextProtos = []string{"h2", "http/1.1"}
	cs, err := handshake(t, addr, client)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("version = %s, want TLS 1.3", tls.VersionName(cs.Version))
	}
	if cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN = %q, want h2", cs.NegotiatedProtocol)
	}
	if cs.CurveID != tls.X25519MLKEM768 {
		t.Errorf("key exchange = %v, want X25519MLKEM768 (Go's default hybrid)", cs.CurveID)
	}
}

func TestServerRefusesBelowTLS12(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	addr, results := serveSource(t, newTestReloader(t, certFile, keyFile))

	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			client := &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v}
			if _, err := handshake(t, addr, client); err == nil {
				t.Fatal("handshake succeeded")
			}
			if err := serverResult(t, results); err == nil || !strings.Contains(err.Error(), "unsupported versions") {
				t.Errorf("server error = %v, want a protocol version refusal", err)
			}
		})
	}
}

func TestServerRefusesTLS12SuitesOutsideECDHEAEAD(t *testing.T) {
	certFile, keyFile := selfSigned(t) // ECDSA: the ECDHE_ECDSA suites are the ones the key could use
	src := newTestReloader(t, certFile, keyFile)
	addr, results := serveSource(t, src)
	// The control server has Go's defaults and the same certificate, to
	// show that the refusals come from phigate's policy, not the key type.
	controlAddr, _ := serve(t, &tls.Config{GetCertificate: src.GetCertificate})

	tests := []struct {
		suite uint16
		// goDefault: Go's default server would accept the suite, so the
		// control handshake must succeed.
		goDefault bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
		{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, false},
	}
	for _, tt := range tests {
		t.Run(tls.CipherSuiteName(tt.suite), func(t *testing.T) {
			client := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tt.suite}}
			if tt.goDefault {
				if _, err := handshake(t, controlAddr, client); err != nil {
					t.Fatalf("control server refused: %v", err)
				}
			}
			if _, err := handshake(t, addr, client); err == nil {
				t.Fatal("handshake succeeded")
			}
			if err := serverResult(t, results); err == nil || !strings.Contains(err.Error(), "no cipher suite") {
				t.Errorf("server error = %v, want no cipher suite supported", err)
			}
		})
	}
}

func TestServerAcceptsTLS12ECDHEAEAD(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	addr, _ := serveSource(t, newTestReloader(t, certFile, keyFile))

	for _, id := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			client := pinnedClient(t, certFile)
			client.MaxVersion = tls.VersionTLS12
			client.CipherSuites = []uint16{id}
			cs, err := handshake(t, addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if cs.Version != tls.VersionTLS12 || cs.CipherSuite != id {
				t.Errorf("negotiated %s with %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
			}
		})
	}
}
