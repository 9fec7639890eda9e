package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/scan/scantest"
	"github.com/phigate/phigate/internal/token"
)

// scanned returns the public fingerprints a --json scan printed, sorted.
func scanned(t *testing.T, r result) []string {
	t.Helper()
	var out struct {
		Findings []struct {
			Path        string `json:"path"`
			Line        int    `json:"line"`
			Fingerprint string `json:"fingerprint"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("scan --json output: %v\n%s", err, r.stdout)
	}
	set := map[string]bool{}
	for _, f := range out.Findings {
		set[f.Fingerprint] = true
	}
	var fps []string
	for fp := range set {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	return fps
}

func fingerprints(secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		out = append(out, token.PublicFingerprint(s))
	}
	sort.Strings(out)
	return out
}

func noSecretIn(t *testing.T, r result, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(r.stdout+r.stderr, s) || strings.Contains(r.stdout+r.stderr, s[4:24]) {
			t.Fatal("scan output contains a token secret")
		}
	}
}

func TestScanOfAGeneratedRepositoryFindsExactlyThePlantedTokens(t *testing.T) {
	repo := scantest.New(t)
	all := []string{repo.Code, repo.Config, repo.Untracked, repo.HistoryOnly, repo.Ignored, repo.Binary}

	r := runCLI(t, nil, "", "scan", "--json", repo.Dir)
	if r.code != scanFound {
		t.Fatalf("exit %d, want %d; stderr %s", r.code, scanFound, r.stderr)
	}
	if got, want := scanned(t, r), fingerprints(repo.WorkTree()...); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("work tree scan found %v, want %v", got, want)
	}
	noSecretIn(t, r, all...)

	r = runCLI(t, nil, "", "scan", "--json", "--git", repo.Dir)
	if r.code != scanFound {
		t.Fatalf("--git: exit %d; stderr %s", r.code, r.stderr)
	}
	if got, want := scanned(t, r), fingerprints(repo.WithHistory()...); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("--git scan found %v, want %v", got, want)
	}
	noSecretIn(t, r, all...)

	r = runCLI(t, nil, "", "scan", filepath.Join(repo.Dir, "cmd"))
	if r.code != scanFound || !strings.Contains(r.stdout, "main.go:4: "+token.PublicFingerprint(repo.Code)) {
		t.Fatalf("human output: exit %d\n%s", r.code, r.stdout)
	}
}

func TestScanExitStatusSaysWhatWasFound(t *testing.T) {
	tok := scantest.Generate(t)
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"token on stdin", "chat: here is mine " + tok + " oops\n", []string{"scan"}, scanFound},
		{"dash is stdin", "log " + tok, []string{"scan", "-"}, scanFound},
		{"lookalike only", "x " + scantest.Lookalike(t) + "\n", []string{"scan"}, scanClean},
		{"nothing", "hello\n", []string{"scan", "-"}, scanClean},
		{"missing path", "", []string{"scan", filepath.Join(t.TempDir(), "nope")}, scanError},
		{"dash among paths", "", []string{"scan", "-", "."}, scanError},
		{"force without install-hook", "", []string{"scan", "--force"}, scanError},
		{"not a repository", "", []string{"scan", "--staged", t.TempDir()}, scanError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, nil, c.stdin, c.args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d; stderr %s", r.code, c.code, r.stderr)
			}
			noSecretIn(t, r, tok)
		})
	}
}

func TestScanReportSendsEachFoundTokenWithWhereItWas(t *testing.T) {
	a, b := scantest.Generate(t), scantest.Generate(t)
	api := newFakeAPI(t)
	api.on("POST", "/v1/tokens/leaked", 200, `{"results":[{"fingerprint":"fp_0011223344556677","token_id":"tok_aaaaaaaaaaaaaaaaaaaaaa","status":"revoked"},{"fingerprint":"fp_8899aabbccddeeff","status":"unknown"}]}`)
	dir := t.TempDir()
	scantest.Write(t, dir, "a.txt", "x\n"+a+"\n"+a+"\n")
	scantest.Write(t, dir, "b.yaml", "k: "+b+"\n")

	r := runCLI(t, api.env(), "", "scan", "--report", dir)
	if r.code != scanFound {
		t.Fatalf("exit %d; stderr %s", r.code, r.stderr)
	}
	noSecretIn(t, r, a, b)
	reqs := api.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	var body struct {
		Tokens []struct{ Token, Where string } `json:"tokens"`
	}
	if err := json.Unmarshal(reqs[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Tokens) != 2 || body.Tokens[0].Token != a || body.Tokens[0].Where != filepath.Join(dir, "a.txt")+":2" ||
		body.Tokens[1].Token != b || body.Tokens[1].Where != filepath.Join(dir, "b.yaml")+":1" {
		t.Fatalf("reported %d tokens, not each once with its place", len(body.Tokens))
	}
	if !strings.Contains(r.stdout, "revoked tok_aaaaaaaaaaaaaaaaaaaaaa") || !strings.Contains(r.stdout, ": unknown") {
		t.Fatalf("results not printed:\n%s", r.stdout)
	}

	r = runCLI(t, api.env(), "", "scan", "--json", "--report", dir)
	var out struct {
		Report []struct {
			Fingerprint, Where string
			Result             struct{ Status, TokenID string } `json:"result"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Report) != 2 ||
		out.Report[0].Fingerprint != token.PublicFingerprint(a) || out.Report[0].Result.Status != "revoked" || out.Report[1].Result.Status != "unknown" {
		t.Fatalf("--json report: %v\n%s", err, r.stdout)
	}
	noSecretIn(t, r, a, b)

	// without a token the report is refused before anything is scanned or sent
	r = runCLI(t, map[string]string{}, "", "scan", "--report", dir)
	if r.code != scanError || len(api.requests()) != 2 {
		t.Fatalf("no PHIGATE_TOKEN: exit %d", r.code)
	}
}

func TestInstalledHookBlocksACommitThatAddsAToken(t *testing.T) {
	bin := phigateBinary(t)
	repo := scantest.New(t)
	hook := filepath.Join(repo.Dir, ".git", "hooks", "pre-commit")
	install := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"scan", "--install-hook"}, args...)...)
		cmd.Dir = repo.Dir
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, code := install(); code != scanError || !strings.Contains(out, "--force") {
		t.Fatalf("over a different hook: exit %d: %s", code, out)
	}
	if b, _ := os.ReadFile(hook); string(b) != "#!/bin/sh\necho mine\n" {
		t.Fatal("the existing hook was changed without --force")
	}
	if out, code := install("--force"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, out)
	}
	if out, code := install(); code != 0 || !strings.Contains(out, "already installed") {
		t.Fatalf("reinstall: exit %d: %s", code, out)
	}

	commit := func(msg string) (string, error) {
		cmd := exec.Command("git", "-C", repo.Dir, "commit", "-q", "-m", msg)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid",
			"GIT_AUTHOR_DATE="+repo.Clock.Now().Format("2006-01-02T15:04:05Z07:00"), "GIT_COMMITTER_DATE="+repo.Clock.Now().Format("2006-01-02T15:04:05Z07:00"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	scantest.Git(t, repo.Clock, repo.Dir, "add", "scratch.txt")
	out, err := commit("add the scratch file")
	if err == nil {
		t.Fatal("a commit adding a token went through")
	}
	if !strings.Contains(out, "commit blocked") || !strings.Contains(out, "agent") || !strings.Contains(out, "SDK") ||
		!strings.Contains(out, token.PublicFingerprint(repo.Untracked)) || strings.Contains(out, repo.Untracked) {
		t.Fatalf("hook output does not say what to do (or shows the secret):\n%s", out)
	}
	scantest.Write(t, repo.Dir, "scratch.txt", "no token here, lookalike "+scantest.Lookalike(t)+"\n")
	scantest.Git(t, repo.Clock, repo.Dir, "add", "scratch.txt")
	if out, err := commit("a clean file"); err != nil {
		t.Fatalf("a clean commit was blocked: %v\n%s", err, out)
	}
}

func TestScanKeepsABoundedNumberOfFindings(t *testing.T) {
	var b strings.Builder
	tok := scantest.Generate(t)
	for i := 0; i <= maxFindings; i++ {
		b.WriteString(tok)
		b.WriteByte('\n')
	}
	r := runCLI(t, nil, b.String(), "--json", "scan", "-")
	if r.code != scanError || !strings.Contains(r.stderr, "stopped after") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct{ Findings []json.RawMessage }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Findings) != maxFindings {
		t.Fatalf("printed %d findings (%v), want %d", len(out.Findings), err, maxFindings)
	}
	noSecretIn(t, r, tok)
}
