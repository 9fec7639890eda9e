package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/agent"
	"github.com/phigate/phigate/internal/token"
	"github.com/phigate/phigate/pkg/client"
)

// runningAgent is a `phigate agent` process.
type runningAgent struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	health string
	done   chan error
}

var reHealth = regexp.MustCompile(`health endpoint (http://\S+/healthz)`)

func startAgent(t *testing.T, env []string, args ...string) *runningAgent {
	t.Helper()
	ag := &runningAgent{stderr: &syncBuffer{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	ag.cmd = exec.Command(phigateBinary(t), append([]string{"agent", "--health", "127.0.0.1:0", "-v"}, args...)...)
	ag.cmd.Env = env
	ag.cmd.Stderr = io.MultiWriter(pw, ag.stderr)
	if err := ag.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ag.done <- ag.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { ag.stop(t) })
	found := firstMatch(pr, reHealth)
	select {
	case ag.health = <-found:
	case <-time.After(15 * time.Second):
		t.Fatalf("the agent did not start:\n%s", ag.stderr.String())
	}
	return ag
}

func (ag *runningAgent) stop(t *testing.T) {
	if ag.cmd.ProcessState != nil {
		return
	}
	ag.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-ag.done:
		if err != nil {
			t.Errorf("agent exited with %v:\n%s", err, ag.stderr.String())
		}
	case <-time.After(10 * time.Second):
		ag.cmd.Process.Kill()
		t.Error("agent did not stop on SIGTERM")
	}
}

func (ag *runningAgent) report(t *testing.T) (agent.Health, string) {
	t.Helper()
	resp, err := http.Get(ag.health)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h agent.Health
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("health report %q: %v", b, err)
	}
	return h, string(b)
}

// pinnedHTTP is a net/http client that accepts only the server's pin.
func pinnedHTTP(pin string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // the pin is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if client.SPKIPin(cs.PeerCertificates[0]) != pin {
				return &client.PinMismatchError{Presented: client.SPKIPin(cs.PeerCertificates[0])}
			}
			return nil
		},
	}}}
}

// selfStatus makes GET /v1/tokens/self with secret: the status, or 0 when
// the server could not be reached.
func selfStatus(hc *http.Client, addr, secret string) int {
	req, _ := http.NewRequest("GET", "https://"+addr+"/v1/tokens/self", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAgentKeepsTheApplicationsTokenValidAcrossRotationsAndServerRestarts
// runs the real agent against the real server with a 6 s rotation period:
// an application that reads the sink before every request never sees a
// 401, through many rotations and a server restart; the sink always holds a
// token; once the agent stops, its token dies after the period and grace.
func TestAgentKeepsTheApplicationsTokenValidAcrossRotationsAndServerRestarts(t *testing.T) {
	const (
		period = 6 * time.Second
		grace  = 3 * time.Second
	)
	dir := filepath.Join(t.TempDir(), "data")
	s := startDev(t, dir)
	var it client.IssuedToken
	s.mustJSON(t, s.adm, &it, "token", "create", "--subject", "svc:lab", "--kind", "service", "--scope", "billing:read",
		"--ttl", period.String(), "--grace", grace.String())
	work := t.TempDir()
	tokenFile, sink := filepath.Join(work, "token"), filepath.Join(work, "sink")
	if err := os.WriteFile(tokenFile, []byte(it.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PHIGATE_ADDR=https://"+s.addr, "PHIGATE_PIN="+s.pin, "PHIGATE_TOKEN=")
	ag := startAgent(t, env, "--token-file", tokenFile, "--sink", sink)

	// the application: reads the sink, then calls the API with it
	hc := pinnedHTTP(s.pin)
	var (
		mu       sync.Mutex
		seen     = map[string]bool{it.Secret: true}
		problems []string
		ok       atomic.Int64
		stopApp  = make(chan struct{})
		appDone  = make(chan struct{})
		addr     atomic.Value
	)
	addr.Store(s.addr)
	go func() {
		defer close(appDone)
		for {
			select {
			case <-stopApp:
				return
			case <-time.After(50 * time.Millisecond):
			}
			b, err := os.ReadFile(sink)
			if err != nil {
				if !os.IsNotExist(err) || ok.Load() > 0 {
					mu.Lock()
					problems = append(problems, "reading the sink: "+err.Error())
					mu.Unlock()
				}
				continue
			}
			sec := strings.TrimSpace(string(b))
			if token.Check(sec) != nil || !bytes.HasSuffix(b, []byte("\n")) {
				mu.Lock()
				problems = append(problems, "the sink does not hold a whole token")
				mu.Unlock()
				continue
			}
			mu.Lock()
			seen[sec] = true
			mu.Unlock()
			switch code := selfStatus(hc, addr.Load().(string), sec); code {
			case 200:
				ok.Add(1)
			case 0: // the server is restarting
			default:
				mu.Lock()
				problems = append(problems, "the application got "+http.StatusText(code))
				mu.Unlock()
			}
		}
	}()

	time.Sleep(14 * time.Second)
	// the server restarts on the same address in the middle
	s.stop(t)
	s2 := startDev(t, dir, "--admin-listen", s.addr) // the later flag wins
	if s2.addr != s.addr || s2.pin != s.pin {
		t.Fatalf("restarted on %s (pin %s), want %s (%s)", s2.addr, s2.pin, s.addr, s.pin)
	}
	time.Sleep(14 * time.Second)
	close(stopApp)
	<-appDone

	h, body := ag.report(t)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Fatalf("agent log:\n%s", ag.stderr.String())
	}
	if len(h.Tokens) != 1 || h.Tokens[0].Rotations < 5 || h.Status != "ok" || h.Tokens[0].TokenID != it.ID {
		t.Fatalf("health after 28 s: %s\nagent log:\n%s", body, ag.stderr.String())
	}
	t.Logf("%d rotations, %d secrets seen, %d successful requests", h.Tokens[0].Rotations, len(seen), ok.Load())
	if len(seen) < 5 || ok.Load() < 100 {
		t.Errorf("the application saw %d secrets and made %d successful requests", len(seen), ok.Load())
	}
	// the token file follows the sink: a restarted agent starts from the newest secret
	last, _ := os.ReadFile(sink)
	if tf, _ := os.ReadFile(tokenFile); !bytes.Equal(tf, last) {
		t.Error("the token file does not hold the newest secret")
	}
	for _, f := range []string{sink, tokenFile} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, st.Mode(), err)
		}
	}

	// once the agent stops, its token dies within the period and the grace
	ag.stop(t)
	stopped := time.Now()
	secret := strings.TrimSpace(string(last))
	if code := selfStatus(hc, s.addr, secret); code != 200 {
		t.Fatalf("the newest secret is refused right after the agent stopped: %d", code)
	}
	for time.Since(stopped) < period+grace+time.Second {
		time.Sleep(250 * time.Millisecond)
		if selfStatus(hc, s.addr, secret) == 401 {
			break
		}
	}
	if code := selfStatus(hc, s.addr, secret); code != 401 {
		t.Errorf("the token still works %v after its agent stopped: %d", time.Since(stopped), code)
	}

	// no secret in the agent's log or its health report
	for sec := range seen {
		if strings.Contains(ag.stderr.String(), sec) || strings.Contains(body, sec) {
			t.Error("a secret is in the agent's log or health report")
		}
	}
}
