package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestGenerateSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by GenerateSelfSigned
	certFile, keyFile, err := GenerateSelfSigned(dir, []string{"phigate.test", "10.0.0.7"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600, dir: 0o700} {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(file), got, want)
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "phigate.test"}) {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1", "10.0.0.7"}) {
		t.Errorf("IP addresses %v", ips)
	}
	if got := leaf.NotAfter.Sub(testNow); got != 365*24*time.Hour {
		t.Errorf("valid for %v after now, want one year", got)
	}
	if leaf.NotBefore.After(testNow) {
		t.Errorf("NotBefore %v is after now", leaf.NotBefore)
	}
	if leaf.IsCA {
		t.Error("self-signed leaf is a CA")
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "phigate.test", "10.0.0.7"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("certificate does not cover %s: %v", host, err)
		}
	}
}

func TestGenerateSelfSignedReuse(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name      string
		hosts     []string                                     // for the second call
		now       time.Time                                    // of the second call
		tamper    func(t *testing.T, certFile, keyFile string) // between the calls
		wantReuse bool
	}{
		{name: "restart", now: testNow.Add(time.Minute), wantReuse: true},
		{name: "restart with hosts already covered", hosts: []string{"localhost", "::1"}, now: testNow, wantReuse: true},
		{name: "eight days left", now: testNow.Add(365*day - 8*day), wantReuse: true},
		{name: "six days left", now: testNow.Add(365*day - 6*day)},
		{name: "expired", now: testNow.Add(400 * day)},
		{name: "not yet valid", now: testNow.Add(-2 * day)},
		{name: "new host", hosts: []string{"phigate.test"}, now: testNow},
		{name: "key readable by group", now: testNow, tamper: func(t *testing.T, _, keyFile string) {
			if err := os.Chmod(keyFile, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key replaced", now: testNow, tamper: func(t *testing.T, _, keyFile string) {
			_, other := selfSigned(t)
			data, _ := os.ReadFile(other)
			if err := os.WriteFile(keyFile, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "certificate missing", now: testNow, tamper: func(t *testing.T, certFile, _ string) {
			if err := os.Remove(certFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile, err := GenerateSelfSigned(dir, nil, testNow)
			if err != nil {
				t.Fatal(err)
			}
			before := mustPinFromFile(t, certFile)
			if tt.tamper != nil {
				tt.tamper(t, certFile, keyFile)
			}
			certFile2, keyFile2, err := GenerateSelfSigned(dir, tt.hosts, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if certFile2 != certFile || keyFile2 != keyFile {
				t.Errorf("paths changed: %s %s", certFile2, keyFile2)
			}
			after := mustPinFromFile(t, certFile2)
			if reused := before == after; reused != tt.wantReuse {
				t.Errorf("reused = %v, want %v", reused, tt.wantReuse)
			}
			if _, err := NewReloader(certFile2, keyFile2, nil, nil); err != nil {
				t.Errorf("resulting pair unusable: %v", err)
			}
			if fi, err := os.Stat(keyFile2); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode after second call: %v, %v", fi.Mode(), err)
			}
		})
	}
}

func TestGenerateSelfSignedRejectsEmptyHost(t *testing.T) {
	if _, _, err := GenerateSelfSigned(t.TempDir(), []string{" "}, testNow); err == nil {
		t.Fatal("empty host accepted")
	}
}

func TestGenerateSelfSignedLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := GenerateSelfSigned(dir, nil, testNow); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{SelfSignedCertName, SelfSignedKeyName}) {
		t.Errorf("directory holds %v", names)
	}
}
