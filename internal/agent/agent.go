package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// Options are what the agent takes from its environment. Zero fields take
// the process's own (wall clock, os.Getenv, crypto/rand, a discarding
// logger).
type Options struct {
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Rand   io.Reader
	Getenv func(string) string
	Logger *slog.Logger
	// Client are extra options of the admin API client (a user agent, say).
	Client []client.Option
	// Listening, when set, is told the health endpoint's address once it
	// listens.
	Listening func(net.Addr)
}

// Agent keeps the tokens of a Config fresh.
type Agent struct {
	cfg    *Config
	opts   Options
	log    *slog.Logger
	tokens []*managed
}

// managed is one token and what the agent did with it.
type managed struct {
	t   Token
	src *client.RotatingSource
	// start is the secret the agent started from.
	start string

	mu       sync.Mutex
	fileErr  string // the last failure to write the token, state or sink file
	hookErr  string // the last hook failure
	lastHook time.Time
}

// New reads each token's starting secret (the state file when it exists,
// so a restarted agent continues from the newest secret) and prepares its
// rotation. It checks nothing with the server yet: Run does.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	copts := []client.Option{client.WithUserAgent("phigate-agent/1")}
	if len(cfg.Pins) > 0 {
		pins, err := client.ParsePins(strings.Join(cfg.Pins, ","))
		if err != nil {
			return nil, fmt.Errorf("%w: pins: %w", ErrConfig, err)
		}
		copts = append(copts, client.WithPins(pins...))
	}
	if cfg.CAFile != "" {
		copts = append(copts, client.WithCAFile(cfg.CAFile))
	}
	copts = append(copts, opts.Client...)
	for _, t := range cfg.Tokens {
		secret, err := a.startingSecret(t)
		if err != nil {
			return nil, fmt.Errorf("agent: token %s: %w", t.Name, err)
		}
		m := &managed{t: t, start: secret}
		src, err := client.NewRotatingSource(cfg.Addr, secret, client.RotatingOptions{
			Grace: time.Duration(t.Grace), TTL: time.Duration(t.TTL),
			Now: opts.Now, Sleep: opts.Sleep, Rand: opts.Rand,
			Logger:   a.log.With("token", t.Name),
			OnUpdate: func(ctx context.Context, u client.Update) { a.persist(ctx, m, u) },
		}, copts...)
		if err != nil {
			return nil, fmt.Errorf("agent: token %s: %w", t.Name, err)
		}
		m.src = src
		a.tokens = append(a.tokens, m)
	}
	return a, nil
}

func (a *Agent) startingSecret(t Token) (string, error) {
	if t.TokenFile != "" {
		return readSecret(t.TokenFile)
	}
	s, err := readSecret(t.State)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v := a.opts.Getenv(t.TokenEnv)
	if v == "" {
		return "", fmt.Errorf("$%s is empty and the state file %s does not exist", t.TokenEnv, t.State)
	}
	return parseSecret("$"+t.TokenEnv, []byte(v))
}

// Run serves the health endpoint and rotates every token until ctx is
// done (then it returns nil) or until no token can be rotated any more
// (then it returns their errors).
func (a *Agent) Run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var hs *http.Server
	if a.cfg.Health != "" {
		ln, err := net.Listen("tcp", a.cfg.Health)
		if err != nil {
			return fmt.Errorf("agent: health endpoint: %w", err)
		}
		if a.opts.Listening != nil {
			a.opts.Listening(ln.Addr())
		}
		hs = &http.Server{Handler: a.HealthHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 8 << 10,
			ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
		go hs.Serve(ln)
		a.log.Info("health endpoint listening", "addr", ln.Addr().String())
	}
	errs := make([]error, len(a.tokens))
	var wg sync.WaitGroup
	for i, m := range a.tokens {
		wg.Go(func() { errs[i] = m.src.Run(ctx) })
	}
	wg.Wait()
	if hs != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx)
		scancel()
	}
	if parent.Err() != nil {
		return nil // stopped from outside
	}
	var all []error
	for i, err := range errs {
		all = append(all, fmt.Errorf("token %s: %w", a.tokens[i].t.Name, err))
	}
	return errors.Join(all...)
}

// persist writes a new secret where it must go, in the order that keeps a
// restart safe: the token (or state) file first, then the sink, then the
// hooks. A write that fails is retried until it succeeds or ctx is done:
// the secret exists nowhere else.
func (a *Agent) persist(ctx context.Context, m *managed, u client.Update) {
	t := m.t
	state := t.TokenFile
	if state == "" {
		state = t.State
	}
	files := []string{state, t.Sink}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		var err error
		for _, f := range files {
			if holds(f, u.Secret) {
				continue
			}
			if f == state && !u.Rotated && t.TokenFile != "" {
				continue // the token file already holds the secret it was read from
			}
			if err = writeSecret(f, u.Secret); err != nil {
				break
			}
		}
		m.mu.Lock()
		if err != nil {
			m.fileErr = err.Error()
		} else {
			m.fileErr = ""
		}
		m.mu.Unlock()
		if err == nil {
			break
		}
		if u.Rotated {
			a.log.Error("CANNOT WRITE THE NEW TOKEN: retrying; the application keeps the previous secret, which stops working at the end of its grace period",
				"token", t.Name, "previous_not_after", u.PreviousNotAfter, "err", err)
		} else {
			a.log.Error("cannot write the token: retrying", "token", t.Name, "err", err)
		}
		if serr := a.sleep(ctx, wait); serr != nil {
			return
		}
	}
	a.log.Info("token written", "token", t.Name, "sink", t.Sink, "rotated", u.Rotated)
	if u.Rotated {
		a.hooks(ctx, m, u)
	}
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) error {
	if a.opts.Sleep != nil {
		return a.opts.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hooks tells the application that its token changed.
func (a *Agent) hooks(ctx context.Context, m *managed, u client.Update) {
	t := m.t
	var errs []error
	if t.PIDFile != "" {
		if err := signalPID(t.PIDFile, t.Signal); err != nil {
			errs = append(errs, err)
		}
	}
	if len(t.Exec) > 0 {
		if err := a.runHook(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	m.mu.Lock()
	m.lastHook = a.opts.Now()
	m.hookErr = ""
	if err != nil {
		m.hookErr = err.Error()
	}
	m.mu.Unlock()
	if err != nil {
		a.log.Error("ROTATION HOOK FAILED: the application may keep using the previous secret, which stops working at the end of its grace period",
			"token", t.Name, "previous_not_after", u.PreviousNotAfter, "err", err)
	}
}

// maxPIDFile bounds a pid file.
const maxPIDFile = 64

func signalPID(pidFile, signal string) error {
	sig, err := signalOf(signal)
	if err != nil {
		return err
	}
	f, err := os.Open(pidFile)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPIDFile))
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pid file %s does not hold a process id above 1", pidFile)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %v to process %d: %w", sig, pid, err)
	}
	return nil
}

// runHook runs t.Exec (no shell) with PHIGATE_SINK set and the token
// variables removed from its environment; its output is discarded, its
// exit status logged.
func (a *Agent) runHook(ctx context.Context, t Token) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.HookTimeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, t.Exec[0], t.Exec[1:]...)
	env := []string{"PHIGATE_SINK=" + t.Sink}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == client.EnvToken || k == "PHIGATE_SINK" || (t.TokenEnv != "" && k == t.TokenEnv) {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("exec %s: %w", t.Exec[0], err)
	}
	return nil
}
