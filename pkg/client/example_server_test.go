package client_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// exampleServer starts a real admin API in process (SQLite store, real
// authority, TLS on loopback) and returns its address, its pin, an admin
// secret generated now, and a function that stops it. Examples run on the
// wall clock, like a program would.
func exampleServer() (addr, pin, admin string, stop func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "phigate-example")
	if err != nil {
		panic(err)
	}
	st, err := sqlite.Open(ctx, dir+"/phigate.db", sqlite.Options{})
	if err != nil {
		panic(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	h, _ := token.NewHasherKey(1, key)
	a := authority.New(st, h, authority.Config{ReplaySealer: newExampleSealer()})
	admin, _, err = a.Bootstrap(ctx, "root", time.Hour, 0)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewTLSServer(api.New(a, api.Options{}))
	return srv.URL, client.SPKIPin(srv.Certificate()), admin, func() {
		srv.Close()
		st.Close()
		os.RemoveAll(dir)
	}
}

// exampleSealer keeps idempotent rotations' answers sealed with AES-GCM
// under a key of its own, bound to the token id and the field (as the
// server does with the vault's data key).
type exampleSealer struct{ aead cipher.AEAD }

func newExampleSealer() *exampleSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	return &exampleSealer{g}
}

func (s *exampleSealer) Seal(_ context.Context, tokenID, field string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(tokenID+"\x00"+field)), nil
}

func (s *exampleSealer) Open(_ context.Context, tokenID, field string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(tokenID+"\x00"+field))
}
