package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Witness cosigning (C2SP tlog-witness, tlog-cosignature)
//
// With Options.Witnesses set, each new checkpoint is submitted to every
// witness, off the writer's path, as the spec's add-checkpoint request:
//
//	POST <url>/add-checkpoint
//	old <the size the witness last cosigned, 0 at first>
//	<base64 of each hash of the consistency proof from that size>
//
//	<the signed checkpoint>
//
// A 200 answer carries the witness's cosignature lines; those by the
// configured key that verify (cosignature/v1, Ed25519) are kept: the
// checkpoint with them is appended, fsync'd, to <data>/audit.cosigned
// (CosignedFile; mode 0600; append-only, each note followed by an empty
// line, like a witness file). A 409 answer (text/x.tlog.size) gives the
// size the witness knows: the request is made again once with a proof
// from it. 403 and 404 (the witness does not know this log or key), 422
// (the witness refuses the proof: its view of the log and ours differ)
// and anything else are logged; the next checkpoint is submitted anyway
// (each covers all before it). Cosigned returns a checkpoint with the
// cosignatures collected for it, which the tlog-tiles /checkpoint serves.

// CosignedFile holds the cosigned checkpoints, in the data directory.
const CosignedFile = "audit.cosigned"

// maxCosignedFile bounds what Open reads of CosignedFile (the newest part
// of a larger file is read).
const maxCosignedFile = 8 << 20

// WitnessConfig is one witness.
type WitnessConfig struct {
	// Name is the witness's name (its key's name), e.g. witness.example/w1.
	Name string
	// URL is the witness's prefix: requests go to URL + "/add-checkpoint".
	URL string
	// VKey is its cosignature verifier key, <name>+<hash>+<base64 of
	// 0x04 || Ed25519 public key> (tlog-cosignature).
	VKey string
}

// ErrBadCosignatureKey: a witness verifier key that does not parse.
var ErrBadCosignatureKey = errors.New("audit: invalid witness key")

// cosigVerifier is a note.Verifier of cosignature/v1 signatures.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

// Verify checks sig = timestamp (8 bytes, big-endian) || Ed25519 signature
// of "cosignature/v1\ntime <timestamp>\n" || msg.
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	m := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

// NewCosignatureVerifier parses a tlog-cosignature verifier key.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	name, rest, ok1 := strings.Cut(vkey, "+")
	hexHash, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || name == "" || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsSpace) >= 0 || len(hexHash) != 8 {
		return nil, fmt.Errorf("%w: want <name>+<8 hex digits>+<base64 key>", ErrBadCosignatureKey)
	}
	h, err := strconv.ParseUint(hexHash, 16, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: key hash %q", ErrBadCosignatureKey, hexHash)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 0x04 {
		return nil, fmt.Errorf("%w: not a cosignature/v1 (0x04, Ed25519) key", ErrBadCosignatureKey)
	}
	sum := sha256.Sum256(append([]byte(name+"\n"), key...))
	if binary.BigEndian.Uint32(sum[:4]) != uint32(h) {
		return nil, fmt.Errorf("%w: the key hash does not match the name and key", ErrBadCosignatureKey)
	}
	return &cosigVerifier{name: name, hash: uint32(h), key: ed25519.PublicKey(key[1:])}, nil
}

// cosigner submits checkpoints to the witnesses and keeps their
// cosignatures.
type cosigner struct {
	l         *Log
	v         note.Verifier // the log's key
	quorum    int
	path      string
	witnesses []*witnessState
	client    *http.Client
	log       *slog.Logger

	mu      sync.Mutex
	pending *Checkpoint
	wake    chan struct{}
	// lines: cosignature lines collected, by checkpoint size (only the
	// newest sizes are kept in memory)
	lines map[uint64][]string
	order []uint64
}

type witnessState struct {
	WitnessConfig
	v     note.Verifier
	known uint64 // the size the witness last cosigned (as far as we know)
}

func newCosigner(l *Log, dir string, o Options, log *slog.Logger) (*cosigner, error) {
	lv, err := NewVerifier(l.vkey)
	if err != nil {
		return nil, err
	}
	c := &cosigner{l: l, v: lv, quorum: o.WitnessQuorum, path: filepath.Join(dir, CosignedFile), client: o.WitnessClient, log: log, wake: make(chan struct{}, 1), lines: map[uint64][]string{}}
	if c.client == nil {
		c.client = &http.Client{Timeout: 10 * time.Second}
	}
	for _, w := range o.Witnesses {
		v, err := NewCosignatureVerifier(w.VKey)
		if err != nil {
			return nil, fmt.Errorf("witness %s: %w", w.Name, err)
		}
		if v.Name() != w.Name {
			return nil, fmt.Errorf("witness %s: its key is named %q", w.Name, v.Name())
		}
		c.witnesses = append(c.witnesses, &witnessState{WitnessConfig: w, v: v})
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads what CosignedFile holds: each witness's last cosigned size,
// and the cosignatures of the newest checkpoints.
func (c *cosigner) load() error {
	f, err := os.Open(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > maxCosignedFile {
		f.Seek(fi.Size()-maxCosignedFile, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if fi.Size() > maxCosignedFile { // start at a note boundary
		if i := bytes.Index(data, []byte("\n\n\n")); i >= 0 {
			data = data[i+2:]
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	notes, err := SplitCheckpoints(data)
	if err != nil {
		c.log.Warn("audit: the cosigned checkpoints file is malformed; starting over from the witnesses' answers", "file", c.path, "err", err)
		return nil
	}
	for _, n := range notes {
		c.absorb(n)
	}
	return nil
}

// absorb records the cosignatures of note n (a cosigned checkpoint of
// this log) that verify with a configured witness key.
func (c *cosigner) absorb(n []byte) {
	vs := []note.Verifier{c.v}
	for _, w := range c.witnesses {
		vs = append(vs, w.v)
	}
	opened, err := note.Open(n, note.VerifierList(vs...))
	if err != nil {
		return
	}
	cp, err := ParseCheckpoint(n, c.v)
	if err != nil {
		return
	}
	for _, s := range opened.Sigs {
		for _, w := range c.witnesses {
			if s.Name == w.Name && s.Hash == w.v.KeyHash() {
				c.add(cp.Size, "— "+s.Name+" "+s.Base64)
				w.known = max(w.known, cp.Size)
			}
		}
	}
}

func (c *cosigner) add(size uint64, line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls, ok := c.lines[size]
	if !ok {
		c.order = append(c.order, size)
		if len(c.order) > 64 {
			delete(c.lines, c.order[0])
			c.order = c.order[1:]
		}
	}
	for _, x := range ls {
		if x == line {
			return
		}
	}
	c.lines[size] = append(ls, line)
}

// cosigned returns cp's note with the cosignature lines collected for it.
func (c *cosigner) cosigned(cp *Checkpoint) []byte {
	c.mu.Lock()
	ls := c.lines[cp.Size]
	c.mu.Unlock()
	if len(ls) == 0 {
		return cp.Note
	}
	out := append([]byte(nil), cp.Note...)
	for _, l := range ls {
		out = append(append(out, l...), '\n')
	}
	return out
}

// Cosigned returns the signed note of cp followed by the witnesses'
// cosignature lines collected for it (cp.Note itself when none).
func (l *Log) Cosigned(_ context.Context, cp *Checkpoint) []byte {
	if l.cosign == nil || cp == nil {
		if cp == nil {
			return nil
		}
		return cp.Note
	}
	return l.cosign.cosigned(cp)
}

func (c *cosigner) send(cp *Checkpoint) {
	if cp == nil {
		return
	}
	c.mu.Lock()
	c.pending = cp
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cosigner) run(ctx context.Context) {
	for {
		select {
		case <-c.wake:
			if ctx.Err() == nil {
				c.deliver(context.Background())
				continue
			}
		case <-ctx.Done():
		}
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.deliver(dctx)
		cancel()
		return
	}
}

func (c *cosigner) deliver(ctx context.Context) {
	c.mu.Lock()
	cp := c.pending
	c.pending = nil
	c.mu.Unlock()
	if cp == nil || cp.Size == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, w := range c.witnesses {
		if w.known >= cp.Size {
			continue
		}
		wg.Go(func() {
			lines, err := c.submit(ctx, w, cp)
			if err != nil {
				c.log.Warn("audit: the witness did not cosign the checkpoint", "witness", w.Name, "size", cp.Size, "err", err)
				return
			}
			c.keep(w, cp, lines)
		})
	}
	wg.Wait()
	n := 0
	for _, w := range c.witnesses {
		if w.known >= cp.Size {
			n++
		}
	}
	if n < c.quorum {
		c.log.Error("audit: fewer witnesses than the quorum cosigned the checkpoint", "size", cp.Size, "cosigned", n, "quorum", c.quorum)
	}
}

// keep stores and records w's cosignature lines on cp.
func (c *cosigner) keep(w *witnessState, cp *Checkpoint, lines []string) {
	out := append([]byte(nil), cp.Note...)
	for _, l := range lines {
		out = append(append(out, l...), '\n')
	}
	if err := appendWitnessFile(c.path, out); err != nil {
		c.log.Error("audit: cannot store the witness's cosignature", "file", c.path, "witness", w.Name, "size", cp.Size, "err", err)
		return
	}
	for _, l := range lines {
		c.add(cp.Size, l)
	}
	w.known = cp.Size
}

// Witness errors (ErrWitness wraps them all).
var (
	ErrWitness = errors.New("audit: witness")
)

// submit makes w's add-checkpoint request for cp, once more from the size
// a 409 gives; it returns w's verified cosignature lines.
func (c *cosigner) submit(ctx context.Context, w *witnessState, cp *Checkpoint) ([]string, error) {
	old := w.known
	for attempt := 0; ; attempt++ {
		if old > cp.Size {
			return nil, fmt.Errorf("%w %s knows a tree of %d entries, larger than this checkpoint's %d: it has seen another history of this log, or the log lost entries", ErrWitness, w.Name, old, cp.Size)
		}
		p, err := c.l.st.consistencyProof(ctx, old, cp.Size)
		if err != nil {
			return nil, err
		}
		var body bytes.Buffer
		fmt.Fprintf(&body, "old %d\n", old)
		for _, h := range p {
			body.WriteString(base64.StdEncoding.EncodeToString(h))
			body.WriteByte('\n')
		}
		body.WriteByte('\n')
		body.Write(cp.Note)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint", &body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		resp, err := c.client.Do(req)
		if err != nil {
			return nil, err
		}
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return c.cosignatures(w, cp, answer)
		case http.StatusConflict:
			n, err := strconv.ParseUint(strings.TrimSpace(string(answer)), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w %s: 409 without a tree size", ErrWitness, w.Name)
			}
			if attempt > 0 || n == old {
				return nil, fmt.Errorf("%w %s: 409 again (it knows size %d)", ErrWitness, w.Name, n)
			}
			old = n
			w.known = n
			continue
		case http.StatusForbidden:
			return nil, fmt.Errorf("%w %s: 403: it does not trust this log's key (add the log's key to the witness)", ErrWitness, w.Name)
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w %s: 404: it does not know the log %s (add it to the witness)", ErrWitness, w.Name, cp.Origin)
		case http.StatusUnprocessableEntity:
			return nil, fmt.Errorf("%w %s: 422: it refuses the consistency proof from size %d: its view of this log differs from the log's (investigate: a fork?)", ErrWitness, w.Name, old)
		default:
			return nil, fmt.Errorf("%w %s: answer %s", ErrWitness, w.Name, resp.Status)
		}
	}
}

// cosignatures returns the lines of answer that are w's valid cosignature
// of cp.
func (c *cosigner) cosignatures(w *witnessState, cp *Checkpoint, answer []byte) ([]string, error) {
	var out []string
	for _, line := range strings.Split(string(answer), "\n") {
		if line == "" {
			continue
		}
		msg := append(append([]byte(nil), cp.Note...), line...)
		msg = append(msg, '\n')
		n, err := note.Open(msg, note.VerifierList(c.v, w.v))
		if err != nil {
			continue
		}
		for _, s := range n.Sigs {
			if s.Name == w.Name && s.Hash == w.v.KeyHash() {
				out = append(out, line)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %s: no valid cosignature by its key in the answer", ErrWitness, w.Name)
	}
	return out, nil
}

// CheckCosignatures checks that at least quorum of the witnesses (their
// cosignature verifier keys) cosigned cp, looking in the cosigned
// checkpoints file of dataDir. The error names the witnesses missing and
// the newest size each did cosign.
func CheckCosignatures(dataDir string, cp *Checkpoint, logKey note.Verifier, witnesses []string, quorum int) (cosigned []string, err error) {
	if quorum < 1 || quorum > len(witnesses) {
		return nil, fmt.Errorf("audit: a witness quorum of %d with %d witness keys", quorum, len(witnesses))
	}
	vs := make([]note.Verifier, len(witnesses))
	for i, k := range witnesses {
		if vs[i], err = NewCosignatureVerifier(k); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(filepath.Join(dataDir, CosignedFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	newest := make([]uint64, len(vs))
	ok := make([]bool, len(vs))
	if len(bytes.TrimSpace(data)) > 0 {
		notes, err := SplitCheckpoints(data)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			got, err := ParseCheckpoint(n, logKey)
			if err != nil {
				continue
			}
			for i, v := range vs {
				o, err := note.Open(n, note.VerifierList(logKey, v))
				if err != nil {
					continue
				}
				for _, s := range o.Sigs {
					if s.Name == v.Name() && s.Hash == v.KeyHash() {
						newest[i] = max(newest[i], got.Size)
						if got.Size == cp.Size && bytes.Equal(got.Root, cp.Root) {
							ok[i] = true
						}
					}
				}
			}
		}
	}
	var missing []string
	for i, v := range vs {
		if ok[i] {
			cosigned = append(cosigned, v.Name())
		} else if newest[i] > 0 {
			missing = append(missing, fmt.Sprintf("%s (newest cosigned size %d)", v.Name(), newest[i]))
		} else {
			missing = append(missing, v.Name()+" (never cosigned)")
		}
	}
	if len(cosigned) < quorum {
		return cosigned, fmt.Errorf("%w: %d of the required %d witnesses cosigned the latest checkpoint (size %d); missing: %s", ErrWitness, len(cosigned), quorum, cp.Size, strings.Join(missing, ", "))
	}
	return cosigned, nil
}
