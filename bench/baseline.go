package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/tlsutil"
)

// baseline is the reference the targets compare phigate against: a bare Go
// HTTPS handler on loopback, with phigate's TLS configuration
// (tlsutil.ServerConfig) and certificate and its HTTP limits, that drains the
// request and answers a constant JSON body of a given size and status.
type baseline struct {
	*loopbackServer
	URL string
}

// loopbackServer is an HTTPS server on an ephemeral loopback port with
// phigate's TLS configuration and HTTP limits: what the references the
// targets are measured against (the baseline, the bare proxy) run on.
type loopbackServer struct {
	addr string
	srv  *http.Server
	done chan error
}

// serveLoopback serves h over TLS with phigate's certificate (certFile,
// keyFile) until Close.
func serveLoopback(h http.Handler, certFile, keyFile string) (*loopbackServer, error) {
	log := slog.New(slog.DiscardHandler)
	src, err := tlsutil.NewReloader(certFile, keyFile, log, time.Now)
	if err != nil {
		return nil, err
	}
	lim := config.Default().Limits
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsutil.ServerConfig(src),
		ReadHeaderTimeout: lim.ReadHeaderTimeout.Duration(),
		ReadTimeout:       lim.ReadTimeout.Duration(),
		WriteTimeout:      lim.WriteTimeout.Duration(),
		IdleTimeout:       lim.IdleTimeout.Duration(),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &loopbackServer{addr: ln.Addr().String(), srv: srv, done: make(chan error, 1)}
	go func() { s.done <- srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// Close stops the server.
func (s *loopbackServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// startBaseline serves path on a loopback port until Close. certFile and
// keyFile are phigate's certificate; bodySize is the length of the answer
// in bytes (at least 10), status its status code.
func startBaseline(certFile, keyFile, path string, bodySize, status int) (*baseline, error) {
	body, err := jsonBodyOfSize(bodySize)
	if err != nil {
		return nil, err
	}
	clen := strconv.Itoa(len(body))
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", clen)
		w.WriteHeader(status)
		w.Write(body)
	})
	ls, err := serveLoopback(mux, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &baseline{loopbackServer: ls, URL: "https://" + ls.addr + path}, nil
}

// jsonBodyOfSize returns a JSON object followed by a newline (as phigate
// writes its answers), exactly n bytes long.
func jsonBodyOfSize(n int) ([]byte, error) {
	const head, tail = `{"pad":"`, "\"}\n"
	if n < len(head)+len(tail) {
		return nil, fmt.Errorf("baseline body of %d bytes: at least %d needed", n, len(head)+len(tail))
	}
	b := make([]byte, 0, n)
	b = append(b, head...)
	for len(b) < n-len(tail) {
		b = append(b, 'x')
	}
	return append(b, tail...), nil
}
