package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/internal/scan"
	"github.com/phigate/phigate/pkg/client"
)

// Exit codes of phigate scan (a scanner's convention, unlike the other
// commands): 0 nothing found, 1 tokens found, 2 an error.
const (
	scanClean = 0
	scanFound = 1
	scanError = 2
)

// maxFindings bounds the findings one scan keeps; past it the scan stops
// with an error (exit 2) after printing them.
const maxFindings = 100_000

var errTooManyFindings = fmt.Errorf("scan: stopped after %d findings", maxFindings)

// maxLeaksPerReport is the server's bound on one POST /v1/tokens/leaked.
const maxLeaksPerReport = 1000

// exitErr ends a command with a given exit code; err, if any, is printed.
type exitErr struct {
	code int
	err  error
}

func (e exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitErr) Unwrap() error { return e.err }

// hookMarker identifies a pre-commit hook phigate wrote.
const hookMarker = "# phigate pre-commit hook"

// hookMessage is what a blocked commit prints.
const hookMessage = `phigate: commit blocked: it adds a phigate token (listed above).
Remove it from the files and unstage them. Never put a token in code or
configuration: run the program under the phigate agent (phigate agent), or
give it the token at run time through the SDK (PHIGATE_TOKEN in its
environment). If the token was ever pushed or shared, treat it as leaked:
phigate scan --report revokes it.`

type scanFlags struct {
	git, staged, installHook, force, report bool
}

func (a *cli) scanCmd() *cobra.Command {
	var fl scanFlags
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find phigate tokens in files, directories, standard input or git history",
		Long: `Scan looks for phigate token secrets (a valid checksum is required, so random
look-alikes do not count) and prints where each was found with its public
fingerprint, never the secret. Directories are walked honouring .gitignore;
binary files are skipped. "-", or no path when standard input is not a
terminal, scans standard input (a chat export, a log).

Exit status: 0 nothing found, 1 tokens found, 2 an error.

  phigate scan .                 the work tree
  phigate scan --git .           and every blob in the repository's history
  phigate scan --staged          what the next commit adds (the pre-commit hook)
  phigate scan --install-hook    install that hook in .git/hooks/pre-commit
  phigate scan --report .        and revoke what was found (needs an admin token)`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.runScan(cmd, args, fl) },
	}
	f := cmd.Flags()
	f.BoolVar(&fl.git, "git", false, "also scan every blob of the repository's history")
	f.BoolVar(&fl.staged, "staged", false, "scan the files staged for the next commit (the pre-commit hook)")
	f.BoolVar(&fl.installHook, "install-hook", false, "install a git pre-commit hook that runs phigate scan --staged")
	f.BoolVar(&fl.force, "force", false, "with --install-hook: replace an existing different hook")
	f.BoolVar(&fl.report, "report", false, "report the tokens found to the server, which revokes them (PHIGATE_ADDR, PHIGATE_TOKEN, PHIGATE_PIN)")
	return cmd
}

func (a *cli) runScan(cmd *cobra.Command, args []string, fl scanFlags) error {
	if fl.force && !fl.installHook {
		return usagef("--force only goes with --install-hook")
	}
	if fl.installHook {
		if fl.git || fl.staged || fl.report {
			return usagef("--install-hook takes no other scan flag")
		}
		if len(args) > 1 {
			return usagef("--install-hook takes at most one path, the repository")
		}
		dir := "."
		if len(args) == 1 {
			dir = args[0]
		}
		return a.installHook(cmd, dir, fl.force)
	}
	if fl.staged && (fl.git || len(args) > 1) {
		return usagef("--staged takes no other path than the repository and no --git")
	}
	var c *client.Client
	if fl.report {
		var err error
		if c, err = a.client(); err != nil {
			return exitErr{scanError, err}
		}
	}

	var findings []scan.Finding
	var failures []string
	emit := func(f scan.Finding) error {
		if len(findings) >= maxFindings {
			return errTooManyFindings
		}
		findings = append(findings, f)
		return nil
	}
	opts := scan.Options{OnError: func(path string, err error) {
		failures = append(failures, err.Error())
		fmt.Fprintf(a.stderr, "phigate: scan: %s\n", strings.TrimPrefix(err.Error(), "scan: "))
	}}
	ctx := cmd.Context()
	var err error
	switch {
	case fl.staged:
		dir := "."
		if len(args) == 1 {
			dir = args[0]
		}
		err = scan.Staged(ctx, opts, dir, emit)
	case len(args) == 1 && args[0] == "-" || len(args) == 0 && !fl.git && !isTerminal(cmd.InOrStdin()):
		err = scan.Reader(cmd.InOrStdin(), "-", emit)
		if errors.Is(err, scan.ErrBinary) {
			fmt.Fprintln(a.stderr, "phigate: scan: standard input looks binary (a NUL byte in its first 8 KiB); skipped")
			err = nil
		}
	default:
		if len(args) == 0 {
			args = []string{"."}
		}
		for _, p := range args {
			if p == "-" {
				return usagef("\"-\" (standard input) cannot be mixed with paths")
			}
		}
		err = scan.Paths(ctx, opts, args, emit)
		if err == nil && fl.git {
			for _, p := range args {
				if st, serr := os.Stat(p); serr == nil && st.IsDir() {
					if err = scan.History(ctx, opts, p, emit); err != nil {
						break
					}
				}
			}
		}
	}
	truncated := errors.Is(err, errTooManyFindings)
	if err != nil && !truncated {
		return exitErr{scanError, err}
	}

	var report []client.LeakResult
	if fl.report && len(findings) > 0 {
		if report, err = reportLeaks(cmd, c, findings); err != nil {
			return exitErr{scanError, err}
		}
	}
	if err := a.printFindings(findings, report); err != nil {
		return exitErr{scanError, err}
	}
	switch {
	case truncated:
		return exitErr{scanError, errTooManyFindings}
	case len(failures) > 0:
		return exitErr{scanError, fmt.Errorf("scan: %d path(s) could not be scanned", len(failures))}
	case len(findings) > 0:
		if fl.staged {
			fmt.Fprintln(a.stderr, hookMessage)
		}
		return exitErr{code: scanFound}
	}
	return nil
}

// reportLeaks sends the findings (each distinct secret once, at its first
// place) in batches the server accepts.
func reportLeaks(cmd *cobra.Command, c *client.Client, fs []scan.Finding) ([]client.LeakResult, error) {
	seen := map[string]bool{}
	var leaks []client.Leak
	for _, f := range fs {
		if !seen[f.Secret()] {
			seen[f.Secret()] = true
			leaks = append(leaks, client.Leak{Token: f.Secret(), Where: f.Where()})
		}
	}
	var out []client.LeakResult
	for len(leaks) > 0 {
		n := min(len(leaks), maxLeaksPerReport)
		res, err := c.ReportLeaked(cmd.Context(), leaks[:n])
		if err != nil {
			return nil, fmt.Errorf("reporting the leaked tokens: %w", err)
		}
		if len(res.Results) != n {
			return nil, fmt.Errorf("reporting the leaked tokens: the server answered %d results for %d tokens", len(res.Results), n)
		}
		out = append(out, res.Results...)
		leaks = leaks[n:]
	}
	return out, nil
}

type scanReport struct {
	Findings []scan.Finding `json:"findings"`
	Report   []reportedLeak `json:"report,omitempty"`
}

type reportedLeak struct {
	Fingerprint string            `json:"fingerprint"` // the public one, as in findings
	Where       string            `json:"where"`
	Result      client.LeakResult `json:"result"` // the server's answer
}

func (a *cli) printFindings(fs []scan.Finding, res []client.LeakResult) error {
	var rep []reportedLeak
	if res != nil {
		seen := map[string]bool{}
		for _, f := range fs {
			if !seen[f.Secret()] {
				seen[f.Secret()] = true
				r := res[len(rep)]
				rep = append(rep, reportedLeak{Fingerprint: f.Fingerprint, Where: f.Where(), Result: r})
			}
		}
	}
	if fs == nil {
		fs = []scan.Finding{}
	}
	return a.output(scanReport{Findings: fs, Report: rep}, func(w io.Writer) error {
		var b bytes.Buffer
		for _, f := range fs {
			fmt.Fprintf(&b, "%s: %s\n", safeText(f.Where()), f.Fingerprint)
		}
		for _, r := range rep {
			fmt.Fprintf(&b, "reported %s (%s): %s", r.Fingerprint, safeText(r.Where), safeText(r.Result.Status))
			if r.Result.TokenID != "" {
				fmt.Fprintf(&b, " %s", safeText(r.Result.TokenID))
			}
			b.WriteByte('\n')
		}
		_, err := w.Write(b.Bytes())
		return err
	})
}

// safeText drops control characters (a file name could hold escapes).
func safeText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// installHook writes dir's .git/hooks/pre-commit (the repository's hooks
// directory as git reports it), refusing to replace a different hook
// unless force.
func (a *cli) installHook(cmd *cobra.Command, dir string, force bool) error {
	out, err := gitOutput(cmd, dir, "rev-parse", "--git-path", "hooks")
	if err != nil {
		return exitErr{scanError, fmt.Errorf("--install-hook: %s is not in a git repository: %w", dir, err)}
	}
	hooks := strings.TrimSpace(out)
	if !filepath.IsAbs(hooks) {
		hooks = filepath.Join(dir, hooks)
	}
	exe, err := os.Executable()
	if err != nil {
		return exitErr{scanError, fmt.Errorf("--install-hook: finding the phigate binary: %w", err)}
	}
	script := hookScript(exe)
	p := filepath.Join(hooks, "pre-commit")
	if old, err := os.ReadFile(p); err == nil {
		if string(old) == script {
			fmt.Fprintf(a.stdout, "the phigate pre-commit hook is already installed in %s\n", safeText(p))
			return nil
		}
		if !force {
			return exitErr{scanError, fmt.Errorf("--install-hook: %s already exists and is not this hook; move it away or use --force to replace it", p)}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return exitErr{scanError, fmt.Errorf("--install-hook: %w", err)}
	}
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return exitErr{scanError, fmt.Errorf("--install-hook: %w", err)}
	}
	tmp := p + ".phigate-tmp"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		return exitErr{scanError, fmt.Errorf("--install-hook: %w", err)}
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return exitErr{scanError, fmt.Errorf("--install-hook: %w", err)}
	}
	fmt.Fprintf(a.stdout, "installed the phigate pre-commit hook in %s\n", safeText(p))
	return nil
}

// hookScript is the pre-commit hook that runs exe scan --staged.
func hookScript(exe string) string {
	return "#!/bin/sh\n" + hookMarker + " (phigate scan --install-hook): blocks a commit that adds a phigate token.\n" +
		"exec " + shellQuote(exe) + " scan --staged\n"
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func gitOutput(cmd *cobra.Command, dir string, args ...string) (string, error) {
	c := newGit(cmd, dir, args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func newGit(cmd *cobra.Command, dir string, args ...string) *exec.Cmd {
	return exec.CommandContext(cmd.Context(), "git", append([]string{"-C", dir}, args...)...)
}
