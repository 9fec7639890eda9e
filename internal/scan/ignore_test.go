package scan

import (
	"strings"
	"testing"
)

func TestGitignoreRulesAreHonoured(t *testing.T) {
	var ig Ignore
	if err := ig.Add("", strings.NewReader("# comment\n\n*.log\n!keep.log\nbuild/\n/top.txt\ndocs/**/secret.md\n\\#hash\n")); err != nil {
		t.Fatal(err)
	}
	if err := ig.Add("sub", strings.NewReader("local.yaml\n/only-here\n")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		rel  string
		dir  bool
		want bool
	}{
		{"a.log", false, true},
		{"deep/x/a.log", false, true},
		{"keep.log", false, false},
		{"build", true, true},
		{"build", false, false},
		{"x/build", true, true},
		{"top.txt", false, true},
		{"x/top.txt", false, false},
		{"docs/secret.md", false, true},
		{"docs/a/b/secret.md", false, true},
		{"other/secret.md", false, false},
		{"#hash", false, true},
		{"sub/local.yaml", false, true},
		{"sub/deeper/local.yaml", false, true},
		{"local.yaml", false, false},
		{"sub/only-here", false, true},
		{"sub/x/only-here", false, false},
		{"main.go", false, false},
	}
	for _, c := range cases {
		if got := ig.Match(c.rel, c.dir); got != c.want {
			t.Errorf("Match(%q, dir=%v) = %v, want %v", c.rel, c.dir, got, c.want)
		}
	}
}

func FuzzIgnoreDoesNotPanic(f *testing.F) {
	f.Add("*.log\n!a\n/b/**/c\n", "b/x/c")
	f.Add("[", "x")
	f.Fuzz(func(t *testing.T, rules, rel string) {
		var ig Ignore
		_ = ig.Add("", strings.NewReader(rules))
		ig.Match(rel, false)
		ig.Match(rel, true)
	})
}
