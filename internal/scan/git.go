package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// ErrGit is wrapped by every failure of a git command.
var ErrGit = errors.New("scan: git")

// blobRef is a blob to scan and the path it is reported under.
type blobRef struct{ obj, path, blob string }

// History scans every blob reachable from any ref of the repository at dir,
// each once (`git rev-list --objects --all`, then one `git cat-file
// --batch`). A finding's Path is the first path git saw the blob at, and
// Blob its object id.
func History(ctx context.Context, opts Options, dir string, emit func(Finding) error) error {
	list := exec.CommandContext(ctx, opts.git(), "-C", dir, "rev-list", "--objects", "--all")
	objs, err := output(list)
	if err != nil {
		return err
	}
	check := exec.CommandContext(ctx, opts.git(), "-C", dir, "cat-file", "--batch-check=%(objecttype) %(objectname) %(rest)")
	check.Stdin = bytes.NewReader(objs)
	typed, err := output(check)
	if err != nil {
		return err
	}
	var blobs []blobRef
	for _, line := range strings.Split(string(typed), "\n") {
		typ, rest, _ := strings.Cut(line, " ")
		if typ != "blob" {
			continue
		}
		obj, path, _ := strings.Cut(rest, " ")
		blobs = append(blobs, blobRef{obj: obj, path: path, blob: obj})
	}
	return batch(ctx, opts, dir, blobs, emit)
}

// Staged scans what a commit would add: the index blobs of the files
// `git diff --cached` names as added, copied, modified or renamed.
func Staged(ctx context.Context, opts Options, dir string, emit func(Finding) error) error {
	diff := exec.CommandContext(ctx, opts.git(), "-C", dir, "diff", "--cached", "--name-only", "-z", "--no-renames", "--diff-filter=ACMRT")
	out, err := output(diff)
	if err != nil {
		return err
	}
	var blobs []blobRef
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		if strings.ContainsAny(name, "\n\r") {
			return fmt.Errorf("%w: cannot scan a staged file whose name holds a line break: %q", ErrGit, name)
		}
		blobs = append(blobs, blobRef{obj: ":" + name, path: name})
	}
	return batch(ctx, opts, dir, blobs, emit)
}

// batch streams blobs through one `git cat-file --batch`.
func batch(ctx context.Context, opts Options, dir string, blobs []blobRef, emit func(Finding) error) error {
	if len(blobs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, opts.git(), "-C", dir, "cat-file", "--batch")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGit, err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGit, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: %w", ErrGit, err)
	}
	go func() {
		bw := bufio.NewWriter(in)
		for _, b := range blobs {
			if _, err := bw.WriteString(b.obj + "\n"); err != nil {
				break
			}
		}
		bw.Flush()
		in.Close()
	}()
	br := bufio.NewReaderSize(outp, 64<<10)
	w := new(window)
	scanErr := func() error {
		for _, b := range blobs {
			header, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%w: cat-file: %w", ErrGit, err)
			}
			f := strings.Fields(header)
			if len(f) == 2 && f[1] == "missing" {
				return fmt.Errorf("%w: object %s is missing", ErrGit, b.obj)
			}
			if len(f) != 3 {
				return fmt.Errorf("%w: cat-file: unexpected header", ErrGit)
			}
			size, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil || size < 0 {
				return fmt.Errorf("%w: cat-file: bad size", ErrGit)
			}
			lr := io.LimitReader(br, size)
			err = w.scan(lr, b.path, func(fd Finding) error {
				fd.Blob = b.blob
				return emit(fd)
			})
			if err != nil && !errors.Is(err, ErrBinary) {
				return err
			}
			if _, err := io.Copy(io.Discard, lr); err != nil {
				return fmt.Errorf("%w: cat-file: %w", ErrGit, err)
			}
			if c, err := br.ReadByte(); err != nil || c != '\n' {
				return fmt.Errorf("%w: cat-file: bad framing", ErrGit)
			}
		}
		return nil
	}()
	if scanErr != nil {
		cancel()
		_ = cmd.Wait()
		return scanErr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%w: cat-file: %w: %s", ErrGit, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func output(cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrGit, strings.Join(cmd.Args[3:], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
