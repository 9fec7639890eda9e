package audit

// The witness in these tests is not ours: litewitness, filippo.io/torchwood
// v0.6.1's implementation of C2SP tlog-witness (installed by .ci/run with
// go install; the test looks for litewitness and witnessctl in
// $PHIGATE_TEST_LITEWITNESS_DIR, else in PATH, and skips without them unless
// CI=true). Its Ed25519 key is served by an in-process ssh-agent (x/crypto's
// agent keyring), as litewitness wants; HTTPS is terminated by a reverse
// proxy in front of it, as its README says.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/mod/sumdb/note"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func witnessTool(t *testing.T, name string) string {
	t.Helper()
	if d := os.Getenv("PHIGATE_TEST_LITEWITNESS_DIR"); d != "" {
		return filepath.Join(d, name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (.ci/run installs filippo.io/torchwood/cmd/%s@v0.6.1)", name, name)
		}
		t.Skipf("%s not installed: go install filippo.io/torchwood/cmd/%s@v0.6.1", name, name)
	}
	return p
}

// liteWitness is a running litewitness behind TLS.
type liteWitness struct {
	name, vkey string
	url        string
	client     *http.Client
	db         string
	ctl        string
}

// startLiteWitness starts litewitness named name, knowing the logs of
// these verifier keys.
func startLiteWitness(t *testing.T, name string, logKeys ...string) *liteWitness {
	t.Helper()
	lw, ctl := witnessTool(t, "litewitness"), witnessTool(t, "witnessctl")
	dir, err := os.MkdirTemp("", "lw") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	al, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	go func() {
		for {
			c, err := al.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); agent.ServeAgent(keyring, c) }()
		}
	}()
	sp, _ := ssh.NewPublicKey(pub)
	db := filepath.Join(dir, "w.db")
	w := &liteWitness{name: name, db: db, ctl: ctl}
	// the log must be known before litewitness opens the database
	for _, k := range logKeys {
		w.addLog(t, k)
	}
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := pl.Addr().String()
	pl.Close()
	cmd := exec.Command(lw, "-db", db, "-name", name, "-key", ssh.FingerprintSHA256(sp), "-ssh-agent", sock, "-listen", addr)
	out := &syncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("litewitness did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	u, _ := url.Parse("http://" + addr)
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(u))
	t.Cleanup(front.Close)
	s, err := torchwood.NewCosignatureSigner(name, priv)
	if err != nil {
		t.Fatal(err)
	}
	w.vkey, w.url, w.client = s.Verifier().String(), front.URL, front.Client()
	return w
}

func (w *liteWitness) addLog(t *testing.T, vkey string) {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"add-log", "-db", w.db, "-origin", v.Name()}, {"add-key", "-db", w.db, "-origin", v.Name(), "-key", vkey}} {
		if out, err := exec.Command(w.ctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %v: %v\n%s", args, err, out)
		}
	}
}

func (w *liteWitness) config() WitnessConfig {
	return WitnessConfig{Name: w.name, URL: w.url, VKey: w.vkey}
}

// waitCosigned waits until l serves cp with a cosignature by every one of
// vs, and returns that note.
func waitCosigned(t *testing.T, l *Log, cp *Checkpoint, logs *syncBuf, vs ...note.Verifier) []byte {
	t.Helper()
	logV, _ := NewVerifier(l.PublicKey())
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := l.Cosigned(context.Background(), cp)
		if o, err := note.Open(n, note.VerifierList(append([]note.Verifier{logV}, vs...)...)); err == nil && len(o.Sigs) == 1+len(vs) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d not cosigned: %q\nlogs:\n%s", cp.Size, n, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLiteWitnessCosignsEachCheckpoint: the log submits each checkpoint
// with its consistency proof to litewitness, which cosigns; the
// cosignatures verify with torchwood's cosignature verifier, are kept
// across a reopen, and audit verify's check finds them; a witness whose
// state we lost answers 409 and the log resubmits from its size.
func TestLiteWitnessCosignsEachCheckpoint(t *testing.T) {
	dir := t.TempDir()
	vkey, _, err := InitKeys(dir, "test-node", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := startLiteWitness(t, "witness.example/w1", vkey)
	wv, err := NewCosignatureVerifier(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	ctx := context.Background()
	open := func() *Log {
		l, err := Open(ctx, dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Witnesses: []WitnessConfig{w.config()}, WitnessClient: w.client, WitnessQuorum: 1})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	var cps []*Checkpoint
	for round := 0; round < 3; round++ {
		appendN(t, l, 5+round*300)
		cp, err := l.Checkpoint(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		n := waitCosigned(t, l, cp, logs, wv)
		// torchwood's own reading of the cosignature
		if _, err := note.Open(n, note.VerifierList(wv)); err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	logV, _ := NewVerifier(vkey)
	// the tiles listener serves the cosigned checkpoint
	srv := tileServer(t, l, TileServerOptions{Cosigned: l.Cosigned})
	_, _, served := get(t, srv.Client(), srv.URL+"/checkpoint")
	if o, err := note.Open(served, note.VerifierList(logV, wv)); err != nil || len(o.Sigs) != 2 {
		t.Fatalf("/checkpoint: %v %q", err, served)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	latest := l.latest.Load()
	if got, err := CheckCosignatures(dir, latest, logV, []string{w.vkey}, 1); err != nil || len(got) != 1 {
		t.Fatalf("CheckCosignatures: %v %v", got, err)
	}
	other := startLiteWitness(t, "witness.example/w2") // knows nothing
	_, err = CheckCosignatures(dir, latest, logV, []string{w.vkey, other.vkey}, 2)
	if !errors.Is(err, ErrWitness) || !strings.Contains(err.Error(), "witness.example/w2 (never cosigned)") {
		t.Fatalf("a missing witness must be named: %v", err)
	}

	// reopened: the witness's size is read back from the cosigned file
	l = open()
	appendN(t, l, 3)
	cp, _ := l.Checkpoint(ctx, true)
	waitCosigned(t, l, cp, logs, wv)
	l.Close()
	if strings.Contains(logs.String(), "409") {
		t.Fatalf("a reopened log lost the witness's size:\n%s", logs.String())
	}
	// the cosigned file lost: the witness answers 409 with its size, the
	// log resubmits with a proof from it
	os.Remove(filepath.Join(dir, CosignedFile))
	l = open()
	defer l.Close()
	appendN(t, l, 2)
	cp, _ = l.Checkpoint(ctx, true)
	waitCosigned(t, l, cp, logs, wv)
}

// TestWitnessRefusalsAreReported: a witness that does not know the log
// answers 403 (litewitness: unknown log), and the log says so; the
// checkpoint stays uncosigned and below the quorum, which is alerted.
func TestWitnessRefusalsAreReported(t *testing.T) {
	w := startLiteWitness(t, "witness.example/w3")
	logs := &syncBuf{}
	l, _ := newTestLog(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Witnesses: []WitnessConfig{w.config()}, WitnessClient: w.client, WitnessQuorum: 1})
	appendN(t, l, 4)
	cp, _ := l.Checkpoint(context.Background(), true)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "fewer witnesses than the quorum") {
		if time.Now().After(deadline) {
			t.Fatalf("no alert:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "403") {
		t.Fatalf("the 403 is not reported:\n%s", logs.String())
	}
	if n := l.Cosigned(context.Background(), cp); !bytes.Equal(n, cp.Note) {
		t.Fatal("cosignatures from nowhere")
	}
}

// TestCosignatureVerifierKey: the keys torchwood writes parse; mangled
// ones do not; a signature by another key does not verify.
func TestCosignatureVerifierKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := torchwood.NewCosignatureSigner("w.example/x", priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewCosignatureVerifier(s.Verifier().String())
	if err != nil || v.Name() != "w.example/x" || v.KeyHash() != s.KeyHash() {
		t.Fatalf("%v %v", v, err)
	}
	text := "phigate/n\n3\n" + b64(make([]byte, 32)) + "\n"
	sig, err := s.Sign([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify([]byte(text), sig) {
		t.Fatal("torchwood's cosignature does not verify")
	}
	sig[20] ^= 1
	if v.Verify([]byte(text), sig) {
		t.Fatal("a flipped signature verifies")
	}
	good := s.Verifier().String()
	for _, bad := range []string{"", "w.example/x", good[:len(good)-4], strings.Replace(good, "+", "+0", 1), "other" + good[len("w.example/x"):]} {
		if _, err := NewCosignatureVerifier(bad); !errors.Is(err, ErrBadCosignatureKey) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzNewCosignatureVerifier(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := torchwood.NewCosignatureSigner("w.example/x", priv)
	f.Add(s.Verifier().String())
	f.Add("w.example/x+00000000+BAAA")
	f.Add("a+b+c")
	f.Fuzz(func(t *testing.T, vkey string) {
		v, err := NewCosignatureVerifier(vkey)
		if err != nil {
			if !errors.Is(err, ErrBadCosignatureKey) {
				t.Fatal(err)
			}
			return
		}
		if v.Name() == "" || strings.ContainsAny(v.Name(), " +\n") {
			t.Fatalf("accepted name %q", v.Name())
		}
		if v.Verify([]byte("x"), make([]byte, 72)) {
			t.Fatal("a zero signature verifies")
		}
	})
}

// TestWitnessRefusesAForkedHistory: two copies of one log (same key) grow
// apart; the witness, having cosigned one, answers the other's proof with
// 422, and the log reports it as a differing view.
func TestWitnessRefusesAForkedHistory(t *testing.T) {
	dirA := t.TempDir()
	vkey, _, err := InitKeys(dirA, "fork-node", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := startLiteWitness(t, "witness.example/w4", vkey)
	wv, _ := NewCosignatureVerifier(w.vkey)
	ctx := context.Background()
	logs := &syncBuf{}
	open := func(dir string) *Log {
		l, err := Open(ctx, dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Witnesses: []WitnessConfig{w.config()}, WitnessClient: w.client})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := open(dirA)
	appendN(t, a, 5)
	cp, _ := a.Checkpoint(ctx, true)
	waitCosigned(t, a, cp, logs, wv)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	if out, err := exec.Command("cp", "-a", dirA+"/.", dirB).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	a = open(dirA)
	defer a.Close()
	appendN(t, a, 10)
	cp, _ = a.Checkpoint(ctx, true)
	waitCosigned(t, a, cp, logs, wv)

	b := open(dirB)
	defer b.Close()
	for i := 0; i < 20; i++ {
		e := grant(1000 + i)
		e.Reason = "another history"
		if _, err := b.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	bcp, _ := b.Checkpoint(ctx, true)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "422") {
		if time.Now().After(deadline) {
			t.Fatalf("no 422 reported:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := b.Cosigned(ctx, bcp); !bytes.Equal(n, bcp.Note) {
		t.Fatal("the witness cosigned a forked history")
	}
}
