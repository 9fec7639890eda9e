package tlsutil

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Two pins used by the parsing tests: SHA-256 of "a" and of "b".
var (
	pinA = Pin(sha256.Sum256([]byte("a")))
	pinB = Pin(sha256.Sum256([]byte("b")))
)

func TestSPKIPinIsSHA256OfTheDERPublicKey(t *testing.T) {
	certFile, _ := selfSigned(t)
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently: re-marshal the public key, as openssl pkey does.
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	want := base64.StdEncoding.EncodeToString(sum[:])

	if got := SPKIPin(cert); got != want {
		t.Errorf("SPKIPin = %s, want %s", got, want)
	}
	if got, err := PinFromFile(certFile); err != nil || got != want {
		t.Errorf("PinFromFile = %s, %v; want %s", got, err, want)
	}
	if len(want) != 44 || !strings.HasSuffix(want, "=") {
		t.Errorf("pin %q is not padded standard base64 of 32 bytes", want)
	}
}

func TestPinFromFileRejectsFileWithoutCertificate(t *testing.T) {
	_, keyFile := selfSigned(t)
	for name, file := range map[string]string{"key only": keyFile, "missing": filepath.Join(t.TempDir(), "x.crt")} {
		t.Run(name, func(t *testing.T) {
			if _, err := PinFromFile(file); err == nil {
				t.Fatal("PinFromFile succeeded")
			}
		})
	}
}

func TestParsePins(t *testing.T) {
	a, b := pinA.String(), pinB.String()
	tests := []struct {
		name string
		in   string
		want []Pin
	}{
		{"one", a, []Pin{pinA}},
		{"sha256 prefix", "sha256//" + a, []Pin{pinA}},
		{"prefix in upper case", "SHA256//" + a, []Pin{pinA}},
		{"comma", a + "," + b, []Pin{pinA, pinB}},
		{"comma and spaces", " " + a + " , sha256//" + b + " ", []Pin{pinA, pinB}},
		{"newlines and tabs", a + "\n\t" + b + "\n", []Pin{pinA, pinB}},
		{"duplicate dropped", a + "," + a, []Pin{pinA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePins(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePinsRejects(t *testing.T) {
	a := pinA.String()
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	long := base64.StdEncoding.EncodeToString(make([]byte, 33))
	tests := []struct {
		name, in, wantInMsg string
	}{
		{"empty", "", "no pin"},
		{"only separators", " ,\n, ", "no pin"},
		{"prefix without digest", "sha256//", "pin 1"},
		{"sha1 prefix", "sha1//" + a, "pin 1"},
		{"31 bytes", short, "decodes to 31 bytes"},
		{"33 bytes", long, "decodes to 33 bytes"},
		{"padding removed", strings.TrimRight(a, "="), "want 44"},
		{"url-safe alphabet", strings.NewReplacer("+", "-", "/", "_").Replace("+/" + a[2:]), "not standard base64"},
		{"character outside alphabet", "*" + a[1:], "not standard base64"},
		{"31 bytes padded to 44 characters", a[:41] + "A==", "decodes to 31 bytes"},
		{"hex digest", strings.Repeat("ab", 32), "want 44"},
		{"second of two bad", a + "," + a[:43], "pin 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePins(tt.in)
			if err == nil {
				t.Fatalf("accepted as %v", got)
			}
			if !errors.Is(err, ErrInvalidPin) {
				t.Errorf("error %v does not wrap ErrInvalidPin", err)
			}
			if !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantInMsg)
			}
		})
	}
}

func FuzzParsePins(f *testing.F) {
	f.Add(pinA.String())
	f.Add("sha256//" + pinA.String() + ", " + pinB.String())
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pins, err := ParsePins(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPin) {
				t.Fatalf("error %v does not wrap ErrInvalidPin", err)
			}
			return
		}
		if len(pins) == 0 {
			t.Fatal("no error and no pin")
		}
		for _, p := range pins {
			again, err := ParsePins("sha256//" + p.String())
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("pin %v does not round-trip: %v, %v", p, again, err)
			}
		}
	})
}
