package vault

import (
	"bytes"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	k, _ := newDataKey("audit-fields", 3, make([]byte, 32))
	ct, _ := k.seal(bytes.NewReader(make([]byte, 12)), nil, []byte("x"))
	f.Add(ct)
	f.Add([]byte("pgv\x01\x01a\x00\x00\x00\x01" + string(make([]byte, 28))))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, hl, err := ParseHeader(b)
		if err != nil {
			if h != (Header{}) || hl != 0 {
				t.Fatal("a failed parse returned a header")
			}
			return
		}
		if !validPurpose(h.Purpose) || h.Version == 0 || hl+nonceSize+tagSize > len(b) {
			t.Fatalf("accepted %+v %d", h, hl)
		}
		if enc := appendHeader(nil, h); !bytes.Equal(enc, b[:hl]) {
			t.Fatalf("re-encoding differs: %x vs %x", enc, b[:hl])
		}
	})
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"file:/etc/phigate/master.key", "env:PHIGATE_MASTER_KEY", "passphrase", "passphrase:fd:3",
		"awskms:alias/phigate?region=us-east-1", "awskms:arn:aws:kms:eu-west-1:1:key/abc?endpoint=http://127.0.0.1:4566&region=eu-west-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		again, err := ParseSpec(sp.String())
		if err != nil || again != sp {
			t.Fatalf("%q -> %+v -> %q -> %+v %v", s, sp, sp.String(), again, err)
		}
	})
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"file:/k", Spec{Kind: KindFile, Path: "/k"}},
		{"file:rel/k?x", Spec{Kind: KindFile, Path: "rel/k?x"}},
		{"env:PHIGATE_KEY", Spec{Kind: KindEnv, Env: "PHIGATE_KEY"}},
		{"passphrase", Spec{Kind: KindPassphrase, FD: -1}},
		{"passphrase:fd:0", Spec{Kind: KindPassphrase, FD: 0}},
		{"passphrase:fd:3", Spec{Kind: KindPassphrase, FD: 3}},
		{"awskms:1234abcd", Spec{Kind: KindAWSKMS, KeyID: "1234abcd"}},
		{"awskms:arn:aws:kms:us-east-2:111:key/1?region=us-east-2", Spec{Kind: KindAWSKMS, KeyID: "arn:aws:kms:us-east-2:111:key/1", Region: "us-east-2"}},
		{"awskms:alias/p?endpoint=https://kms.internal:8443", Spec{Kind: KindAWSKMS, KeyID: "alias/p", Endpoint: "https://kms.internal:8443"}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v %v", tc.in, got, err)
		}
	}
	for name, in := range map[string]string{
		"empty": "", "no_kind": "/etc/key", "unknown_kind": "vault:x", "file_no_path": "file:", "env_no_name": "env:",
		"env_bad_name": "env:1X", "env_dash": "env:A-B", "passphrase_inline": "passphrase:secret", "fd_negative": "passphrase:fd:-1",
		"fd_text": "passphrase:fd:x", "fd_leading_zero": "passphrase:fd:03", "fd_huge": "passphrase:fd:99999999",
		"kms_no_key": "awskms:", "kms_no_key_query": "awskms:?region=x", "kms_unknown_param": "awskms:k?profile=x",
		"kms_bad_region": "awskms:k?region=US_EAST", "kms_http_remote": "awskms:k?endpoint=http://kms.example.com",
		"kms_dup_region": "awskms:k?region=a&region=b", "kms_endpoint_creds": "awskms:k?endpoint=https://u:p@h",
		"control_char": "file:/k\n", "nul": "file:/k\x00", "too_long": "file:/" + string(make([]byte, 3000)),
	} {
		if _, err := ParseSpec(in); err == nil {
			t.Errorf("%s: ParseSpec(%.40q) accepted", name, in)
		}
	}
}
