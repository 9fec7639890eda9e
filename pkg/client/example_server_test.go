package client_test

import (
	"context"
	"crypto/rand"
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
	a := authority.New(st, h, authority.Config{})
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
