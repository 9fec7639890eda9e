package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/demo"
	"github.com/phigate/phigate/internal/gateway"
	"github.com/phigate/phigate/internal/preauth"
	"github.com/phigate/phigate/internal/vault"
)

// Files of the gateway in the data directory.
const (
	// GatewayAuditFile is where the gateway records its decisions when it
	// runs without the audit log.
	GatewayAuditFile = "gateway-audit.jsonl"
	// GatewayIdentityKeyFile is the Ed25519 key of the identity
	// assertions (keys/, mode 0600).
	GatewayIdentityKeyFile = "gateway-identity.key"
	// demoPrefix is where --dev mounts the demo FHIR server, demoName its
	// upstream name (the audience of its identity assertions).
	demoPrefix = "/fhir/"
	demoName   = "demo-fhir"
)

// demoClash names the configured upstream that keeps the demo FHIR server
// from being mounted ("" when none): one with its name, or whose prefix
// covers /fhir/ (the demo would take those paths from it).
func demoClash(ups []config.Upstream) string {
	for _, u := range ups {
		if u.Name == demoName || strings.HasPrefix(demoPrefix, u.Prefix) {
			return u.Name
		}
	}
	return ""
}

// gatewayRunner is the started gateway: its listener, its recorder and, in
// dev mode, the demo FHIR server behind it.
type gatewayRunner struct {
	gw     *gateway.Gateway
	rec    *gateway.FileRecorder // nil when the audit log records
	audit  *auditRecorder        // nil without the audit log
	addr   string
	listen string
	dev    bool
	demo   *http.Server
	demoUp *config.Upstream
	log    *slog.Logger
	served chan error
}

// startGateway builds and starts the enforcing gateway listener. Outside
// dev mode it starts only when the config names upstreams; in dev mode it
// always starts, with the demo FHIR server (synthetic data) mounted at
// /fhir/ unless the config uses that prefix. A dev server whose admin API
// takes an ephemeral port (tests, benchmarks) gives the gateway one too,
// unless gateway.listen was changed from its default.
func startGateway(d gatewayDeps) (runningGateway, error) {
	cfg := d.Config
	if !d.Dev && len(cfg.Gateway.Upstreams) == 0 {
		return nil, nil
	}
	log := d.Logger.With("component", "gateway")
	listen := cfg.Gateway.Listen
	if d.Dev && listen == config.DefaultGatewayListen && strings.HasSuffix(cfg.Admin.Listen, ":0") {
		listen = "127.0.0.1:0"
	}
	key, err := gateway.LoadOrCreateKey(filepath.Join(cfg.DataDir, "keys", GatewayIdentityKeyFile), nil)
	if err != nil {
		return nil, err
	}
	signer := gateway.NewSigner(key)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("gateway listener: %w", err)
	}
	r := &gatewayRunner{addr: ln.Addr().String(), listen: cfg.Gateway.Listen, dev: d.Dev, log: log, served: make(chan error, 1)}
	fail := func(err error) (runningGateway, error) {
		ln.Close()
		if r.demo != nil {
			r.demo.Close()
		}
		if r.rec != nil {
			r.rec.Close()
		}
		return nil, err
	}
	var rec gateway.Recorder
	where := "the audit log"
	if d.Audit != nil {
		r.audit = &auditRecorder{log: d.Audit, pre: d.PreAuth, lg: log}
		rec = r.audit
	} else {
		where = filepath.Join(cfg.DataDir, GatewayAuditFile)
		if r.rec, err = gateway.NewFileRecorder(where); err != nil {
			return fail(err)
		}
		rec = r.rec
	}
	if d.Dev {
		if clash := demoClash(cfg.Gateway.Upstreams); clash != "" {
			fmt.Fprintf(d.Console, "demo FHIR:   not started: the configured upstream %q already serves %s\n", clash, demoPrefix)
		} else {
			if err := r.startDemo(signer, clockOr(d.Now), log); err != nil {
				return fail(err)
			}
			fmt.Fprintf(d.Console, "demo FHIR:   https://%s%s  (SYNTHETIC DEMO DATA, dev mode only; patients pat-1, pat-2, pat-3)\n", r.addr, demoPrefix)
		}
	}
	gcfg := r.gatewayConfig(cfg)
	gopts := gateway.Options{
		Auth: d.Auth, Recorder: rec, Signer: signer, TLS: d.TLS, Limits: cfg.Limits, Logger: log,
		Secrets: vaultSecrets{v: d.Vault}, Now: d.Now, SMARTConfiguration: d.SMART,
	}
	if d.Throttle != nil {
		gopts.Throttle = d.Throttle
	}
	if d.Monitor != nil {
		gopts.Monitor = d.Monitor
	}
	if d.Storage != nil {
		gopts.Storage = d.Storage
	}
	if d.Observer != nil {
		gopts.Observer = d.Observer
	}
	if d.Vault != nil {
		if err := d.Vault.EnsureDataKey(context.Background(), vault.PurposeContinuation); err != nil {
			return fail(fmt.Errorf("gateway: the continuation key: %w", err))
		}
		gopts.Continuations = vaultContinuations{v: d.Vault}
	}
	r.gw, err = gateway.New(context.Background(), &gcfg, gopts)
	if err != nil {
		return fail(err)
	}
	go func() { r.served <- r.gw.Serve(ln) }()
	log.Info("gateway started", "addr", r.addr, "upstreams", len(gcfg.Upstreams), "decisions", where)
	return r, nil
}

// auditRecorder records the gateway's decisions in the audit log, whose
// Append returns only once the entry is durably committed (the Recorder
// contract). A grant is access.granted (breakglass.used under
// break-glass), a completion access.completed, a refusal access.denied
// (auth.failed when the credential itself was refused).
//
// Completions (RecordAsync) are queued without waiting (AppendAsync): they
// join the next group commit, and nobody waits for them. The refusals of
// requests that never authenticated go to pre (aggregated: see preauth),
// when set, and so do the grants and completions of public requests (the
// capability statement served without a token): anyone can cause those,
// from as many addresses as they hold, and they carry neither PHI nor a
// token, so they are not owed one entry each. This is the one place a
// grant is not durable before its request is forwarded, on purpose.
type auditRecorder struct {
	log *audit.Log
	pre *preauth.Recorder
	lg  *slog.Logger
}

func (a *auditRecorder) Record(ctx context.Context, ev *gateway.Event) error {
	e := auditEntry(ev)
	if a.pre != nil && (ev.Public || ev.Kind == gateway.KindDeny && preauth.Anonymous(e)) {
		return a.pre.Record(ctx, e)
	}
	_, err := a.log.Append(ctx, e)
	return err
}

// RecordSeq implements gateway.SeqRecorder: Record, with the entry's
// sequence number (0 for an aggregated anonymous denial).
func (a *auditRecorder) RecordSeq(ctx context.Context, ev *gateway.Event) (uint64, error) {
	e := auditEntry(ev)
	if a.pre != nil && ev.Kind == gateway.KindDeny && preauth.Anonymous(e) {
		return 0, a.pre.Record(ctx, e)
	}
	return a.log.Append(ctx, e)
}

// RecordAsync implements gateway.AsyncRecorder.
func (a *auditRecorder) RecordAsync(ev *gateway.Event) {
	if ev.Public && a.pre != nil {
		// counted, or (the first of their group in a window) appended
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.pre.Record(ctx, auditEntry(ev)); err != nil {
			a.lg.Error("recording a public completion in the audit log failed", "request_id", ev.RequestID, "err", err)
		}
		return
	}
	if err := a.log.AppendAsync(auditEntry(ev)); err != nil {
		a.lg.Error("recording a completion in the audit log failed", "request_id", ev.RequestID, "err", err)
	}
}

// Close: the completions queued are committed by the audit log's Close.
func (a *auditRecorder) Close() {}

// PublicActorKind is the actor kind of the audit entries of requests the
// gateway serves without a token (Event.Public): their subject is
// gateway.PublicSubject and they name no token.
const PublicActorKind = "public"

func auditEntry(ev *gateway.Event) *audit.Entry {
	path := ev.Path
	if ev.Query != "" {
		path += "?" + ev.Query
	}
	if ev.Page != "" {
		// a continuation: the search it continues, and the upstream page
		path += " (page " + ev.Page + ")"
	}
	e := &audit.Entry{
		Actor:     audit.Actor{TokenID: ev.TokenID, Subject: ev.Subject},
		Source:    audit.Source{IP: ev.SourceIP},
		RequestID: ev.RequestID, Target: ev.Resource, Reason: ev.Reason, Purpose: ev.Purpose,
		BreakGlass: ev.Justification, Patient: ev.Patient,
		Method: ev.Method, Upstream: ev.Upstream, Path: path, Status: ev.Status,
		Interaction: ev.Interaction,
	}
	if ev.Public {
		// served without a token (the capability statement): the entry
		// says so, and names no token
		e.Actor.Kind = PublicActorKind
	}
	switch ev.Kind {
	case gateway.KindGrant:
		e.Action, e.Outcome = audit.ActionAccessGranted, audit.OutcomeSuccess
		if ev.BreakGlass {
			e.Action = audit.ActionBreakGlassUsed
		}
	case gateway.KindComplete:
		e.Action, e.Outcome = audit.ActionAccessCompleted, audit.OutcomeSuccess
		e.Bytes, e.Duration = ev.BytesOut, ev.Duration
		if e.Reason == "" {
			e.Reason = ev.Notes // what the gateway removed or left in the answer
		}
		if ev.Status >= 500 || ev.Status == 499 || ev.Reason == gateway.CodeAborted {
			e.Outcome = audit.OutcomeFailure // cut short, whatever status was sent
		}
	default:
		e.Action, e.Outcome = audit.ActionAccessDenied, audit.OutcomeDenied
		switch {
		case ev.Status == http.StatusUnauthorized:
			e.Action = audit.ActionAuthFailed
		case ev.Status >= 500:
			e.Outcome = audit.OutcomeFailure
		}
	}
	return e
}

// vaultContinuations seals the gateway's continuation handles with the
// vault's data key of purpose continuation (every node of a cluster opens
// the handles of the others, and they survive a restart).
type vaultContinuations struct{ v *vault.Vault }

func (c vaultContinuations) Seal(ctx context.Context, aad, pt []byte) ([]byte, error) {
	return c.v.EncryptField(ctx, vault.PurposeContinuation, aad, pt)
}

func (c vaultContinuations) Open(ctx context.Context, aad, ct []byte) ([]byte, error) {
	return c.v.DecryptField(ctx, vault.PurposeContinuation, aad, ct)
}

// vaultSecrets resolves secret:NAME upstream credentials from the vault
// (phigate secret set NAME), and env: and file: as gateway.EnvFileSecrets.
type vaultSecrets struct{ v *vault.Vault }

func (s vaultSecrets) Resolve(ctx context.Context, ref string) ([]byte, error) {
	name, ok := strings.CutPrefix(ref, "secret:")
	if !ok {
		return gateway.EnvFileSecrets{}.Resolve(ctx, ref)
	}
	if s.v == nil {
		return nil, gateway.ErrNoVault
	}
	b, _, err := s.v.Secret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return bytes.Clone(b), nil // the vault's copy is cached; the gateway wipes its own
}

// startDemo serves the demo FHIR server on a loopback port in plain HTTP
// (the link never leaves this machine; the gateway is told so explicitly)
// and checks every request's identity assertion.
func (r *gatewayRunner) startDemo(signer *gateway.Signer, now func() time.Time, log *slog.Logger) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo FHIR server: %w", err)
	}
	pub := signer.PublicKey()
	h := demo.New(demo.Options{
		BaseURL: "https://" + r.addr + strings.TrimSuffix(demoPrefix, "/"),
		Now:     now,
		Verify: func(req *http.Request) error {
			_, err := gateway.VerifyRequestFor(req, pub, demoName, now())
			return err
		},
	})
	r.demo = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go r.demo.Serve(ln)
	r.demoUp = &config.Upstream{
		Name: demoName, URL: "http://" + ln.Addr().String(), AllowPlainHTTP: true, Prefix: demoPrefix, Kind: config.KindFHIR,
		Operations: []config.Operation{},
		// the demo verifies with the published Ed25519 key, whatever
		// gateway.identity says
		Identity: config.Identity{Alg: config.IdentityEdDSA},
	}
	return nil
}

// gatewayConfig is cfg's gateway section plus, in dev mode, the demo.
func (r *gatewayRunner) gatewayConfig(cfg *config.Config) config.Gateway {
	g := cfg.Gateway
	g.Upstreams = slices.Clone(g.Upstreams)
	if r.demoUp != nil && demoClash(g.Upstreams) == "" {
		g.Upstreams = append(g.Upstreams, *r.demoUp)
	}
	return g
}

func (r *gatewayRunner) Addr() string { return r.addr }

// Reload swaps in cfg's upstreams, routes, trusted proxies and limits. The
// listen address is not changed (that needs a restart).
func (r *gatewayRunner) Reload(cfg *config.Config) error {
	if err := cfg.Validate(r.dev); err != nil {
		return err
	}
	if cfg.Gateway.Listen != r.listen {
		r.log.Warn("gateway.listen changed; the new address takes effect at the next restart", "listening", r.addr, "configured", cfg.Gateway.Listen)
	}
	gcfg := r.gatewayConfig(cfg)
	return r.gw.Reload(context.Background(), &gcfg)
}

func (r *gatewayRunner) Shutdown(ctx context.Context) error {
	err := r.gw.Shutdown(ctx)
	if serr := <-r.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if r.demo != nil {
		err = errors.Join(err, r.demo.Shutdown(ctx))
	}
	if r.audit != nil {
		r.audit.Close()
	}
	if r.rec != nil {
		err = errors.Join(err, r.rec.Close())
	}
	return err
}
