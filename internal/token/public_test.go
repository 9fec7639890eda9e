package token

import (
	"strings"
	"testing"
)

func TestCheckBytesAgreesWithCheck(t *testing.T) {
	good := mustGenerate(t)
	cases := []string{
		good,
		good[:Len-1] + string(rune(alphabet[(strings.IndexByte(alphabet, good[Len-1])+1)%62])),
		"x" + good[1:],
		good[:10] + "-" + good[11:],
		good[:Len-1],
		good + "a",
		"",
	}
	for _, s := range cases {
		if (Check(s) == nil) != (CheckBytes([]byte(s)) == nil) {
			t.Errorf("Check and CheckBytes disagree on a %d-byte input", len(s))
		}
	}
	if CheckBytes([]byte(good)) != nil {
		t.Fatal("a generated token fails CheckBytes")
	}
}

func FuzzCheckBytesAgreesWithCheck(f *testing.F) {
	f.Add("phi_")
	f.Add("phi_0000000000000000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		if (Check(s) == nil) != (CheckBytes([]byte(s)) == nil) {
			t.Fatalf("Check and CheckBytes disagree on %q", s)
		}
	})
}

func TestPublicFingerprintRevealsNoSecret(t *testing.T) {
	s := mustGenerate(t)
	fp := PublicFingerprint(s)
	if !strings.HasPrefix(fp, PublicFingerprintPrefix) || len(fp) != len(PublicFingerprintPrefix)+4+1+12 {
		t.Fatalf("fingerprint shape: %q", fp)
	}
	if strings.Contains(fp, s[len(Prefix):len(Prefix)+8]) {
		t.Fatal("fingerprint contains part of the entropy")
	}
	if PublicFingerprint(s) != fp || PublicFingerprint(mustGenerate(t)) == fp {
		t.Fatal("fingerprint is not a stable function of the secret")
	}
}
