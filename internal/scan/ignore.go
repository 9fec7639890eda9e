package scan

import (
	"bufio"
	"io"
	"path"
	"strings"
)

// maxIgnoreRules bounds the rules read from one .gitignore file.
const maxIgnoreRules = 10000

// ignoreRule is one line of a .gitignore file.
type ignoreRule struct {
	base     string   // directory of the .gitignore, slash-separated, "" at the root
	segs     []string // pattern split on "/" when anchored
	glob     string   // pattern matched against the name when not anchored
	negate   bool
	dirOnly  bool
	anchored bool
}

// Ignore is a small .gitignore matcher for directories outside a git work
// tree: comments, blank lines, "!" negation, a trailing "/" for directories
// only, patterns with a "/" anchored to their file's directory, "*", "?",
// "[…]" and "**" segments. The last matching rule wins; an ignored directory
// is not entered, so nothing inside it can be re-included (as in git).
type Ignore struct{ rules []ignoreRule }

// Add reads the rules of the .gitignore in directory base (slash-separated,
// relative to the walk's root, "" for the root).
func (ig *Ignore) Add(base string, r io.Reader) error {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for n := 0; sc.Scan() && n < maxIgnoreRules; n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rule := ignoreRule{base: base}
		if strings.HasPrefix(line, "!") {
			rule.negate, line = true, line[1:]
		} else if strings.HasPrefix(line, `\`) {
			line = line[1:]
		}
		if strings.HasSuffix(line, "/") {
			rule.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		if line == "" {
			continue
		}
		if strings.Contains(line, "/") {
			rule.anchored = true
			rule.segs = strings.Split(strings.TrimPrefix(line, "/"), "/")
		} else {
			rule.glob = line
		}
		ig.rules = append(ig.rules, rule)
	}
	return sc.Err()
}

// Match reports whether rel (slash-separated, relative to the walk's root)
// is ignored.
func (ig *Ignore) Match(rel string, isDir bool) bool {
	ignored := false
	for i := range ig.rules {
		r := &ig.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		sub := rel
		if r.base != "" {
			if !strings.HasPrefix(rel, r.base+"/") {
				continue
			}
			sub = rel[len(r.base)+1:]
		}
		var ok bool
		if r.anchored {
			ok = matchSegs(r.segs, strings.Split(sub, "/"))
		} else {
			ok, _ = path.Match(r.glob, path.Base(sub))
		}
		if ok {
			ignored = !r.negate
		}
	}
	return ignored
}

// matchSegs matches path segments against pattern segments, "**" standing
// for any number of segments.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for k := 0; k <= len(name); k++ {
				if matchSegs(pat[1:], name[k:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
