// Package scantest builds git repositories with planted phigate tokens for
// the scanner's tests, with a real git and commit dates from a
// testclock.Clock. Tokens are generated at run time.
package scantest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/internal/token"
)

// Repo is a generated repository and what was planted in it.
type Repo struct {
	Dir   string
	Clock *testclock.Clock
	// Code, Config, Untracked are in the work tree (Untracked not
	// committed, not ignored); HistoryOnly was committed then removed.
	Code, Config, Untracked, HistoryOnly string
	// Ignored is in a file .gitignore excludes (never committed); Binary
	// is after a NUL in a committed binary file. Neither may be found.
	Ignored, Binary string
}

// WorkTree is what a scan of the work tree must find, sorted.
func (r *Repo) WorkTree() []string { return sorted(r.Code, r.Config, r.Untracked) }

// WithHistory is what a scan of the work tree and history must find, sorted.
func (r *Repo) WithHistory() []string {
	return sorted(r.Code, r.Config, r.Untracked, r.HistoryOnly)
}

func sorted(s ...string) []string { sort.Strings(s); return s }

// Generate returns a fresh token secret.
func Generate(t testing.TB) string {
	t.Helper()
	s, err := token.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Lookalike returns a string of token shape whose checksum is wrong.
func Lookalike(t testing.TB) string {
	s := Generate(t)
	c := byte('0')
	if s[len(s)-1] == '0' {
		c = '1'
	}
	return s[:len(s)-1] + string(c)
}

// Git runs git in dir with a clean configuration and the clock's date.
func Git(t testing.TB, c *testclock.Clock, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	date := c.Add(time.Minute).Format(time.RFC3339)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Write writes content to dir/rel, making directories.
func Write(t testing.TB, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// New builds the repository: needs git on PATH (the test is skipped
// without it).
func New(t testing.TB) *Repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	r := &Repo{Dir: t.TempDir(), Clock: testclock.New(),
		Code: Generate(t), Config: Generate(t), Untracked: Generate(t), HistoryOnly: Generate(t),
		Ignored: Generate(t), Binary: Generate(t)}
	d := r.Dir
	Git(t, r.Clock, d, "init", "-q", "-b", "main")
	Write(t, d, "cmd/app/main.go", "package main\n\n// not a token: "+Lookalike(t)+"\nconst apiToken = \""+r.Code+"\"\n")
	Write(t, d, "deploy/config.yaml", "service:\n  name: app\n  # phi_ but too short: phi_abc\n  token: "+r.Config+"\n")
	Write(t, d, "notes.md", "example lookalikes: "+Lookalike(t)+" and "+Lookalike(t)+"\n")
	Write(t, d, "old/creds.env", "PHIGATE_TOKEN="+r.HistoryOnly+"\n")
	Write(t, d, "logo.bin", "\x89PNG\x00\x00\x00 "+r.Binary+"\n")
	Write(t, d, ".gitignore", "*.log\n")
	Git(t, r.Clock, d, "add", "-A")
	Git(t, r.Clock, d, "commit", "-q", "-m", "first")
	Git(t, r.Clock, d, "rm", "-q", "old/creds.env")
	Write(t, d, "notes.md", "rewritten, another lookalike "+Lookalike(t)+"\n")
	Git(t, r.Clock, d, "commit", "-q", "-am", "remove the credentials")
	Write(t, d, "debug.log", "token="+r.Ignored+"\n")
	Write(t, d, "scratch.txt", "try "+r.Untracked+"\n")
	return r
}
