package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/phigate/phigate/internal/token"
)

const (
	// BufSize is the window a reader is scanned in.
	BufSize = 256 << 10
	// BinarySniff is how many leading bytes are looked at for a NUL.
	BinarySniff = 8 << 10
)

// ErrBinary is returned by Reader for input that looks binary.
var ErrBinary = errors.New("scan: binary input skipped")

// Finding is one valid-checksum token found in the input.
type Finding struct {
	// Path names the input (file path, "-" for standard input).
	Path string `json:"path"`
	// Line is the 1-based line of the token's first byte.
	Line int `json:"line"`
	// Blob is the git object id for a finding in history, else empty.
	Blob string `json:"blob,omitempty"`
	// Fingerprint is token.PublicFingerprint of the secret.
	Fingerprint string `json:"fingerprint"`
	secret      string
}

// Secret returns the token found; it is for the leak report only and must
// never be printed or logged.
func (f Finding) Secret() string { return f.secret }

// Where is "path:line", as the leak report names the place.
func (f Finding) Where() string {
	if f.Blob != "" {
		return fmt.Sprintf("%s:%d (blob %s)", f.Path, f.Line, f.Blob)
	}
	return fmt.Sprintf("%s:%d", f.Path, f.Line)
}

var prefix = []byte(token.Prefix)

// Find calls fn with the offset of every valid-checksum token in b, in
// order. A token counts when its 49 characters after "phi_" are base62, the
// run does not continue with another base62 character (unless b ends there,
// when atEOF is false the caller must not pass a partial tail) and the
// checksum is valid. It does not allocate.
func Find(b []byte, fn func(off int)) {
	i := 0
	for {
		j := bytes.Index(b[i:], prefix)
		if j < 0 {
			return
		}
		off := i + j
		end := off + token.Len
		if end <= len(b) && (end == len(b) || !token.IsB62(b[end])) && token.CheckBytes(b[off:end]) == nil {
			fn(off)
			i = end
			continue
		}
		i = off + 1
	}
}

// Reader scans r, naming it path in the findings, and calls emit for each.
// It returns ErrBinary (and emits nothing) when the first BinarySniff bytes
// hold a NUL, and emit's error as soon as it returns one.
func Reader(r io.Reader, path string, emit func(Finding) error) error {
	return new(window).scan(r, path, emit)
}

// window is the buffer a scan reads into, reused from one input to the next
// by the scans of many files.
type window struct{ buf []byte }

func (w *window) scan(r io.Reader, path string, emit func(Finding) error) error {
	if w.buf == nil {
		w.buf = make([]byte, BufSize)
	}
	buf := w.buf
	n, err := io.ReadAtLeast(r, buf, BinarySniff)
	eof := false
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		eof = true
	case err != nil:
		return fmt.Errorf("scan: reading %s: %w", path, err)
	}
	if bytes.IndexByte(buf[:min(n, BinarySniff)], 0) >= 0 {
		return ErrBinary
	}
	line := 1
	for {
		// Tokens starting before limit are decided in this window; the
		// rest (a possible partial token) moves to the front.
		limit := n
		if !eof {
			limit = max(0, n-token.Len)
		}
		var ferr error
		last := 0
		window := buf[:n]
		Find(window, func(off int) {
			if ferr != nil || off >= limit {
				return
			}
			line += bytes.Count(window[last:off], nlb)
			last = off
			s := string(window[off : off+token.Len])
			ferr = emit(Finding{Path: path, Line: line, Fingerprint: token.PublicFingerprint(s), secret: s})
		})
		if ferr != nil {
			return ferr
		}
		if eof {
			return nil
		}
		line += bytes.Count(window[last:limit], nlb)
		n = copy(buf, buf[limit:n])
		m, err := io.ReadAtLeast(r, buf[n:], 1)
		n += m
		if errors.Is(err, io.EOF) {
			eof = true
		} else if err != nil {
			return fmt.Errorf("scan: reading %s: %w", path, err)
		}
	}
}

var nlb = []byte{'\n'}

// Bytes returns the findings in b, named path.
func Bytes(b []byte, path string) []Finding {
	var out []Finding
	_ = Reader(bytes.NewReader(b), path, func(f Finding) error { out = append(out, f); return nil })
	return out
}
