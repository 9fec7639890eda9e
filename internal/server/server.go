// Package server is phigate's composition root: it reads the config, opens
// the key material and the store, builds the authority and the admin API,
// serves them over TLS and owns shutdown.
//
// Guarantees:
//
//   - Only TLS listens (TLS 1.2 minimum, see tlsutil); there is no plaintext
//     listener.
//   - Every HTTP limit is explicit: header size, header/read/write/idle
//     timeouts, body size.
//   - The bootstrap admin token is written once, to the Options.Console
//     writer (the terminal), never to the log. It is issued only once the
//     admin and gateway listeners are bound, and written in the same write
//     as their addresses: a start that fails has issued none, and a token
//     that cannot be written is revoked. A later start that issues none
//     says whether one is still usable and how to get another
//     (phigate init --data DIR --new-admin-token).
//   - Under the development master key (dev mode without a master key
//     spec), a master-key rotation that would keep that key (none named,
//     or the same key under another name) is refused with a message: it
//     would report a rotation and change nothing.
//   - Shutdown drains in-flight requests, gives back unspent use leases,
//     flushes last-used times and closes the store.
//   - An anonymous flood cannot fill the disk: the denials of requests
//     that never authenticated, on the gateway and the admin API, are
//     recorded aggregated (internal/preauth; the last summaries are
//     written at shutdown); one brute-force detector (the monitor's,
//     internal/monitor) serves both listeners; below the data directory's low-space
//     watermark (internal/diskspace, sampled every storage.check_interval)
//     both refuse every request with 503 before anything is written, and
//     serve again when space returns.
//   - The monitor (internal/monitor, configured by the monitor section)
//     sees every decision of the gateway and every authentication failure
//     of both listeners, on the server's clock; it suspends through the
//     authority (audited), and every alert is audited (alert.raised) and
//     stored before it is delivered (server log, signed webhooks: see
//     internal/monitor/sink). Its learned baselines are kept in the
//     store's meta table and restored at start; the findings still queued
//     at shutdown are acted on before the store closes. The admin API
//     raises its leak alerts (POST /v1/tokens/leaked) through the same
//     sinks.
//   - With store: postgres://… the node is one of a cluster (cluster.go):
//     the token store and the vault are shared in the database, every
//     other node's change reaches this node's verification cache (NOTIFY
//     and a fallback poll), and once its view of the changes is older
//     than postgres.max_staleness it refuses every verification (503)
//     and /readyz says why, until the database is reachable again. A
//     node outside dev mode starts only on a database phigate init
//     prepared.
//   - Metrics (internal/metrics, one registry per node) are fed by hooks
//     in the options of the audit log, the authority's cache, the
//     monitor's sinks, the admin API and the gateway; GET /metrics on the
//     admin API needs admin:metrics; metrics.listen adds a TLS listener
//     that serves only /metrics, without a token, on an address config
//     accepts as private unless metrics.allow_public.
//   - No log line holds anything of token shape: Run and Init wrap the
//     logger they are given in RedactLogs, which redacts the message and
//     every attribute before the handler writes it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/phigate/phigate/internal/api"
	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/auditcluster"
	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/diskspace"
	"github.com/phigate/phigate/internal/gateway"
	"github.com/phigate/phigate/internal/metrics"
	"github.com/phigate/phigate/internal/monitor"
	"github.com/phigate/phigate/internal/oauth"
	"github.com/phigate/phigate/internal/preauth"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/postgres"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/internal/vault"
)

// DBFile is the name of the embedded store inside the data directory.
const DBFile = "phigate.db"

const metaBootstrapped = "bootstrapped_at"

// Options configure a server run.
type Options struct {
	Config *config.Config
	// Dev generates a self-signed certificate in the data directory when the
	// config names none.
	Dev bool
	// Console receives what an operator must see once: the bootstrap admin
	// token and the SPKI pin. Never a log.
	Console io.Writer
	Logger  *slog.Logger
	// MasterKey is the vault's master-key spec (vault.master_key); empty in
	// dev mode means the development key file in the data directory.
	MasterKey string
	// ConfigFile is where Config was read from; SIGHUP reloads it (the
	// gateway's upstreams and routes). Empty: SIGHUP is ignored.
	ConfigFile string
	// Ready, when set, is told the listening addresses once serving starts.
	Ready func(adminAddr string)
	// Now is the clock of everything the server builds: the store, the
	// vault, the audit log, the authority, the gateway, the demo, the
	// monitor (brute force included) and the aggregation of denials (nil:
	// time.Now). Connection deadlines and TLS certificate checks follow
	// the wall clock whatever it says.
	Now func() time.Time
	// SpaceProbe measures the free space of the data directory for the
	// low-space watermark (nil: statfs; tests drive it).
	SpaceProbe diskspace.Probe
}

// gatewayDeps is what the gateway takes from the composition root.
type gatewayDeps struct {
	Config  *config.Config
	Dev     bool
	Now     func() time.Time // the clock of the gateway and the demo (nil: time.Now)
	Auth    *authority.Authority
	TLS     *tls.Config // the server TLS config (same certificate as the admin API)
	Logger  *slog.Logger
	Console io.Writer
	// Audit records every gateway decision (durable before forwarding).
	Audit *audit.Log
	// Vault resolves secret:NAME upstream credentials.
	Vault *vault.Vault
	// PreAuth records the denials of requests that never authenticated,
	// aggregated (nil: each in full).
	PreAuth *preauth.Recorder
	// Throttle slows and refuses sources sending invalid tokens (the
	// monitor's brute-force detector; nil when it is off).
	Throttle *monitor.Throttle
	// Monitor is the monitor stage of the gateway (nil: none).
	Monitor *monitor.Monitor
	// Storage is the data directory's low-space watermark.
	Storage *diskspace.Watermark
	// Observer is told every request's outcome (the metrics).
	Observer gateway.Observer
	// SMART is the SMART configuration the gateway serves (nil: none).
	SMART []byte
}

// runningGateway is a started gateway listener.
type runningGateway interface {
	// Addr is the listening address (host:port).
	Addr() string
	// Reload swaps in the upstreams and routes of cfg without dropping
	// requests; an invalid cfg changes nothing.
	Reload(cfg *config.Config) error
	// Shutdown stops accepting, drains in-flight requests, and releases
	// what the gateway holds.
	Shutdown(ctx context.Context) error
}

// Initialised reports whether dataDir holds an initialised phigate.
func Initialised(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, DBFile))
	return err == nil
}

// node is everything a phigate process opens in its data directory, in
// the order it opens them: the vault (it holds the keys), the audit log
// (its signing key is in the vault; every later change is recorded in
// it), the token store, and the authority over them.
type node struct {
	lock   *os.File // held while the node is open (lockDir)
	vault  *vault.Vault
	events *vaultEvents
	audit  *audit.Log
	store  store.Store
	// pg is the store when it is PostgreSQL (a cluster node), else nil;
	// fresh is then the node's bound on the age of its view of the
	// cluster's changes (cluster.go).
	pg    *postgres.Store
	fresh *freshness
	// mirror copies the audit log into the cluster's shared tables (a
	// cluster node, once Run started it), else nil.
	mirror *auditcluster.Mirror
	auth   *authority.Authority
	// devKey is the development master key when the vault is opened
	// with it (dev mode without a master key spec), else nil.
	devKey     vault.Provider
	devKeyFile string
	// pre, when set, records anonymous denials aggregated (a server
	// run; Init records none)
	pre *preauth.Recorder
	// metrics are fed by the audit log, the authority's cache, the
	// monitor's sinks, the admin API and the gateway
	metrics *metrics.Metrics
}

// open opens (creating on first use) the node's parts in cfg.DataDir.
// masterKey is the vault's master-key spec; in dev mode an empty one
// means the development key file in the data directory.
//
// now is the clock every part is given.
func open(ctx context.Context, cfg *config.Config, masterKey string, dev bool, now func() time.Time, console io.Writer, logger *slog.Logger) (_ *node, err error) {
	dir := cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o077 != 0 {
		logger.Warn("the data directory is accessible by group or others; chmod 700 it", "dir", dir)
	}
	n := &node{events: &vaultEvents{}}
	n.metrics = newMetrics(n, now, logger)
	if n.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	devSpec := ""
	if masterKey == "" && dev {
		spec, _, warning, err := vault.DevKey(dir, nil)
		if err != nil {
			return nil, err
		}
		masterKey, devSpec = spec, spec
		fmt.Fprintln(console, warning)
	}
	if masterKey == "" {
		return nil, errors.New("no master key: set vault.master_key in the config (file:PATH, env:NAME, passphrase or awskms:KEY) or PHIGATE_MASTER_KEY")
	}
	provider, err := vault.ParseProvider(ctx, masterKey, vault.ProviderOptions{})
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if devSpec != "" {
		n.devKey, n.devKeyFile = provider, filepath.Join(dir, vault.DevKeyFile)
	}
	vopts := vault.Options{OnEvent: n.events.OnEvent, Now: now}
	switch {
	case cfg.StoreIsPostgres():
		// the store first: the vault every node shares lives in it
		if err := n.openCluster(ctx, cfg, provider, vopts, now, logger); err != nil {
			return nil, err
		}
	case vault.Exists(dir):
		n.vault, err = vault.Open(ctx, dir, provider, vopts)
	default:
		n.vault, err = vault.Create(ctx, dir, provider, vopts)
	}
	if err != nil {
		return nil, err
	}
	aopts := audit.Options{
		Now:  now,
		Node: cfg.Audit.Node, Logger: logger,
		WitnessFile: cfg.Audit.WitnessFile, WitnessURL: cfg.Audit.WitnessURL, Retention: cfg.Audit.Retention.Duration(),
		Observer: n.metrics,
	}
	for _, w := range cfg.Audit.Witnesses {
		aopts.Witnesses = append(aopts.Witnesses, audit.WitnessConfig{Name: w.Name, URL: w.URL, VKey: w.VKey})
	}
	if aopts.WitnessQuorum = cfg.Audit.WitnessQuorum; aopts.WitnessQuorum == 0 && len(aopts.Witnesses) > 0 {
		aopts.WitnessQuorum = 1
	}
	if sl := cfg.Audit.Syslog; sl.Addr != "" {
		tc, err := tlsutil.ClientConfig(tlsutil.ClientOptions{CAFile: sl.CAFile, ServerName: sl.ServerName})
		if err != nil {
			return nil, fmt.Errorf("audit.syslog: %w", err)
		}
		aopts.Syslog = &audit.SyslogOptions{Addr: sl.Addr, TLS: tc, Format: sl.Format, FromStart: sl.FromStart}
	}
	if err := n.openAudit(ctx, dir, aopts); err != nil {
		return nil, err
	}
	h, err := token.NewHasher(ctx, n.vault)
	if err != nil {
		return nil, err
	}
	if n.store == nil {
		if n.store, err = sqlite.Open(ctx, filepath.Join(dir, DBFile), sqlite.Options{Now: now}); err != nil {
			return nil, err
		}
	}
	acfg := authorityConfig(cfg, logger)
	if n.fresh != nil {
		acfg.Fresh, acfg.SharedStore = n.fresh.check, true
	}
	acfg.Now = now
	acfg.Recorder = changeRecorder{log: n.audit}
	acfg.Peppers, acfg.Sealer = vault.PepperRing{V: n.vault}, vaultSealer{n.vault}
	acfg.ReplaySealer = replaySealer{n.vault}
	acfg.Cache = n.metrics
	n.auth = authority.New(n.store, h, acfg)
	if err := n.auth.ReloadPeppers(ctx); err != nil { // the older live peppers verify too
		return nil, err
	}
	return n, nil
}

// openAudit opens the audit log of dir (after the vault) with opts plus
// what the vault provides: the checkpoint signing key, the sealer of PHI
// fields (its data key made first: see audit.VaultSealer), and the
// recording of every vault event from now on and of those that waited.
func (n *node) openAudit(ctx context.Context, dir string, opts audit.Options) error {
	if err := n.vault.EnsureDataKey(ctx, vault.PurposeAuditFields); err != nil {
		return err
	}
	opts.Keys = vaultAuditKeys{v: n.vault, dataDir: dir, node: opts.Node, shared: n.pg != nil}
	opts.Sealer = audit.VaultSealer(n.vault)
	var err error
	if n.audit, err = audit.Open(ctx, dir, opts); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := n.events.attach(ctx, n.audit); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// close releases what open opened, in reverse order. The authority must
// have been closed (its leases given back) by the caller.
func (n *node) close() error {
	var errs []error
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.audit != nil {
		errs = append(errs, n.audit.Close())
	}
	if n.vault != nil {
		errs = append(errs, n.vault.Close())
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close()) // releases the lock
		n.lock = nil
	}
	return errors.Join(errs...)
}

// ready reports whether the node can serve: the store answers and the
// audit log can be written (a node that cannot audit must not serve).
func (n *node) ready(ctx context.Context) error {
	if n.fresh != nil { // first: its reason is the one /readyz may tell
		if err := n.fresh.check(); err != nil {
			return err
		}
	}
	if err := n.store.Ping(ctx); err != nil {
		return err
	}
	if n.mirror != nil {
		if err := n.mirror.Status().Err; err != nil {
			return fmt.Errorf("the audit log's copy in the cluster database: %w", err)
		}
	}
	return n.audit.Ready()
}

// bootstrap issues the bootstrap admin token unless one was issued before
// (or always, with again). It returns "" when it issued nothing. A zero
// life is the bootstrap token's: tokens.bootstrap_ttl, no max lifetime.
func (n *node) bootstrap(ctx context.Context, cfg *config.Config, again bool, life RootLifetime, logger *slog.Logger) (string, *token.Record, error) {
	_, err := n.store.GetMeta(ctx, metaBootstrapped)
	switch {
	case err == nil && !again:
		return "", nil, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return "", nil, err
	}
	ttl := life.TTL
	if ttl == 0 {
		ttl = cfg.Tokens.BootstrapTTL.Duration()
	}
	secret, rec, err := n.auth.Bootstrap(ctx, bootstrapSubject, ttl, life.MaxLifetime)
	if err != nil {
		return "", nil, err
	}
	if err := n.store.PutMeta(ctx, metaBootstrapped, []byte(rec.CreatedAt.Format(time.RFC3339Nano))); err != nil {
		return "", nil, err
	}
	logger.Info("bootstrap admin token issued", "token_id", rec.ID, "expires_at", rec.ExpiresAt)
	return secret, rec, nil
}

// BootstrapMaxLifetime is the bootstrap admin token's max lifetime: none,
// so that it really ends after tokens.bootstrap_ttl (it cannot renew
// itself), and so does everything it issues (no token outlives its issuer).
// A deployment that needs admin tokens for longer mints a root token with
// a RootLifetime (phigate init --new-admin-token --max-lifetime D).
const BootstrapMaxLifetime = 0

// RootLifetime is the lifetime of a root admin token minted by Init: its
// TTL (0: tokens.bootstrap_ttl) and its max lifetime (0: none), which
// bounds how far it can renew itself by rotation and how long anything it
// issues can live. The authority checks both against tokens.max_ttl and
// its own bounds.
type RootLifetime struct {
	TTL, MaxLifetime time.Duration
}

// InitOptions configure Init.
type InitOptions struct {
	Config *config.Config
	// MasterKey is the vault's master-key spec (see vault.ParseSpec).
	MasterKey string
	// Dev allows the development master key in the data directory.
	Dev bool
	// NewAdmin issues another bootstrap admin token on an initialised
	// directory.
	NewAdmin bool
	Console  io.Writer
	Logger   *slog.Logger
	// Now is the clock (nil: time.Now), as in Options.
	Now func() time.Time
	// Root is the lifetime of the admin token issued (zero: the bootstrap
	// token's).
	Root RootLifetime
}

// Init initialises the data directory: the vault (pepper, data keys), the
// audit log and its signing key, the store, and a bootstrap admin token,
// whose secret it returns (the only time it exists in plaintext). On an
// initialised directory it issues a token only with NewAdmin, and
// otherwise returns "" and no error.
func Init(ctx context.Context, o InitOptions) (secret string, rec *token.Record, err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = slog.New(RedactLogs(logger.Handler()))
	console := o.Console
	if console == nil {
		console = io.Discard
	}
	n, err := open(ctx, o.Config, o.MasterKey, o.Dev, clockOr(o.Now), console, logger)
	if err != nil {
		return "", nil, err
	}
	defer func() {
		n.auth.Close(ctx)
		if cerr := n.close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return n.bootstrap(ctx, o.Config, o.NewAdmin, o.Root, logger)
}

// clockOr returns now, or time.Now when it is nil.
func clockOr(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

func authorityConfig(cfg *config.Config, logger *slog.Logger) authority.Config {
	return authority.Config{
		DefaultTTL:         cfg.Tokens.DefaultTTL.Duration(),
		MaxTTL:             cfg.Tokens.MaxTTL.Duration(),
		DefaultMaxLifetime: cfg.Tokens.DefaultMaxLifetime.Duration(),
		CacheSize:          cfg.Tokens.CacheSize,
		FlushInterval:      cfg.Tokens.LastUsedFlush.Duration(),
		ResourceTypes:      cfg.Scopes.ResourceTypes(),
		Logger:             logger,
	}
}

// reloadConfig re-reads the config file on SIGHUP and hands it to the
// gateway. A file that does not load or validate changes nothing.
func reloadConfig(ctx context.Context, file string, gw runningGateway, al *audit.Log, log *slog.Logger) *config.Config {
	if file == "" || gw == nil {
		log.Warn("SIGHUP ignored: only the gateway section reloads, and this server runs without a config file or without a gateway (restart it to start one)")
		return nil
	}
	cfg, err := config.Load(file)
	if err == nil {
		err = gw.Reload(cfg)
	}
	e := &audit.Entry{Action: audit.ActionConfigLoaded, Outcome: audit.OutcomeSuccess, Target: file, Reason: "SIGHUP: the gateway section (other sections apply at the next start)"}
	if err != nil {
		e.Outcome, e.Reason = audit.OutcomeFailure, "SIGHUP: "+err.Error()
	}
	if _, aerr := al.Append(ctx, e); aerr != nil {
		log.Error("cannot record the config reload in the audit log", "err", aerr)
	}
	if err != nil {
		log.Error("config reload failed; keeping the running configuration", "file", file, "err", err)
		return nil
	}
	log.Info("config reloaded", "file", file)
	return cfg
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// defence in depth: nothing of token shape reaches the log (a no-op
	// when the CLI's logger already redacts)
	log = slog.New(RedactLogs(log.Handler()))
	console := opts.Console
	if console == nil {
		console = io.Discard
	}
	if !Initialised(cfg.DataDir) && !opts.Dev && !cfg.StoreIsPostgres() { // a cluster's vault is in the database: checked below
		return fmt.Errorf("%s is not initialised: run phigate init --data %s", cfg.DataDir, cfg.DataDir)
	}
	now := clockOr(opts.Now)
	if cfg.StoreIsPostgres() && !opts.Dev {
		ok, err := clusterInitialised(ctx, cfg, now, log)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("the cluster's database is not initialised: run phigate init --config FILE on one node first")
		}
	}
	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	var err error
	if certFile == "" && opts.Dev {
		// The certificate's validity is checked by TLS peers on their
		// wall clocks: it is dated by the wall clock, not by now.
		certFile, keyFile, err = tlsutil.GenerateSelfSigned(filepath.Join(cfg.DataDir, "tls"), nil, time.Now())
		if err != nil {
			return err
		}
	}
	reloader, err := tlsutil.NewReloader(certFile, keyFile, log, time.Now) // how often it looks at the files: the wall clock
	if err != nil {
		return err
	}
	pin := tlsutil.SPKIPin(reloader.Leaf())

	n, err := open(ctx, cfg, opts.MasterKey, opts.Dev, now, console, log)
	if err != nil {
		return err
	}
	defer n.close()
	auth := n.auth
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	go auth.Run(runCtx)
	stopCluster, err := n.followCluster(runCtx, cfg, log)
	if err != nil {
		return err
	}
	defer stopCluster()
	auditView, stopMirror, err := n.mirrorAudit(runCtx, now, log)
	if err != nil {
		return err
	}
	defer stopMirror() // before n.close closes the audit log (defers run in reverse)
	prot, err := startProtections(runCtx, cfg, n, opts.SpaceProbe, now, log)
	if err != nil {
		return err
	}
	mon, err := startMonitor(runCtx, cfg, n, now, log)
	if err != nil {
		return err
	}
	var throttle api.Throttle
	if t := mon.throttle(); t != nil {
		throttle = t
	}

	con, err := newConsole(cfg, n, mon, now, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	addr := ln.Addr().String()
	// the OAuth discovery documents (issue 17): the issuer defaults to the
	// bound admin address, so they are made once it is bound
	issuer := issuerURL(cfg, addr)
	mopts := metadataOptions(cfg, issuer)
	oauthSvc, err := startOAuth(cfg, n, auth, tokenEndpointURL(cfg, issuer), now, log)
	if err != nil {
		ln.Close()
		return err
	}
	serverMeta, err := oauth.ServerMetadata(mopts)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin.issuer: %w", err)
	}
	var smartDoc []byte
	if doc, err := oauth.SMARTConfiguration(mopts); err == nil {
		smartDoc = oauth.JSON(doc)
	}
	aud := &liveAudiences{}
	aud.set(cfg.Gateway)
	apiOpts := api.Options{
		Issuer: issuer, Metadata: oauth.JSON(serverMeta), Audiences: aud.of,
		MaxBody: cfg.Limits.MaxBodyBytes,
		Ready:   n.ready,
		Logger:  log,
		Audit:   n.audit,
		Vault:   n.keyVault(),
		Record:  n.recordDenial,
		// one brute-force detector for both listeners: guesses count
		// wherever they land, and each is also an auth failure it sees
		Throttle:  throttle,
		Storage:   prot.space,
		Alerts:    n.store,
		AlertSink: mon.sink,
		Console:   con,
		Metrics:   n.metrics.Handler(),
		Observer:  n.metrics,
		OAuth:     oauthSvc,
	}
	if auditView != nil {
		apiOpts.AuditSearch = auditView // GET /v1/audit: every node's log, merged by time
	}
	adminAPI := api.New(auth, apiOpts)
	srv := &http.Server{
		Handler:           adminAPI,
		TLSConfig:         tlsutil.ServerConfig(reloader),
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.Duration(),
		ReadTimeout:       cfg.Limits.ReadTimeout.Duration(),
		WriteTimeout:      cfg.Limits.WriteTimeout.Duration(),
		IdleTimeout:       cfg.Limits.IdleTimeout.Duration(),
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	if opts.Dev {
		fmt.Fprintln(console, "phigate is running in DEVELOPMENT mode: self-signed certificate, key files in "+cfg.DataDir+". Not for production.")
	}
	gw, err := startGateway(gatewayDeps{Config: cfg, Dev: opts.Dev, Now: now, Auth: auth, TLS: tlsutil.ServerConfig(reloader), Logger: log, Console: console,
		Audit: n.audit, Vault: n.vault, PreAuth: n.pre, Throttle: mon.throttle(), Monitor: mon.mon, Storage: prot.space, Observer: n.metrics, SMART: smartDoc})
	if err != nil {
		ln.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	msrv, maddr, err := startMetricsListener(cfg, n.metrics, tlsutil.ServerConfig(reloader), log)
	if err != nil {
		ln.Close()
		if gw != nil {
			shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			gw.Shutdown(shCtx)
			cancel()
		}
		return err
	}
	if msrv != nil {
		defer msrv.Close()
		log.Info("metrics served without a token", "listen", maddr)
	}
	tiles, err := startTiles(cfg, n.audit, auth, tlsutil.ServerConfig(reloader), log)
	if err != nil {
		ln.Close()
		if gw != nil {
			shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			gw.Shutdown(shCtx)
			cancel()
		}
		return err
	}
	// Both listeners are bound: only now is the bootstrap token issued,
	// and it is printed in the same write as the addresses (announce).
	// A start that fails before this point has issued nothing.
	gwAddr := ""
	if gw != nil {
		gwAddr = gw.Addr()
	}
	if err := n.announce(ctx, cfg, console, addr, gwAddr, pin, log); err != nil {
		ln.Close()
		if gw != nil {
			shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			gw.Shutdown(shCtx)
			cancel()
		}
		return err
	}
	log.Info("phigate started", "admin", addr, "data_dir", cfg.DataDir, "dev", opts.Dev)
	if _, err := n.audit.Append(ctx, &audit.Entry{Action: audit.ActionServerStarted, Outcome: audit.OutcomeSuccess, Target: addr}); err != nil {
		log.Error("cannot record the server start in the audit log", "err", err)
	}
	if opts.ConfigFile != "" {
		if _, err := n.audit.Append(ctx, &audit.Entry{Action: audit.ActionConfigLoaded, Outcome: audit.OutcomeSuccess, Target: opts.ConfigFile}); err != nil {
			log.Error("cannot record the config in the audit log", "err", err)
		}
	}
	if opts.Ready != nil {
		opts.Ready(addr)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
serve:
	for {
		select {
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin server: %w", err)
			}
			break serve
		case <-hup:
			if c := reloadConfig(ctx, opts.ConfigFile, gw, n.audit, log); c != nil {
				aud.set(c.Gateway) // introspection's aud follows the upstreams
			}
		case <-ctx.Done():
			break serve
		}
	}
	log.Info("phigate shutting down")
	shCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// both listeners at once: each gets the whole grace period; the
	// gateway cuts what is left after it and records those completions
	// before the audit log closes below
	var stopping sync.WaitGroup
	stopping.Go(func() {
		if err := srv.Shutdown(shCtx); err != nil {
			log.Warn("shutdown: requests still in flight were cut", "err", err)
		}
	})
	if gw != nil {
		stopping.Go(func() {
			if err := gw.Shutdown(shCtx); err != nil {
				log.Warn("shutdown: gateway", "err", err)
			}
		})
	}
	if tiles != nil {
		stopping.Go(func() { tiles.Shutdown(shCtx) })
	}
	stopping.Wait()
	stopRun()
	// the grace period may be spent by now (requests had to be cut): the
	// last writes get a few seconds of their own
	finCtx, finCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer finCancel()
	// the findings still queued are acted on (suspensions, alerts) and
	// the baselines saved, while the store and the audit log are open
	if err := mon.mon.Close(finCtx); err != nil {
		log.Warn("shutdown: the monitor's last snapshot failed", "err", err)
	}
	if err := auth.Close(finCtx); err != nil {
		log.Warn("shutdown: flushing token usage failed", "err", err)
	}
	// the counts of the last window of anonymous denials, as summaries
	if err := n.pre.Close(finCtx); err != nil {
		log.Error("shutdown: recording the last summaries of denials failed", "err", err)
	}
	if _, err := n.audit.Append(finCtx, &audit.Entry{Action: audit.ActionServerStopped, Outcome: audit.OutcomeSuccess, Target: addr}); err != nil {
		log.Warn("cannot record the server stop in the audit log", "err", err)
	}
	stopCluster() // before the store closes under it
	if err := n.close(); err != nil {
		return fmt.Errorf("closing: %w", err)
	}
	log.Info("phigate stopped")
	return nil
}
