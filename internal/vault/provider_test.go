package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/phigate/phigate/internal/vault/kmsfake"
)

// roundTrip creates a vault with p, stores a secret, and reopens it with
// reopen to read the secret back.
func roundTrip(t *testing.T, p, reopen Provider) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	v := mustCreate(t, dir, p, Options{})
	if _, err := v.SetSecret(ctx, "s", []byte("value")); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v = mustOpen(t, dir, reopen, Options{})
	defer v.Close()
	if s, _, err := v.Secret(ctx, "s"); err != nil || string(s) != "value" {
		t.Fatalf("read back: %q %v", s, err)
	}
}

func TestFileProvider(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := randKey(t)
	raw := writeKeyFile(t, dir, "raw.key", key, 0o600)
	b64 := writeKeyFile(t, dir, "b64.key", []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	p1, err := ParseProvider(ctx, raw, ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParseProvider(ctx, b64, ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p1, p2) // the same key, raw or base64
	if s := describe(p1); !strings.Contains(s, "raw.key") || !strings.Contains(s, "key id") {
		t.Fatalf("description %q", s)
	}
}

func TestEnvProvider(t *testing.T) {
	ctx := context.Background()
	key := randKey(t)
	env := map[string]string{"PHIGATE_MASTER_KEY": base64.StdEncoding.EncodeToString(key), "BAD": "bm90IDMyIGJ5dGVz"}
	opts := ProviderOptions{Getenv: func(k string) string { return env[k] }}
	p, err := ParseProvider(ctx, "env:PHIGATE_MASTER_KEY", opts)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, p, keyProvider(t, key))
	if _, err := ParseProvider(ctx, "env:BAD", opts); err == nil || strings.Contains(err.Error(), env["BAD"]) {
		t.Fatalf("bad env key: %v (must fail without echoing it)", err)
	}
}

func TestPassphraseFromAFileDescriptor(t *testing.T) {
	ctx := context.Background()
	pass := "correct horse battery staple"
	open := func(spec string) Provider {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { io.WriteString(w, pass+"\n"); w.Close() }()
		// the spec names a real descriptor, which the provider reads to
		// the end and closes: hand it a duplicate, which nothing else owns
		fd, err := syscall.Dup(int(r.Fd()))
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseProvider(ctx, strings.Replace(spec, "N", strconv.Itoa(fd), 1), ProviderOptions{Argon2: fastArgon})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2 := open("passphrase:fd:N"), open("passphrase:fd:N")
	roundTrip(t, p1, p2)

	// the terminal path, with the prompt injected
	var prompted string
	p3, err := ParseProvider(ctx, "passphrase", ProviderOptions{Argon2: fastArgon, ReadPassphrase: func(prompt string) ([]byte, error) {
		prompted = prompt
		return []byte(pass), nil
	}})
	if err != nil || prompted == "" {
		t.Fatalf("terminal: %v", err)
	}
	roundTrip(t, p1, p3)

	wrong, _ := NewPassphraseProvider([]byte("not the passphrase at all"), fastArgon, "passphrase", nil)
	dir := t.TempDir()
	mustCreate(t, dir, p1, Options{}).Close()
	if _, err := Open(ctx, dir, wrong, Options{}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := NewPassphraseProvider([]byte("short"), fastArgon, "passphrase", nil); err == nil {
		t.Fatal("a short passphrase was accepted")
	}
	if _, err := ParseProvider(ctx, "passphrase:hunter2hunter2", ProviderOptions{}); err == nil {
		t.Fatal("a passphrase in the spec was accepted")
	}
}

func TestPassphraseWrapsCarryTheirParameters(t *testing.T) {
	ctx := context.Background()
	pass := []byte("a long enough passphrase")
	p1, _ := NewPassphraseProvider(pass, fastArgon, "passphrase", nil)
	w, err := p1.WrapKey(ctx, make([]byte, 32), "l")
	if err != nil {
		t.Fatal(err)
	}
	// another provider with other parameters for new wraps still opens it
	p2, _ := NewPassphraseProvider(pass, Argon2Params{Time: 2, Memory: 128, Threads: 2}, "passphrase", nil)
	if _, err := p2.UnwrapKey(ctx, w, "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.UnwrapKey(ctx, w, "other label"); !errors.Is(err, ErrTampered) {
		t.Fatalf("other label: %v", err)
	}
	// absurd parameters in a damaged wrap are refused before any work
	bad := append([]byte(nil), w...)
	copy(bad[len(wrapMagic)+1+keyIDLen+4:], []byte{0xff, 0xff, 0xff, 0xff})
	if _, err := p2.UnwrapKey(ctx, bad, "l"); !errors.Is(err, ErrTampered) {
		t.Fatalf("huge memory parameter: %v", err)
	}
}

func kmsOptions() ProviderOptions {
	return ProviderOptions{AWSCredentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-test", "")}
}

func TestAWSKMSProviderAgainstAFakeKMS(t *testing.T) {
	ctx := context.Background()
	fake := kmsfake.New("key-1", "key-2")
	defer fake.Close()
	fake.Alias("phigate", "key-1")
	spec := func(id string) string { return "awskms:" + id + "?region=us-east-1&endpoint=" + fake.URL }
	p, err := ParseProvider(ctx, spec("key-1"), kmsOptions())
	if err != nil {
		t.Fatal(err)
	}
	alias, _ := ParseProvider(ctx, spec("alias/phigate"), kmsOptions())
	roundTrip(t, p, alias)
	if fake.Encrypts.Load() == 0 || fake.Decrypts.Load() == 0 {
		t.Fatal("the fake KMS was not called")
	}

	dir := t.TempDir()
	mustCreate(t, dir, p, Options{}).Close()
	before := hashDir(t, dir)
	other, _ := ParseProvider(ctx, spec("key-2"), kmsOptions())
	if _, err := Open(ctx, dir, other, Options{}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("other KMS key: %v", err)
	}
	if _, err := Open(ctx, dir, keyProvider(t, randKey(t)), Options{}); !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "AWS KMS") {
		t.Fatalf("file key on a KMS vault: %v", err)
	}
	// KMS unreachable: fail closed, but not as a wrong key
	fake.SetDown(true)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = Open(tctx, dir, p, Options{})
	cancel()
	if err == nil || errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("KMS down: %v", err)
	}
	fake.SetDown(false)
	if after := hashDir(t, dir); strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatal("failed opens changed the directory")
	}

	// rotate from the file key to KMS and back
	key := randKey(t)
	dir2 := t.TempDir()
	v := mustCreate(t, dir2, keyProvider(t, key), Options{})
	v.SetSecret(ctx, "s", []byte("value"))
	if _, err := v.RotateKEK(ctx, p); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v = mustOpen(t, dir2, p, Options{})
	if s, _, err := v.Secret(ctx, "s"); err != nil || string(s) != "value" {
		t.Fatalf("after rotating to KMS: %q %v", s, err)
	}
	v.Close()
}

func TestFailingKMSWrapChangesNothing(t *testing.T) {
	ctx := context.Background()
	fake := kmsfake.New("key-1")
	defer fake.Close()
	p, _ := ParseProvider(ctx, "awskms:no-such-key?region=us-east-1&endpoint="+fake.URL, kmsOptions())
	dir := t.TempDir()
	key := randKey(t)
	v := mustCreate(t, dir, keyProvider(t, key), Options{})
	if _, err := v.RotateKEK(ctx, p); err == nil {
		t.Fatal("rotation to a missing KMS key succeeded")
	}
	v.Close()
	mustOpen(t, dir, keyProvider(t, key), Options{}).Close()
	if _, err := Create(ctx, t.TempDir(), p, Options{}); err == nil {
		t.Fatal("create with a missing KMS key succeeded")
	}
}

func TestDevKey(t *testing.T) {
	dir := t.TempDir()
	spec, created, warn, err := DevKey(dir, nil)
	if err != nil || !created || !strings.Contains(warn, "DEVELOPMENT ONLY") || !strings.HasPrefix(spec, "file:/") {
		t.Fatalf("%q %v %q %v", spec, created, warn, err)
	}
	st, _ := os.Stat(dir + "/" + DevKeyFile)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	spec2, created, _, _ := DevKey(dir, nil)
	if spec2 != spec || created {
		t.Fatal("second call")
	}
	if _, err := ParseProvider(context.Background(), spec, ProviderOptions{}); err != nil {
		t.Fatal(err)
	}
}
