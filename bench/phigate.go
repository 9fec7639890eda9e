package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/server"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

// inproc is a phigate server running in this process (server.Run in dev
// mode) on a loopback port.
type inproc struct {
	// Addr is the admin API's host:port.
	Addr string
	// CertFile and KeyFile are the generated self-signed pair.
	CertFile, KeyFile string
	// CertPEM is the content of CertFile.
	CertPEM []byte
	// admin is the bootstrap admin token (scope admin:*). Never printed.
	admin string

	cancel context.CancelFunc
	done   chan error
	// tempDir, when set, is the data directory Close removes.
	tempDir string
}

// startInTempDir is startInProcess on a fresh temporary directory named
// after prefix, which Close removes once the server has stopped.
func startInTempDir(ctx context.Context, prefix string, log *slog.Logger) (*inproc, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	p, err := startInProcess(ctx, dir, log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.tempDir = dir
	return p, nil
}

// startInProcess initialises dataDir (which must be empty or absent), which
// yields the bootstrap admin token, and starts phigate on it.
func startInProcess(ctx context.Context, dataDir string, log *slog.Logger) (*inproc, error) {
	return startNode(ctx, dataDir, log, nodeOptions{init: true})
}

// nodeOptions vary startNode: a cluster node's config changes, its master
// key, and whether it initialises (the first node of a cluster does).
type nodeOptions struct {
	init      bool
	masterKey string               // vault master-key spec ("": the dev key file)
	mod       func(*config.Config) // changes to the dev config
}

// startNode is startInProcess with o: without o.init the node takes no
// bootstrap token (its admin is "").
func startNode(ctx context.Context, dataDir string, log *slog.Logger, o nodeOptions) (*inproc, error) {
	cfg := config.Dev(dataDir)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Gateway.Listen = "127.0.0.1:0" // never a fixed port a parallel run would hold
	if o.mod != nil {
		o.mod(cfg)
	}
	admin := ""
	if o.init {
		var err error
		admin, _, err = server.Init(ctx, server.InitOptions{Config: cfg, Dev: true, Logger: log, MasterKey: o.masterKey})
		if err != nil {
			return nil, fmt.Errorf("phigate init: %w", err)
		}
		if admin == "" {
			return nil, fmt.Errorf("phigate init: %s was already initialised", dataDir)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &inproc{admin: admin, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		p.done <- server.Run(runCtx, server.Options{
			Config: cfg, Dev: true, Console: discardConsole{}, Logger: log, MasterKey: o.masterKey,
			Ready: func(addr string) { ready <- addr },
		})
	}()
	select {
	case p.Addr = <-ready:
	case err := <-p.done:
		cancel()
		return nil, fmt.Errorf("phigate server: %w", errors.Join(err, errors.New("stopped before it was ready")))
	case <-ctx.Done():
		p.Close()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		p.Close()
		return nil, errors.New("phigate server: not ready after 30s")
	}
	p.CertFile = filepath.Join(dataDir, "tls", tlsutil.SelfSignedCertName)
	p.KeyFile = filepath.Join(dataDir, "tls", tlsutil.SelfSignedKeyName)
	if cfg.TLS.CertFile != "" {
		p.CertFile, p.KeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
	}
	var err error
	if p.CertPEM, err = os.ReadFile(p.CertFile); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close stops the server and waits for its shutdown.
func (p *inproc) Close() error {
	if p.tempDir != "" {
		defer os.RemoveAll(p.tempDir)
	}
	p.cancel()
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("phigate server: still running 30s after shutdown began")
	}
}

// adminClient returns an SDK client of the server with the bootstrap admin
// token, trusting only the server's certificate.
func (p *inproc) adminClient() (*client.Client, error) {
	return client.New("https://"+p.Addr, client.WithCAFile(p.CertFile), client.WithToken(p.admin))
}

// discardConsole swallows what server.Run shows the operator (the SPKI
// pin; no token, since the bench initialised the directory itself).
type discardConsole struct{}

func (discardConsole) Write(b []byte) (int, error) { return len(b), nil }

// certPool returns a pool holding the PEM certificates of pem.
func certPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}
