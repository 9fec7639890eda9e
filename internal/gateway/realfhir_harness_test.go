package gateway

// The harness of the tests against real FHIR servers (realfhir_test.go,
// stockclient_test.go): the gateway fixture in front of three upstreams
// at once,
//
//	/node/    @asymmetrik/node-fhir-server-core (testdata/node/server.js), on Node
//	/hapi/    fhirtest.PagingHAPI: answers as HAPI FHIR documents (_getpages)
//	/offset/  fhirtest.PagingOffset: pages by _offset
//
// all holding the same synthetic seed (fhirtest's data.go, testdata/node/seed.js),
// and the stock client fhir-kit-client (testdata/node/client.mjs).
//
// Node and the npm packages are not part of Go's toolchain: outside CI a
// test that needs them says why and skips; with CI=true it fails, since
// .ci/run installs them (Debian's nodejs and npm, then npm ci in
// testdata/node).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/fhir/fhirtest"
	"github.com/phigate/phigate/internal/tlsutil"
)

// nodeDir holds the Node upstream, the stock-client script and their
// package.json and package-lock.json.
const nodeDir = "testdata/node"

// nodeMissing says what of Node and the npm packages of testdata/node is
// missing ("" when nothing is), and the node binary.
func nodeMissing() (node, missing string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "node is not on PATH"
	}
	for _, pkg := range []string{"@asymmetrik/node-fhir-server-core", "fhir-kit-client"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", pkg, "package.json")); err != nil {
			return "", "the npm package " + pkg + " is not installed in " + nodeDir
		}
	}
	return node, ""
}

// nodeSkipReason is why a test that needs Node skips outside CI.
func nodeSkipReason(missing string) string {
	return "skipped: this runs a real FHIR server (node-fhir-server-core) or the stock client fhir-kit-client on Node, and " +
		missing + "; CI installs them (.ci/run), locally run `npm ci --ignore-scripts` in internal/gateway/" + nodeDir
}

// requireNode skips (outside CI) or fails (CI=true) the test unless node
// and the npm packages of testdata/node are installed.
func requireNode(t testing.TB) string {
	t.Helper()
	node, missing := nodeMissing()
	if missing == "" {
		return node
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s: .ci/run installs it (apt-get install nodejs npm; npm ci in internal/gateway/%s)", missing, nodeDir)
	}
	t.Skip(nodeSkipReason(missing))
	return ""
}

// nodeUpstream is the node-fhir-server-core server, on loopback over TLS.
type nodeUpstream struct {
	URL    string // its FHIR base, https://127.0.0.1:PORT/4_0_1
	CAFile string // its certificate
	stderr *bytes.Buffer
}

// startNodeUpstream starts testdata/node/server.js with the fixture's
// clock at now and waits for the port it prints; it is stopped at the end
// of the test.
func startNodeUpstream(t testing.TB, now time.Time) *nodeUpstream {
	t.Helper()
	node := requireNode(t)
	// The certificate follows the wall clock, as TLS does in production.
	cert, key, err := tlsutil.GenerateSelfSigned(filepath.Join(t.TempDir(), "node-tls"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "FHIR_TLS_CERT="+cert, "FHIR_TLS_KEY="+key,
		"FHIR_NOW="+now.UTC().Format(time.RFC3339), "NODE_ENV=production")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	u := &nodeUpstream{CAFile: cert, stderr: &bytes.Buffer{}}
	cmd.Stderr = u.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PHIGATE-FHIR-NODE-LISTENING "); ok {
				port <- p
			}
		}
	}()
	select {
	case p := <-port:
		u.URL = "https://127.0.0.1:" + p + "/4_0_1"
	case <-exited:
		t.Fatalf("node server.js exited before listening: %s", u.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("node server.js did not listen within 60 s: %s", u.stderr)
	}
	return u
}

// realUpstream is one of the FHIR servers behind the gateway.
type realUpstream struct {
	Name   string // the upstream's name and its prefix /<name>/
	URL    string // its own base
	hapi   *fhirtest.Server
	stderr *bytes.Buffer
}

// Host is the upstream's host:port, which no answer of the gateway may
// name.
func (u realUpstream) Host() string {
	p, _ := url.Parse(u.URL)
	return p.Host
}

// realFixture is the gateway fixture in front of real FHIR servers.
type realFixture struct {
	*fixture
	ups []realUpstream
	// nodeSkipped is why the Node upstream was left out (outside CI).
	nodeSkipped string
}

// gatewayBase is the gateway's base for upstream u, as a client uses it.
func (rf *realFixture) gatewayBase(u realUpstream) string {
	return "https://" + rf.addr + "/" + u.Name + "/"
}

type realOpts struct {
	// node adds the Node upstream (skipped or failed as requireNode says).
	node bool
	// upstream changes each real upstream's configuration.
	upstream func(*config.Upstream)
}

// newRealFixture starts the gateway in front of the HAPI-like and the
// _offset upstreams, and of the Node one when ro.node. Every server runs on
// the fixture's clock.
func newRealFixture(t *testing.T, ro realOpts) *realFixture {
	t.Helper()
	rf := &realFixture{}
	if ro.node {
		if _, missing := nodeMissing(); missing != "" {
			if os.Getenv("CI") == "true" {
				requireNode(t) // fails
			}
			// The Go upstreams still run; the node subtests skip.
			ro.node, rf.nodeSkipped = false, nodeSkipReason(missing)
		}
	}
	rf.fixture = newFixture(t, fixtureOpts{options: func(fx *fixture, _ *Options) {
		add := func(u realUpstream, ca string) {
			up := config.Upstream{Name: u.Name, URL: u.URL, Prefix: "/" + u.Name + "/", Kind: config.KindFHIR,
				TLS:        config.UpstreamTLS{CAFile: ca},
				Credential: config.Credential{Type: config.CredentialBearer, Value: "env:TEST_EHR_TOKEN"}}
			if ro.upstream != nil {
				ro.upstream(&up)
			}
			fx.cfg.Upstreams = append(fx.cfg.Upstreams, up)
			rf.ups = append(rf.ups, u)
		}
		if ro.node {
			n := startNodeUpstream(t, fx.clk.Now())
			add(realUpstream{Name: "node", URL: n.URL, stderr: n.stderr}, n.CAFile)
		}
		for _, p := range []fhirtest.Paging{fhirtest.PagingHAPI, fhirtest.PagingOffset} {
			s := fhirtest.Start(t, fhirtest.Options{Paging: p, Now: fx.clk.Now})
			add(realUpstream{Name: p.String(), URL: s.URL, hapi: s}, s.CAFile)
		}
	}})
	return rf
}

// each runs f for every real upstream, as a subtest named after it.
func (rf *realFixture) each(t *testing.T, f func(t *testing.T, u realUpstream)) {
	if rf.nodeSkipped != "" {
		t.Run("node", func(t *testing.T) { t.Skip(rf.nodeSkipped) })
	}
	for _, u := range rf.ups {
		t.Run(u.Name, func(t *testing.T) {
			f(t, u)
			if t.Failed() && u.stderr != nil && u.stderr.Len() > 0 {
				t.Logf("node server stderr: %s", u.stderr)
			}
		})
	}
}

// clientStep is one step of the stock client's plan (see client.mjs).
type clientStep struct {
	Op           string            `json:"op"`
	Base         string            `json:"base"`
	Token        string            `json:"token,omitempty"`
	ResourceType string            `json:"resourceType,omitempty"`
	ID           string            `json:"id,omitempty"`
	Version      string            `json:"version,omitempty"`
	SearchParams map[string]string `json:"searchParams,omitempty"`
	Follow       bool              `json:"follow,omitempty"`
	Body         any               `json:"body,omitempty"`
	URL          string            `json:"url,omitempty"`
}

// clientResult is what the stock client got for one step.
type clientResult struct {
	OK          bool              `json:"ok"`
	Pages       []json.RawMessage `json:"pages"`
	Body        json.RawMessage   `json:"body"`
	Status      int               `json:"status"`
	ContentType string            `json:"contentType"`
	Data        json.RawMessage   `json:"data"`
	Message     string            `json:"message"`
}

// runStockClient runs fhir-kit-client through the plan, trusting only the
// gateway's certificate: a link that led it straight to an upstream fails
// (and would be a bypass of the gateway).
func (rf *realFixture) runStockClient(t *testing.T, steps []clientStep) []clientResult {
	t.Helper()
	node := requireNode(t)
	plan, err := json.Marshal(steps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+rf.certFile, "NODE_OPTIONS=", "DEBUG=")
	cmd.Stdin = bytes.NewReader(plan)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("client.mjs: %v: %s", err, stderr.String())
		}
		t.Fatal(err)
	}
	var out []clientResult
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out) != len(steps) {
		t.Fatalf("client.mjs output (%v, %d results for %d steps): %s %s", err, len(out), len(steps), stdout.String(), stderr.String())
	}
	return out
}

// fhirBundle is the part of a Bundle the tests read.
type fhirBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Response struct {
			Status string `json:"status"`
		} `json:"response"`
	} `json:"entry"`
}

func (b fhirBundle) link(rel ...string) string {
	for _, l := range b.Link {
		for _, r := range rel {
			if l.Relation == r {
				return l.URL
			}
		}
	}
	return ""
}

func parseFHIRBundle(t *testing.T, body []byte) fhirBundle {
	t.Helper()
	var b fhirBundle
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("not a Bundle (%v): %.400s", err, body)
	}
	return b
}

// outcome is a refusal as the contract shapes it for fhir upstreams.
type outcome struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Issue        []struct {
		Severity string `json:"severity"`
		Code     string `json:"code"`
		Details  struct {
			Coding []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"coding"`
			Text string `json:"text"`
		} `json:"details"`
		Diagnostics string `json:"diagnostics"`
	} `json:"issue"`
}

// reason is the phigate reason code of an OperationOutcome, "" when the
// body is not one.
func (o outcome) reason() string {
	if o.ResourceType != "OperationOutcome" || len(o.Issue) == 0 {
		return ""
	}
	for _, c := range o.Issue[0].Details.Coding {
		if c.System == "urn:phigate:reason" {
			return c.Code
		}
	}
	return ""
}

// checkOutcome checks that body is the contract's OperationOutcome for a
// refusal with reason code want and FHIR issue type issue.
func checkOutcome(t *testing.T, body []byte, want, issue string) {
	t.Helper()
	var o outcome
	if err := json.Unmarshal(body, &o); err != nil {
		t.Errorf("refusal %s is not JSON: %v: %.300s", want, err, body)
		return
	}
	if o.reason() != want {
		t.Errorf("refusal: want an OperationOutcome with reason %s, got %.400s", want, body)
		return
	}
	if o.Issue[0].Severity != "error" || (issue != "" && o.Issue[0].Code != issue) || o.ID == "" ||
		!strings.Contains(o.Issue[0].Diagnostics, o.ID) {
		t.Errorf("refusal %s: issue %+v id %q, want severity error, code %s, the request id in diagnostics", want, o.Issue[0], o.ID, issue)
	}
}

// noUpstreamURL fails when s names an upstream's host:port.
func (rf *realFixture) noUpstreamURL(t *testing.T, what, s string) {
	t.Helper()
	for _, u := range rf.ups {
		if strings.Contains(s, u.Host()) {
			t.Errorf("%s names the upstream %s (%s): %.600s", what, u.Name, u.Host(), s)
		}
	}
}

// upstreamCalls counts the requests the fhirtest upstream u received (-1
// for the Node one, which keeps no log).
func upstreamCalls(u realUpstream) int {
	if u.hapi == nil {
		return -1
	}
	return len(u.hapi.Requests())
}
