package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"sync"
	"time"
)

// A session is one login: the token it acts as, its CSRF token, and the
// token's secret sealed under the store's key (see sessions). The session
// id travels in the cookie; the store keys sessions by the id's SHA-256,
// so not even a dump of the store's map gives a cookie.
type session struct {
	key     [32]byte // SHA-256 of the id
	tokenID string
	csrf    string
	sealed  []byte // nonce || AES-256-GCM(secret), bound to key
	created time.Time
	seen    time.Time
}

// sessions is the server-side session store. It is bounded (the oldest
// session makes room for a new one) and lives in memory only: a restart
// ends every session, and the key the secrets are sealed under dies with
// the process.
type sessions struct {
	mu      sync.Mutex
	m       map[[32]byte]*session
	aead    cipher.AEAD
	rand    io.Reader
	idle    time.Duration
	maxAge  time.Duration
	max     int
	ordered [][32]byte // creation order, for eviction
}

var errNoSession = errors.New("console: no such session")

func newSessions(rnd io.Reader, idle, maxAge time.Duration, max int) (*sessions, error) {
	k := make([]byte, 32)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &sessions{m: map[[32]byte]*session{}, aead: aead, rand: rnd, idle: idle, maxAge: maxAge, max: max}, nil
}

func (s *sessions) random(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// create starts a session acting as tokenID with secret, and returns the
// session id (the cookie's value) and the session.
func (s *sessions) create(tokenID, secret string, now time.Time) (string, *session, error) {
	id, err := s.random(32)
	if err != nil {
		return "", nil, err
	}
	csrf, err := s.random(32)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return "", nil, err
	}
	key := sha256.Sum256([]byte(id))
	ss := &session{key: key, tokenID: tokenID, csrf: csrf, created: now, seen: now,
		sealed: s.aead.Seal(nonce, nonce, []byte(secret), key[:])}
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.m) >= s.max && len(s.ordered) > 0 {
		delete(s.m, s.ordered[0])
		s.ordered = s.ordered[1:]
	}
	s.m[key] = ss
	s.ordered = append(s.ordered, key)
	return id, ss, nil
}

// get returns the live session of id and marks it seen at now; an idle
// or too old session is deleted and reported as none.
func (s *sessions) get(id string, now time.Time) (*session, error) {
	if id == "" || len(id) > 64 {
		return nil, errNoSession
	}
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key]
	if ss == nil {
		return nil, errNoSession
	}
	if now.Sub(ss.seen) >= s.idle || now.Sub(ss.created) >= s.maxAge || now.Before(ss.created) {
		s.deleteLocked(key)
		return nil, errNoSession
	}
	ss.seen = now
	return ss, nil
}

// secret opens the session's sealed secret.
func (s *sessions) secret(ss *session) (string, error) {
	n := s.aead.NonceSize()
	if len(ss.sealed) < n {
		return "", errNoSession
	}
	pt, err := s.aead.Open(nil, ss.sealed[:n], ss.sealed[n:], ss.key[:])
	if err != nil {
		return "", errNoSession
	}
	return string(pt), nil
}

// reseal replaces the session's secret (its own token was rotated in the
// console: the session goes on with the new secret).
func (s *sessions) reseal(ss *session, secret string) error {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return err
	}
	sealed := s.aead.Seal(nonce, nonce, []byte(secret), ss.key[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.sealed = sealed
	return nil
}

// end deletes the session of ss.
func (s *sessions) end(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(ss.key)
}

func (s *sessions) deleteLocked(key [32]byte) {
	if _, ok := s.m[key]; !ok {
		return
	}
	delete(s.m, key)
	for i, k := range s.ordered {
		if k == key {
			s.ordered = append(s.ordered[:i], s.ordered[i+1:]...)
			break
		}
	}
}

// len is the number of sessions held.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// validCSRF compares a form's CSRF token with the session's in constant
// time.
func validCSRF(ss *session, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(ss.csrf), []byte(got)) == 1
}
