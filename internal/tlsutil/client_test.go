package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPinnedClientAcceptsPinnedSelfSignedServer(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	addr, _ := serveSource(t, newTestReloader(t, certFile, keyFile))
	other, _ := selfSigned(t)

	// Any one matching pin among several is enough.
	cfg, err := ClientConfig(ClientOptions{Pins: []Pin{mustPinFromFile(t, other), mustPinFromFile(t, certFile)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, addr, cfg); err != nil {
		t.Fatalf("handshake: %v", err)
	}
}

func TestPinnedClientRefusesOtherKeyWithPinMismatchError(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	addr, results := serveSource(t, newTestReloader(t, certFile, keyFile))
	other, _ := selfSigned(t)
	want := mustPinFromFile(t, other)

	cfg, err := ClientConfig(ClientOptions{Pins: []Pin{want}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = handshake(t, addr, cfg)
	var pe *PinMismatchError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *PinMismatchError", err)
	}
	served := mustPinFromFile(t, certFile)
	if pe.Got != served || len(pe.Want) != 1 || pe.Want[0] != want {
		t.Errorf("PinMismatchError = %+v", pe)
	}
	for _, s := range []string{"PHIGATE_PIN", served.String(), "refusing to connect"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if err := serverResult(t, results); err == nil {
		t.Error("server saw a successful handshake")
	}
}

func TestClientVerification(t *testing.T) {
	ca := newTestCA(t, "phigate test CA")
	otherCA := newTestCA(t, "some other CA")
	certFile, keyFile := ca.issue(t)
	addr, _ := serveSource(t, newTestReloader(t, certFile, keyFile))
	pin := mustPinFromFile(t, certFile)
	otherCert, _ := selfSigned(t)
	wrongPin := mustPinFromFile(t, otherCert)

	var (
		unknownAuthority = func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}
		wrongHost = func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}
		pinMismatch = func(err error) bool {
			var e *PinMismatchError
			return errors.As(err, &e)
		}
	)
	tests := []struct {
		name    string
		opts    ClientOptions
		wantErr func(error) bool // nil: the handshake must succeed
	}{
		{"ca file", ClientOptions{CAFile: ca.pemFile, ServerName: "localhost"}, nil},
		{"ca file, name from address", ClientOptions{CAFile: ca.pemFile}, nil},
		{"ca file and pin", ClientOptions{CAFile: ca.pemFile, Pins: []Pin{pin}}, nil},
		{"other ca file", ClientOptions{CAFile: otherCA.pemFile}, unknownAuthority},
		{"ca file, wrong server name", ClientOptions{CAFile: ca.pemFile, ServerName: "phigate.example"}, wrongHost},
		{"ca file and wrong pin", ClientOptions{CAFile: ca.pemFile, Pins: []Pin{wrongPin}}, pinMismatch},
		{"other ca file and right pin", ClientOptions{CAFile: otherCA.pemFile, Pins: []Pin{pin}}, unknownAuthority},
		{"system roots", ClientOptions{}, unknownAuthority},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientConfig(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %#x", cfg.MinVersion)
			}
			// tls.Dialer fills ServerName from the address, as net/http does.
			_, err = handshake(t, addr, cfg)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("handshake: %v", err)
			case tt.wantErr != nil && (err == nil || !tt.wantErr(err)):
				t.Fatalf("handshake error = %v", err)
			}
		})
	}
}

func TestClientConfigRejectsUnusableCAFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"missing": filepath.Join(dir, "nope.pem"), "no certificate": empty} {
		t.Run(name, func(t *testing.T) {
			if _, err := ClientConfig(ClientOptions{CAFile: file}); err == nil {
				t.Fatal("ClientConfig succeeded")
			}
		})
	}
}

func TestVerifyPinRequiresACertificate(t *testing.T) {
	if err := verifyPin(tls.ConnectionState{}, []Pin{{}}); err == nil {
		t.Fatal("no certificate accepted")
	}
}

func BenchmarkVerifyPin(b *testing.B) {
	certFile, keyFile := selfSigned(b)
	r := newTestReloader(b, certFile, keyFile)
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{r.Leaf()}}
	pins := []Pin{{1}, {2}, mustPinFromFile(b, certFile)}
	b.ReportAllocs()
	for b.Loop() {
		if err := verifyPin(cs, pins); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifyPinsNamesThePinSeenAndAcceptsABackup(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	leaf := newTestReloader(t, certFile, keyFile).Leaf()
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	served := mustPinFromFile(t, certFile)
	other, _ := selfSigned(t)
	backup := mustPinFromFile(t, other)
	for _, tc := range []struct {
		name string
		pins []Pin
		ok   bool
	}{
		{"current", []Pin{served}, true},
		{"backup then current", []Pin{backup, served}, true},
		{"backup only", []Pin{backup}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyPins(cs, tc.pins)
			var pe *PinMismatchError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && (!errors.As(err, &pe) || pe.Got != served):
				t.Fatalf("err = %v, want a PinMismatchError naming %s", err, served)
			}
		})
	}
	// the prefixed form is what configuration files hold: it parses back
	if got, err := ParsePins(served.WithPrefix()); err != nil || len(got) != 1 || got[0] != served || !strings.HasPrefix(served.WithPrefix(), "sha256//") {
		t.Fatalf("ParsePins(%q) = %v, %v", served.WithPrefix(), got, err)
	}
}
