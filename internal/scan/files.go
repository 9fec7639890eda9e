package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Options configures the file, directory and git scans.
type Options struct {
	// Git is the git binary; "git" when empty.
	Git string
	// OnError is told about a path that could not be scanned, and the scan
	// goes on; when nil the first such error ends the scan.
	OnError func(path string, err error)
}

func (o *Options) git() string {
	if o.Git == "" {
		return "git"
	}
	return o.Git
}

func (o *Options) fail(path string, err error) error {
	if o.OnError == nil {
		return err
	}
	o.OnError(path, err)
	return nil
}

// File scans the regular file at p; binary files are skipped (nil).
func File(p string, emit func(Finding) error) error { return new(window).file(p, emit) }

func (w *window) file(p string, emit func(Finding) error) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer f.Close()
	err = w.scan(f, p, emit)
	if errors.Is(err, ErrBinary) {
		return nil
	}
	return err
}

// Paths scans each path: a file, or a directory walked honouring
// .gitignore (git's own rules inside a work tree, Ignore outside one).
// Only regular files are read; symbolic links, devices and the .git
// directory are skipped.
func Paths(ctx context.Context, opts Options, paths []string, emit func(Finding) error) error {
	w := new(window)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			if err := opts.fail(p, fmt.Errorf("scan: %w", err)); err != nil {
				return err
			}
			continue
		}
		if !st.IsDir() {
			if !st.Mode().IsRegular() {
				continue
			}
			if err := w.scanFile(opts, p, emit); err != nil {
				return err
			}
			continue
		}
		if err := w.dir(ctx, opts, p, emit); err != nil {
			return err
		}
	}
	return nil
}

// scanFile scans one file, sending a read error to OnError and returning
// only emit's errors (or the read error when OnError is nil).
func (w *window) scanFile(opts Options, p string, emit func(Finding) error) error {
	var emitErr error
	err := w.file(p, func(f Finding) error {
		if err := emit(f); err != nil {
			emitErr = err
			return err
		}
		return nil
	})
	if emitErr != nil {
		return emitErr
	}
	if err != nil {
		return opts.fail(p, err)
	}
	return nil
}

func (w *window) dir(ctx context.Context, opts Options, root string, emit func(Finding) error) error {
	files, err := gitFiles(ctx, opts, root)
	if err != nil {
		return w.walk(ctx, opts, root, emit)
	}
	for _, rel := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(root, filepath.FromSlash(rel))
		st, err := os.Lstat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, a link or a submodule
		}
		if err := w.scanFile(opts, p, emit); err != nil {
			return err
		}
	}
	return nil
}

// gitFiles lists the files git would track under root (tracked, and
// untracked but not ignored); an error means root is not in a work tree.
func gitFiles(ctx context.Context, opts Options, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, opts.git(), "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scan: git ls-files: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var files []string
	seen := map[string]bool{}
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" && !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	return files, nil
}

// walk scans root outside a work tree with the Ignore matcher.
func (w *window) walk(ctx context.Context, opts Options, root string, emit func(Finding) error) error {
	var ig Ignore
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return opts.fail(p, fmt.Errorf("scan: %w", err))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" && rel != "." {
				return filepath.SkipDir
			}
			if rel != "." && ig.Match(rel, true) {
				return filepath.SkipDir
			}
			base := rel
			if base == "." {
				base = ""
			}
			if f, err := os.Open(filepath.Join(p, ".gitignore")); err == nil {
				aerr := ig.Add(base, f)
				f.Close()
				if aerr != nil {
					return opts.fail(filepath.Join(p, ".gitignore"), aerr)
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || ig.Match(rel, false) {
			return nil
		}
		return w.scanFile(opts, p, emit)
	})
}
