package pgtest

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Private is a PostgreSQL server of the test's own (initdb and pg_ctl in
// a temporary directory, on a free loopback port, trust authentication),
// which the test may stop and start again: the shared server of
// PHIGATE_TEST_POSTGRES must never be stopped. As root, the server runs
// as the user postgres (initdb refuses root).
type Private struct {
	bin, dir, port string
	args           []string
	asPostgres     bool
	uid, gid       int
}

// StartPrivate starts a private server with these extra server options
// (-c name=value ...). Without PostgreSQL's server binaries
// (/usr/lib/postgresql/*/bin) the test is skipped, or fails under CI=true.
func StartPrivate(t testing.TB, args ...string) *Private {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): .ci/run installs them")
		}
		t.Skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
	}
	p := &Private{bin: filepath.Dir(matches[len(matches)-1]), asPostgres: os.Geteuid() == 0, args: args}
	dir, err := os.MkdirTemp("", "phigate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if p.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(dir, p.uid, p.gid); err != nil {
			t.Fatal(err)
		}
	}
	p.dir = filepath.Join(dir, "data")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	p.run(t, "initdb", "-D", p.dir, "-U", "postgres", "-A", "trust", "--no-sync")
	p.Start(t)
	t.Cleanup(func() { p.run(t, "pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop") })
	return p
}

// DSN is the server's database postgres, with the given sslmode.
func (p *Private) DSN(sslmode string) string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/postgres?sslmode=" + sslmode + "&connect_timeout=2"
}

// Port is the server's port.
func (p *Private) Port() string { return p.port }

// WriteFile writes a file the server can read (owned by it, mode 0600)
// next to its data directory and returns its path.
func (p *Private) WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(filepath.Dir(p.dir), name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.asPostgres {
		if err := os.Chown(f, p.uid, p.gid); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Start starts the (stopped) server.
func (p *Private) Start(t testing.TB) {
	t.Helper()
	opts := "-p " + p.port + " -k " + filepath.Dir(p.dir) + " -c listen_addresses=127.0.0.1 -c fsync=off"
	if len(p.args) > 0 {
		opts += " " + strings.Join(p.args, " ")
	}
	p.run(t, "pg_ctl", "-D", p.dir, "-l", filepath.Join(filepath.Dir(p.dir), "log"), "-w", "-o", opts, "start")
}

// Stop stops the server (fast shutdown: connections are cut).
func (p *Private) Stop(t testing.TB) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.dir, "-m", "fast", "-w", "stop")
}

// SetArgs replaces the extra server options of the next Start.
func (p *Private) SetArgs(args ...string) { p.args = args }

func (p *Private) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	name, full := filepath.Join(p.bin, prog), args
	if p.asPostgres {
		name, full = "runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, prog)}, args...)
	}
	out, err := exec.Command(name, full...).CombinedOutput()
	if err != nil && !(prog == "pg_ctl" && strings.Contains(string(out), "Is server running?")) {
		log, _ := os.ReadFile(filepath.Join(filepath.Dir(p.dir), "log"))
		t.Fatalf("%s %v: %v\n%s\n%s", prog, args, err, out, log)
	}
}
