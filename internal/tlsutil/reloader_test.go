package tlsutil

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replaceFiles copies a pair over (cert, key) and gives both files the
// modification time mod, so the test does not depend on the file system's
// timestamp resolution.
func replaceFiles(t *testing.T, cert, key, newCert, newKey string, mod time.Time) {
	t.Helper()
	for _, f := range [][2]string{{newCert, cert}, {newKey, key}} {
		data, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		writeAndTouch(t, f[1], data, mod)
	}
}

func writeAndTouch(t *testing.T, name string, data []byte, mod time.Time) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// reloadFixture is a server backed by a Reloader on a copy of a pair, with
// an injected clock and a captured log.
type reloadFixture struct {
	certFile, keyFile string
	clock             *fakeClock
	log               *syncBuffer
	r                 *Reloader
	addr              string
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	origCert, origKey := selfSigned(t)
	dir := t.TempDir()
	fx := &reloadFixture{
		certFile: filepath.Join(dir, "tls.crt"),
		keyFile:  filepath.Join(dir, "tls.key"),
		clock:    &fakeClock{t: time.Now()},
		log:      &syncBuffer{},
	}
	replaceFiles(t, fx.certFile, fx.keyFile, origCert, origKey, time.Now().Add(-time.Hour))
	logger := slog.New(slog.NewTextHandler(fx.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := NewReloader(fx.certFile, fx.keyFile, logger, fx.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	fx.r = r
	fx.addr, _ = serveSource(t, r)
	return fx
}

// servedPin is the pin of the certificate a fresh handshake sees.
func (fx *reloadFixture) servedPin(t *testing.T) Pin {
	t.Helper()
	cs, err := handshake(t, fx.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return pinOf(cs.PeerCertificates[0])
}

func TestReloaderServesNewCertificateAfterFilesChange(t *testing.T) {
	fx := newReloadFixture(t)
	oldPin := fx.servedPin(t)
	if oldPin != mustPinFromFile(t, fx.certFile) {
		t.Fatal("served pin differs from the file's")
	}

	newCert, newKey := selfSigned(t)
	replaceFiles(t, fx.certFile, fx.keyFile, newCert, newKey, time.Now())

	fx.clock.Advance(checkInterval / 2)
	if got := fx.servedPin(t); got != oldPin {
		t.Fatal("files were checked again before a second passed")
	}
	fx.clock.Advance(checkInterval)
	if got, want := fx.servedPin(t), mustPinFromFile(t, newCert); got != want {
		t.Fatalf("served pin %v after reload, want the new certificate's %v", got, want)
	}
	if !strings.Contains(fx.log.String(), "certificate reloaded") {
		t.Errorf("reload not logged:\n%s", fx.log)
	}
	if fx.r.Leaf().Subject.CommonName == "" {
		t.Error("Leaf has no subject")
	}
}

func TestReloaderKeepsServingOldCertificateWhenFilesAreBroken(t *testing.T) {
	keyBytes := func(t *testing.T, name string) string {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	otherCert, otherKey := selfSigned(t)
	tests := []struct {
		name       string
		breakFiles func(t *testing.T, fx *reloadFixture, mod time.Time)
	}{
		{"truncated certificate", func(t *testing.T, fx *reloadFixture, mod time.Time) {
			data, _ := os.ReadFile(fx.certFile)
			writeAndTouch(t, fx.certFile, data[:len(data)/2], mod)
		}},
		{"garbage key", func(t *testing.T, fx *reloadFixture, mod time.Time) {
			writeAndTouch(t, fx.keyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), mod)
		}},
		{"key of another certificate", func(t *testing.T, fx *reloadFixture, mod time.Time) {
			writeAndTouch(t, fx.keyFile, []byte(keyBytes(t, otherKey)), mod)
		}},
		{"certificate and key swapped", func(t *testing.T, fx *reloadFixture, mod time.Time) {
			replaceFiles(t, fx.certFile, fx.keyFile, otherKey, otherCert, mod)
		}},
		{"key file removed", func(t *testing.T, fx *reloadFixture, mod time.Time) {
			if err := os.Remove(fx.keyFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newReloadFixture(t)
			oldPin := fx.servedPin(t)
			secretKey := keyBytes(t, fx.keyFile)

			tt.breakFiles(t, fx, time.Now())
			fx.clock.Advance(2 * checkInterval)
			if got := fx.servedPin(t); got != oldPin {
				t.Fatal("a broken pair replaced the served certificate")
			}
			fx.clock.Advance(2 * checkInterval)
			fx.servedPin(t)

			log := fx.log.String()
			if n := strings.Count(log, "certificate reload failed"); n != 1 {
				t.Errorf("failure logged %d times, want once:\n%s", n, log)
			}
			if strings.Contains(log, strings.Split(secretKey, "\n")[1]) {
				t.Errorf("log contains key material:\n%s", log)
			}

			// Repairing the files is picked up at the next check.
			replaceFiles(t, fx.certFile, fx.keyFile, otherCert, otherKey, time.Now().Add(time.Minute))
			fx.clock.Advance(2 * checkInterval)
			if got, want := fx.servedPin(t), mustPinFromFile(t, otherCert); got != want {
				t.Error("repaired files were not loaded")
			}
		})
	}
}

func TestReloaderChecksAgainWhenClockGoesBackwards(t *testing.T) {
	fx := newReloadFixture(t)
	newCert, newKey := selfSigned(t)
	replaceFiles(t, fx.certFile, fx.keyFile, newCert, newKey, time.Now())
	fx.clock.Advance(-time.Hour)
	if got, want := fx.servedPin(t), mustPinFromFile(t, newCert); got != want {
		t.Fatal("reload postponed by a clock that went backwards")
	}
}

func TestReloaderIsSafeForConcurrentHandshakes(t *testing.T) {
	fx := newReloadFixture(t)
	pairs := make([][2]string, 2)
	for i := range pairs {
		pairs[i][0], pairs[i][1] = selfSigned(t)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := fx.r.GetCertificate(nil); err != nil || c == nil || c.Leaf == nil {
					t.Errorf("GetCertificate = %v, %v", c, err)
					return
				}
			}
		})
	}
	for i := range 20 {
		p := pairs[i%2]
		replaceFiles(t, fx.certFile, fx.keyFile, p[0], p[1], time.Now().Add(time.Duration(i)*time.Second))
		fx.clock.Advance(checkInterval)
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
}

func TestNewReloaderFailsWhenInitialLoadFails(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	_, otherKey := selfSigned(t)
	tests := []struct{ name, cert, key string }{
		{"missing certificate", filepath.Join(t.TempDir(), "none.crt"), keyFile},
		{"missing key", certFile, filepath.Join(t.TempDir(), "none.key")},
		{"mismatched key", certFile, otherKey},
		{"swapped", keyFile, certFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewReloader(tt.cert, tt.key, nil, nil); err == nil {
				t.Fatal("NewReloader succeeded")
			}
		})
	}
}

func BenchmarkReloaderGetCertificate(b *testing.B) {
	certFile, keyFile := selfSigned(b)
	r := newTestReloader(b, certFile, keyFile)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c, err := r.GetCertificate(nil); c == nil || err != nil {
				b.Fatal(c, err)
			}
		}
	})
}
