package api

import (
	"go/ast"
	"go/token"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/policy"

	"github.com/phigate/phigate/internal/obs"
	"github.com/phigate/phigate/pkg/client"
)

type obsChan chan obs.Request

func (c obsChan) ObserveRequest(o obs.Request) { c <- o }

func newMetricsEnv(t *testing.T, h http.Handler, o Observer) *env {
	t.Helper()
	a, st, secret := testAuthority(t)
	srv := httptest.NewTLSServer(New(a, Options{Ready: st.Ping, Metrics: h, Observer: o}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, auth: a, admin: secret, hc: srv.Client()}
}

func TestMetricsNeedTheMetricsScope(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("phigate_up 1\n")) })
	e := newMetricsEnv(t, h, nil)
	scraper := e.create(client.CreateTokenRequest{Subject: "prometheus", Kind: "service", Scopes: []string{"admin:metrics"}})
	other := e.create(client.CreateTokenRequest{Subject: "ops", Kind: "admin", Scopes: []string{"admin:tokens"}})
	for _, c := range []struct {
		name, bearer string
		status       int
		code         string
	}{
		{"admin:metrics", scraper.Secret, http.StatusOK, ""},
		{"root covers it", e.admin, http.StatusOK, ""},
		{"another admin scope", other.Secret, http.StatusForbidden, "insufficient_scope"},
		{"no token", "", http.StatusUnauthorized, "missing_token"},
	} {
		r := e.do("GET", "/metrics", c.bearer, "", nil)
		if r.status != c.status {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
		}
		if c.code == "" {
			if !strings.Contains(string(r.body), "phigate_up 1") {
				t.Errorf("%s: %s", c.name, r.body)
			}
			continue
		}
		if code, _ := errCode(t, r); code != c.code {
			t.Errorf("%s: code %q, want %q", c.name, code, c.code)
		}
	}
}

func TestMetricsWithoutARegistryAre404(t *testing.T) {
	e := newMetricsEnv(t, nil, nil)
	if r := e.do("GET", "/metrics", e.admin, "", nil); r.status != http.StatusNotFound {
		t.Errorf("%d", r.status)
	}
}

func TestAdminAnswersAreObservedByClassOutcomeAndReason(t *testing.T) {
	ch := make(obsChan, 4)
	e := newMetricsEnv(t, nil, ch)
	for _, c := range []struct {
		method, path, bearer string
		want                 obs.Request
	}{
		{"GET", "/v1/tokens", e.admin, obs.Request{Class: obs.ClassTokenAdmin, Outcome: obs.OutcomeGranted}},
		{"GET", "/v1/tokens/tok_nosuch", e.admin, obs.Request{Class: obs.ClassTokenAdmin, Outcome: obs.OutcomeDenied, Reason: "not_found"}},
		{"GET", "/v1/audit", "", obs.Request{Class: obs.ClassAudit, Outcome: obs.OutcomeDenied, Reason: "missing_token"}},
		{"GET", "/v1/patients/p123/secret", e.admin, obs.Request{Class: obs.ClassUnrouted, Outcome: obs.OutcomeDenied, Reason: "not_found"}},
		{"GET", "/healthz", "", obs.Request{Class: obs.ClassMeta, Outcome: obs.OutcomeGranted}},
	} {
		e.do(c.method, c.path, c.bearer, "", nil)
		got := <-ch
		if got.Listener != obs.ListenerAdmin || got.Class != c.want.Class || got.Outcome != c.want.Outcome || got.Reason != c.want.Reason {
			t.Errorf("%s %s: observed %+v, want %+v", c.method, c.path, got, c.want)
		}
	}
}

// FuzzAdminClass: whatever the path, its class is one of the closed set.
func FuzzAdminClass(f *testing.F) {
	for _, s := range []string{"/v1/tokens", "/v1/tokens/tok_x/rotate", "/v1/tokensX", "/v1/audit/proof", "/console/", "/metrics", "", "/", "/.well-known/x", "/v1/patients/p1"} {
		f.Add(s)
	}
	classes := obs.Classes()
	f.Fuzz(func(t *testing.T, p string) {
		c := adminClass(p)
		ok := false
		for _, k := range classes {
			ok = ok || k == c
		}
		if !ok || (c != obs.ClassUnrouted && strings.Contains(c, p) && len(p) > 8) {
			t.Fatalf("%q: class %q", p, c)
		}
	})
}

// TestEveryErrorCodeIsInReasonCodes reads every `code: "…"` of the
// package's source: each must be in ReasonCodes (or a policy reason's),
// else the metrics would count it as "other".
func TestEveryErrorCodeIsInReasonCodes(t *testing.T) {
	known := map[string]bool{}
	for _, c := range ReasonCodes() {
		known[c] = true
	}
	for r := policy.ReasonNone; r <= policy.Unavailable; r++ {
		known[r.Code()] = true
	}
	fset, files := parseSource(t)
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if id, ok := kv.Key.(*ast.Ident); !ok || id.Name != "code" {
				return true
			}
			if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if c, _ := strconv.Unquote(lit.Value); !known[c] {
					t.Errorf("%s: code %q is not in ReasonCodes", fset.Position(lit.Pos()), c)
				}
			}
			return true
		})
	}
}
