package vault

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Purposes of the data keys a new vault starts with. Other purposes
// ([a-z][a-z0-9-]{0,31}) get their data key on first use.
const (
	PurposePepper      = "pepper"               // the token pepper versions
	PurposeSigning     = "audit-signing"        // the audit checkpoint signing key
	PurposeCredentials = "upstream-credentials" // credentials injected upstream
	PurposeAuditFields = "audit-fields"         // PHI-bearing audit entry fields
	PurposeWebhook     = "webhook"              // webhook signing secrets
	PurposeBlindIndex  = "blind-index"          // the blind-index root key
	PurposeTokenFields = "token-fields"         // PHI-bearing token record fields (the patient id)
	// PurposeRotationReplay seals the answer of an idempotent rotation (a
	// new token secret), kept only for the rotation's grace period.
	PurposeRotationReplay = "rotation-replay"
)

// PurposeContinuation seals the gateway's continuation handles (the pages
// of a search); its data key is made when the gateway first starts.
const PurposeContinuation = "continuation"

// DefaultPurposes returns the purposes whose data keys are created with
// the vault.
func DefaultPurposes() []string {
	return []string{PurposePepper, PurposeSigning, PurposeCredentials, PurposeAuditFields, PurposeWebhook, PurposeBlindIndex, PurposeTokenFields}
}

// reserved purposes hold the vault's own items; Put refuses them.
func reserved(purpose string) bool { return purpose == PurposePepper || purpose == PurposeBlindIndex }

const (
	pepperName    = "token-pepper"
	blindRootName = "root"
	maxName       = 128
	// MaxValue is the largest secret value.
	MaxValue = 64 << 10
)

// Options configure a Vault. The zero value is usable.
type Options struct {
	// OnEvent, when set, is called with every change before it is made
	// (rotations, new data keys, secrets set), with Outcome "success"; an
	// error refuses the change (ErrRefused) and nothing is changed. When
	// the change then fails, it is called again with Outcome "error" (its
	// error ignored). Tampering is reported after the fact with
	// EventTampered (error ignored). OnEvent MUST NOT call the vault's
	// write methods (it runs under the vault's write lock).
	OnEvent func(ctx context.Context, e Event) error
	// Rand is the source of keys, nonces and salts (default crypto/rand).
	Rand io.Reader
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Vault holds phigate's secrets at rest: envelope encryption under a
// master key, with cached data keys. It is safe for concurrent use.
type Vault struct {
	st   Storage
	opts Options

	keys    atomic.Pointer[keySet]
	peppers atomic.Pointer[[]Pepper]
	bidx    []byte   // blind-index root key
	bkeys   sync.Map // purpose -> derived blind-index key []byte

	wmu sync.Mutex // serialises changes
	rmu sync.Mutex // serialises re-encryptions

	cmu   sync.RWMutex
	cache map[cacheKey]cachedItem
	cgen  uint64

	closed atomic.Bool
}

type cachedItem struct {
	value   []byte
	version int
}

// keySet is an immutable snapshot of the unwrapped data keys; changes
// swap in a new one, so readers never wait.
type keySet struct {
	provider  Provider
	kek       string
	byPurpose map[string]*purposeKeys
}

type purposeKeys struct {
	active   *dataKey
	versions map[uint32]*dataKey
}

func (o Options) withDefaults() Options {
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func dekLabel(purpose string, version uint32) string {
	return "dek:" + purpose + ":v" + strconv.FormatUint(uint64(version), 10)
}

func itemAAD(purpose, name string, version int) []byte {
	return AAD("items", purpose+"/"+name+"/"+strconv.Itoa(version), "ciphertext")
}

// Exists reports whether dir holds a vault.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FileName))
	return err == nil
}

// Create makes a new vault in dir (the file vault.db, mode 0600): a data
// key for each default purpose wrapped by p, the blind-index key, and the
// token pepper, version 1 — imported from the keys/pepper-v1.key of an
// older phigate when there is one (the plaintext file is then
// overwritten and removed). It fails with ErrExists if dir has a vault.
// On failure nothing is left behind.
func Create(ctx context.Context, dir string, p Provider, opts Options) (*Vault, error) {
	path := filepath.Join(dir, FileName)
	st, err := OpenSQLite(ctx, path, true)
	if err != nil {
		return nil, err
	}
	v, err := CreateStorage(ctx, st, p, opts)
	if err == nil {
		err = v.importLegacyPepper(ctx, dir)
	}
	if err == nil && len(*v.peppers.Load()) == 0 {
		err = v.addPepper(ctx, 1)
	}
	if err != nil {
		st.Close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		return nil, err
	}
	return v, nil
}

// CreateStorage initialises an empty storage as a vault (see Create),
// without a pepper: call RotatePepper for the first one.
func CreateStorage(ctx context.Context, st Storage, p Provider, opts Options) (*Vault, error) {
	v := newVault(st, p, opts)
	ks := v.keys.Load()
	for _, purpose := range DefaultPurposes() {
		if _, err := v.addDataKeyLocked(ctx, ks, purpose, 1); err != nil {
			return nil, err
		}
		ks = v.keys.Load()
	}
	if err := st.SetMeta(ctx, "kek", ks.kek); err != nil {
		return nil, err
	}
	root := make([]byte, 32)
	if _, err := io.ReadFull(v.opts.Rand, root); err != nil {
		return nil, fmt.Errorf("vault: randomness: %w", err)
	}
	if err := v.putItem(ctx, PurposeBlindIndex, blindRootName, 1, root, false); err != nil {
		return nil, err
	}
	v.bidx = root
	return v, nil
}

func newVault(st Storage, p Provider, opts Options) *Vault {
	v := &Vault{st: st, opts: opts.withDefaults(), cache: map[cacheKey]cachedItem{}}
	v.keys.Store(&keySet{provider: p, kek: describe(p), byPurpose: map[string]*purposeKeys{}})
	v.peppers.Store(&[]Pepper{})
	return v
}

// Open opens the vault in dir with master key p. It first only reads:
// when p cannot unwrap the data keys (ErrWrongMasterKey, with what wrapped
// them) or a key fails authentication (ErrTampered), it returns before
// anything is written. With the right key it then finishes a pending
// migration of an older phigate's plaintext pepper file.
func Open(ctx context.Context, dir string, p Provider, opts Options) (*Vault, error) {
	st, err := OpenSQLite(ctx, filepath.Join(dir, FileName), false)
	if err != nil {
		return nil, err
	}
	v, err := OpenStorage(ctx, st, p, opts)
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := v.importLegacyPepper(ctx, dir); err != nil {
		st.Close()
		return nil, err
	}
	return v, nil
}

// OpenStorage opens the vault kept in st with master key p: it unwraps
// every data key (failing closed on the first that does not unwrap), and
// loads the peppers and the blind-index key. It writes nothing.
func OpenStorage(ctx context.Context, st Storage, p Provider, opts Options) (*Vault, error) {
	wrapped, err := st.DataKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: reading data keys: %w", err)
	}
	if len(wrapped) == 0 {
		return nil, errors.New("vault: the vault holds no data keys (not initialised, or damaged)")
	}
	v := newVault(st, p, opts)
	ks := &keySet{provider: p, kek: describe(p), byPurpose: map[string]*purposeKeys{}}
	for _, w := range wrapped {
		raw, err := p.UnwrapKey(ctx, w.Wrapped, dekLabel(w.Purpose, w.Version))
		if err != nil {
			if errors.Is(err, ErrWrongMasterKey) {
				if was, merr := st.Meta(ctx, "kek"); merr == nil {
					return nil, fmt.Errorf("%w (vault.db says its data keys were last wrapped by %s); nothing was changed", err, was)
				}
			}
			return nil, fmt.Errorf("vault: cannot open the vault: data key %s v%d: %w; nothing was changed", w.Purpose, w.Version, err)
		}
		k, err := newDataKey(w.Purpose, w.Version, raw)
		if err != nil {
			return nil, err
		}
		ks.add(k)
	}
	v.keys.Store(ks)
	root, _, err := v.getItem(ctx, PurposeBlindIndex, blindRootName)
	if err != nil {
		return nil, fmt.Errorf("vault: blind-index key: %w", err)
	}
	v.bidx = root
	if err := v.loadPeppers(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// add puts k into ks (used while building a fresh set).
func (ks *keySet) add(k *dataKey) {
	pk := ks.byPurpose[k.purpose]
	if pk == nil {
		pk = &purposeKeys{versions: map[uint32]*dataKey{}}
		ks.byPurpose[k.purpose] = pk
	}
	pk.versions[k.version] = k
	if pk.active == nil || k.version > pk.active.version {
		pk.active = k
	}
}

// with returns a copy of ks with k added.
func (ks *keySet) with(k *dataKey) *keySet {
	n := &keySet{provider: ks.provider, kek: ks.kek, byPurpose: maps.Clone(ks.byPurpose)}
	old := n.byPurpose[k.purpose]
	pk := &purposeKeys{versions: map[uint32]*dataKey{}}
	if old != nil {
		pk.active, pk.versions = old.active, maps.Clone(old.versions)
	}
	n.byPurpose[k.purpose] = pk
	pk.versions[k.version] = k
	if pk.active == nil || k.version > pk.active.version {
		pk.active = k
	}
	return n
}

// Close closes the storage. The vault is unusable afterwards.
func (v *Vault) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	return v.st.Close()
}

// MasterKey describes (without secrets) the master key now wrapping the
// data keys.
func (v *Vault) MasterKey() string { return v.keys.Load().kek }

// DataKeyInfo describes one data key.
type DataKeyInfo struct {
	Purpose string
	Version uint32
	Active  bool
}

// DataKeys lists the data keys held, by purpose and version.
func (v *Vault) DataKeys() []DataKeyInfo {
	ks := v.keys.Load()
	var out []DataKeyInfo
	for _, purpose := range slices.Sorted(maps.Keys(ks.byPurpose)) {
		pk := ks.byPurpose[purpose]
		for _, ver := range slices.Sorted(maps.Keys(pk.versions)) {
			out = append(out, DataKeyInfo{Purpose: purpose, Version: ver, Active: ver == pk.active.version})
		}
	}
	return out
}

// addDataKeyLocked makes, wraps and stores data key (purpose, version) and
// swaps it in. The caller holds wmu or owns v exclusively.
func (v *Vault) addDataKeyLocked(ctx context.Context, ks *keySet, purpose string, version uint32) (*dataKey, error) {
	raw := make([]byte, dataKeySize)
	if _, err := io.ReadFull(v.opts.Rand, raw); err != nil {
		return nil, fmt.Errorf("vault: randomness: %w", err)
	}
	k, err := newDataKey(purpose, version, raw)
	if err != nil {
		return nil, err
	}
	w, err := ks.provider.WrapKey(ctx, raw, dekLabel(purpose, version))
	if err != nil {
		return nil, fmt.Errorf("vault: wrapping data key %s v%d: %w", purpose, version, err)
	}
	if err := v.st.AddDataKey(ctx, WrappedKey{Purpose: purpose, Version: version, Wrapped: w, CreatedAt: v.opts.Now()}); err != nil {
		return nil, fmt.Errorf("vault: storing data key %s v%d: %w", purpose, version, err)
	}
	v.keys.Store(ks.with(k))
	return k, nil
}

// activeKey returns the data key new data of purpose is sealed with,
// creating version 1 for a purpose seen for the first time.
func (v *Vault) activeKey(ctx context.Context, purpose string) (*dataKey, error) {
	if pk := v.keys.Load().byPurpose[purpose]; pk != nil {
		return pk.active, nil
	}
	if !validPurpose(purpose) {
		return nil, &InputError{Field: "purpose", Msg: "want [a-z][a-z0-9-]{0,31}"}
	}
	if v.closed.Load() {
		return nil, ErrClosed
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	ks := v.keys.Load()
	if pk := ks.byPurpose[purpose]; pk != nil {
		return pk.active, nil
	}
	ev := Event{Kind: EventDEKCreated, Purpose: purpose, Version: 1}
	if err := v.emit(ctx, ev); err != nil {
		return nil, err
	}
	k, err := v.addDataKeyLocked(ctx, ks, purpose, 1)
	if err != nil {
		v.emitFailed(ctx, ev, err)
	}
	return k, err
}

// seal encrypts plaintext under purpose's active key for aad.
func (v *Vault) seal(ctx context.Context, purpose string, aad, plaintext []byte) ([]byte, error) {
	k, err := v.activeKey(ctx, purpose)
	if err != nil {
		return nil, err
	}
	return k.seal(v.opts.Rand, aad, plaintext)
}

// open decrypts ct, which must have been sealed for purpose and aad.
func (v *Vault) open(ctx context.Context, purpose string, aad, ct []byte) ([]byte, error) {
	hp, version, hl, why := parseHeader(ct)
	var err error
	var k *dataKey
	switch {
	case why != "":
		err = &TamperError{Reason: "malformed ciphertext: " + why}
	case string(hp) != purpose:
		err = &TamperError{Purpose: string(hp), Version: version, Reason: "sealed for purpose " + string(hp) + ", expected " + purpose}
	default:
		if pk := v.keys.Load().byPurpose[purpose]; pk != nil {
			k = pk.versions[version]
		}
		if k == nil {
			err = &TamperError{Purpose: purpose, Version: version, Reason: "no such data key in this vault"}
		}
	}
	var pt []byte
	if err == nil {
		pt, err = k.open(ct, hl, aad)
	}
	if err != nil {
		v.reportTamper(ctx, purpose, err)
		return nil, err
	}
	return pt, nil
}

// reportTamper tells OnEvent about a failed authentication.
func (v *Vault) reportTamper(ctx context.Context, purpose string, err error) {
	if v.opts.OnEvent == nil {
		return
	}
	ev := Event{Kind: EventTampered, Purpose: purpose, Outcome: OutcomeError, Reason: err.Error()}
	var te *TamperError
	if errors.As(err, &te) {
		ev.Version = int(te.Version)
	}
	v.opts.OnEvent(ctx, v.stamp(ctx, ev))
}
