package route

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func mustParse(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return p
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string // "METHOD /path"
		miss    []string
	}{
		{"GET /invoices/*",
			[]string{"GET /invoices/42", "HEAD /invoices/42", "GET /invoices/a%20b", "GET /invoices/%2A"},
			[]string{"GET /invoices", "GET /invoices/", "GET /invoices/42/pdf", "POST /invoices/42", "GET /Invoices/42", "GET /invoicesx/1"}},
		{"* /invoices",
			[]string{"GET /invoices", "DELETE /invoices", "PATCH /invoices"},
			[]string{"GET /invoices/", "GET /invoices/1", "GET /"}},
		{"POST /invoices/",
			[]string{"POST /invoices/"},
			[]string{"POST /invoices", "POST /invoices/1", "GET /invoices/"}},
		{"GET /a/**",
			[]string{"GET /a", "GET /a/", "GET /a/b", "GET /a/b/c/d"},
			[]string{"GET /", "GET /ab", "GET /b/a"}},
		{"GET /**",
			[]string{"GET /", "GET /x", "GET /x/y/z"},
			[]string{"POST /x"}},
		{"GET /",
			[]string{"GET /"},
			[]string{"GET /a", "GET "}},
		{"GET /a/*/c",
			[]string{"GET /a/b/c", "GET /a/%62/c"},
			[]string{"GET /a//c", "GET /a/b/c/", "GET /a/b", "GET /a/b/d"}},
		{"GET /%/x",
			nil, nil}, // invalid: never matches
		{"GET /a%62",
			nil, nil},
		{"GET /ab",
			[]string{"GET /%61b", "GET /a%62"},
			[]string{"GET /a%6", "GET /a%zz", "GET /ab%", "GET /abc", "GET /a"}},
	}
	for _, tt := range tests {
		p, err := Parse(tt.pattern)
		if err != nil {
			if tt.match != nil {
				t.Errorf("Parse(%q): %v", tt.pattern, err)
			}
			if p.Match("GET", "/") {
				t.Errorf("zero Pattern matched")
			}
			continue
		}
		for _, m := range tt.match {
			method, path, _ := strings.Cut(m, " ")
			if !p.Match(method, path) {
				t.Errorf("%q does not match %q", tt.pattern, m)
			}
		}
		for _, m := range tt.miss {
			method, path, _ := strings.Cut(m, " ")
			if p.Match(method, path) {
				t.Errorf("%q matches %q", tt.pattern, m)
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, s := range map[string]string{
		"no space":           "GET/invoices",
		"lower-case method":  "get /invoices",
		"empty method":       " /invoices",
		"long method":        strings.Repeat("A", 21) + " /x",
		"relative path":      "GET invoices",
		"empty path":         "GET ",
		"double slash":       "GET /a//b",
		"dot segment":        "GET /a/./b",
		"dot-dot segment":    "GET /a/../b",
		"star in literal":    "GET /a*",
		"rest not last":      "GET /**/a",
		"rest then slash":    "GET /a/**/",
		"percent":            "GET /a%20b",
		"question mark":      "GET /a?x=1",
		"space in path":      "GET /a b",
		"two spaces":         "GET  /a",
		"too long":           "GET /" + strings.Repeat("a", MaxLen),
		"too many segments":  "GET " + strings.Repeat("/a", maxSegments+1),
		"backslash":          `GET /a\b`,
		"non-ASCII":          "GET /é",
		"NUL":                "GET /a\x00",
		"method with digits": "GET2 /a",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse(%q) = %v, want ErrInvalid", name, s, err)
		}
	}
}

func TestMostSpecificFirst(t *testing.T) {
	in := []string{"* /**", "GET /invoices/*", "GET /invoices/**", "* /invoices/secret", "GET /invoices/secret", "GET /*/secret", "GET /invoices"}
	want := []string{"GET /invoices/secret", "* /invoices/secret", "GET /invoices/*", "GET /invoices", "GET /invoices/**", "GET /*/secret", "* /**"}
	ps := make([]Pattern, len(in))
	for i, s := range in {
		ps[i] = mustParse(t, s)
	}
	slices.SortFunc(ps, func(a, b Pattern) int { return Compare(&a, &b) })
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("order\n got %q\nwant %q", got, want)
	}
	a, b := mustParse(t, "GET /a/*"), mustParse(t, "GET /a/*")
	if Compare(&a, &b) != 0 {
		t.Error("identical patterns do not compare equal")
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p := mustParse(t, "GET /invoices/*/lines/**")
	if n := testing.AllocsPerRun(100, func() { p.Match("GET", "/invoices/42/lines/a/b") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzParse checks that Parse never panics, that what it accepts it gives
// back as written, and that Match never panics on any path.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"GET /invoices/*", "* /**", "POST /a/", "GET /", "GET /a/**/b", "get /x", "GET /a%2Fb"} {
		f.Add(s, "/invoices/1")
	}
	f.Fuzz(func(t *testing.T, s, path string) {
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("String() = %q, want %q", p.String(), s)
		}
		q := mustParse(t, s)
		if Compare(&p, &q) != 0 {
			t.Fatal("a pattern is not as specific as itself")
		}
		for _, m := range []string{"GET", p.Method()} {
			if p.Match(m, path) && !p.MatchLenient(m, path) {
				t.Fatalf("%q matches %q but not leniently", s, path)
			}
		}
	})
}

func TestMatchLenient(t *testing.T) {
	for pattern, paths := range map[string]map[string][2]bool{ // path: Match, MatchLenient
		"GET /invoices/secret": {
			"/invoices/secret":      {true, true},
			"/invoices/SECRET":      {false, true},
			"/Invoices/Secret":      {false, true},
			"/invoices/%53ecret":    {false, true},
			"/invoices/%73ecret":    {true, true},
			"/invoices/secrets":     {false, false},
			"/invoices/secret/x":    {false, false},
			"/invoices/s%C3%A9cret": {false, false},
			"/invoices/%C5%BFecret": {false, true}, // ſ: OrdinalIgnoreCase takes it for s
			"/Invoices/SECRET":      {false, true},
			// suffix pattern matching (Spring MVC, Rails' (.:format))
			"/invoices/secret.json":    {false, true},
			"/invoices/secret.tar.gz":  {false, true},
			"/invoices/secret.":        {false, true},
			"/invoices/secret%2Ejson":  {false, true},
			"/invoices/secret%2ejson":  {false, true},
			"/invoices/SECRET.JSON":    {false, true},
			"/invoices/secretjson":     {false, false},
			"/invoices/secret-x.json":  {false, false},
			"/invoices/.secret":        {false, false},
			"/invoices/x.secret":       {false, false},
			"/invoices/secret.json/x":  {false, false},
			"/invoices/secret%20.json": {false, true},
			// blanks trimmed (Spring's trimTokens, trimmed-path routing)
			"/invoices/secret%20":           {false, true},
			"/invoices/secret%20%20":        {false, true},
			"/invoices/%20secret":           {false, true},
			"/invoices/secret%C2%A0":        {false, true}, // no-break space
			"/invoices/secret%E2%80%83":     {false, true}, // em space
			"/invoices/sec%20ret":           {false, false},
			"/invoices%20/secret":           {false, true},
			"/invoices.json/secret":         {false, false}, // a suffix only on the last segment
			"/invoices/secret/":             {false, true},  // trailing-slash match
			"/invoices/secret.json/":        {false, true},
			"/invoices/secret//":            {false, false},
			"/invoices/secret%2F":           {false, false}, // (refused earlier: not canonical)
			"/invoices/secret" + "%" + "zz": {false, false},
		},
		"POST /invoices/": {
			"/invoices/":  {true, true},
			"/invoices":   {false, true},
			"/invoices/x": {false, false},
		},
		"GET /files/report.pdf": {
			"/files/report.pdf":     {true, true},
			"/files/report.pdf.bak": {false, true},
			"/files/report":         {false, false},
			"/files/report.pd":      {false, false},
		},
		"GET /a/*/c": {
			"/a/b/c.json": {false, true},
			"/a/b.x/c":    {true, true},
			"/a/b/C/":     {false, true},
		},
		"GET /a/**": {
			"/a.json":    {false, true},
			"/A/b/c":     {false, true},
			"/a/b/c.txt": {true, true},
		},
	} {
		p := mustParse(t, pattern)
		m := p.Method()
		for path, want := range paths {
			if got := [2]bool{p.Match(m, path), p.MatchLenient(m, path)}; got != want {
				t.Errorf("%s, %s: Match, MatchLenient = %v, want %v", pattern, path, got, want)
			}
		}
	}
}

// lenientNaive is lenientEqual by its definition: every way of dropping
// the segment's suffix from a "." (last only) and trimming blanks, each
// compared rune by rune with folding.
func lenientNaive(d, lit string, last bool) bool {
	fold := func(a, b string) bool {
		ra, rb := []rune(a), []rune(b)
		if len(ra) != len(rb) {
			return false
		}
		for i := range ra {
			if !foldRune(ra[i], rb[i]) {
				return false
			}
		}
		return true
	}
	if fold(strings.TrimFunc(d, unicode.IsSpace), lit) {
		return true
	}
	for i := 0; last && i < len(d); i++ {
		if d[i] == '.' && fold(strings.TrimFunc(d[:i], unicode.IsSpace), lit) {
			return true
		}
	}
	return false
}

func FuzzLenientEqual(f *testing.F) {
	f.Fuzz(func(t *testing.T, d, lit string, last bool) {
		if _, err := Parse("GET /" + lit); err != nil || lit == "" || strings.ContainsAny(lit, "/*") {
			return // lit is a literal segment of a valid pattern
		}
		if got, want := lenientEqual(d, lit, last), lenientNaive(d, lit, last); got != want {
			t.Fatalf("lenientEqual(%q, %q, %v) = %v, want %v", d, lit, last, got, want)
		}
		if d == lit && !lenientEqual(d, lit, last) {
			t.Fatalf("%q does not equal itself", d)
		}
	})
}
