package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileServer serves l as tlog-tiles over TLS.
func tileServer(t *testing.T, l *Log, o TileServerOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(TileHandler(l, o))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, r.Header, b
}

// TestTorchwoodFollowsTheTiledLog: filippo.io/torchwood v0.6.1's tlog
// client (not phigate's code) reads the checkpoint, fetches the hash tiles
// and entry bundles, recomputes the root, and verifies the inclusion of
// entries; the entries it reads are the log's canonical encodings.
func TestTorchwoodFollowsTheTiledLog(t *testing.T) {
	for _, size := range []int{1, 255, 256, 257, 65537} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l, _ := newTestLog(t, Options{})
			generate(t, l, size, grant)
			srv := tileServer(t, l, TileServerOptions{})
			ctx := context.Background()

			_, _, cpNote := get(t, srv.Client(), srv.URL+"/checkpoint")
			v, err := note.NewVerifier(l.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			n, err := note.Open(cpNote, note.VerifierList(v))
			if err != nil {
				t.Fatalf("the served checkpoint does not open with the key: %v", err)
			}
			cp, err := torchwood.ParseCheckpoint(n.Text)
			if err != nil || cp.Origin != l.Origin() || cp.N != int64(size) {
				t.Fatalf("%+v %v", cp, err)
			}
			tree := cp.Tree
			fetcher, err := torchwood.NewTileFetcher(srv.URL, torchwood.WithHTTPClient(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			// the root, recomputed from the tiles
			root, err := tlog.TreeHash(tree.N, torchwood.TileHashReaderWithContext(ctx, tree, fetcher))
			if err != nil || root != tree.Hash {
				t.Fatalf("root from the tiles: %v %v", root, err)
			}
			client, err := torchwood.NewClient(fetcher)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for i, e := range client.Entries(ctx, tree, 0) {
				ent, err := UnmarshalEntry(e)
				if err != nil || ent.Seq != uint64(i) {
					t.Fatalf("entry %d: %v %+v", i, err, ent)
				}
				got++
			}
			if err := client.Err(); err != nil {
				t.Fatal(err)
			}
			if got < size/256*256 {
				t.Fatalf("torchwood read %d entries of %d", got, size)
			}
			for _, i := range []int{0, size / 2, size - 1} {
				e, _, err := client.Entry(ctx, tree, int64(i))
				if err != nil {
					t.Fatalf("inclusion of %d: %v", i, err)
				}
				if ent, err := UnmarshalEntry(e); err != nil || ent.Seq != uint64(i) {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
		})
	}
}

// TestTileFullAndPartialRules: at sizes 0, 1, 255, 256, 257 and 65537 a
// full tile is served (immutable) exactly when the checkpoint's tree has
// all 256 of its hashes, a partial one of width W when it has at least W,
// and nothing beyond.
func TestTileFullAndPartialRules(t *testing.T) {
	for _, size := range []uint64{0, 1, 255, 256, 257, 65537} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l, _ := newTestLog(t, Options{})
			if size > 0 {
				generate(t, l, int(size), grant)
			}
			srv := tileServer(t, l, TileServerOptions{})
			c := srv.Client()
			for _, kind := range []string{"0", "1", "2", "entries"} {
				level := uint(0)
				if kind != "entries" {
					fmt.Sscan(kind, &level)
				}
				have := size >> (8 * level)
				full, rem := have/256, have%256
				try := func(p TilePath, want int, cache string) {
					t.Helper()
					st, h, body := get(t, c, srv.URL+"/"+p.String())
					if st != want {
						t.Fatalf("%s: %d, want %d (%s)", p, st, want, body)
					}
					if want != 200 {
						return
					}
					if cc := h.Get("Cache-Control"); !strings.Contains(cc, cache) {
						t.Errorf("%s: Cache-Control %q", p, cc)
					}
					if !p.Entries && len(body) != 32*p.Width {
						t.Errorf("%s: %d bytes", p, len(body))
					}
				}
				p := TilePath{Entries: kind == "entries", Level: uint8(level)}
				for n := uint64(0); n < full && n < 3; n++ {
					p.N, p.Width = n, 256
					try(p, 200, "immutable")
					p.Width = 17
					try(p, 200, "max-age=60") // a partial of a full tile still served
				}
				p.N, p.Width = full, 256
				try(p, 404, "")
				if rem > 0 {
					p.Width = int(rem)
					try(p, 200, "max-age=60")
				}
				if rem < 255 {
					p.Width = int(rem) + 1
					try(p, 404, "")
				}
				p.N, p.Width = full+1, 1
				try(p, 404, "")
			}
			// what is not a tile
			for _, path := range []string{"/tile/0/0", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/0/x000/001", "/tile/entries", "/tile/64/000", "/checkpoints", "/tile/0/000?x=1"} {
				if st, _, _ := get(t, c, srv.URL+path); st != 404 && st != 400 {
					t.Errorf("%s: %d", path, st)
				}
			}
			req, _ := http.NewRequest("POST", srv.URL+"/checkpoint", nil)
			if r, err := c.Do(req); err != nil || r.StatusCode != 405 {
				t.Errorf("POST: %v %v", r, err)
			} else {
				r.Body.Close()
			}
		})
	}
}

// TestTileEntriesKeepPHISealed: with the vault's sealer, an entry bundle
// carries the sealed field, never the patient, path or justification.
func TestTileEntriesKeepPHISealed(t *testing.T) {
	l, _ := newTestLog(t, Options{Sealer: VaultSealer(testVault(t))})
	pat := randomID("pat-")
	for i := 0; i < 3; i++ {
		e := grant(i)
		e.Patient, e.BreakGlass = pat, "bay "+pat
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	srv := tileServer(t, l, TileServerOptions{})
	st, _, b := get(t, srv.Client(), srv.URL+"/tile/entries/000.p/3")
	if st != 200 {
		t.Fatal(st)
	}
	if strings.Contains(string(b), pat) || strings.Contains(string(b), "/fhir/Observation") {
		t.Fatal("PHI in the clear in an entry bundle")
	}
	for rest, n := b, 0; len(rest) > 0; n++ {
		e, r, err := torchwood.ReadTileEntry(rest)
		if err != nil {
			t.Fatal(err)
		}
		ent, err := UnmarshalEntry(e)
		if err != nil || len(ent.Sealed) == 0 || ent.Patient != "" {
			t.Fatalf("entry %d: %v sealed=%d", n, err, len(ent.Sealed))
		}
		rest = r
	}
}

// TestTileServingWritesNothing: serving tiles and the checkpoint leaves
// the log's size, checkpoint and database as they were.
func TestTileServingWritesNothing(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	generate(t, l, 600, grant)
	before := l.latest.Load()
	srv := tileServer(t, l, TileServerOptions{})
	for _, p := range []string{"/checkpoint", "/tile/0/000", "/tile/0/002.p/88", "/tile/entries/001", "/tile/1/000.p/2"} {
		if st, _, b := get(t, srv.Client(), srv.URL+p); st != 200 {
			t.Fatalf("%s: %d %s", p, st, b)
		}
	}
	if l.Size() != 600 || l.latest.Load() != before {
		t.Fatal("serving tiles changed the log")
	}
}

func TestTileAccessRefused(t *testing.T) {
	l, _ := newTestLog(t, Options{})
	generate(t, l, 3, grant)
	srv := tileServer(t, l, TileServerOptions{Authorize: func(r *http.Request) error {
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			return nil
		case "Bearer weak":
			return &Refusal{Status: 403, Msg: "the token lacks audit:read-tiles"}
		}
		return errors.New("a bearer token is required")
	}})
	if st, h, _ := get(t, srv.Client(), srv.URL+"/checkpoint"); st != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "audit:read-tiles") {
		t.Errorf("no token: %d %v", st, h)
	}
	if st, _, _ := get(t, srv.Client(), srv.URL+"/tile/0/000.p/3", "Authorization", "Bearer weak"); st != 403 {
		t.Errorf("weak token: %d", st)
	}
	if st, _, _ := get(t, srv.Client(), srv.URL+"/tile/0/000.p/3", "Authorization", "Bearer good"); st != 200 {
		t.Errorf("good token: %d", st)
	}
}

// TestParseTilePathAgreesWithTlog: the paths x/mod's tlog (sumdb) writes
// for height-8 tiles, with its "tile/8/" prefix and "data" level
// renamed as the spec says, parse back to the same tile.
func TestParseTilePathAgreesWithTlog(t *testing.T) {
	for _, n := range []int64{0, 1, 999, 1000, 1234067, 1 << 40} {
		for _, w := range []int{1, 77, 255, 256} {
			for _, level := range []int{-1, 0, 1, 5} {
				tt := tlog.Tile{H: 8, L: level, N: n, W: w}
				path := torchwood.TilePath(tt)
				p, err := ParseTilePath(path)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if p.N != uint64(n) || p.Width != w || p.Entries != (level == -1) || (level >= 0 && int(p.Level) != level) {
					t.Fatalf("%s: %+v", path, p)
				}
			}
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/x234/067.p/12", "tile/3/x999/999", "tile/0/000.p/0", "tile/00/000", "tile/0/x000/001", "tile/entries/000.p/256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseTilePath(s)
		if err != nil {
			if !errors.Is(err, ErrBadTilePath) {
				t.Fatal(err)
			}
			return
		}
		if p.String() != s || p.Width < 1 || p.Width > 256 || p.Level > 63 {
			t.Fatalf("%q: %+v", s, p)
		}
		// torchwood (x/mod's tlog underneath) reads the same tile
		tt, err := torchwood.ParseTilePath(s)
		if err != nil {
			if p.N < 1<<62 { // tlog's int64 indices
				t.Fatalf("%q: torchwood refuses it: %v", s, err)
			}
			return
		}
		if uint64(tt.N) != p.N || tt.W != p.Width || (tt.L == -1) != p.Entries {
			t.Fatalf("%q: torchwood reads %+v, we %+v", s, tt, p)
		}
	})
}
