package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/vault"
)

var reBootstrapSecret = regexp.MustCompile(`phi_[0-9A-Za-z]{49}`)

// console is a concurrency-safe Console; with failOn set, a write holding
// it fails (and nothing of it is kept).
type console struct {
	mu     sync.Mutex
	b      bytes.Buffer
	failOn *regexp.Regexp
}

var errConsoleGone = errors.New("console gone")

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failOn != nil && c.failOn.Match(p) {
		return 0, errConsoleGone
	}
	return c.b.Write(p)
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// runDev runs a dev server on dir with the given listen addresses until it
// is serving, then stops it. It returns what it printed and Run's error.
func runDev(t *testing.T, dir, admin, gw string, out *console) error {
	t.Helper()
	return runDevKey(t, dir, admin, gw, "", out)
}

// runDevKey is runDev with the vault's master key spec (empty: the
// development key).
func runDevKey(t *testing.T, dir, admin, gw, masterKey string, out *console) error {
	t.Helper()
	return runDevOpts(t, dir, admin, gw, Options{MasterKey: masterKey, Console: out})
}

// runDevOpts is runDev with opts (its Config, Dev and Ready set here).
func runDevOpts(t *testing.T, dir, admin, gw string, opts Options) error {
	t.Helper()
	cfg := config.Dev(dir)
	cfg.Admin.Listen, cfg.Gateway.Listen = admin, gw
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		opts.Config, opts.Dev, opts.Ready = cfg, true, func(string) { close(ready) }
		errc <- Run(ctx, opts)
	}()
	select {
	case <-ready:
		cancel()
		return <-errc
	case err := <-errc:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the server neither started nor failed")
		return nil
	}
}

// busyPort holds a loopback port for the test's duration.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// A start that fails to bind a listener must not have issued the
// bootstrap admin token, or it is lost: the next successful start prints it.
func TestBootstrapTokenIsIssuedOnlyOnceTheListenersAreBound(t *testing.T) {
	for name, c := range map[string]struct {
		admin, gw func(t *testing.T) string
		want      string
	}{
		"admin port taken":   {busyPort, func(*testing.T) string { return "127.0.0.1:0" }, "admin listener"},
		"gateway port taken": {func(*testing.T) string { return "127.0.0.1:0" }, busyPort, "gateway listener"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			first := &console{}
			err := runDev(t, dir, c.admin(t), c.gw(t), first)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("start on a taken port: %v, want an error naming the %s", err, c.want)
			}
			if reBootstrapSecret.MatchString(first.String()) {
				t.Fatal("a start that failed printed a bootstrap token")
			}
			second := &console{}
			if err := runDev(t, dir, "127.0.0.1:0", "127.0.0.1:0", second); err != nil {
				t.Fatal(err)
			}
			if !reBootstrapSecret.MatchString(second.String()) {
				t.Fatalf("the first successful start printed no bootstrap token:\n%s", second.String())
			}
		})
	}
}

// A start that prints no bootstrap token says whether one is still
// usable and how to get another; a token that could not be shown is
// revoked, and the next start says none is usable.
func TestStartWithoutABootstrapTokenSaysHowToGetOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	lost := &console{failOn: reBootstrapSecret}
	err := runDev(t, dir, "127.0.0.1:0", "127.0.0.1:0", lost)
	if !errors.Is(err, errConsoleGone) || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "--new-admin-token") {
		t.Fatalf("a bootstrap token that cannot be shown: %v", err)
	}
	out := &console{}
	if err := runDev(t, dir, "127.0.0.1:0", "127.0.0.1:0", out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if reBootstrapSecret.MatchString(s) {
		t.Fatal("a bootstrap token was printed on a later start")
	}
	if !strings.Contains(s, "No usable bootstrap admin token") || !strings.Contains(s, "phigate init --data "+dir+" --new-admin-token") {
		t.Fatalf("a start without a usable admin token does not say how to get one:\n%s", s)
	}
	// a fresh directory: the token is printed; the next start says it is
	// still valid and how to get another if it was lost
	dir2 := filepath.Join(t.TempDir(), "data")
	if err := runDev(t, dir2, "127.0.0.1:0", "127.0.0.1:0", &console{}); err != nil {
		t.Fatal(err)
	}
	again := &console{}
	if err := runDev(t, dir2, "127.0.0.1:0", "127.0.0.1:0", again); err != nil {
		t.Fatal(err)
	}
	if s := again.String(); !strings.Contains(s, "Lost it?") || !strings.Contains(s, "--new-admin-token") || reBootstrapSecret.MatchString(s) {
		t.Fatalf("restart with a live bootstrap token:\n%s", s)
	}
	// with a master key of its own, init needs it named
	dir3 := filepath.Join(t.TempDir(), "data")
	kf := filepath.Join(t.TempDir(), "master.key")
	if err := vault.NewKeyFile(kf, nil); err != nil {
		t.Fatal(err)
	}
	if err := runDevKey(t, dir3, "127.0.0.1:0", "127.0.0.1:0", "file:"+kf, &console{}); err != nil {
		t.Fatal(err)
	}
	named := &console{}
	if err := runDevKey(t, dir3, "127.0.0.1:0", "127.0.0.1:0", "file:"+kf, named); err != nil {
		t.Fatal(err)
	}
	if s := named.String(); !strings.Contains(s, "--new-admin-token, with the server's master key") {
		t.Fatalf("restart with a named master key:\n%s", s)
	}
}

// The server gives its clock to everything it builds: a server on a clock
// ten years from the wall clock issues its bootstrap token by that clock.
func TestServerRunsOnTheInjectedClock(t *testing.T) {
	clk := testclock.At(testclock.Start().Add(520 * 7 * 24 * time.Hour))
	out := &console{}
	if err := runDevOpts(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", Options{Console: out, Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`expires ([0-9T:Z-]+)\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no bootstrap expiry in %q", reBootstrapSecret.ReplaceAllString(out.String(), "phi_…"))
	}
	want := clk.Now().Add(config.Default().Tokens.BootstrapTTL.Duration()).UTC().Format(time.RFC3339)
	if m[1] != want {
		t.Fatalf("bootstrap token expires %s, want %s (the injected clock's)", m[1], want)
	}
}
