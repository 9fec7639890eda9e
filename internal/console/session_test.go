package console

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

// The store keeps the secret only sealed, bound to its session; the
// cookie's value is not the key it is filed under.
func TestSessionStoreKeepsTheSecretOnlySealed(t *testing.T) {
	s, err := newSessions(rand.Reader, time.Minute, time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	secret := fakeToken(t)
	now := testclock.Start()
	id, ss, err := s.create("tok_1", secret, now)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ss.sealed, []byte(secret)) || bytes.Contains(ss.sealed, []byte(secret[4:24])) || strings.Contains(id, secret) {
		t.Fatal("the secret is kept in plaintext")
	}
	if bytes.Equal(ss.key[:], []byte(id)[:32]) {
		t.Fatal("sessions are filed under the cookie's value")
	}
	if got, err := s.secret(ss); err != nil || got != secret {
		t.Fatalf("open: %v", err)
	}
	// bound to its session: another session's key does not open it
	_, other, _ := s.create("tok_2", fakeToken(t), now)
	moved := *other
	moved.sealed = ss.sealed
	if _, err := s.secret(&moved); err == nil {
		t.Fatal("a sealed secret opened under another session")
	}
	flipped := *ss
	flipped.sealed = append([]byte(nil), ss.sealed...)
	flipped.sealed[len(flipped.sealed)-1] ^= 1
	if _, err := s.secret(&flipped); err == nil {
		t.Fatal("a tampered sealed secret opened")
	}
}

func TestSessionLifetimes(t *testing.T) {
	now := testclock.Start()
	s, _ := newSessions(rand.Reader, time.Minute, time.Hour, 3)
	id, _, _ := s.create("tok_1", "x", now)
	if _, err := s.get(id, now.Add(59*time.Second)); err != nil {
		t.Fatal("used within the idle timeout: ", err)
	}
	if _, err := s.get(id, now.Add(118*time.Second)); err != nil {
		t.Fatal("use moves the idle timeout: ", err)
	}
	if _, err := s.get(id, now.Add(179*time.Second)); err == nil {
		t.Fatal("idle for a minute and still alive")
	}
	// the absolute bound, whatever the use
	id, _, _ = s.create("tok_1", "x", now)
	for h := time.Duration(0); h < 120; h++ {
		if _, err := s.get(id, now.Add(h*30*time.Second)); err != nil {
			t.Fatalf("after %v: %v", h*30*time.Second, err)
		}
	}
	if _, err := s.get(id, now.Add(time.Hour)); err == nil {
		t.Fatal("alive past MaxAge")
	}
	// bounded: the oldest makes room
	a, _, _ := s.create("a", "x", now)
	s.create("b", "x", now)
	s.create("c", "x", now)
	s.create("d", "x", now)
	if _, err := s.get(a, now); err == nil || s.len() != 3 {
		t.Fatalf("not bounded: %d sessions", s.len())
	}
	for _, bad := range []string{"", strings.Repeat("a", 65), "nope"} {
		if _, err := s.get(bad, now); err == nil {
			t.Fatalf("%q found", bad)
		}
	}
}
