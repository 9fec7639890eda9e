package audit

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
)

// C2SP tlog-tiles
//
// The log can be served read-only as a C2SP tlog-tiles log
// (https://c2sp.org/tlog-tiles) so that a verifier or monitor follows it
// with standard tooling:
//
//	GET /checkpoint                  the latest signed checkpoint (with
//	                                 the witnesses' cosignatures, if any)
//	GET /tile/<L>/<N>[.p/<W>]        hash tile: the 256 (or W) hashes of
//	                                 tree level 8·L, indices 256·N onwards
//	GET /tile/entries/<N>[.p/<W>]    entry bundle: entries 256·N onwards,
//	                                 each its canonical encoding (sealed
//	                                 PHI fields stay sealed) after its
//	                                 2-byte big-endian length
//
// N is written in groups of three digits, all but the last prefixed with
// "x" (1234067 is x001/x234/067). A full tile (W = 256) exists once the
// latest checkpoint covers it and never changes: it is served with
// Cache-Control "public, max-age=31536000, immutable". A partial tile of
// width W (1..255) is served while the latest checkpoint's tree has at
// least W hashes in it and the full tile does not exist yet (the spec
// lets a log answer 404 then; phigate keeps serving it, it cannot change
// either). Everything is read from the database: serving costs the commit
// path nothing.

// TilePath is a parsed tile path.
type TilePath struct {
	// Entries: an entry bundle (Level is then 0).
	Entries bool
	Level   uint8
	N       uint64
	// Width is the number of hashes or entries: 256 for a full tile.
	Width int
}

// String returns the path in the spec's encoding, without the leading "/".
func (p TilePath) String() string {
	var b strings.Builder
	b.WriteString("tile/")
	if p.Entries {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(int(p.Level)))
	}
	b.WriteByte('/')
	b.WriteString(tileIndexPath(p.N))
	if p.Width < 1<<tileHeight {
		b.WriteString(".p/")
		b.WriteString(strconv.Itoa(p.Width))
	}
	return b.String()
}

// tileIndexPath encodes n in groups of three digits, "x" before all but
// the last.
func tileIndexPath(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for len(s)%3 != 0 {
		s = "0" + s
	}
	var b strings.Builder
	for i := 0; i < len(s); i += 3 {
		if i+3 < len(s) {
			b.WriteByte('x')
		}
		b.WriteString(s[i : i+3])
		if i+3 < len(s) {
			b.WriteByte('/')
		}
	}
	return b.String()
}

// ErrBadTilePath: a path that is not a tlog-tiles tile path in its one
// canonical spelling.
var ErrBadTilePath = errors.New("audit: not a tile path")

// ParseTilePath parses "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]"
// (no leading "/"), refusing anything but the canonical spelling: levels
// 0..63 without leading zeros, index groups of exactly three digits, no
// group of leading zeros, widths 1..255 without leading zeros.
func ParseTilePath(path string) (TilePath, error) {
	bad := func(why string) (TilePath, error) {
		return TilePath{}, fmt.Errorf("%w: %s", ErrBadTilePath, why)
	}
	if len(path) > 128 {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return bad("not under tile/")
	}
	var p TilePath
	first, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no index")
	}
	if first == "entries" {
		p.Entries = true
	} else {
		l, err := strconv.ParseUint(first, 10, 8)
		if err != nil || strconv.FormatUint(l, 10) != first || l > 63 {
			return bad("level must be 0..63")
		}
		p.Level = uint8(l)
	}
	p.Width = 1 << tileHeight
	if i := strings.Index(rest, ".p/"); i >= 0 {
		w := rest[i+3:]
		n, err := strconv.Atoi(w)
		if err != nil || strconv.Itoa(n) != w || n < 1 || n >= 1<<tileHeight {
			return bad("partial width must be 1..255")
		}
		p.Width, rest = n, rest[:i]
	}
	groups := strings.Split(rest, "/")
	if len(groups) > 7 {
		return bad("index too long")
	}
	var n uint64
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return bad("every index group but the last starts with x")
			}
		}
		if len(g) != 3 || g[0] < '0' || g[0] > '9' || g[1] < '0' || g[1] > '9' || g[2] < '0' || g[2] > '9' {
			return bad("index groups are three digits")
		}
		if i == 0 && len(groups) > 1 && g == "000" {
			return bad("leading zero group")
		}
		d := uint64(g[0]-'0')*100 + uint64(g[1]-'0')*10 + uint64(g[2]-'0')
		if n > (1<<64-1-d)/1000 {
			return bad("index out of range")
		}
		n = n*1000 + d
	}
	p.N = n
	if p.String() != path {
		return bad("not canonical")
	}
	return p, nil
}

// ErrNoTile: the tile is beyond the latest checkpoint (a 404).
var ErrNoTile = errors.New("audit: no such tile (yet)")

// tileBounds returns the number of hashes the tree of size has at level
// 8·L, and checks that tile p lies within them.
func tileAvailable(p TilePath, size uint64) error {
	shift := uint(tileHeight) * uint(p.Level)
	if shift >= 64 {
		return ErrNoTile
	}
	have := size >> shift // the complete nodes at that level
	if p.N > (have >> tileHeight) {
		return ErrNoTile
	}
	if avail := have - p.N<<tileHeight; avail < uint64(p.Width) {
		return ErrNoTile
	}
	return nil
}

// Tile returns the contents of tile p against the latest checkpoint:
// Width hashes of 32 bytes, or Width length-prefixed entries.
func (l *Log) Tile(ctx context.Context, p TilePath) ([]byte, error) {
	cp := l.latest.Load()
	if err := tileAvailable(p, cp.Size); err != nil {
		return nil, err
	}
	first := p.N << tileHeight
	if p.Entries {
		return l.st.entryBundle(ctx, first, p.Width)
	}
	ids := make([]compact.NodeID, p.Width)
	for i := range ids {
		ids[i] = compact.NewNodeID(uint(tileHeight)*uint(p.Level), first+uint64(i))
	}
	hs, err := l.st.rowNodeHashes(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 32*len(hs))
	for _, h := range hs {
		out = append(out, h...)
	}
	return out, nil
}

// entryBundle returns entries first..first+n-1, each after its 2-byte
// big-endian length.
func (s *store) entryBundle(ctx context.Context, first uint64, n int) ([]byte, error) {
	st, err := s.stmt(ctx, "SELECT seq, body FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq")
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, int64(first), int64(first)+int64(n))
	if err != nil {
		return nil, fmt.Errorf("audit: read entries: %w", err)
	}
	defer rows.Close()
	var out []byte
	next := first
	for rows.Next() {
		var seq int64
		var body sql.RawBytes
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, err
		}
		if uint64(seq) != next {
			return nil, fmt.Errorf("%w: entry %d missing", ErrTampered, next)
		}
		if len(body) > 0xffff {
			return nil, fmt.Errorf("audit: entry %d is %d bytes, too long for a tlog-tiles entry bundle", seq, len(body))
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
		out = append(out, body...)
		next++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if next != first+uint64(n) {
		return nil, fmt.Errorf("%w: entry %d missing", ErrTampered, next)
	}
	return out, nil
}

// TileServerOptions configure TileHandler.
type TileServerOptions struct {
	// Authorize, when set, is asked for every request; an error refuses
	// it (its status from Refusal when it is one, else 401).
	Authorize func(r *http.Request) error
	// Cosigned, when set, returns the checkpoint to serve at /checkpoint
	// (the note with the witnesses' cosignatures) for cp.
	Cosigned func(ctx context.Context, cp *Checkpoint) []byte
	// Logger for internal errors (default: discard).
	Logf func(msg string, args ...any)
}

// Refusal is an Authorize error with its HTTP status.
type Refusal struct {
	Status int
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// TileHandler serves l read-only as a C2SP tlog-tiles log: GET (or HEAD)
// /checkpoint and /tile/...; anything else is 404 (unknown path) or 405.
func TileHandler(l *Log, o TileServerOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		if o.Authorize != nil {
			if err := o.Authorize(r); err != nil {
				st := http.StatusUnauthorized
				var rf *Refusal
				if errors.As(err, &rf) {
					st = rf.Status
				}
				if st == http.StatusUnauthorized {
					h.Set("WWW-Authenticate", `Bearer realm="phigate audit tiles", scope="audit:read-tiles"`)
				}
				http.Error(w, err.Error(), st)
				return
			}
		}
		if r.URL.RawQuery != "" {
			http.Error(w, "tile paths take no query", http.StatusBadRequest)
			return
		}
		path := strings.TrimPrefix(r.URL.Path, "/")
		if path == "checkpoint" {
			cp := l.latest.Load()
			body := cp.Note
			if o.Cosigned != nil {
				body = o.Cosigned(r.Context(), cp)
			}
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
			return
		}
		p, err := ParseTilePath(path)
		if err != nil {
			http.Error(w, "not found: "+strings.TrimPrefix(err.Error(), "audit: "), http.StatusNotFound)
			return
		}
		body, err := l.Tile(r.Context(), p)
		switch {
		case errors.Is(err, ErrNoTile):
			h.Set("Cache-Control", "no-cache")
			http.Error(w, "no such tile (yet)", http.StatusNotFound)
			return
		case err != nil:
			if o.Logf != nil {
				o.Logf("audit tiles: cannot serve a tile", "path", path, "err", err)
			}
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "application/octet-stream")
		if p.Width == 1<<tileHeight {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			// it never changes either, but is superseded by the full tile
			h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(time.Minute/time.Second)))
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}
