package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/pkg/client"
)

// TestReadmeWalkthroughRunsAsWritten runs the README's walk-through on a
// fresh `phigate server --dev`: every ```sh block between the README's
// "<!-- e2e:" and "<!-- e2e: end -->" markers, command by command and in
// order, read from the README itself so that the two cannot drift. The
// comment after a command states its outcome (see parseOutcome): the secret
// or id to keep in a variable, the refusal expected, what the output
// shows. The server's first lines are checked against the output the
// README shows.
//
// What the test does differently from a reader, and only this:
//   - it starts the server itself as `phigate server --dev --data DIR`
//     with --admin-listen and --gateway-listen on ephemeral loopback
//     ports (8443 and 9443 may be taken), and reads the bootstrap token
//     and pin it prints; the README's 127.0.0.1:8443 and 127.0.0.1:9443
//     stand for those addresses, <pin> and <bootstrap token> for what it
//     printed, ./phigate-data for DIR and /tmp/ for a temporary directory;
//   - `go build -o phigate ./cmd/phigate` is the binary the end-to-end
//     tests build, and ./phigate runs it;
//   - curl is not run: each curl command is performed with net/http, with
//     the same method, headers, form body and pinned key (so the test
//     needs no curl);
//   - commands run in a temporary directory, not in the clone.
//
// A command it cannot interpret fails the test, naming the line.
func TestReadmeWalkthroughRunsAsWritten(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	wt, err := parseWalkthrough(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	g := startGatewayDev(t, dir, nil)
	if g.adm == "" {
		t.Fatalf("no bootstrap token printed on a fresh directory:\n%s", g.stdout.String())
	}
	for _, want := range wt.serverOutput {
		if !hasLinePrefix(g.stdout.String(), want) {
			t.Errorf("the README shows the server printing %q; it did not:\n%s", want, g.stdout.String())
		}
	}
	tmp := t.TempDir()
	sh := &walkShell{
		t: t, bin: phigateBinary(t), cwd: t.TempDir(),
		vars:     map[string]string{},
		exported: map[string]bool{},
		rewrite: strings.NewReplacer(
			"127.0.0.1:8443", g.addr, "127.0.0.1:9443", g.gw,
			"<pin>", g.pin, "<bootstrap token>", g.adm,
			"./phigate-data", dir, "/tmp/", tmp+"/"),
		pin: g.pin,
	}
	for _, c := range wt.commands {
		sh.run(c)
	}
	if len(sh.secrets) < 4 {
		t.Fatalf("the walk-through kept %d secrets in variables; the README's annotations were not read", len(sh.secrets))
	}
	// as the walk-through says: without PHIGATE_PIN the CLI says to set it
	// and shows the pin the server presented
	delete(sh.exported, "PHIGATE_PIN")
	out := sh.phigate("without PHIGATE_PIN", []string{"token", "self"}, nil, "", outcome{status: -1})
	for _, want := range []string{"PHIGATE_PIN", "PHIGATE_CACERT", "presented pin " + g.pin} {
		if !strings.Contains(out, want) {
			t.Errorf("token self without PHIGATE_PIN does not say %q:\n%s", want, out)
		}
	}
	// nothing the walk-through wrote holds a secret
	filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, s := range append(sh.secrets, g.adm) {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a token secret", filepath.Base(p))
			}
		}
		return nil
	})
}

// walkthrough is what the README's marked region holds.
type walkthrough struct {
	// serverOutput are the line prefixes of the server's output as the
	// README shows it.
	serverOutput []string
	commands     []walkCmd
}

// walkCmd is one command of a ```sh block, continuation lines joined.
type walkCmd struct {
	line    int    // in README.md, 1-based
	text    string // the command, without its comment
	comment string // the trailing comment, without "#"
}

const (
	walkBegin = "<!-- e2e:"
	walkEnd   = "<!-- e2e: end -->"
)

// parseWalkthrough extracts the walk-through from a README: the ```sh
// blocks between walkBegin and walkEnd, and the output block that follows
// "$ go run ./cmd/phigate server --dev".
func parseWalkthrough(readme string) (*walkthrough, error) {
	lines := strings.Split(readme, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch {
		case begin < 0 && strings.HasPrefix(l, walkBegin) && !strings.HasPrefix(l, walkEnd):
			begin = i
		case begin >= 0 && strings.HasPrefix(l, walkEnd):
			end = i
		}
	}
	if begin < 0 || end < 0 {
		return nil, fmt.Errorf("no %q … %q region", walkBegin, walkEnd)
	}
	wt := &walkthrough{}
	var (
		inBlock, isSh, isServer bool
		pending                 string
		pendingLine             int
	)
	for i := begin + 1; i < end; i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			if inBlock {
				if pending != "" {
					return nil, fmt.Errorf("line %d: a continued command ends the block", pendingLine)
				}
				inBlock = false
				continue
			}
			inBlock, isSh, isServer = true, strings.TrimSpace(l[3:]) == "sh", false
			continue
		}
		if !inBlock {
			continue
		}
		if !isSh {
			if strings.HasPrefix(l, "$ go run ./cmd/phigate server --dev") {
				isServer = true
			} else if isServer && strings.TrimSpace(l) != "" && !strings.Contains(l, "phi_") {
				wt.serverOutput = append(wt.serverOutput, outputKey(l))
			}
			continue
		}
		trimmed := strings.TrimSpace(l)
		if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		code, comment := splitComment(l)
		if strings.HasSuffix(strings.TrimSpace(code), "\\") && comment == "" {
			if pending == "" {
				pendingLine = i + 1
			}
			pending += strings.TrimSuffix(strings.TrimSpace(code), "\\") + " "
			continue
		}
		if pending == "" {
			pendingLine = i + 1
		}
		wt.commands = append(wt.commands, walkCmd{line: pendingLine, text: strings.TrimSpace(pending + code), comment: strings.TrimSpace(comment)})
		pending = ""
	}
	if len(wt.serverOutput) == 0 || len(wt.commands) == 0 {
		return nil, fmt.Errorf("the region holds %d server output lines and %d commands", len(wt.serverOutput), len(wt.commands))
	}
	return wt, nil
}

// outputKey is what identifies a line of the server's output: its first
// two words, leaving out what differs from run to run (addresses, the
// values of NAME=value).
func outputKey(l string) string {
	var kept []string
	for _, w := range strings.Fields(l) {
		if len(kept) == 2 {
			break
		}
		if i := strings.IndexByte(w, '='); i >= 0 {
			w = w[:i+1]
		}
		if !strings.Contains(w, "://") {
			kept = append(kept, w)
		}
	}
	return strings.Join(kept, " ")
}

func hasLinePrefix(out, prefix string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return true
		}
	}
	return false
}

// splitComment splits a shell line at its first "#" that is outside
// quotes and starts a word.
func splitComment(l string) (code, comment string) {
	var quote byte
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' && i+1 < len(l) {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\\' && i+1 < len(l):
			i++
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return l[:i], l[i+1:]
		}
	}
	return l, ""
}

// word is a shell word, or an unquoted operator ("|" or ">").
type word struct {
	s  string
	op bool
}

var errUnterminated = errors.New("unterminated quote")

// splitWords splits a command line into words the way a POSIX shell does
// for the subset the README uses: '…' literal; "…" with $NAME, ${NAME},
// \" \\ \$ inside; unquoted $NAME and backslash escapes; unquoted | and >
// as operators. lookup gives variables; an unset one is empty.
func splitWords(s string, lookup func(string) string) ([]word, error) {
	var (
		out  []word
		cur  strings.Builder
		have bool
	)
	flush := func() {
		if have {
			out = append(out, word{s: cur.String()})
			cur.Reset()
			have = false
		}
	}
	expand := func(i int) int { // s[i] == '$'; returns the index after the name
		j := i + 1
		if j < len(s) && s[j] == '{' {
			k := strings.IndexByte(s[j:], '}')
			if k < 0 {
				cur.WriteByte('$')
				return i + 1
			}
			cur.WriteString(lookup(s[j+1 : j+k]))
			return j + k + 1
		}
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if j == i+1 {
			cur.WriteByte('$')
			return j
		}
		cur.WriteString(lookup(s[i+1 : j]))
		return j
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
			i++
		case c == '|' || c == '>':
			flush()
			out = append(out, word{s: string(c), op: true})
			i++
		case c == '\'':
			k := strings.IndexByte(s[i+1:], '\'')
			if k < 0 {
				return nil, errUnterminated
			}
			cur.WriteString(s[i+1 : i+1+k])
			have = true
			i += k + 2
		case c == '"':
			have = true
			i++
			for {
				if i >= len(s) {
					return nil, errUnterminated
				}
				d := s[i]
				if d == '"' {
					i++
					break
				}
				switch {
				case d == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`, s[i+1]) >= 0:
					cur.WriteByte(s[i+1])
					i += 2
				case d == '$':
					i = expand(i)
				default:
					cur.WriteByte(d)
					i++
				}
			}
		case c == '\\':
			if i+1 < len(s) {
				cur.WriteByte(s[i+1])
			}
			have = true
			i += 2
		case c == '$': // an unquoted empty expansion makes no word
			n := cur.Len()
			i = expand(i)
			have = have || cur.Len() > n
		default:
			cur.WriteByte(c)
			have = true
			i++
		}
	}
	flush()
	return out, nil
}

// outcome is what a command's comment says of its result.
type outcome struct {
	status int               // 0: success (exit 0, or a 2xx); -1: any failure
	code   string            // the reason code of a refusal
	keep   map[string]string // variable → "phi" (the secret printed) or "tok" (the id)
	shows  []string          // what the output contains
}

var (
	reOutcomeStatus = regexp.MustCompile(`^([1-5][0-9][0-9])\b(?:\s+([a-z_]+))?`)
	reOutcomeKeep   = regexp.MustCompile(`\b([A-Z][A-Z0-9_]*)=(phi|tok|alr)_…`)
)

// parseOutcome reads a command's comment: "NAME=phi_…" (keep the secret
// the command printed in $NAME), "NAME=tok_…" (its id) and "NAME=alr_…"
// (the first alert id it printed) anywhere; a
// status and reason code at the start ("403 insufficient_scope"); after
// "→", a comma-separated list of what the output shows. Anything else is
// prose.
func parseOutcome(comment string) outcome {
	var o outcome
	if m := reOutcomeStatus.FindStringSubmatch(comment); m != nil {
		fmt.Sscan(m[1], &o.status)
		o.code = m[2]
	}
	for _, m := range reOutcomeKeep.FindAllStringSubmatch(comment, -1) {
		if o.keep == nil {
			o.keep = map[string]string{}
		}
		o.keep[m[1]] = m[2]
	}
	if _, after, ok := strings.Cut(comment, "→"); ok {
		for _, s := range strings.Split(after, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.shows = append(o.shows, s)
			}
		}
	}
	return o
}

// walkShell runs the walk-through's commands: the shell variables, the
// exported ones, and the README's stand-ins (rewrite).
type walkShell struct {
	t        *testing.T
	bin, cwd string
	pin      string
	vars     map[string]string
	exported map[string]bool
	rewrite  *strings.Replacer
	secrets  []string // every secret kept in a variable
}

var (
	reAssign      = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
	rePrintedID   = regexp.MustCompile(`(?m)^id:\s+(tok_\S+)`)
	rePrintedAlr  = regexp.MustCompile(`\b(alr_[0-9A-Za-z]{22})\b`)
	rePrintedPhi  = regexp.MustCompile(`(?m)^\s*(phi_[0-9A-Za-z]{49})\s*$`)
	reStatusLine  = regexp.MustCompile(`\b([1-5][0-9][0-9]) ([a-z_]+)\b`)
	reBlanks      = regexp.MustCompile(`[ \t]+`)
	walkCmdTimout = 30 * time.Second
)

func (sh *walkShell) run(c walkCmd) {
	t := sh.t
	t.Helper()
	where := fmt.Sprintf("README.md:%d: %s", c.line, c.text)
	words, err := splitWords(sh.rewrite.Replace(c.text), func(k string) string { return sh.vars[k] })
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	want := parseOutcome(c.comment)
	// echo … | command: the echo is the command's standard input
	var stdin string
	if i := indexOp(words, "|"); i >= 0 {
		if i == 0 || words[0].s != "echo" || indexOp(words[i+1:], "|") >= 0 {
			t.Fatalf("%s: the only pipe the test runs is `echo … | command`", where)
		}
		stdin = joinWords(words[1:i]) + "\n"
		words = words[i+1:]
	}
	// command > FILE
	var outFile string
	if i := indexOp(words, ">"); i >= 0 {
		if i != len(words)-2 || words[i+1].op {
			t.Fatalf("%s: a redirection must end the command: > FILE", where)
		}
		outFile = words[i+1].s
		if !filepath.IsAbs(outFile) {
			t.Fatalf("%s: the walk-through writes %s into the clone; write it under /tmp", where, outFile)
		}
		words = words[:i]
	}
	// leading NAME=value assignments
	env := map[string]string{}
	for len(words) > 0 {
		m := reAssign.FindStringSubmatch(words[0].s)
		if m == nil {
			break
		}
		env[m[1]] = m[2]
		words = words[1:]
	}
	if len(words) == 0 {
		for k, v := range env { // NAME=value alone: a shell variable
			sh.vars[k] = v
		}
		return
	}
	args := make([]string, len(words))
	for i, w := range words {
		if w.op {
			t.Fatalf("%s: unexpected %s", where, w.s)
		}
		args[i] = w.s
	}
	var out string
	switch args[0] {
	case "export":
		for _, a := range args[1:] {
			m := reAssign.FindStringSubmatch(a)
			if m == nil {
				t.Fatalf("%s: export wants NAME=value", where)
			}
			sh.vars[m[1]], sh.exported[m[1]] = m[2], true
		}
		return
	case "go":
		if strings.Join(args, " ") != "go build -o phigate ./cmd/phigate" {
			t.Fatalf("%s: the only go command the walk-through may run is the CLI's build", where)
		}
		return // the binary phigateBinary built stands for ./phigate
	case "./phigate":
		out = sh.phigate(where, args[1:], env, stdin, want)
	case "curl":
		out = sh.curl(where, args[1:], want)
	default:
		t.Fatalf("%s: the test cannot run %q (the walk-through runs the CLI as ./phigate)", where, args[0])
	}
	if outFile != "" {
		if err := os.WriteFile(outFile, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flat := reBlanks.ReplaceAllString(out, " ") // "active:     true" shows "active: true"
	for _, s := range want.shows {
		if !strings.Contains(flat, s) {
			t.Errorf("%s: the README says the output shows %q; it is:\n%s", where, s, out)
		}
	}
	for name, kind := range want.keep {
		re := rePrintedPhi
		switch kind {
		case "tok":
			re = rePrintedID
		case "alr":
			re = rePrintedAlr
		}
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no %s_ printed to keep in $%s:\n%s", where, kind, name, out)
		}
		sh.vars[name] = m[1]
		if kind == "phi" {
			sh.secrets = append(sh.secrets, m[1])
		}
	}
}

func indexOp(ws []word, op string) int {
	for i, w := range ws {
		if w.op && w.s == op {
			return i
		}
	}
	return -1
}

func joinWords(ws []word) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.s
	}
	return strings.Join(s, " ")
}

// phigate runs the CLI; it returns its standard output, or for a refusal
// its standard error.
func (sh *walkShell) phigate(where string, args []string, env map[string]string, stdin string, want outcome) string {
	t := sh.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), walkCmdTimout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh.bin, args...)
	cmd.Dir = sh.cwd
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHIGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k := range sh.exported {
		cmd.Env = append(cmd.Env, k+"="+sh.vars[k])
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", where, err)
	}
	switch {
	case want.status == 0 && err != nil:
		t.Fatalf("%s: %v\n%s%s", where, err, stdout.String(), stderr.String())
	case want.status < 0 && err != nil: // any failure, before an answer
		return stderr.String()
	case want.status != 0 && err == nil:
		t.Fatalf("%s: succeeded; the README says %d %s:\n%s", where, want.status, want.code, stdout.String())
	case want.status != 0:
		m := reStatusLine.FindStringSubmatch(stderr.String())
		if m == nil || m[1] != fmt.Sprint(want.status) || (want.code != "" && m[2] != want.code) {
			t.Fatalf("%s: the README says %d %s; got:\n%s", where, want.status, want.code, stderr.String())
		}
		return stderr.String()
	}
	return stdout.String()
}

// curl performs a curl command of the README with net/http: the options
// it uses are -s, -k (with --pinnedpubkey, which the test requires and
// checks), -H and --data-urlencode (a form POST, as curl sends it). It
// returns the answer's body.
func (sh *walkShell) curl(where string, args []string, want outcome) string {
	t := sh.t
	t.Helper()
	var (
		target, pin string
		insecure    bool
		hdr         = http.Header{}
		form        []string
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 >= len(args) {
				t.Fatalf("%s: %s needs a value", where, a)
			}
			i++
			return args[i]
		}
		switch {
		case a == "-s" || a == "-k" || a == "-sk" || a == "-ks":
			insecure = insecure || strings.Contains(a, "k")
		case a == "--pinnedpubkey":
			pin = strings.TrimPrefix(next(), "sha256//")
		case a == "-H":
			k, v, ok := strings.Cut(next(), ":")
			if !ok {
				t.Fatalf("%s: -H wants Name: value", where)
			}
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case a == "--data-urlencode":
			k, v, _ := strings.Cut(next(), "=")
			form = append(form, url.QueryEscape(k)+"="+url.QueryEscape(v))
		case strings.HasPrefix(a, "-"):
			t.Fatalf("%s: the test does not know the curl option %s", where, a)
		default:
			if target != "" {
				t.Fatalf("%s: two URLs", where)
			}
			target = a
		}
	}
	if !insecure || pin == "" {
		t.Fatalf("%s: the walk-through's curl commands pin the server's key (-k with --pinnedpubkey)", where)
	}
	if pin != sh.pin {
		t.Fatalf("%s: pinned %q, the server's pin is %q ($PHIGATE_PIN not exported?)", where, pin, sh.pin)
	}
	method := "GET"
	if form != nil {
		method = "POST"
		hdr.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hc := &http.Client{Timeout: walkCmdTimout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, // the pin is checked instead, as curl does
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || client.SPKIPin(cs.PeerCertificates[0]) != pin {
				return errors.New("the server's key does not match --pinnedpubkey")
			}
			return nil
		},
	}}}
	// curl's URL globbing: "…[1-9]…" fetches each URL of the range in
	// turn and prints every body; the outcome is the first answer's
	// (curl -s does not stop at an error status, nor does the test).
	targets := []string{target}
	if m := reCurlRange.FindStringSubmatchIndex(target); m != nil {
		lo, _ := strconv.Atoi(target[m[2]:m[3]])
		hi, _ := strconv.Atoi(target[m[4]:m[5]])
		if hi < lo || hi-lo > 100 {
			t.Fatalf("%s: a URL range of 1 to 101 numbers, please", where)
		}
		targets = targets[:0]
		for n := lo; n <= hi; n++ {
			targets = append(targets, target[:m[0]]+strconv.Itoa(n)+target[m[1]:])
		}
	}
	var all []byte
	for i, u := range targets {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(strings.Join(form, "&"))
		}
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		req.Header = hdr.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		code := reasonCode(b)
		switch {
		case i > 0:
		case want.status == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299),
			want.status != 0 && resp.StatusCode != want.status,
			want.code != "" && code != want.code:
			t.Fatalf("%s: %d %s, the README says %d %s:\n%s", where, resp.StatusCode, code, want.status, want.code, b)
		}
		all = append(all, b...)
	}
	return string(all)
}

// reCurlRange is a numeric range of curl's URL globbing: [1-9].
var reCurlRange = regexp.MustCompile(`\[([0-9]+)-([0-9]+)\]`)

func TestSplitWords(t *testing.T) {
	vars := map[string]string{"LAB": "phi_x", "GW": "https://gw", "E": ""}
	lookup := func(k string) string { return vars[k] }
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`./phigate token self`, []string{"./phigate", "token", "self"}},
		{`PHIGATE_TOKEN=$LAB ./phigate token self`, []string{"PHIGATE_TOKEN=phi_x", "./phigate", "token", "self"}},
		{`echo "$LAB" | x`, []string{"echo", "phi_x", "|", "x"}},
		{`curl "$GW/fhir/Observation?patient=pat-1&category=laboratory"`, []string{"curl", "https://gw/fhir/Observation?patient=pat-1&category=laboratory"}},
		{`a ${GW}/x '$LAB' "\"q\" \$" b\ c`, []string{"a", "https://gw/x", "$LAB", `"q" $`, "b c"}},
		{`x > /tmp/f`, []string{"x", ">", "/tmp/f"}},
		{`x "" $E y`, []string{"x", "", "y"}},
		{`x $ $1 ${unterminated`, []string{"x", "$", "$1", "${unterminated"}},
	} {
		ws, err := splitWords(c.in, lookup)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		got := make([]string, len(ws))
		for i, w := range ws {
			got[i] = w.s
		}
		if strings.Join(got, "\x00") != strings.Join(c.want, "\x00") {
			t.Errorf("%s: %q, want %q", c.in, got, c.want)
		}
	}
	for _, bad := range []string{`x "open`, `x 'open`} {
		if _, err := splitWords(bad, lookup); !errors.Is(err, errUnterminated) {
			t.Errorf("%s: %v, want errUnterminated", bad, err)
		}
	}
}

func TestParseOutcome(t *testing.T) {
	for _, c := range []struct {
		in   string
		want outcome
	}{
		{"403 insufficient_scope: it cannot manage tokens", outcome{status: 403, code: "insufficient_scope"}},
		{"TMP=phi_…, TMPID=tok_…", outcome{keep: map[string]string{"TMP": "phi", "TMPID": "tok"}}},
		{"200 → \"active\":true, lab-app", outcome{status: 200, shows: []string{`"active":true`, "lab-app"}}},
		{"add --cascade to revoke what it issued too", outcome{}},
	} {
		got := parseOutcome(c.in)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: %+v, want %+v", c.in, got, c.want)
		}
	}
}

// FuzzSplitWords: splitting any line neither panics nor loops, and what
// it returns for a line without quotes, escapes, variables or operators is
// its fields.
func FuzzSplitWords(f *testing.F) {
	for _, s := range []string{
		`echo "$LAB" | PHIGATE_TOKEN=$RS ./phigate introspect`,
		`curl -sk --pinnedpubkey "sha256//$PHIGATE_PIN" -H "Authorization: Bearer $LAB" $GW/fhir/Patient/pat-1`,
		`./phigate audit key > /tmp/audit.pub`,
		`a '\'' "\\" ${X} $`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := splitWords(s, func(k string) string { return "v" })
		if err != nil {
			return
		}
		if !strings.ContainsAny(s, "'\"\\$|>") {
			fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
			if len(ws) != len(fields) {
				t.Fatalf("%q: %d words, %d fields", s, len(ws), len(fields))
			}
			for i := range ws {
				if ws[i].s != fields[i] {
					t.Fatalf("%q: word %d %q, field %q", s, i, ws[i].s, fields[i])
				}
			}
		}
	})
}
