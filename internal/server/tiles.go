package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/scope"
)

// tilesServer is the running tlog-tiles listener (audit.tiles).
type tilesServer struct {
	srv  *http.Server
	addr string
}

// startTiles starts the read-only tlog-tiles listener when audit.tiles
// asks for one (nil otherwise). With access token, each request needs a
// bearer token with the audit:read-tiles scope; nothing is written to the
// audit log by serving (nor by refusing: refusals are logged at debug).
func startTiles(cfg *config.Config, l *audit.Log, auth *authority.Authority, tc *tls.Config, log *slog.Logger) (*tilesServer, error) {
	tcfg := cfg.Audit.Tiles
	if tcfg.Access == "" || tcfg.Access == "off" {
		return nil, nil
	}
	o := audit.TileServerOptions{
		Logf:     func(msg string, args ...any) { log.Error(msg, args...) },
		Cosigned: func(ctx context.Context, cp *audit.Checkpoint) []byte { return l.Cosigned(ctx, cp) },
	}
	if tcfg.Access == "token" {
		o.Authorize = func(r *http.Request) error { return tilesAuthorize(r, auth, log) }
	}
	ln, err := net.Listen("tcp", tcfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("audit.tiles listener: %w", err)
	}
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(audit.TileHandler(l, o), 0),
		TLSConfig:         tc,
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.Duration(),
		ReadTimeout:       cfg.Limits.ReadTimeout.Duration(),
		WriteTimeout:      cfg.Limits.WriteTimeout.Duration(),
		IdleTimeout:       cfg.Limits.IdleTimeout.Duration(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	t := &tilesServer{srv: srv, addr: ln.Addr().String()}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && err != http.ErrServerClosed {
			log.Error("audit tiles listener stopped", "err", err)
		}
	}()
	if tcfg.Access == "public" {
		log.Warn("the audit log is served to anyone reaching audit.tiles.listen (access: public): entries' metadata is readable, only PHI fields are sealed", "addr", t.addr)
	}
	log.Info("audit tiles listener started", "addr", t.addr, "access", tcfg.Access)
	return t, nil
}

func tilesAuthorize(r *http.Request, auth *authority.Authority, log *slog.Logger) error {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return &audit.Refusal{Status: http.StatusUnauthorized, Msg: "a bearer token with the audit:read-tiles scope is required"}
	}
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		addr = ap.Addr().Unmap()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	d, err := auth.Verify(ctx, strings.TrimSpace(v[7:]), authority.Request{Addr: addr, Scope: scope.AuditReadTiles})
	if err != nil {
		log.Error("audit tiles: token verification failed", "err", err)
		return &audit.Refusal{Status: http.StatusServiceUnavailable, Msg: "cannot verify the token now; try again later"}
	}
	if !d.Allowed() {
		log.Debug("audit tiles: request refused", "reason", d.Reason.Code(), "remote", r.RemoteAddr)
		if d.Token != nil {
			return &audit.Refusal{Status: http.StatusForbidden, Msg: "refused: " + d.Reason.Code()}
		}
		return &audit.Refusal{Status: http.StatusUnauthorized, Msg: "refused: " + d.Reason.Code()}
	}
	return nil
}

// Addr returns the listening address.
func (t *tilesServer) Addr() string { return t.addr }

// Shutdown stops the listener.
func (t *tilesServer) Shutdown(ctx context.Context) error { return t.srv.Shutdown(ctx) }
