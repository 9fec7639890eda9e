package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeScriptTimeout bounds one run of a stock client's Node script.
const nodeScriptTimeout = 2 * time.Minute

// runNodeScript runs script with Node in dir (relative to cmd/phigate),
// where the npm package pkg it drives is installed, trusting caFile for
// TLS, with stdin (nil for none) and env added to the environment, and
// returns its stdout. It fails the test when the script fails or outlives
// nodeScriptTimeout. When Node or pkg is missing it skips the test, or
// fails it under CI=true (.ci/run installs both).
func runNodeScript(t *testing.T, dir, pkg, script, caFile string, stdin []byte, env ...string) []byte {
	t.Helper()
	shown := filepath.ToSlash(filepath.Join("cmd/phigate", dir)) // as in .ci/run, from the repository's root
	missing := ""
	node, err := exec.LookPath("node")
	if err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
		missing = "the npm package " + pkg + " is not installed in " + shown
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s: .ci/run installs it", missing)
		}
		t.Skipf("skipped: this runs the stock client %s on Node, and %s; CI installs it (.ci/run), "+
			"locally run `npm ci --ignore-scripts` in %s", pkg, missing, shown)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile, "NODE_OPTIONS="), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, stderr.String())
	}
	return out.Bytes()
}
