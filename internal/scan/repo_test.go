package scan_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/scan"
	"github.com/phigate/phigate/internal/scan/scantest"
)

func collect(t *testing.T, run func(emit func(scan.Finding) error) error) ([]string, []scan.Finding) {
	t.Helper()
	var fs []scan.Finding
	if err := run(func(f scan.Finding) error { fs = append(fs, f); return nil }); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range fs {
		if !seen[f.Secret()] {
			seen[f.Secret()] = true
			out = append(out, f.Secret())
		}
	}
	sort.Strings(out)
	return out, fs
}

func TestGeneratedRepositoryYieldsExactlyThePlantedTokens(t *testing.T) {
	r := scantest.New(t)
	ctx := context.Background()
	var opts scan.Options

	got, fs := collect(t, func(emit func(scan.Finding) error) error { return scan.Paths(ctx, opts, []string{r.Dir}, emit) })
	if strings.Join(got, ",") != strings.Join(r.WorkTree(), ",") {
		t.Fatalf("work tree: found %d distinct tokens, want %d (code, config, untracked)", len(got), len(r.WorkTree()))
	}
	for _, f := range fs {
		if f.Secret() == r.Code && (!strings.HasSuffix(f.Path, "main.go") || f.Line != 4) {
			t.Errorf("code token reported at %s", f.Where())
		}
		if f.Secret() == r.Config && (!strings.HasSuffix(f.Path, "config.yaml") || f.Line != 4) {
			t.Errorf("config token reported at %s", f.Where())
		}
	}

	hist, hfs := collect(t, func(emit func(scan.Finding) error) error { return scan.History(ctx, opts, r.Dir, emit) })
	want := []string{r.Code, r.Config, r.HistoryOnly}
	sort.Strings(want)
	if strings.Join(hist, ",") != strings.Join(want, ",") {
		t.Fatalf("history: found %d distinct tokens, want %d (code, config, history only)", len(hist), len(want))
	}
	for _, f := range hfs {
		if f.Secret() == r.HistoryOnly && (f.Path != "old/creds.env" || f.Blob == "" || f.Line != 1) {
			t.Errorf("history token reported at %s", f.Where())
		}
	}
}

func TestOutsideAWorkTreeTheGitignoreMatcherIsUsed(t *testing.T) {
	r := scantest.New(t)
	dir := t.TempDir()
	scantest.Write(t, dir, ".gitignore", "*.log\nbuild/\n")
	scantest.Write(t, dir, "a.txt", r.Code+"\n")
	scantest.Write(t, dir, "x.log", r.Ignored+"\n")
	scantest.Write(t, dir, "build/out.txt", r.Config+"\n")
	scantest.Write(t, dir, ".git/config", r.Untracked+"\n")
	got, _ := collect(t, func(emit func(scan.Finding) error) error {
		return scan.Paths(context.Background(), scan.Options{}, []string{dir}, emit)
	})
	if len(got) != 1 || got[0] != r.Code {
		t.Fatalf("found %d tokens, want only the one in a.txt", len(got))
	}
}

func TestStagedScanSeesOnlyWhatTheCommitAdds(t *testing.T) {
	r := scantest.New(t)
	ctx := context.Background()
	got, _ := collect(t, func(emit func(scan.Finding) error) error { return scan.Staged(ctx, scan.Options{}, r.Dir, emit) })
	if len(got) != 0 {
		t.Fatalf("nothing staged, found %d", len(got))
	}
	scantest.Git(t, r.Clock, r.Dir, "add", "scratch.txt")
	got, _ = collect(t, func(emit func(scan.Finding) error) error { return scan.Staged(ctx, scan.Options{}, r.Dir, emit) })
	if len(got) != 1 || got[0] != r.Untracked {
		t.Fatalf("found %d staged tokens, want the one in scratch.txt", len(got))
	}
}
