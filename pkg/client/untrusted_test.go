package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// otherCA writes the PEM of a CA that signed nothing the test servers use.
func otherCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now() // certificate validity only, checked by crypto/tls
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A server whose chain does not verify (no pin given, or a CA file that
// did not sign it) fails with an error that says what to set and which
// pin the server presented, and no request is sent.
func TestUntrustedCertificateSaysHowToPinAndWhatWasPresented(t *testing.T) {
	f := newFakeServer(t)
	f.answer(200, tokenJSON, nil)
	ca := otherCA(t)
	for name, c := range map[string]struct {
		opts   []client.Option
		caFile string
		want   []string
	}{
		"no pin, no CA":  {nil, "", []string{"PHIGATE_PIN", "PHIGATE_CACERT", "SPKI pin", "presented pin " + f.pin()}},
		"another CA":     {[]client.Option{client.WithCAFile(ca)}, ca, []string{"CA file " + ca, "presented pin " + f.pin()}},
		"CA and the pin": {[]client.Option{client.WithCAFile(ca), client.WithPins(f.pin())}, ca, []string{"CA file " + ca, "presented pin " + f.pin()}},
	} {
		before := f.count()
		cl, err := client.New(f.URL, append(c.opts, client.WithToken(testToken))...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Self(context.Background())
		var ue *client.UntrustedCertificateError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: err = %v (%T), want *UntrustedCertificateError", name, err, err)
		}
		if ue.Presented != f.pin() || ue.CAFile != c.caFile || ue.Err == nil {
			t.Errorf("%s: %+v", name, ue)
		}
		for _, s := range c.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", name, err, s)
			}
		}
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("%s: the error holds the bearer token", name)
		}
		if n := f.count() - before; n != 0 {
			t.Errorf("%s: %d requests reached an untrusted server", name, n)
		}
	}
}

// A pin mismatch names the pin expected and the pin presented.
func TestPinMismatchNamesExpectedAndPresented(t *testing.T) {
	f := newFakeServer(t)
	other := base64.StdEncoding.EncodeToString(make([]byte, 32))
	cl, err := client.New(f.URL, client.WithToken(testToken), client.WithPins(other))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Self(context.Background())
	for _, s := range []string{"presented pin " + f.pin(), "expected " + other} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("pin mismatch %v does not say %q", err, s)
		}
	}
}
