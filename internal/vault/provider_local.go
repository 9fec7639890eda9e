package vault

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/term"
)

// Wrapped-key format (local providers), version 1:
//
//	"pgk" 0x01 | kind (1) | key id (8) | [kind 2: argon2id params (9) | salt (16)] | nonce (12) | AES-256-GCM(KEK, DEK) (48)
//
// kind 1 is a raw 32-byte master key (file:, env:), kind 2 a passphrase,
// kind 3 AWS KMS (then the KMS ciphertext blob follows the kind byte and
// nothing else). The key id is the first 8 bytes of
// HMAC-SHA256(KEK, "phigate vault key id"): it tells a wrong master key
// from a damaged wrapped key without revealing anything of the KEK. The
// GCM additional data is every byte before the nonce, then the label.
const (
	wrapMagic      = "pgk\x01"
	wrapRaw        = 1
	wrapPassphrase = 2
	wrapKMS        = 3
	keyIDLen       = 8
	argonParamsLen = 9
	saltLen        = 16
)

var kindNames = map[byte]string{wrapRaw: "a 32-byte key (file: or env:)", wrapPassphrase: "a passphrase", wrapKMS: "an AWS KMS key"}

func kindName(k byte) string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "an unknown kind of master key"
}

// wrappedKind returns the kind byte of a wrapped key, or 0.
func wrappedKind(w []byte) byte {
	if len(w) < len(wrapMagic)+1 || string(w[:len(wrapMagic)]) != wrapMagic {
		return 0
	}
	return w[len(wrapMagic)]
}

// localKEK is an AES-256-GCM key-encryption key held in memory.
type localKEK struct {
	aead cipher.AEAD
	id   [keyIDLen]byte
}

func newLocalKEK(kek []byte) (*localKEK, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("vault: master key has %d bytes, want 32", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &localKEK{aead: aead}
	m := hmac.New(sha256.New, kek)
	m.Write([]byte("phigate vault key id"))
	copy(k.id[:], m.Sum(nil))
	return k, nil
}

// seal wraps key: prefix (magic, kind, key id, params) must already be
// built; the nonce and ciphertext are appended.
func (k *localKEK) seal(prefix []byte, rnd io.Reader, key []byte, label string) ([]byte, error) {
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("vault: randomness: %w", err)
	}
	out := append(prefix, nonce...)
	return k.aead.Seal(out, nonce, key, append(prefix[:len(prefix):len(prefix)], label...)), nil
}

func (k *localKEK) open(w []byte, prefixLen int, label string) ([]byte, error) {
	if len(w) != prefixLen+nonceSize+dataKeySize+tagSize {
		return nil, &TamperError{Reason: "wrapped data key has the wrong length"}
	}
	nonce := w[prefixLen : prefixLen+nonceSize]
	ad := append(w[:prefixLen:prefixLen], label...)
	key, err := k.aead.Open(nil, nonce, w[prefixLen+nonceSize:], ad)
	if err != nil {
		return nil, &TamperError{Reason: "wrapped data key failed authentication"}
	}
	return key, nil
}

// rawKeyProvider wraps with a 32-byte master key (file: and env:).
type rawKeyProvider struct {
	kek  *localKEK
	desc string
	rnd  io.Reader
}

// NewKeyProvider returns a provider for a 32-byte master key held in
// memory. desc describes where the key came from (never the key).
func NewKeyProvider(key []byte, desc string, rnd io.Reader) (Provider, error) {
	kek, err := newLocalKEK(key)
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &rawKeyProvider{kek: kek, desc: desc, rnd: rnd}, nil
}

func (p *rawKeyProvider) String() string {
	return p.desc + " (key id " + hex.EncodeToString(p.kek.id[:]) + ")"
}

func (p *rawKeyProvider) WrapKey(_ context.Context, key []byte, label string) ([]byte, error) {
	prefix := make([]byte, 0, len(wrapMagic)+1+keyIDLen+nonceSize+len(key)+tagSize)
	prefix = append(append(append(prefix, wrapMagic...), wrapRaw), p.kek.id[:]...)
	return p.kek.seal(prefix, p.rnd, key, label)
}

func (p *rawKeyProvider) UnwrapKey(_ context.Context, w []byte, label string) ([]byte, error) {
	if k := wrappedKind(w); k != wrapRaw {
		if k == 0 {
			return nil, &TamperError{Reason: "not a wrapped data key"}
		}
		return nil, fmt.Errorf("%w: the data keys were wrapped by %s, but the configured master key is %s", ErrWrongMasterKey, kindName(k), p.desc)
	}
	pl := len(wrapMagic) + 1 + keyIDLen
	if len(w) < pl {
		return nil, &TamperError{Reason: "wrapped data key too short"}
	}
	if !bytes.Equal(w[len(wrapMagic)+1:pl], p.kek.id[:]) {
		return nil, fmt.Errorf("%w: the data keys were wrapped by master key id %x, not by the configured %s", ErrWrongMasterKey, w[len(wrapMagic)+1:pl], p)
	}
	return p.kek.open(w, pl, label)
}

// decodeKey accepts 32 raw bytes, or their standard base64 (surrounding
// white space ignored).
func decodeKey(b []byte) ([]byte, bool) {
	if len(b) == 32 {
		return b, true
	}
	t := bytes.TrimSpace(b)
	if k, err := base64.StdEncoding.DecodeString(string(t)); err == nil && len(k) == 32 {
		return k, true
	}
	return nil, false
}

func openFileKey(s Spec, opts ProviderOptions) (Provider, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("vault: master key file %s does not exist: %w", s.Path, err)
		}
		return nil, fmt.Errorf("vault: master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vault: master key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("vault: master key %s is not a regular file", s.Path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("vault: master key file %s is accessible by group or others (mode %v); refusing to use it: chmod 600 it", s.Path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return nil, fmt.Errorf("vault: master key: %w", err)
	}
	key, ok := decodeKey(b)
	if !ok {
		return nil, fmt.Errorf("vault: master key file %s must hold 32 random bytes (or their base64)", s.Path)
	}
	return NewKeyProvider(key, s.String(), opts.Rand)
}

func openEnvKey(s Spec, opts ProviderOptions) (Provider, error) {
	v := opts.Getenv(s.Env)
	if v == "" {
		return nil, fmt.Errorf("vault: master key: environment variable %s is not set", s.Env)
	}
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("vault: master key: %s must hold the base64 of 32 random bytes", s.Env)
	}
	return NewKeyProvider(key, s.String(), opts.Rand)
}

// Argon2Params are argon2id's cost parameters.
type Argon2Params struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultArgon2 returns RFC 9106's second recommended option (64 MiB, 3
// passes, 4 lanes).
func DefaultArgon2() Argon2Params { return Argon2Params{Time: 3, Memory: 64 << 10, Threads: 4} }

// Limits on the parameters read from a wrapped key, so that a damaged
// one cannot make Open allocate without bound.
const (
	maxArgonTime   = 64
	maxArgonMemory = 4 << 20 // 4 GiB in KiB
	minPassphrase  = 12
	maxPassphrase  = 1024
)

func (a Argon2Params) valid() bool {
	return a.Time >= 1 && a.Time <= maxArgonTime && a.Threads >= 1 && a.Threads <= 64 &&
		a.Memory >= 8*uint32(a.Threads) && a.Memory <= maxArgonMemory
}

func (a Argon2Params) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, a.Time)
	b = binary.BigEndian.AppendUint32(b, a.Memory)
	return append(b, a.Threads)
}

func parseArgon(b []byte) Argon2Params {
	return Argon2Params{Time: binary.BigEndian.Uint32(b), Memory: binary.BigEndian.Uint32(b[4:]), Threads: b[8]}
}

// passphraseProvider derives the KEK with argon2id from a passphrase and
// a salt stored in each wrapped key. Derivations are cached by salt and
// parameters; new wraps reuse the salt of the first key derived, so a
// vault whose keys were wrapped together costs one derivation to open.
type passphraseProvider struct {
	pass   []byte
	params Argon2Params
	desc   string
	rnd    io.Reader

	mu      sync.Mutex
	derived map[string]*localKEK // params||salt -> KEK
	current []byte               // params||salt of new wraps
}

// NewPassphraseProvider returns a provider whose master key is derived
// from pass with argon2id (params for new wraps; zero means
// DefaultArgon2).
func NewPassphraseProvider(pass []byte, params Argon2Params, desc string, rnd io.Reader) (Provider, error) {
	if len(pass) < minPassphrase {
		return nil, fmt.Errorf("vault: passphrase shorter than %d characters", minPassphrase)
	}
	if len(pass) > maxPassphrase {
		return nil, fmt.Errorf("vault: passphrase longer than %d bytes", maxPassphrase)
	}
	if params == (Argon2Params{}) {
		params = DefaultArgon2()
	}
	if !params.valid() {
		return nil, errors.New("vault: invalid argon2id parameters")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	return &passphraseProvider{pass: bytes.Clone(pass), params: params, desc: desc, rnd: rnd, derived: map[string]*localKEK{}}, nil
}

func (p *passphraseProvider) String() string { return p.desc }

// kek returns the KEK for params||salt, deriving it once.
func (p *passphraseProvider) kek(ps []byte) (*localKEK, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k, ok := p.derived[string(ps)]; ok {
		return k, nil
	}
	a := parseArgon(ps)
	k, err := newLocalKEK(argon2.IDKey(p.pass, ps[argonParamsLen:], a.Time, a.Memory, a.Threads, 32))
	if err != nil {
		return nil, err
	}
	p.derived[string(ps)] = k
	if p.current == nil {
		p.current = bytes.Clone(ps)
	}
	return k, nil
}

func (p *passphraseProvider) WrapKey(_ context.Context, key []byte, label string) ([]byte, error) {
	p.mu.Lock()
	ps := p.current
	p.mu.Unlock()
	if ps == nil {
		salt := make([]byte, saltLen)
		if _, err := io.ReadFull(p.rnd, salt); err != nil {
			return nil, fmt.Errorf("vault: randomness: %w", err)
		}
		ps = append(p.params.append(nil), salt...)
	}
	k, err := p.kek(ps)
	if err != nil {
		return nil, err
	}
	prefix := make([]byte, 0, len(wrapMagic)+1+keyIDLen+len(ps)+nonceSize+len(key)+tagSize)
	prefix = append(append(append(append(prefix, wrapMagic...), wrapPassphrase), k.id[:]...), ps...)
	return k.seal(prefix, p.rnd, key, label)
}

func (p *passphraseProvider) UnwrapKey(_ context.Context, w []byte, label string) ([]byte, error) {
	if k := wrappedKind(w); k != wrapPassphrase {
		if k == 0 {
			return nil, &TamperError{Reason: "not a wrapped data key"}
		}
		return nil, fmt.Errorf("%w: the data keys were wrapped by %s, but the configured master key is a passphrase", ErrWrongMasterKey, kindName(k))
	}
	off := len(wrapMagic) + 1
	pl := off + keyIDLen + argonParamsLen + saltLen
	if len(w) < pl {
		return nil, &TamperError{Reason: "wrapped data key too short"}
	}
	ps := w[off+keyIDLen : pl]
	if !parseArgon(ps).valid() {
		return nil, &TamperError{Reason: "wrapped data key has invalid argon2id parameters"}
	}
	k, err := p.kek(ps)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(w[off:off+keyIDLen], k.id[:]) {
		return nil, fmt.Errorf("%w: the passphrase does not open the vault's data keys", ErrWrongMasterKey)
	}
	return k.open(w, pl, label)
}

func openPassphrase(s Spec, opts ProviderOptions) (Provider, error) {
	var pass []byte
	var err error
	if s.FD < 0 {
		read := opts.ReadPassphrase
		if read == nil {
			read = readTerminal
		}
		pass, err = read("phigate master key passphrase: ")
	} else {
		open := opts.OpenFD
		if open == nil {
			open = func(fd int) (io.ReadCloser, error) {
				f := os.NewFile(uintptr(fd), "fd"+fmt.Sprint(fd))
				if f == nil {
					return nil, fmt.Errorf("file descriptor %d is not open", fd)
				}
				return f, nil
			}
		}
		var rc io.ReadCloser
		if rc, err = open(s.FD); err == nil {
			pass, err = io.ReadAll(io.LimitReader(rc, maxPassphrase+2))
			rc.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("vault: reading the passphrase: %w", err)
	}
	pass = trimNewline(pass)
	return NewPassphraseProvider(pass, opts.Argon2, s.String(), opts.Rand)
}

// trimNewline drops one trailing "\n" or "\r\n".
func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// readTerminal reads a passphrase from the controlling terminal without
// echo.
func readTerminal(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errors.New("no terminal to ask for the passphrase: use passphrase:fd:N")
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return b, err
}
