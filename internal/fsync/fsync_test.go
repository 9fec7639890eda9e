package fsync

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// syncers are the two ways a Syncer works: through AIO where it can, and
// with fdatasync.
func syncers(t *testing.T) map[string]*Syncer {
	t.Helper()
	aio, blocking := newSyncer(true), newSyncer(false)
	aio.always = true // AIO even when nothing else wants the P
	t.Cleanup(func() { aio.Close(); blocking.Close() })
	if blocking.Async() {
		t.Fatal("a Syncer made without AIO says it uses AIO")
	}
	if runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") && !aio.Async() {
		t.Log("Linux AIO is not available here: both cases run fdatasync")
	}
	return map[string]*Syncer{"aio": aio, "fdatasync": blocking}
}

func TestDatasyncKeepsWhatWasWritten(t *testing.T) {
	for name, s := range syncers(t) {
		t.Run(name, func(t *testing.T) {
			f := tempFile(t)
			want := make([]byte, 3*4096+17)
			rand.Read(want)
			for off := 0; off < len(want); off += 1000 {
				end := min(off+1000, len(want))
				if _, err := f.WriteAt(want[off:end], int64(off)); err != nil {
					t.Fatal(err)
				}
				if err := s.Datasync(f); err != nil {
					t.Fatalf("Datasync after writing [%d,%d): %v", off, end, err)
				}
			}
			got, err := os.ReadFile(f.Name())
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back %d bytes (err %v), want the %d written", len(got), err, len(want))
			}
			if name == "aio" && s.Async() != newSyncer(true).Async() {
				t.Fatal("a regular file made the Syncer give up AIO")
			}
		})
	}
}

func TestDatasyncErrors(t *testing.T) {
	for name, s := range syncers(t) {
		t.Run(name, func(t *testing.T) {
			f := tempFile(t)
			f.Close()
			if err := s.Datasync(f); err == nil || !strings.Contains(err.Error(), "closed") {
				t.Fatalf("Datasync of a closed file: %v, want a use of a closed file", err)
			}
			// a pipe has no fsync: the error is fdatasync's, and the
			// Syncer keeps using AIO for the files that do
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			async := s.Async()
			if err := s.Datasync(w); err == nil {
				t.Fatal("Datasync of a pipe succeeded")
			}
			if s.Async() != async {
				t.Fatal("one file without fsync made the Syncer give up AIO")
			}
			g := tempFile(t)
			g.WriteString("still works")
			if err := s.Datasync(g); err != nil {
				t.Fatalf("Datasync after a failed one: %v", err)
			}
		})
	}
}

func TestDatasyncConcurrentAndAfterClose(t *testing.T) {
	s := newSyncer(true)
	s.always = true
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for range 8 {
		f := tempFile(t)
		wg.Go(func() {
			for i := range 20 {
				f.WriteAt([]byte{byte(i)}, int64(i))
				errs <- s.Datasync(f)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if s.Async() {
		t.Fatal("a closed Syncer says it uses AIO")
	}
	f := tempFile(t)
	if err := s.Datasync(f); err != nil {
		t.Fatalf("Datasync after Close (fdatasync): %v", err)
	}
}

// BenchmarkDatasync compares the two ways on 4 KiB overwrites of one
// file: the wall time and the calling process's CPU per sync are about the
// same; what differs is that the AIO way leaves the goroutine's P free
// while the disk works (measured at the level of the token-creation and
// gateway benchmarks, where that matters).
func BenchmarkDatasync(b *testing.B) {
	for _, c := range []struct {
		name string
		aio  bool
	}{{"aio", true}, {"fdatasync", false}} {
		b.Run(c.name, func(b *testing.B) {
			s := newSyncer(c.aio)
			s.always = c.aio
			defer s.Close()
			if c.aio && !s.Async() {
				b.Skip("Linux AIO is not available here")
			}
			f := tempFile(b)
			page := make([]byte, 4096)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := f.WriteAt(page, int64(i%256)*4096); err != nil {
					b.Fatal(err)
				}
				if err := s.Datasync(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Dir(dir); err != nil {
		t.Fatalf("Dir of a directory: %v", err)
	}
	if err := Dir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Dir of a missing directory succeeded")
	}
}
