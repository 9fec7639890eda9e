package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser is a headless Chromium for one Go test, driven by chromedp
// (the Go API next to the Node runner of Run). It runs with
// --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
// --disable-background-networking --disable-component-update
// --disable-sync, in a fresh user-data-dir chromedp makes and removes,
// trusting exactly the certificates Options.SPKIPins names.
//
// Every console message (Runtime.consoleAPICalled), uncaught exception
// (Runtime.exceptionThrown), browser log entry (Log.entryAdded) and
// Content-Security-Policy violation (a securitypolicyviolation listener
// installed in every document with Page.addScriptToEvaluateOnNewDocument)
// is collected; Errors returns the ones that are errors. The browser is
// closed at the end of the test (its process and children gone: Close
// fails the test if one is left).
type Browser struct {
	t     testing.TB
	ctx   context.Context // the tab's
	close func()
	dir   string // the user-data-dir of the browser process

	mu    sync.Mutex
	msgs  []Message
	page  string // what SetPage said, for the messages' Page
	shots string // the screenshot directory, made at the first one
	done  bool
}

// cspProbe reports every CSP violation of a document to the console, as
// an error the collector sees (it runs before the page's scripts, from
// the DevTools protocol, so the page's CSP does not apply to it).
const cspProbe = `document.addEventListener('securitypolicyviolation', (e) => {
	console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
});`

// Flags are the Chromium flags every Browser has (chromedp adds its own
// automation defaults).
var flags = []chromedp.ExecAllocatorOption{
	chromedp.ExecPath(Chromium),
	chromedp.Headless,
	chromedp.NoSandbox,
	chromedp.DisableGPU,
	chromedp.NoFirstRun,
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.WindowSize(1280, 900),
}

// AvailableChromium reports why the Go browser cannot run here ("" when
// it can): it needs only Chromium.
func AvailableChromium() string {
	if _, err := os.Stat(Chromium); err != nil {
		return Chromium + " is missing (Debian package chromium)"
	}
	return ""
}

// RequireChromium skips t (or fails it under CI=true) without Chromium.
func RequireChromium(t testing.TB) {
	t.Helper()
	missing := AvailableChromium()
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s: .ci/run installs it", missing)
	}
	t.Skipf("skipped: this runs headless Chromium, and %s; CI installs it (.ci/run), locally `apt-get install chromium`", missing)
}

// NewBrowser starts Chromium for t (skipping t without it, failing it
// under CI=true), with one tab whose context Ctx returns. Options.Timeout
// bounds the whole test's use of the browser (0: 90s).
func NewBrowser(t testing.TB, opts Options) *Browser {
	t.Helper()
	RequireChromium(t)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	ao := append(chromedp.DefaultExecAllocatorOptions[:], flags...)
	if len(opts.SPKIPins) > 0 {
		ao = append(ao, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(opts.SPKIPins, ",")))
	}
	base, cancelBase := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(base, ao...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &Browser{t: t, ctx: ctx}
	b.close = func() { cancelTab(); cancelAlloc(); cancelBase() }
	t.Cleanup(b.Close)
	// start the browser, then subscribe before the first navigation
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", Chromium, err)
	}
	if p := chromedp.FromContext(ctx).Browser.Process(); p != nil {
		b.dir = userDataDir(p.Pid)
	}
	b.collect()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspProbe}); err != nil {
		t.Fatalf("install the CSP probe: %v", err)
	}
	return b
}

// Ctx is the tab's context, for chromedp.Run, Do and Call.
func (b *Browser) Ctx() context.Context { return b.ctx }

// SetPage names the page the following messages come from.
func (b *Browser) SetPage(name string) {
	b.mu.Lock()
	b.page = name
	b.mu.Unlock()
}

func (b *Browser) add(typ, text string) {
	b.mu.Lock()
	b.msgs = append(b.msgs, Message{Page: b.page, Type: typ, Text: text})
	b.mu.Unlock()
}

// collect gathers the tab's console calls, exceptions and log entries
// until the browser closes.
func (b *Browser) collect() {
	console := chromedp.Events(b.ctx, runtime.ConsoleAPICalled)
	exceptions := chromedp.Events(b.ctx, runtime.ExceptionThrown)
	logs := chromedp.Events(b.ctx, log.EntryAdded)
	go func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			var parts []string
			for _, a := range ev.Args {
				if a.Value != nil {
					s := string(a.Value)
					if u, err := strconv.Unquote(s); err == nil {
						s = u
					}
					parts = append(parts, s)
				} else {
					parts = append(parts, a.Description)
				}
			}
			typ := string(ev.Type)
			if typ == "assert" {
				typ = "error"
			}
			b.add(typ, strings.Join(parts, " "))
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			text := ""
			if d := ev.ExceptionDetails; d != nil {
				text = d.Text
				if d.Exception != nil {
					text += " " + d.Exception.Description
				}
			}
			b.add("pageerror", text)
		}
	}()
	go func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			if ev.Entry == nil {
				continue
			}
			typ := "log:" + string(ev.Entry.Level)
			if ev.Entry.Level == log.EntryLevelError {
				typ = "error"
			}
			b.add(typ, fmt.Sprintf("[%s] %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}()
}

// Messages returns every message collected so far.
func (b *Browser) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

// Errors returns the console errors, page errors, error log entries and
// CSP violations collected so far.
func (b *Browser) Errors() []Message {
	var out []Message
	for _, m := range b.Messages() {
		if m.Type == "error" || m.Type == "pageerror" {
			out = append(out, m)
		}
	}
	return out
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Screenshot saves a full-page PNG of the tab as name.png in the test's
// screenshot directory under $TMPDIR (made at the first one, logged,
// kept after the test as an artifact) and returns its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	b.mu.Lock()
	if b.shots == "" {
		dir, err := os.MkdirTemp("", "phigate-"+unsafeName.ReplaceAllString(b.t.Name(), "_")+"-screenshots-")
		if err != nil {
			b.mu.Unlock()
			b.t.Fatal(err)
		}
		b.shots = dir
		b.t.Logf("screenshots in %s", dir)
	}
	dir := b.shots
	b.mu.Unlock()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// Close ends the browser (at the test's end, or earlier) and fails the
// test if a process of it is left running.
func (b *Browser) Close() {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done = true
	b.mu.Unlock()
	b.close()
	if b.dir == "" {
		return
	}
	if left := processesUsing(b.dir); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		b.t.Errorf("chromium processes %v outlived the browser (killed)", left)
	}
}

// userDataDir is the --user-data-dir of process pid ("" if unknown).
func userDataDir(pid int) string {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
		if d, ok := strings.CutPrefix(string(arg), "--user-data-dir="); ok {
			return d
		}
	}
	return ""
}

// processesUsing lists the processes started with --user-data-dir=dir.
func processesUsing(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if userDataDir(pid) == dir {
			out = append(out, pid)
		}
	}
	return out
}
