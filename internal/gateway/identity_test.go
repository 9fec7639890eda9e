package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

func testSigner(t testing.TB) *Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return NewSigner(k)
}

func testHMACKey(t testing.TB) []byte {
	k := make([]byte, MinHMACKey)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testHMACSigner(t testing.TB) *HMACSigner {
	s, err := NewHMACSigner(testHMACKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = testclock.Start()

func sampleIdentity() *Identity {
	return &Identity{Subject: "lab-app", TokenID: "tok_x", Purpose: "TREAT", Method: "GET", Path: "/fhir/Observation",
		RequestID: "r1", Audience: "ehr", IssuedAt: t0.Unix(), Expires: t0.Add(IdentityTTL).Unix()}
}

func TestIdentityRoundTrip(t *testing.T) {
	s := testSigner(t)
	jws := s.Sign(sampleIdentity())
	id, err := VerifyIdentity(jws, s.PublicKey(), t0.Add(30*time.Second))
	head := checkSampleRoundTrip(t, jws, id, err)
	if head != `{"alg":"EdDSA","kid":"`+Thumbprint(s.PublicKey())+`","typ":"phigate-identity+jwt"}` {
		t.Errorf("header %s", head)
	}
}

// checkSampleRoundTrip checks that the assertion jws of sampleIdentity
// verified (err) into id, the sample with phigate as issuer, and returns
// jws's decoded header.
func checkSampleRoundTrip(t *testing.T, jws string, id *Identity, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	want := sampleIdentity()
	want.Issuer = identityIssuer
	if *id != *want {
		t.Errorf("got %+v\nwant %+v", id, want)
	}
	head, _ := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[0])
	return string(head)
}

// TestIdentityEveryByteMatters flips every byte of a valid assertion and
// expects each mutation to be rejected.
func TestIdentityEveryByteMatters(t *testing.T) {
	s := testSigner(t)
	jws := s.Sign(sampleIdentity())
	for i := range len(jws) {
		for _, c := range []byte{'A', '_', '.', 'z'} {
			if jws[i] == c {
				continue
			}
			m := jws[:i] + string(c) + jws[i+1:]
			if _, err := VerifyIdentity(m, s.PublicKey(), t0); err == nil {
				t.Fatalf("mutation at byte %d (%q→%q) accepted", i, jws[i], c)
			}
		}
	}
	if _, err := VerifyIdentity(jws+"A", s.PublicKey(), t0); err == nil {
		t.Error("appended byte accepted")
	}
	if _, err := VerifyIdentity(jws[:len(jws)-1], s.PublicKey(), t0); err == nil {
		t.Error("truncated accepted")
	}
}

func TestIdentityRejects(t *testing.T) {
	s := testSigner(t)
	other := testSigner(t)
	b64 := base64.RawURLEncoding.EncodeToString
	jws := s.Sign(sampleIdentity())
	parts := strings.Split(jws, ".")
	for name, c := range map[string]struct {
		jws string
		now time.Time
		key ed25519.PublicKey
	}{
		"other key":       {jws, t0, other.PublicKey()},
		"expired":         {jws, t0.Add(IdentityTTL + 6*time.Second), s.PublicKey()},
		"from the future": {jws, t0.Add(-10 * time.Second), s.PublicKey()},
		"alg none":        {b64([]byte(`{"alg":"none","typ":"phigate-identity+jwt"}`)) + "." + parts[1] + ".", t0, s.PublicKey()},
		"alg HS256":       {b64([]byte(`{"alg":"HS256","typ":"phigate-identity+jwt"}`)) + "." + parts[1] + "." + parts[2], t0, s.PublicKey()},
		"two parts":       {parts[0] + "." + parts[1], t0, s.PublicKey()},
		"empty":           {"", t0, s.PublicKey()},
		"short key":       {jws, t0, ed25519.PublicKey{1, 2}},
	} {
		if _, err := VerifyIdentity(c.jws, c.key, c.now); !errors.Is(err, ErrIdentity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	long := sampleIdentity()
	long.Expires = long.IssuedAt + 3600
	if _, err := VerifyIdentity(s.Sign(long), s.PublicKey(), t0); err == nil {
		t.Error("an hour-long assertion accepted")
	}
}

func TestVerifyRequestBindsTheRequest(t *testing.T) {
	s := testSigner(t)
	req := func(method, path string, hdr map[string]string) *http.Request {
		r, _ := http.NewRequest(method, "http://up"+path, nil)
		r.Header.Set(HeaderIdentity, s.Sign(sampleIdentity()))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	if _, err := VerifyRequest(req("GET", "/fhir/Observation", map[string]string{HeaderSubject: "lab-app"}), s.PublicKey(), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyRequest(req("HEAD", "/fhir/Observation", nil), s.PublicKey(), t0); err != nil {
		t.Errorf("HEAD for GET: %v", err)
	}
	for name, r := range map[string]*http.Request{
		"other path":     req("GET", "/fhir/Patient", nil),
		"a query":        req("GET", "/fhir/Observation?x=1", nil),
		"other method":   req("DELETE", "/fhir/Observation", nil),
		"forged subject": req("GET", "/fhir/Observation", map[string]string{HeaderSubject: "admin"}),
		"forged purpose": req("GET", "/fhir/Observation", map[string]string{HeaderPurpose: "ETREAT"}),
	} {
		if _, err := VerifyRequest(r, s.PublicKey(), t0); !errors.Is(err, ErrIdentity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := req("GET", "/fhir/Observation", nil)
	r.Header.Add(HeaderIdentity, "x")
	if _, err := VerifyRequest(r, s.PublicKey(), t0); err == nil {
		t.Error("two identity headers accepted")
	}
	r.Header.Del(HeaderIdentity)
	if _, err := VerifyRequest(r, s.PublicKey(), t0); err == nil {
		t.Error("no identity accepted")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "gateway-identity.key")
	k1, err := LoadOrCreateKey(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	dst, _ := os.Stat(filepath.Dir(path))
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", dst.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path, nil)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reload: %v, same key %v", err, k1.Equal(k2))
	}
	os.Chmod(path, 0o644)
	if _, err := LoadOrCreateKey(path, nil); err == nil {
		t.Error("a world-readable key accepted")
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("not a key"), 0o600)
	if _, err := LoadOrCreateKey(path, nil); err == nil {
		t.Error("garbage accepted")
	}
}

func TestParseJWKS(t *testing.T) {
	s := testSigner(t)
	keys, err := ParseJWKS(s.JWKS())
	if err != nil || !keys[Thumbprint(s.PublicKey())].Equal(s.PublicKey()) {
		t.Fatalf("%v %v", keys, err)
	}
	for _, bad := range []string{`{}`, `{"keys":[{"kty":"RSA"}]}`, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, `nope`} {
		if _, err := ParseJWKS([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := testSigner(b)
	id := sampleIdentity()
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(id)
	}
}

func BenchmarkSignHS256(b *testing.B) {
	s := testHMACSigner(b)
	id := sampleIdentity()
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(id)
	}
}

func FuzzVerifyIdentity(f *testing.F) {
	s := NewSigner(ed25519.NewKeyFromSeed(make([]byte, 32)))
	f.Add(s.Sign(sampleIdentity()))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, jws string) {
		id, err := VerifyIdentity(jws, s.PublicKey(), t0)
		if err == nil && (id.Subject == "" || id.Issuer != identityIssuer) {
			t.Fatalf("accepted %+v", id)
		}
		if err != nil && !errors.Is(err, ErrIdentity) {
			t.Fatalf("error %v does not wrap ErrIdentity", err)
		}
	})
}

func TestIdentityHS256RoundTrip(t *testing.T) {
	key := testHMACKey(t)
	s, err := NewHMACSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	jws := s.Sign(sampleIdentity())
	id, err := VerifyIdentityHS256(jws, key, t0.Add(30*time.Second))
	head := checkSampleRoundTrip(t, jws, id, err)
	if head != `{"alg":"HS256","kid":"`+HMACKeyID(key)+`","typ":"phigate-identity+jwt"}` || len(s.KeyID()) != 16 || s.KeyID() != HMACKeyID(key) {
		t.Errorf("header %s", head)
	}
	// the signer keeps its own copy of the key
	clear(key)
	if _, err := VerifyIdentityHS256(s.Sign(sampleIdentity()), key, t0); err == nil {
		t.Error("a zeroed key verifies")
	}
}

// TestIdentityHS256EveryByteMatters flips every byte of a valid HS256
// assertion and expects each mutation to be rejected.
func TestIdentityHS256EveryByteMatters(t *testing.T) {
	key := testHMACKey(t)
	s, _ := NewHMACSigner(key)
	jws := s.Sign(sampleIdentity())
	for i := range len(jws) {
		for _, c := range []byte{'A', '_', '.', 'z'} {
			if jws[i] == c {
				continue
			}
			m := jws[:i] + string(c) + jws[i+1:]
			if _, err := VerifyIdentityHS256(m, key, t0); err == nil {
				t.Fatalf("mutation at byte %d (%q→%q) accepted", i, jws[i], c)
			}
		}
	}
	if _, err := VerifyIdentityHS256(jws+"A", key, t0); err == nil {
		t.Error("appended byte accepted")
	}
	if _, err := VerifyIdentityHS256(jws[:len(jws)-1], key, t0); err == nil {
		t.Error("truncated accepted")
	}
}

// TestIdentityAlgorithmsNeverMix: each verifier accepts only its own
// algorithm, whatever the header says; in particular an HS256 assertion
// keyed with the (public) Ed25519 key is no EdDSA assertion.
func TestIdentityAlgorithmsNeverMix(t *testing.T) {
	ed := testSigner(t)
	key := testHMACKey(t)
	hs, _ := NewHMACSigner(key)
	if _, err := VerifyIdentity(hs.Sign(sampleIdentity()), ed.PublicKey(), t0); !errors.Is(err, ErrIdentity) {
		t.Errorf("EdDSA verifier took HS256: %v", err)
	}
	if _, err := VerifyIdentityHS256(ed.Sign(sampleIdentity()), key, t0); !errors.Is(err, ErrIdentity) {
		t.Errorf("HS256 verifier took EdDSA: %v", err)
	}
	pubKeyed, _ := NewHMACSigner(append([]byte(nil), ed.PublicKey()...))
	if _, err := VerifyIdentity(pubKeyed.Sign(sampleIdentity()), ed.PublicKey(), t0); !errors.Is(err, ErrIdentity) {
		t.Errorf("HS256 keyed with the public key accepted as EdDSA: %v", err)
	}
	parts := strings.Split(hs.Sign(sampleIdentity()), ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"phigate-identity+jwt"}`)) + "." + parts[1] + "."
	if _, err := VerifyIdentityHS256(none, key, t0); !errors.Is(err, ErrIdentity) {
		t.Errorf("alg none: %v", err)
	}
}

func TestIdentityHS256Rejects(t *testing.T) {
	key := testHMACKey(t)
	s, _ := NewHMACSigner(key)
	jws := s.Sign(sampleIdentity())
	for name, c := range map[string]struct {
		jws string
		now time.Time
		key []byte
	}{
		"other key":       {jws, t0, testHMACKey(t)},
		"short key":       {jws, t0, key[:MinHMACKey-1]},
		"expired":         {jws, t0.Add(IdentityTTL + 6*time.Second), key},
		"from the future": {jws, t0.Add(-10 * time.Second), key},
		"empty":           {"", t0, key},
	} {
		if _, err := VerifyIdentityHS256(c.jws, c.key, c.now); !errors.Is(err, ErrIdentity) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewHMACSigner(key[:MinHMACKey-1]); err == nil {
		t.Error("a 31-byte key accepted")
	}
}

func TestVerifyRequestHS256BindsRequestAndAudience(t *testing.T) {
	key := testHMACKey(t)
	s, _ := NewHMACSigner(key)
	req := func(method, path string, hdr map[string]string) *http.Request {
		r, _ := http.NewRequest(method, "http://up"+path, nil)
		r.Header.Set(HeaderIdentity, s.Sign(sampleIdentity()))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	id, err := VerifyRequestHS256(req("GET", "/fhir/Observation", map[string]string{HeaderSubject: "lab-app"}), key, "ehr", t0)
	if err != nil || id.Subject != "lab-app" {
		t.Fatalf("%+v %v", id, err)
	}
	for name, c := range map[string]struct {
		r   *http.Request
		aud string
	}{
		"other upstream": {req("GET", "/fhir/Observation", nil), "billing"},
		"no audience":    {req("GET", "/fhir/Observation", nil), ""},
		"other path":     {req("GET", "/fhir/Patient", nil), "ehr"},
		"a query":        {req("GET", "/fhir/Observation?x=1", nil), "ehr"},
		"other method":   {req("DELETE", "/fhir/Observation", nil), "ehr"},
		"forged subject": {req("GET", "/fhir/Observation", map[string]string{HeaderSubject: "admin"}), "ehr"},
	} {
		if id, err := VerifyRequestHS256(c.r, key, c.aud, t0); !errors.Is(err, ErrIdentity) || id != nil {
			t.Errorf("%s: %+v %v", name, id, err)
		}
	}
}

// TestIdentityClaimsAreEncodingJSON: the hand-written claims encoder
// writes what encoding/json writes (HTML escaping off).
func TestIdentityClaimsAreEncodingJSON(t *testing.T) {
	for _, id := range []Identity{
		*sampleIdentity(),
		{Issuer: identityIssuer, Subject: "a\"b\\c\n\t\x00<>&\u2028é", TokenID: "t", Method: "GET", Path: "/a%20b", QueryHash: QueryHash("a=1&b=%20"), RequestID: "r", IssuedAt: -1, Expires: 1 << 40},
		{Issuer: identityIssuer, Subject: "bad\xffutf8", TokenID: "t", Purpose: "ETREAT", BreakGlass: true, Audience: "x"},
	} {
		checkClaimsJSON(t, &id)
	}
}

func checkClaimsJSON(t *testing.T, id *Identity) {
	t.Helper()
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(id); err != nil {
		t.Fatal(err)
	}
	if got := id.appendJSON(nil); string(got)+"\n" != want.String() {
		t.Errorf("got  %s\nwant %s", got, want.String())
	}
}

func FuzzIdentityClaimsJSON(f *testing.F) {
	f.Add("lab-app", "tok_x", "TREAT", "/fhir/Observation", "patient=p1", "ehr", true, int64(1))
	f.Add("\x00\"\\<\xff\u2029", "", "", "", "", "", false, int64(-5))
	f.Fuzz(func(t *testing.T, sub, tid, purpose, path, query, aud string, bg bool, iat int64) {
		checkClaimsJSON(t, &Identity{Issuer: identityIssuer, Subject: sub, TokenID: tid, Purpose: purpose, Method: "GET",
			Path: path, QueryHash: QueryHash(query), RequestID: "r", Audience: aud, BreakGlass: bg, IssuedAt: iat, Expires: iat + 60})
	})
}

func FuzzVerifyIdentityHS256(f *testing.F) {
	key := bytes.Repeat([]byte{7}, MinHMACKey) // a fixed key: the fuzzer must find the signed inputs
	s, _ := NewHMACSigner(key)
	f.Add(s.Sign(sampleIdentity()))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, jws string) {
		id, err := VerifyIdentityHS256(jws, key, t0)
		if err == nil && (id.Subject == "" || id.Issuer != identityIssuer) {
			t.Fatalf("accepted %+v", id)
		}
		if err != nil && !errors.Is(err, ErrIdentity) {
			t.Fatalf("error %v does not wrap ErrIdentity", err)
		}
	})
}
