package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

	"github.com/phigate/phigate/internal/audit"
	"github.com/phigate/phigate/internal/store/postgres/pgtest"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/pkg/client"
)

// The cluster tests start two or three real `phigate server --config`
// processes on loopback against one real PostgreSQL database (a schema of
// their own, see pgtest) and drive them over HTTPS.

// cluster is the shared setup of the nodes: one database, one master key,
// one certificate.
type cluster struct {
	t        *testing.T
	bin      string
	dsn      string
	env      []string
	certFile string
	keyFile  string
	pin      string
	admin    string // the bootstrap admin token
	// tuning of every node's postgres section
	poll, staleness string
	// extra is appended to every node's config
	extra string
}

func newCluster(t *testing.T, dsn string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: phigateBinary(t), dsn: dsn, poll: "100ms", staleness: "1s"}
	mk := make([]byte, 32)
	rand.Read(mk)
	c.env = append(os.Environ(), "PHIGATE_CLUSTER_MK="+base64.StdEncoding.EncodeToString(mk), "PHIGATE_MASTER_KEY=env:PHIGATE_CLUSTER_MK")
	var err error
	if c.certFile, c.keyFile, err = tlsutil.GenerateSelfSigned(t.TempDir(), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.pin = tlsutil.SPKIPin(pair.Leaf)
	return c
}

// config writes node's config file and returns its path.
func (c *cluster) config(node string) string {
	dir := filepath.Join(c.t.TempDir(), node)
	doc := fmt.Sprintf(`data_dir: %s
admin: {listen: "127.0.0.1:0"}
gateway: {listen: "127.0.0.1:0"}
tls: {cert_file: %s, key_file: %s}
store: %q
audit: {node: %s}
postgres: {poll_interval: %s, max_staleness: %s, max_conns: 4}
%s`, dir, c.certFile, c.keyFile, c.dsn, node, c.poll, c.staleness, c.extra)
	f := filepath.Join(c.t.TempDir(), node+".yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return f
}

// init runs phigate init on node's config and keeps the admin token.
func (c *cluster) init(node string) {
	c.t.Helper()
	cmd := exec.Command(c.bin, "init", "--config", c.config(node))
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	m := reToken.FindSubmatch(out)
	if err != nil || m == nil {
		c.t.Fatalf("init: %v\n%s", err, out)
	}
	c.admin = string(m[1])
}

// clusterNode is one running phigate server.
type clusterNode struct {
	name   string
	cmd    *exec.Cmd
	addr   string
	cfg    string
	stderr *syncBuffer
	done   chan error
}

// start starts node (its config written on first use) and waits until it
// serves.
func (c *cluster) start(name string) *clusterNode {
	c.t.Helper()
	return c.startWith(name, c.config(name))
}

// restart starts a stopped or killed node again on its own config and
// data directory.
func (c *cluster) restart(n *clusterNode) *clusterNode {
	c.t.Helper()
	return c.startWith(n.name, n.cfg)
}

func (c *cluster) startWith(name, cfg string) *clusterNode {
	c.t.Helper()
	n := &clusterNode{name: name, cfg: cfg, stderr: &syncBuffer{}, done: make(chan error, 1)}
	n.cmd = exec.Command(c.bin, "server", "--config", n.cfg)
	n.cmd.Env = c.env
	pr, pw := io.Pipe()
	n.cmd.Stdout = pw
	n.cmd.Stderr = n.stderr
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait(); pw.Close() }()
	c.t.Cleanup(func() { n.stop(c.t) })
	addr := firstMatch(pr, reAddr)
	select {
	case n.addr = <-addr:
	case err := <-n.done:
		c.t.Fatalf("node %s exited: %v\n%s", name, err, n.stderr.String())
	case <-time.After(60 * time.Second):
		c.t.Fatalf("node %s did not start:\n%s", name, n.stderr.String())
	}
	return n
}

// stop ends the node with SIGTERM (a clean shutdown).
func (n *clusterNode) stop(t *testing.T) {
	if n.cmd.ProcessState != nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
		t.Errorf("node %s did not stop on SIGTERM", n.name)
	}
}

// kill ends the node with SIGKILL, as a crash would.
func (n *clusterNode) kill() {
	n.cmd.Process.Kill()
	<-n.done
}

// httpClient is pinned to the cluster's certificate.
func (c *cluster) httpClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // the pin is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := client.SPKIPin(cs.PeerCertificates[0]); got != c.pin {
				return fmt.Errorf("pin %s, want %s", got, c.pin)
			}
			return nil
		},
	}}}
}

// call sends one request to n and returns the status and the error code
// of the answer (empty on success).
func (c *cluster) call(hc *http.Client, n *clusterNode, method, path, tok string, body any) (int, string, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "https://"+n.addr+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	var v map[string]any
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v)
	code := ""
	if e, ok := v["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
	}
	return resp.StatusCode, code, v
}

// createToken creates a token on n with the admin token; returns id and secret.
func (c *cluster) createToken(hc *http.Client, n *clusterNode) (id, secret string) {
	c.t.Helper()
	st, code, v := c.call(hc, n, "POST", "/v1/tokens", c.admin, map[string]any{"subject": "svc:cluster", "scopes": []string{"patient/Observation.rs"}, "ttl": "10m"})
	if st != http.StatusCreated && st != http.StatusOK {
		c.t.Fatalf("create on %s: %d %s %v", n.name, st, code, v)
	}
	id, _ = v["id"].(string)
	secret, _ = v["token"].(string)
	if id == "" || secret == "" {
		c.t.Fatalf("create on %s: no id or token in %v", n.name, v)
	}
	return id, secret
}

// eventually retries f until it returns "" or within passes.
func eventually(t *testing.T, within time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterTokenWorksEverywhereAndRevocationReachesEveryNode(t *testing.T) {
	c := newCluster(t, pgtest.Schema(t))
	// a server refuses a database no init has prepared
	cmd := exec.Command(c.bin, "server", "--config", c.config("early"))
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "phigate init") {
		t.Fatalf("server on an uninitialised database: %v\n%s", err, out)
	}
	c.init("node-a")
	a, b, n3 := c.start("node-a"), c.start("node-b"), c.start("node-c")
	hc := c.httpClient()

	id, secret := c.createToken(hc, a)
	for _, n := range []*clusterNode{b, n3, a} {
		if st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil); st != http.StatusOK {
			t.Fatalf("a token created on node-a, used on %s: %d %s", n.name, st, code)
		}
	}
	// every node has it cached now; revoke it on node-b
	if st, code, _ := c.call(hc, b, "DELETE", "/v1/tokens/"+id, c.admin, nil); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("revoke on node-b: %d %s", st, code)
	}
	for _, n := range []*clusterNode{a, n3} {
		eventually(t, 3*time.Second, func() string {
			st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil)
			if st == http.StatusUnauthorized && code == "token_revoked" {
				return ""
			}
			return fmt.Sprintf("revoked on node-b, on %s: %d %s", n.name, st, code)
		})
	}
	// a suspension on node-c reaches node-a, a reinstatement too
	id2, secret2 := c.createToken(hc, n3)
	if st, _, _ := c.call(hc, a, "GET", "/v1/tokens/self", secret2, nil); st != http.StatusOK {
		t.Fatalf("use on node-a: %d", st)
	}
	if st, code, _ := c.call(hc, n3, "POST", "/v1/tokens/"+id2+"/suspend", c.admin, map[string]any{}); st != http.StatusOK {
		t.Fatalf("suspend on node-c: %d %s", st, code)
	}
	eventually(t, 3*time.Second, func() string {
		if st, code, _ := c.call(hc, a, "GET", "/v1/tokens/self", secret2, nil); st != http.StatusUnauthorized || code != "token_suspended" {
			return fmt.Sprintf("suspended on node-c, on node-a: %d %s", st, code)
		}
		return ""
	})
	if st, code, _ := c.call(hc, b, "POST", "/v1/tokens/"+id2+"/reinstate", c.admin, map[string]any{}); st != http.StatusOK {
		t.Fatalf("reinstate on node-b: %d %s", st, code)
	}
	eventually(t, 3*time.Second, func() string {
		if st, code, _ := c.call(hc, a, "GET", "/v1/tokens/self", secret2, nil); st != http.StatusOK {
			return fmt.Sprintf("reinstated on node-b, on node-a: %d %s", st, code)
		}
		return ""
	})
}

func TestClusterRemainingUsesHoldAcrossNodes(t *testing.T) {
	c := newCluster(t, pgtest.Schema(t))
	c.init("node-a")
	a, b := c.start("node-a"), c.start("node-b")
	hc := c.httpClient()
	st, code, v := c.call(hc, a, "POST", "/v1/tokens", c.admin, map[string]any{"subject": "svc:uses", "scopes": []string{"patient/Observation.rs"}, "ttl": "10m", "max_uses": 10})
	if st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create: %d %s %v", st, code, v)
	}
	secret, _ := v["token"].(string)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		n := a
		if i%2 == 1 {
			n = b
		}
		wg.Go(func() {
			if st, _, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil); st == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if got := ok.Load(); got > 10 || got == 0 {
		t.Fatalf("%d uses allowed across two nodes, the token has 10", got)
	}
}

func TestClusterKillOneNodeUnderLoadOthersServe(t *testing.T) {
	c := newCluster(t, pgtest.Schema(t))
	c.init("node-a")
	a, b, n3 := c.start("node-a"), c.start("node-b"), c.start("node-c")
	hc := c.httpClient()
	_, secret := c.createToken(hc, a)

	stop := make(chan struct{})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	for _, n := range []*clusterNode{a, n3} {
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil)
					if st == http.StatusOK {
						served.Add(1)
					} else {
						failed.Add(1)
						t.Errorf("%s under load: %d %s", n.name, st, code)
					}
				}
			})
		}
	}
	// node-b takes load too, then dies
	for range 20 {
		c.call(hc, b, "GET", "/v1/tokens/self", secret, nil)
	}
	time.Sleep(300 * time.Millisecond)
	b.kill()
	before := served.Load()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if served.Load() <= before {
		t.Fatalf("no request served after node-b was killed (served %d before)", before)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed on the surviving nodes", failed.Load())
	}
	// Every node's audit log still verifies, the killed one's included:
	// each on its own disk, and all of them through the cluster's shared
	// copy, after the killed node came back and its mirror caught up with
	// what its journal kept.
	b = c.restart(b)
	if st, code, _ := c.call(hc, b, "GET", "/v1/tokens/self", secret, nil); st != http.StatusOK {
		t.Fatalf("node-b after its restart: %d %s", st, code)
	}
	a.stop(t)
	n3.stop(t)
	b.stop(t)
	verifyNodeLogs(t, c, a, b, n3)
	verifyClusterLogs(t, c, a, b, n3)
}

// verifyClusterLogs runs phigate audit verify --cluster over the shared
// database with the nodes' public keys read from their own data
// directories (an auditor's copies, not the database's), and checks that
// every node's log is there and verifies.
func verifyClusterLogs(t *testing.T, c *cluster, nodes ...*clusterNode) {
	t.Helper()
	var keys []string
	for _, n := range nodes {
		k, err := audit.ReadVerifierKey(dataDirOf(t, n.cfg))
		if err != nil {
			t.Fatalf("the public key of %s: %v", n.name, err)
		}
		keys = append(keys, k)
	}
	keyFile := filepath.Join(t.TempDir(), "nodes.pub")
	if err := os.WriteFile(keyFile, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "audit", "verify", "--cluster", c.dsn, "--keys", keyFile)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify --cluster: %v\n%s", err, out)
	}
	for _, n := range nodes {
		if !strings.Contains(string(out), "phigate/"+n.name) {
			t.Errorf("audit verify --cluster does not report %s:\n%s", n.name, out)
		}
	}
}

// TestClusterPepperRotationReachesEveryNode: a pepper rotated on one node
// (the shared vault) is used by the others: a token hashed under the new
// pepper on node-a verifies on node-b, and an older token still does.
func TestClusterPepperRotationReachesEveryNode(t *testing.T) {
	c := newCluster(t, pgtest.Schema(t))
	c.init("node-a")
	a, b := c.start("node-a"), c.start("node-b")
	hc := c.httpClient()
	_, old := c.createToken(hc, a)
	if st, code, _ := c.call(hc, a, "POST", "/v1/keys/rotate-pepper", c.admin, map[string]any{}); st != http.StatusOK {
		t.Fatalf("rotate-pepper on node-a: %d %s", st, code)
	}
	_, fresh := c.createToken(hc, a)
	eventually(t, 3*time.Second, func() string {
		if st, code, _ := c.call(hc, b, "GET", "/v1/tokens/self", fresh, nil); st != http.StatusOK {
			return fmt.Sprintf("a token under the new pepper, on node-b: %d %s", st, code)
		}
		return ""
	})
	if st, code, _ := c.call(hc, b, "GET", "/v1/tokens/self", old, nil); st != http.StatusOK {
		t.Fatalf("a token under the old pepper, on node-b: %d %s", st, code)
	}
}

// verifyNodeLogs runs phigate audit verify on each node's own log.
func verifyNodeLogs(t *testing.T, c *cluster, nodes ...*clusterNode) {
	t.Helper()
	for _, n := range nodes {
		dir := dataDirOf(t, n.cfg)
		cmd := exec.Command(c.bin, "audit", "verify", "--data", dir, "--json")
		cmd.Env = c.env
		out, err := cmd.CombinedOutput()
		var res struct {
			OK   bool   `json:"ok"`
			Size uint64 `json:"size"`
		}
		if err != nil || json.Unmarshal(out, &res) != nil || !res.OK || res.Size == 0 {
			t.Errorf("audit verify of %s: %v\n%s", n.name, err, out)
		}
	}
}

func dataDirOf(t *testing.T, cfg string) string {
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimPrefix(first, "data_dir: ")
}

// TestClusterFailsClosedWithoutTheDatabaseAndRecovers stops PostgreSQL
// under two nodes: once their view is older than max_staleness they
// answer 503 (cached tokens included) and /readyz says why; when the
// database returns they serve again by themselves.
func TestClusterFailsClosedWithoutTheDatabaseAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	pg := pgtest.StartPrivate(t)
	c := newCluster(t, pg.DSN("disable"))
	c.init("node-a")
	a, b := c.start("node-a"), c.start("node-b")
	hc := c.httpClient()
	_, secret := c.createToken(hc, a)
	for _, n := range []*clusterNode{a, b} {
		if st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil); st != http.StatusOK {
			t.Fatalf("%s: %d %s", n.name, st, code)
		}
	}
	pg.Stop(t)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 10*time.Second, func() string {
			st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil)
			if st == http.StatusServiceUnavailable {
				return ""
			}
			return fmt.Sprintf("%s without its database: %d %s, want 503", n.name, st, code)
		})
		st, _, v := c.call(hc, n, "GET", "/readyz", "", nil)
		msg := fmt.Sprint(v)
		if st != http.StatusServiceUnavailable || !strings.Contains(msg, "cannot reach the database") || !strings.Contains(msg, "bound 1s") {
			t.Errorf("%s /readyz without its database: %d %s, want 503 naming the staleness and its bound", n.name, st, msg)
		}
	}
	pg.Start(t)
	for _, n := range []*clusterNode{a, b} {
		eventually(t, 20*time.Second, func() string {
			if st, code, _ := c.call(hc, n, "GET", "/v1/tokens/self", secret, nil); st != http.StatusOK {
				return fmt.Sprintf("%s after the database returned: %d %s", n.name, st, code)
			}
			if st, _, v := c.call(hc, n, "GET", "/readyz", "", nil); st != http.StatusOK {
				return fmt.Sprintf("%s /readyz after the database returned: %d %v", n.name, st, v)
			}
			return ""
		})
	}
	if !strings.Contains(a.stderr.String(), "refusing every request") {
		t.Errorf("node-a did not log that it refused requests:\n%s", a.stderr.String())
	}
}

// firstMatch reads r line by line to its end and sends the first
// submatch of re found in a line on the channel it returns (buffered:
// later matches are dropped).
func firstMatch(r io.Reader, re *regexp.Regexp) <-chan string {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	return found
}
