package api

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parseSource parses the files of this package (the tests' excepted);
// fset places their nodes.
func parseSource(t *testing.T) (fset *token.FileSet, files []*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset = token.NewFileSet()
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no source files found")
	}
	return fset, files
}

// registeredRoutes extracts the route patterns of the admin mux from the
// package's source: every HandleFunc or Handle call whose pattern is a
// string literal, in the files of this package (the tests' excepted). A
// route registered another way (a pattern that is not a literal) fails
// the test, so that none can escape the coverage check.
func registeredRoutes(t *testing.T) map[string]string {
	t.Helper()
	fset, files := parseSource(t)
	routes := map[string]string{} // "GET /v1/tokens" → file:line
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") || len(call.Args) != 2 {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a route registered with a pattern that is not a string literal: the coverage test cannot see it", fset.Position(call.Pos()))
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			if !strings.Contains(p, " ") {
				p = "GET " + p // a pattern without a method serves every method; GET is what is documented
			}
			routes[p] = fset.Position(call.Pos()).String()
			return true
		})
	}
	if len(routes) == 0 {
		t.Fatal("no routes found in the package's source")
	}
	return routes
}

type openapiDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

func loadDoc(t *testing.T) openapiDoc {
	t.Helper()
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var d openapiDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", d.OpenAPI)
	}
	return d
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

func documentedRoutes(d openapiDoc) map[string]bool {
	out := map[string]bool{}
	for p, item := range d.Paths {
		for m := range item {
			if slices.Contains(httpMethods, m) {
				out[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	return out
}

// notAPI are the path prefixes of routes that are not the JSON API, and
// are not in the OpenAPI document: the web console's HTML pages.
var notAPI = []string{"/console"}

// TestEveryRouteIsDocumentedAndEveryDocumentedRouteExists compares the
// routes registered on the admin mux with the paths of openapi.yaml, and
// names each one missing on either side.
func TestEveryRouteIsDocumentedAndEveryDocumentedRouteExists(t *testing.T) {
	reg, doc := registeredRoutes(t), documentedRoutes(loadDoc(t))
	for r, at := range reg {
		_, p, _ := strings.Cut(r, " ")
		if slices.ContainsFunc(notAPI, func(pre string) bool { return strings.HasPrefix(p, pre) }) {
			continue
		}
		if !doc[r] {
			t.Errorf("route %q (%s) is not documented in openapi.yaml", r, at)
		}
	}
	for r := range doc {
		if _, ok := reg[r]; !ok {
			t.Errorf("openapi.yaml documents %q, which no route registers", r)
		}
	}
}

// TestEveryOperationDocumentsAnErrorAndASuccess: each operation has an
// operationId, a 2xx answer and at least one error answer, and every
// error answer is the Error response.
func TestEveryOperationDocumentsAnErrorAndASuccess(t *testing.T) {
	ids := map[string]string{}
	for p, item := range loadDoc(t).Paths {
		for m, raw := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			var op struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			name := strings.ToUpper(m) + " " + p
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", name)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %s", name, other, op.OperationID)
			}
			ids[op.OperationID] = name
			ok, bad := false, false
			for code, resp := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil || http.StatusText(n) == "" {
					t.Errorf("%s: response %q is not a status code", name, code)
					continue
				}
				if n < 300 {
					ok = true
					continue
				}
				bad = true
				want := `"#/components/responses/Error"`
				if p == "/v1/introspect" || p == "/v1/revoke" || strings.HasPrefix(p, "/v1/oauth/") {
					want = `"#/components/responses/OAuthError"` // RFC 6749 §5.2 there
				}
				if !strings.Contains(string(resp), want) {
					t.Errorf("%s: error %s is not the %s response", name, code, want)
				}
			}
			if !ok || !bad {
				t.Errorf("%s: documents success %v, an error %v; want both", name, ok, bad)
			}
		}
	}
}

// TestOpenAPIIsServedWithoutAToken: the document holds no secret, and a
// client needs it before it holds a token.
func TestOpenAPIIsServedWithoutAToken(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/openapi.json", "", "", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", r.status, r.header.Get("Content-Type"))
	}
	want, _ := OpenAPI()
	if strings.TrimSpace(string(r.body)) != string(want) {
		t.Error("the answer is not the document")
	}
	if _, err := os.Stat("openapi.yaml"); err != nil {
		t.Fatal(err)
	}
}
