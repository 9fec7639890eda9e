package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/authority"
	"github.com/phigate/phigate/internal/config"
	"github.com/phigate/phigate/internal/store"
	"github.com/phigate/phigate/internal/store/sqlite"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/tlsutil"
	"github.com/phigate/phigate/internal/token"
)

// memRecorder keeps events in memory; fail, when set, makes Record fail.
type memRecorder struct {
	mu     sync.Mutex
	events []Event
	fail   atomic.Bool
}

var errDiskGone = errors.New("disk gone")

func (m *memRecorder) Record(_ context.Context, ev *Event) error {
	if m.fail.Load() {
		return errDiskGone
	}
	m.mu.Lock()
	m.events = append(m.events, *ev)
	m.mu.Unlock()
	return nil
}

// byRequest returns the events of request id rid, waiting briefly for the
// asynchronous completion when want says so.
func (m *memRecorder) byRequest(t *testing.T, rid string, want int) []Event {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		m.mu.Lock()
		var out []Event
		for _, e := range m.events {
			if e.RequestID == rid {
				out = append(out, e)
			}
		}
		m.mu.Unlock()
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seen is one request an upstream received.
type seen struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

// upstreamServer is a real HTTPS server standing for a PHI API: it counts
// and remembers requests and answers 200 {"ok":true}, unless handler
// overrides.
type upstreamServer struct {
	srv     *httptest.Server
	caFile  string
	count   atomic.Int64
	mu      sync.Mutex
	last    seen
	handler atomic.Pointer[http.HandlerFunc]
}

func newUpstream(t testing.TB) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.count.Add(1)
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last = seen{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)}
		u.mu.Unlock()
		if h := u.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/metadata") {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Write([]byte(testCapabilityStatement))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	u.caFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.srv.Certificate().Raw})
	if err := os.WriteFile(u.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

// testCapabilityStatement is what the test upstreams answer to metadata.
const testCapabilityStatement = `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],` +
	`"rest":[{"mode":"server","security":{"service":[{"text":"the upstream's own"}]},"resource":[{"type":"Patient"}]}]}`

func (u *upstreamServer) setHandler(h http.HandlerFunc) { u.handler.Store(&h) }

func (u *upstreamServer) lastSeen() seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// fixture is a gateway over TLS in front of upstreams, with a real
// authority on SQLite.
type fixture struct {
	st     store.Store
	hasher *token.Hasher
	auth   *authority.Authority
	root   authority.Actor
	clk    *testclock.Clock
	rec    *memRecorder
	gw     *Gateway
	signer *Signer
	addr   string
	client *http.Client
	tlsCfg *tls.Config // client side, trusting the gateway's certificate
	// certFile is the gateway's self-signed certificate (PEM).
	certFile string
	// serverTLS is the gateway's server TLS configuration.
	serverTLS *tls.Config
	fhir      *upstreamServer
	api       *upstreamServer
	cfg       *config.Gateway
	// hsKey is the value of env:TEST_IDENTITY_KEY, generated for each
	// fixture: an HS256 identity key.
	hsKey []byte
}

type fixtureOpts struct {
	mutate  func(*config.Gateway)
	secrets SecretSource
	// recorder replaces the memRecorder (fx.rec then sees nothing).
	recorder Recorder
	// limits, when set, changes the server limits.
	limits func(*config.Limits)
	// options, when set, changes the gateway's Options.
	options func(*fixture, *Options)
}

func newFixture(t testing.TB, fo ...fixtureOpts) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	// One clock for everything the fixture builds (store, authority,
	// gateway); only connection deadlines and the TLS certificate follow
	// the wall clock, as they do in production.
	clk := testclock.New() // a Monday, noon UTC
	st, err := sqlite.Open(ctx, filepath.Join(dir, "t.db"), sqlite.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	h, err := token.NewHasherKey(1, key)
	if err != nil {
		t.Fatal(err)
	}
	a := authority.New(st, h, authority.Config{Now: clk.Now, MaxTTL: 48 * time.Hour})
	t.Cleanup(func() { a.Close(context.Background()) })
	secret, _, err := a.Bootstrap(ctx, "root", 24*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.Verify(ctx, secret, authority.Request{})
	if err != nil || !d.Allowed() {
		t.Fatalf("bootstrap: %v %v", d.Reason, err)
	}

	fx := &fixture{st: st, hasher: h, auth: a, root: authority.ActorOf(d), clk: clk, rec: &memRecorder{}}
	fx.fhir, fx.api = newUpstream(t), newUpstream(t)
	fx.cfg = &config.Gateway{
		Listen: "127.0.0.1:0",
		Limits: config.Default().Gateway.Limits,
		Upstreams: []config.Upstream{
			{
				Name: "ehr", URL: fx.fhir.srv.URL + "/fhir/R4", Prefix: "/fhir/", Kind: config.KindFHIR,
				TLS:        config.UpstreamTLS{CAFile: fx.fhir.caFile},
				Credential: config.Credential{Type: config.CredentialBearer, Value: "env:TEST_EHR_TOKEN"},
				Operations: []config.Operation{
					{Name: "$everything", Resource: "Patient", Scope: "patient/Patient.r"},
					{Name: "$export", Scope: "system/*.rs"},
				},
			},
			{
				Name: "billing", URL: fx.api.srv.URL, Prefix: "/billing/", Kind: config.KindHTTP,
				TLS:        config.UpstreamTLS{CAFile: fx.api.caFile},
				Credential: config.Credential{Type: config.CredentialHeader, Header: "X-Api-Key", Value: "env:TEST_BILLING_KEY"},
				Routes: []config.Route{
					{Match: "GET /invoices/*", Scope: "billing:read"},
					{Match: "GET /invoices/secret", Scope: "billing:admin"},
					{Match: "POST /invoices/", Scope: "billing:write"},
					{Match: "* /upload", Scope: "billing:write"},
				},
			},
			{Name: "records", Prefix: "/records/", Kind: config.KindHTTP, Routes: []config.Route{{Match: "GET /r/*", Scope: "records:read"}}},
		},
	}
	var opt fixtureOpts
	if len(fo) > 0 {
		opt = fo[0]
	}
	if opt.mutate != nil {
		opt.mutate(fx.cfg)
	}
	hsKey := make([]byte, 32)
	rand.Read(hsKey)
	fx.hsKey = []byte(hex.EncodeToString(hsKey)) // the 64 characters are the key
	secrets := opt.secrets
	if secrets == nil {
		secrets = EnvFileSecrets{LookupEnv: func(name string) (string, bool) {
			v, ok := map[string]string{"TEST_EHR_TOKEN": "ehr-secret-credential", "TEST_BILLING_KEY": "billing-api-key",
				"TEST_IDENTITY_KEY": string(fx.hsKey)}[name]
			return v, ok
		}}
	}
	_, pk, _ := ed25519.GenerateKey(rand.Reader)
	fx.signer = NewSigner(pk)

	certFile, keyFile, err := tlsutil.GenerateSelfSigned(filepath.Join(dir, "tls"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	src, err := tlsutil.NewReloader(certFile, keyFile, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	lim := config.Default().Limits
	lim.ReadHeaderTimeout = config.Duration(2 * time.Second)
	if opt.limits != nil {
		opt.limits(&lim)
	}
	var rec Recorder = fx.rec
	if opt.recorder != nil {
		rec = opt.recorder
	}
	gopts := Options{
		Auth: a, Recorder: rec, Signer: fx.signer, Secrets: secrets,
		TLS: tlsutil.ServerConfig(src), Limits: lim, Now: clk.Now,
	}
	if opt.options != nil {
		opt.options(fx, &gopts)
	}
	fx.gw, err = New(ctx, fx.cfg, gopts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fx.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- fx.gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.gw.Shutdown(ctx)
		<-served
	})
	fx.certFile = certFile
	fx.serverTLS = tlsutil.ServerConfig(src)
	certPEM, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	fx.tlsCfg = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	fx.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: fx.tlsCfg}}
	t.Cleanup(fx.client.CloseIdleConnections)
	return fx
}

// token creates a token with spec (subject defaults to "app", TTL 1h).
func (fx *fixture) token(t testing.TB, spec authority.Spec) (string, *token.Record) {
	t.Helper()
	if spec.Subject == "" {
		spec.Subject = "app"
	}
	if spec.TTL == 0 {
		spec.TTL = time.Hour
	}
	secret, rec, err := fx.auth.Create(context.Background(), fx.root, spec)
	if err != nil {
		t.Fatal(err)
	}
	return secret, rec
}

// breakGlassToken stores a break-glass token directly: the bootstrap
// token is not break-glass capable, so attenuation lets no token issue one.
func (fx *fixture) breakGlassToken(t testing.TB, scopes ...string) (string, *token.Record) {
	t.Helper()
	secret, err := token.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := token.NewID(rand.Reader)
	now := fx.clk.Now()
	rec := &token.Record{ID: id, Subject: "er-clinician", Kind: token.KindUser, Scopes: scopes, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), BreakGlass: true, Status: token.StatusActive, StatusChangedAt: now, UpdatedAt: now, Revision: 1}
	sec := token.Secret{Hash: fx.hasher.Sum(secret), PepperVersion: fx.hasher.Version(), TokenID: id, CreatedAt: now}
	if err := fx.st.CreateToken(context.Background(), rec, sec); err != nil {
		t.Fatal(err)
	}
	return secret, rec
}

// reply is a gateway answer.
type reply struct {
	status int
	header http.Header
	body   string
	code   string // error.code of a JSON error
	rid    string
}

type call struct {
	method, path string
	secret       string
	header       map[string]string
	body         string
	contentType  string
}

// dial opens a TLS connection to the gateway, with a 5 s deadline, closed
// at the end of the test.
func (fx *fixture) dial(t testing.TB) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", fx.addr, fx.tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func (fx *fixture) do(t testing.TB, c call) reply {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, "https://"+fx.addr+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := fx.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readReply(resp)
}

// readReply reads and closes resp's body into a reply, with the reason
// code of a refusal: error.code of a JSON error, or the urn:phigate:reason
// coding of an OperationOutcome's issue (a fhir upstream's refusals).
func readReply(resp *http.Response) reply {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	rp := reply{status: resp.StatusCode, header: resp.Header, body: string(b), rid: resp.Header.Get("X-Request-Id")}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Details struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if json.Unmarshal(b, &e) == nil {
		rp.code = e.Error.Code
		if e.ResourceType == "OperationOutcome" && len(e.Issue) == 1 {
			for _, c := range e.Issue[0].Details.Coding {
				if c.System == ReasonSystem {
					rp.code = c.Code
				}
			}
		}
	}
	return rp
}
