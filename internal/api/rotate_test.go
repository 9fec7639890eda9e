package api

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/phigate/phigate/pkg/client"
)

// testSealer is an authority.FieldSealer with AES-GCM under a random key,
// bound to the token id and the field.
type testSealer struct{ aead cipher.AEAD }

func newTestSealer(t testing.TB) *testSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testSealer{aead: g}
}

func (s *testSealer) Seal(_ context.Context, id, field string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(id+"\x00"+field)), nil
}

func (s *testSealer) Open(_ context.Context, id, field string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errShort
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(id+"\x00"+field))
}

type sealErr string

func (e sealErr) Error() string { return string(e) }

const errShort = sealErr("short ciphertext")

// rotateWithKey posts a rotation with an Idempotency-Key (none when key is
// empty) and body.
func (e *env) rotateWithKey(path, bearer, key, body string) resp {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	r, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(r.Body)
	return resp{r.StatusCode, r.Header, b.Bytes()}
}

func TestSelfRotationRetryWithTheSameKeyGetsTheSameBody(t *testing.T) {
	e := newEnv(t)
	tok := e.create(client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "1h", Grace: "5m"})
	if tok.TTL != "1h0m0s" || tok.Grace != "5m0s" || tok.Rotations != 0 {
		t.Fatalf("created: ttl %q grace %q rotations %d", tok.TTL, tok.Grace, tok.Rotations)
	}
	for _, path := range []string{"/v1/tokens/self/rotate", "/v1/tokens/" + tok.ID + "/rotate"} {
		t.Run(path, func(t *testing.T) {
			e := e.with(t)
			bearer := tok.Secret
			if !strings.Contains(path, "self") {
				bearer = e.admin
			}
			cur := e.json("GET", "/v1/tokens/"+tok.ID, e.admin, nil)
			var before client.Token
			json.Unmarshal(cur.body, &before)
			key := "retry-" + path
			first := e.rotateWithKey(path, bearer, key, `{"ttl":"30m"}`)
			if first.status != 200 {
				t.Fatalf("first: %d %s", first.status, first.body)
			}
			again := e.rotateWithKey(path, bearer, key, `{"ttl":"30m"}`)
			if again.status != 200 || !bytes.Equal(again.body, first.body) {
				t.Fatalf("retry: %d %s\nwant 200 %s", again.status, again.body, first.body)
			}
			var it client.IssuedToken
			json.Unmarshal(first.body, &it)
			if it.Rotations != before.Rotations+1 || it.RotatedFrom == "" || it.RotatedAt == nil {
				t.Fatalf("rotation %d from %q, want %d and a fingerprint", it.Rotations, it.RotatedFrom, before.Rotations+1)
			}
			r := e.json("GET", "/v1/tokens/"+tok.ID, e.admin, nil)
			var after client.Token
			json.Unmarshal(r.body, &after)
			if after.Rotations != before.Rotations+1 {
				t.Fatalf("rotations %d after a retry, want %d", after.Rotations, before.Rotations+1)
			}
			// another body with the same key
			if r := e.rotateWithKey(path, bearer, key, `{"ttl":"20m"}`); r.status != 422 {
				t.Fatalf("same key, another body: %d %s", r.status, r.body)
			} else if code, field := errCode(t, r); code != "idempotency_key_reused" || field != "Idempotency-Key" {
				t.Fatalf("same key, another body: %s %s", code, field)
			}
			tok.Secret = it.Secret
		})
	}
}

func TestSupersededSecretWithAnotherKeyIsAlreadyRotated(t *testing.T) {
	e := newEnv(t)
	tok := e.create(client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "1h", Grace: "5m"})
	if r := e.rotateWithKey("/v1/tokens/self/rotate", tok.Secret, "a", ""); r.status != 200 {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	for _, key := range []string{"b", ""} {
		r := e.rotateWithKey("/v1/tokens/self/rotate", tok.Secret, key, "")
		if code, _ := errCode(t, r); r.status != 409 || code != "already_rotated" {
			t.Fatalf("old secret, key %q: %d %s", key, r.status, r.body)
		}
	}
	// the old secret still works for reading, within its grace
	if r := e.json("GET", "/v1/tokens/self", tok.Secret, nil); r.status != 200 {
		t.Fatalf("old secret in its grace: %d", r.status)
	}
}

func TestIdempotencyKeyMustBePrintableASCII(t *testing.T) {
	e := newEnv(t)
	tok := e.create(client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "1h", Grace: "5m"})
	for name, key := range map[string]string{
		"too long":  strings.Repeat("k", 129),
		"control":   "a\x01b",
		"non-ascii": "clé",
		"del":       "a\x7fb",
	} {
		t.Run(name, func(t *testing.T) {
			// straight to the handler: an HTTP client refuses to send these
			req := httptest.NewRequest("POST", "/v1/tokens/self/rotate", nil)
			req.Header.Set("Authorization", "Bearer "+tok.Secret)
			req.Header.Set("Idempotency-Key", key)
			w := httptest.NewRecorder()
			e.srv.Config.Handler.ServeHTTP(w, req)
			r := resp{w.Code, w.Header(), w.Body.Bytes()}
			if code, field := errCode(t, r); r.status != 400 || code != "invalid_request" || field != "Idempotency-Key" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	// twice is refused too
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/tokens/self/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	r, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 400 {
		t.Fatalf("two keys: %d", r.StatusCode)
	}
	// 128 characters are fine (and nothing was rotated by the refusals)
	ok := e.rotateWithKey("/v1/tokens/self/rotate", tok.Secret, strings.Repeat("k", 128), "")
	var it client.IssuedToken
	if ok.status != 200 || json.Unmarshal(ok.body, &it) != nil || it.Rotations != 1 {
		t.Fatalf("a 128-character key: %d %s", ok.status, ok.body)
	}
}

func TestConcurrentRetriesMakeOneRotation(t *testing.T) {
	e := newEnv(t)
	tok := e.create(client.CreateTokenRequest{Subject: "svc", Scopes: []string{"billing:read"}, TTL: "1h", Grace: "5m"})
	const n = 8
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := e.rotateWithKey("/v1/tokens/self/rotate", tok.Secret, "same", "")
			if r.status == 200 {
				bodies[i] = r.body
			} else {
				t.Errorf("retry %d: %d %s", i, r.status, r.body)
			}
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("answer %d differs:\n%s\n%s", i, bodies[i], bodies[0])
		}
	}
	r := e.json("GET", "/v1/tokens/"+tok.ID, e.admin, nil)
	var after client.Token
	json.Unmarshal(r.body, &after)
	if after.Rotations != 1 {
		t.Fatalf("%d rotations, want 1", after.Rotations)
	}
}

// FuzzRotateIdempotencyHeader sends any Idempotency-Key and body to the
// self-rotation endpoint: never a 5xx, always a JSON answer, and a key the
// answer accepted is answered again, identically, on a retry.
func FuzzRotateIdempotencyHeader(f *testing.F) {
	e := newEnv(f)
	for _, s := range [][2]string{{"k", ""}, {"k", `{"ttl":"30m"}`}, {" k", ""}, {"", `{"grace":"1m"}`}, {"\x00", ""}, {strings.Repeat("k", 129), ""}} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, key string, body []byte) {
		tok := e.with(t).create(client.CreateTokenRequest{Subject: "s", Scopes: []string{"billing:read"}, TTL: "1h", Grace: "5m"})
		send := func() resp {
			req := httptest.NewRequest("POST", "/v1/tokens/self/rotate", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.Secret)
			req.Header.Set("Content-Type", "application/json")
			req.Header["Idempotency-Key"] = []string{key}
			w := httptest.NewRecorder()
			e.srv.Config.Handler.ServeHTTP(w, req)
			return resp{w.Code, w.Header(), w.Body.Bytes()}
		}
		r := send()
		if r.status >= 500 || !json.Valid(r.body) {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if r.status == 200 {
			if again := send(); again.status != 200 || !bytes.Equal(again.body, r.body) {
				t.Fatalf("retry: %d %s, want %s", again.status, again.body, r.body)
			}
		}
	})
}

// BenchmarkRotate measures a self-rotation through the handler, without
// and with an Idempotency-Key, and a retry answered from the replay.
func BenchmarkRotate(b *testing.B) {
	e := newEnv(b)
	rotate := func(b *testing.B, secret, key string) client.IssuedToken {
		req := httptest.NewRequest("POST", "/v1/tokens/self/rotate", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		e.srv.Config.Handler.ServeHTTP(w, req)
		var it client.IssuedToken
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &it) != nil {
			b.Fatalf("%d %s", w.Code, w.Body.Bytes())
		}
		return it
	}
	for _, tc := range []struct {
		name  string
		key   func(i int) string
		chain bool // rotate with the new secret each time
	}{
		{"no-key", func(int) string { return "" }, true},
		{"idempotency-key", func(i int) string { return "k" + strconv.Itoa(i) }, true},
		{"retry", func(int) string { return "same" }, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tok := e.with(b).create(client.CreateTokenRequest{Subject: "s", Scopes: []string{"billing:read"}, TTL: "2h", Grace: "1h"})
			secret := tok.Secret
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				it := rotate(b, secret, tc.key(i))
				if tc.chain {
					secret = it.Secret
				}
				i++
			}
		})
	}
}
