package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestCiphertextFormatMatchesTheDocumentedExample(t *testing.T) {
	k, _ := newDataKey("webhook", 2, make([]byte, 32))
	ct, err := k.seal(bytes.NewReader(make([]byte, 12)), nil, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	want := "7067760107776562686f6f6b00000002" + strings.Repeat("00", 12)
	if got := hex.EncodeToString(ct[:28]); got != want {
		t.Fatalf("header+nonce\n got %s\nwant %s", got, want)
	}
	if len(ct) != 49 || Overhead("webhook") != 44 {
		t.Fatalf("len %d, overhead %d; the doc says 49 and 44", len(ct), Overhead("webhook"))
	}
	h, hl, err := ParseHeader(ct)
	if err != nil || h != (Header{Purpose: "webhook", Version: 2}) || hl != 16 {
		t.Fatalf("ParseHeader = %+v %d %v", h, hl, err)
	}
	pt, err := k.open(ct, hl, nil)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("open = %q %v", pt, err)
	}
}

func TestEveryMutationOfACiphertextIsTampering(t *testing.T) {
	ctx := context.Background()
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer v.Close()
	aad := AAD("audit", "42", "path")
	ct, err := v.EncryptField(ctx, PurposeAuditFields, aad, []byte("/fhir/Patient/123"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		for _, bit := range []byte{0x01, 0x80} {
			m := bytes.Clone(ct)
			m[i] ^= bit
			if pt, err := v.DecryptField(ctx, PurposeAuditFields, aad, m); !errors.Is(err, ErrTampered) || pt != nil {
				t.Fatalf("byte %d ^%#x: %q %v, want ErrTampered", i, bit, pt, err)
			}
		}
	}
	for n := 0; n < len(ct); n++ {
		if _, err := v.DecryptField(ctx, PurposeAuditFields, aad, ct[:n]); !errors.Is(err, ErrTampered) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	if _, err := v.DecryptField(ctx, PurposeAuditFields, aad, append(bytes.Clone(ct), 0)); !errors.Is(err, ErrTampered) {
		t.Fatalf("extended: %v", err)
	}
	for name, try := range map[string]func() error{
		"other_row": func() error {
			_, err := v.DecryptField(ctx, PurposeAuditFields, AAD("audit", "43", "path"), ct)
			return err
		},
		"other_column": func() error {
			_, err := v.DecryptField(ctx, PurposeAuditFields, AAD("audit", "42", "query"), ct)
			return err
		},
		"other_purpose": func() error { _, err := v.DecryptField(ctx, PurposeWebhook, aad, ct); return err },
		"no_aad":        func() error { _, err := v.DecryptField(ctx, PurposeAuditFields, nil, ct); return err },
	} {
		if err := try(); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: %v, want ErrTampered", name, err)
		}
	}
	if pt, err := v.DecryptField(ctx, PurposeAuditFields, aad, ct); err != nil || string(pt) != "/fhir/Patient/123" {
		t.Fatalf("the original no longer opens: %q %v", pt, err)
	}
}

func TestSwappingCiphertextsBetweenRowsIsDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ev := &events{}
	v := mustCreate(t, dir, keyProvider(t, randKey(t)), Options{OnEvent: ev.on})
	v.SetSecret(ctx, "ehr", []byte("ehr-credential-1"))
	v.SetSecret(ctx, "lab", []byte("lab-credential-2"))
	v.Close()

	// swap the two rows' ciphertexts behind the vault's back
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	var ehr, lab []byte
	db.QueryRow("SELECT ciphertext FROM items WHERE purpose = ? AND name = 'ehr'", PurposeCredentials).Scan(&ehr)
	db.QueryRow("SELECT ciphertext FROM items WHERE purpose = ? AND name = 'lab'", PurposeCredentials).Scan(&lab)
	for name, ct := range map[string][]byte{"ehr": lab, "lab": ehr} {
		if r, err := db.Exec("UPDATE items SET ciphertext = ? WHERE purpose = ? AND name = ?", ct, PurposeCredentials, name); err != nil {
			t.Fatal(err)
		} else if n, _ := r.RowsAffected(); n != 1 || len(ct) == 0 {
			t.Fatal("swap failed")
		}
	}
	db.Close()

	ev2 := &events{}
	v = mustOpen(t, dir, v.keys.Load().provider, Options{OnEvent: ev2.on})
	defer v.Close()
	for _, name := range []string{"ehr", "lab"} {
		val, _, err := v.Secret(ctx, name)
		var te *TamperError
		if !errors.Is(err, ErrTampered) || !errors.As(err, &te) || val != nil {
			t.Fatalf("%s after the swap: %q %v, want ErrTampered", name, val, err)
		}
		if strings.Contains(err.Error(), "-credential-") {
			t.Fatalf("the error shows content: %v", err)
		}
	}
	if k := ev2.kinds(); len(k) != 2 || k[0] != EventTampered+"/"+OutcomeError {
		t.Fatalf("tampering not reported: %v", k)
	}
}

func TestWrongMasterKeyChangesNothingAndTheRightOneReadsEverything(t *testing.T) {
	ctx := context.Background()
	keys := t.TempDir()
	dir := t.TempDir()
	right := writeKeyFile(t, keys, "right.key", randKey(t), 0o600)
	wrong := writeKeyFile(t, keys, "wrong.key", randKey(t), 0o600)
	p, err := ParseProvider(ctx, right, ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := mustCreate(t, dir, p, Options{})
	v.SetSecret(ctx, "ehr", []byte("s3cret-ehr"))
	v.PutKey(ctx, "checkpoint", []byte("signing-key-blob"))
	ct, _ := v.EncryptField(ctx, PurposeAuditFields, AAD("audit", "1", "patient"), []byte("patient-77"))
	v.RotateDEK(ctx, PurposeAuditFields)
	ct2, _ := v.EncryptField(ctx, PurposeAuditFields, AAD("audit", "2", "patient"), []byte("patient-78"))
	v.RotatePepper(ctx)
	peppers, _ := v.Peppers(ctx)
	idx := v.BlindIndex("audit-patient", []byte("patient-77"))
	v.Close()
	before := hashDir(t, dir)

	wp, err := ParseProvider(ctx, wrong, ProviderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pp, _ := NewPassphraseProvider([]byte("a passphrase that is wrong"), fastArgon, "passphrase", nil)
	for name, prov := range map[string]Provider{"other_file_key": wp, "passphrase_instead": pp} {
		_, err := Open(ctx, dir, prov, Options{})
		if !errors.Is(err, ErrWrongMasterKey) {
			t.Fatalf("%s: %v, want ErrWrongMasterKey", name, err)
		}
		if !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), "right.key") {
			t.Errorf("%s: the message should say what wrapped the keys and that nothing changed: %v", name, err)
		}
		if after := hashDir(t, dir); !slices.Equal(before, after) {
			t.Fatalf("%s: the data directory changed:\n%v\n%v", name, before, after)
		}
	}
	// a missing key never reaches the vault
	if _, err := ParseProvider(ctx, "file:"+filepath.Join(keys, "missing.key"), ProviderOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing key file: %v", err)
	}
	if _, err := ParseProvider(ctx, "env:PHIGATE_TEST_NO_SUCH_KEY", ProviderOptions{Getenv: func(string) string { return "" }}); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("missing env key: %v", err)
	}
	if after := hashDir(t, dir); !slices.Equal(before, after) {
		t.Fatal("the data directory changed")
	}

	p, _ = ParseProvider(ctx, right, ProviderOptions{})
	v = mustOpen(t, dir, p, Options{})
	defer v.Close()
	if s, _, err := v.Secret(ctx, "ehr"); err != nil || string(s) != "s3cret-ehr" {
		t.Fatalf("secret: %q %v", s, err)
	}
	if k, _, err := v.GetKey(ctx, "checkpoint"); err != nil || string(k) != "signing-key-blob" {
		t.Fatalf("key: %q %v", k, err)
	}
	for i, c := range [][]byte{ct, ct2} {
		pt, err := v.DecryptField(ctx, PurposeAuditFields, AAD("audit", fmt.Sprint(i+1), "patient"), c)
		if err != nil || string(pt) != fmt.Sprintf("patient-%d", 77+i) {
			t.Fatalf("field %d: %q %v", i, pt, err)
		}
	}
	if got, _ := v.Peppers(ctx); len(got) != 2 || !bytes.Equal(got[0].Key, peppers[0].Key) || !bytes.Equal(got[1].Key, peppers[1].Key) {
		t.Fatal("peppers differ after reopening")
	}
	if !bytes.Equal(v.BlindIndex("audit-patient", []byte("patient-77")), idx) {
		t.Fatal("blind index differs after reopening")
	}
}

func TestFileKeyReadableByGroupOrOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	key := randKey(t)
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o644, false}, {0o660, false}, {0o602, false}} {
		spec := writeKeyFile(t, dir, fmt.Sprintf("k%o", tc.mode), key, tc.mode)
		_, err := ParseProvider(context.Background(), spec, ProviderOptions{})
		if (err == nil) != tc.ok {
			t.Errorf("mode %o: err = %v, want ok=%v", tc.mode, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %o: unclear message %v", tc.mode, err)
		}
	}
	if _, err := ParseProvider(context.Background(), "file:"+dir, ProviderOptions{}); err == nil {
		t.Error("a directory was accepted as a key file")
	}
	short := writeKeyFile(t, dir, "short", key[:31], 0o600)
	if _, err := ParseProvider(context.Background(), short, ProviderOptions{}); err == nil {
		t.Error("a 31-byte key was accepted")
	}
}

func TestRotateKEKKeepsReadersWorkingAndSwitchesTheKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldKey, newKey := randKey(t), randKey(t)
	ev := &events{}
	v := mustCreate(t, dir, keyProvider(t, oldKey), Options{OnEvent: ev.on})
	for i := range 20 {
		v.SetSecret(ctx, fmt.Sprintf("s%d", i), []byte(fmt.Sprintf("value-%d", i)))
	}
	var reads, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				aad := AAD("t", fmt.Sprint(r, i), "c")
				ct, err := v.EncryptField(ctx, PurposeAuditFields, aad, []byte("x"))
				if err == nil {
					_, err = v.DecryptField(ctx, PurposeAuditFields, aad, ct)
				}
				if err == nil {
					v.Invalidate(PurposeCredentials, "s1")
					_, _, err = v.Secret(ctx, "s1")
				}
				if err != nil {
					failures.Add(1)
				}
				reads.Add(1)
			}
		}()
	}
	ev.list = nil
	e, err := v.RotateKEK(ctx, keyProvider(t, newKey))
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if failures.Load() != 0 || reads.Load() == 0 {
		t.Fatalf("%d of %d reads failed during the rotation", failures.Load(), reads.Load())
	}
	if e.Kind != EventKEKRotated || e.Count != len(DefaultPurposes()) || e.From == e.To || len(ev.list) != 1 {
		t.Fatalf("event %+v, recorded %v", e, ev.kinds())
	}
	v.Close()
	if _, err := Open(ctx, dir, keyProvider(t, oldKey), Options{}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("old key after rotation: %v", err)
	}
	v = mustOpen(t, dir, keyProvider(t, newKey), Options{})
	defer v.Close()
	if s, _, err := v.Secret(ctx, "s19"); err != nil || string(s) != "value-19" {
		t.Fatalf("after rotation: %q %v", s, err)
	}
}

func TestRotateKEKRefusedByTheHookChangesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := randKey(t)
	ev := &events{fail: errors.New("audit log down")}
	v := mustCreate(t, dir, keyProvider(t, key), Options{OnEvent: ev.on})
	for name, f := range map[string]func() error{
		"kek":    func() error { _, err := v.RotateKEK(ctx, keyProvider(t, randKey(t))); return err },
		"dek":    func() error { _, err := v.RotateDEK(ctx, PurposeCredentials); return err },
		"pepper": func() error { _, err := v.RotatePepper(ctx); return err },
		"secret": func() error { _, err := v.SetSecret(ctx, "x", []byte("y")); return err },
	} {
		if err := f(); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", name, err)
		}
	}
	if ks := v.DataKeys(); len(ks) != len(DefaultPurposes()) {
		t.Fatalf("data keys changed: %+v", ks)
	}
	if ls, _ := v.ListSecrets(ctx); len(ls) != 0 {
		t.Fatal("secret stored despite the refusal")
	}
	v.Close()
	mustOpen(t, dir, keyProvider(t, key), Options{}).Close()
}

func TestRotateDEKKeepsOldDataReadableAndReencryptMovesItems(t *testing.T) {
	ctx := context.Background()
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer v.Close()
	aad := AAD("audit", "1", "path")
	old, _ := v.EncryptField(ctx, PurposeAuditFields, aad, []byte("/a"))
	v.SetSecret(ctx, "one", []byte("v1"))
	e, err := v.RotateDEK(ctx, PurposeAuditFields)
	if err != nil || e.Version != 2 {
		t.Fatalf("rotate: %+v %v", e, err)
	}
	if _, err := v.RotateDEK(ctx, PurposeCredentials); err != nil {
		t.Fatal(err)
	}
	if _, err := v.RotateDEK(ctx, "never-used"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown purpose: %v", err)
	}
	if _, err := v.RotateDEK(ctx, "Bad Purpose"); err == nil {
		t.Fatal("bad purpose accepted")
	}
	nw, _ := v.EncryptField(ctx, PurposeAuditFields, aad, []byte("/b"))
	if h, _, _ := ParseHeader(old); h.Version != 1 {
		t.Fatal("old version")
	}
	if h, _, _ := ParseHeader(nw); h.Version != 2 {
		t.Fatal("new data is not sealed with the new key")
	}
	for _, c := range [][]byte{old, nw} {
		if _, err := v.DecryptField(ctx, PurposeAuditFields, aad, c); err != nil {
			t.Fatal(err)
		}
	}
	n, err := v.Reencrypt(ctx, PurposeCredentials)
	if err != nil || n != 1 {
		t.Fatalf("reencrypt: %d %v", n, err)
	}
	it, _ := v.st.Item(ctx, PurposeCredentials, "one", 0)
	if it.DEKVersion != 2 {
		t.Fatalf("item still under v%d", it.DEKVersion)
	}
	v.Invalidate(PurposeCredentials, "one")
	if s, _, err := v.Secret(ctx, "one"); err != nil || string(s) != "v1" {
		t.Fatalf("after reencrypt: %q %v", s, err)
	}
	if n, _ := v.Reencrypt(ctx, PurposeCredentials); n != 0 {
		t.Fatalf("second reencrypt rewrote %d", n)
	}
}

func TestPepperRotationKeepsOldVersionsUntilRetired(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := randKey(t)
	v := mustCreate(t, dir, keyProvider(t, key), Options{})
	v1, k1, err := v.Pepper(ctx)
	if err != nil || v1 != 1 || len(k1) != 32 {
		t.Fatalf("initial pepper: %d %v", v1, err)
	}
	e, err := v.RotatePepper(ctx)
	if err != nil || e.Version != 2 {
		t.Fatalf("rotate: %+v %v", e, err)
	}
	v2, k2, _ := v.Pepper(ctx)
	ps, _ := v.Peppers(ctx)
	if v2 != 2 || bytes.Equal(k1, k2) || len(ps) != 2 || ps[0].Version != 2 || ps[1].Version != 1 || !bytes.Equal(ps[1].Key, k1) {
		t.Fatalf("after rotation: v%d %+v", v2, ps)
	}
	if _, err := v.RetirePepper(ctx, 2); err == nil {
		t.Fatal("retired the current pepper")
	}
	if _, err := v.RetirePepper(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := v.RetirePepper(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retire twice: %v", err)
	}
	v.Close()
	v = mustOpen(t, dir, keyProvider(t, key), Options{})
	defer v.Close()
	if ps, _ := v.Peppers(ctx); len(ps) != 1 || ps[0].Version != 2 || !bytes.Equal(ps[0].Key, k2) {
		t.Fatalf("after reopening: %+v", ps)
	}
}

func TestLegacyPepperFileMovesIntoTheVault(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := InitFile(dir, nil); err != nil {
		t.Fatal(err)
	}
	fk, _ := OpenFile(dir)
	_, legacy, _ := fk.Pepper(ctx)
	ev := &events{}
	v := mustCreate(t, dir, keyProvider(t, randKey(t)), Options{OnEvent: ev.on})
	defer v.Close()
	ver, k, _ := v.Pepper(ctx)
	if ver != 1 || !bytes.Equal(k, legacy) {
		t.Fatal("the legacy pepper was not imported as version 1")
	}
	if _, err := os.Stat(pepperPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the plaintext pepper file is still there: %v", err)
	}
	if hits := grepDir(t, dir, legacy); len(hits) != 0 {
		t.Fatalf("the pepper is in plaintext in %v", hits)
	}
	if k := ev.kinds(); !slices.Contains(k, EventPepperImported+"/"+OutcomeSuccess) {
		t.Fatalf("events %v", k)
	}
}

func TestSecretsNamesValuesAndCache(t *testing.T) {
	ctx := context.Background()
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer v.Close()
	for _, tc := range []struct {
		name, value, field string
	}{
		{"", "x", "name"}, {"-x", "x", "name"}, {"a b", "x", "name"}, {"a/b", "x", "name"}, {strings.Repeat("a", 129), "x", "name"},
		{"ok", "", "value"}, {"ok", strings.Repeat("v", MaxValue+1), "value"},
	} {
		_, err := v.SetSecret(ctx, tc.name, []byte(tc.value))
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("SetSecret(%.20q, %d bytes): %v, want an InputError on %s", tc.name, len(tc.value), err, tc.field)
		}
	}
	if _, err := v.Put(ctx, PurposePepper, "x", []byte("y")); err == nil {
		t.Error("Put under the reserved pepper purpose")
	}
	if _, _, err := v.Secret(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	i1, err := v.SetSecret(ctx, "ehr.api_1", []byte("one"))
	if err != nil || i1.Version != 1 {
		t.Fatalf("%+v %v", i1, err)
	}
	if s, ver, _ := v.Secret(ctx, "ehr.api_1"); string(s) != "one" || ver != 1 {
		t.Fatal("first read")
	}
	i2, _ := v.SetSecret(ctx, "ehr.api_1", []byte("two"))
	if s, ver, _ := v.Secret(ctx, "ehr.api_1"); string(s) != "two" || ver != 2 || i2.Version != 2 {
		t.Fatalf("the cache served a stale value: %q v%d", s, ver)
	}
	v.SetSecret(ctx, "a", []byte("x"))
	ls, _ := v.ListSecrets(ctx)
	if len(ls) != 2 || ls[0].Name != "a" || ls[1].Name != "ehr.api_1" || ls[1].Version != 2 || ls[1].UpdatedAt.IsZero() {
		t.Fatalf("list %+v", ls)
	}
	if its, _ := v.st.Items(ctx, PurposeCredentials, "ehr.api_1"); len(its) != 1 {
		t.Fatalf("old versions of a credential are kept: %d", len(its))
	}
	// webhook secrets: same API, own purpose and names
	v.Put(ctx, PurposeWebhook, "a", []byte("hook"))
	if s, _, _ := v.Get(ctx, PurposeWebhook, "a"); string(s) != "hook" {
		t.Fatal("webhook secret")
	}
	if s, _, _ := v.Secret(ctx, "a"); string(s) != "x" {
		t.Fatal("purposes share names")
	}
	// a cached read does no AES work and no allocation
	if n := testing.AllocsPerRun(100, func() { v.Secret(ctx, "ehr.api_1") }); n != 0 {
		t.Fatalf("cached Secret allocates %v times", n)
	}
}

func TestNoPlaintextReachesTheDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := randKey(t)
	v := mustCreate(t, dir, keyProvider(t, key), Options{})
	values := [][]byte{[]byte("upstream-credential-PLAINTEXT-1"), []byte("webhook-secret-PLAINTEXT-2"), []byte("signing-key-PLAINTEXT-3")}
	v.SetSecret(ctx, "ehr", values[0])
	v.Put(ctx, PurposeWebhook, "slack", values[1])
	v.PutKey(ctx, "checkpoint", values[2])
	v.RotateDEK(ctx, PurposeCredentials)
	v.SetSecret(ctx, "ehr", append(bytes.Clone(values[0]), 'b'))
	v.Reencrypt(ctx, PurposeWebhook)
	v.RotateKEK(ctx, keyProvider(t, randKey(t)))
	v.RotatePepper(ctx)
	ps, _ := v.Peppers(ctx)
	for _, p := range ps {
		values = append(values, p.Key)
	}
	values = append(values, v.bidx)
	ks := v.keys.Load()
	for _, pk := range ks.byPurpose {
		for _, k := range pk.versions {
			values = append(values, k.key)
		}
	}
	// look while open (WAL present) and after close
	for _, phase := range []string{"open", "closed"} {
		for _, val := range values {
			if hits := grepDir(t, dir, val); len(hits) != 0 {
				t.Fatalf("%s: a plaintext value or key (%d bytes) is in %v", phase, len(val), hits)
			}
		}
		v.Close()
	}
}

func TestBlindIndexAndPathPrefixes(t *testing.T) {
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer v.Close()
	a := v.BlindIndex("audit-patient", []byte("123"))
	if len(a) != BlindIndexSize || !bytes.Equal(a, v.BlindIndex("audit-patient", []byte("123"))) {
		t.Fatal("not deterministic")
	}
	if bytes.Equal(a, v.BlindIndex("audit-patient", []byte("124"))) || bytes.Equal(a, v.BlindIndex("audit-path", []byte("123"))) {
		t.Fatal("collision across values or purposes")
	}
	other := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer other.Close()
	if bytes.Equal(a, other.BlindIndex("audit-patient", []byte("123"))) {
		t.Fatal("two vaults give the same index")
	}
	got := PathPrefixes("//fhir/Patient/123//Observation/?code=x#f")
	want := []string{"/fhir", "/fhir/Patient", "/fhir/Patient/123", "/fhir/Patient/123/Observation"}
	if !slices.Equal(got, want) {
		t.Fatalf("PathPrefixes = %q", got)
	}
	if p := PathPrefixes("/"); len(p) != 0 {
		t.Fatalf("root: %q", p)
	}
	deep := PathPrefixes(strings.Repeat("/s", 40))
	if len(deep) != 32 || deep[31] != strings.Repeat("/s", 40) {
		t.Fatalf("deep path: %d prefixes, last %q", len(deep), deep[len(deep)-1])
	}
	// a path-prefix search: index every prefix of each stored path, look
	// up the index of the searched prefix
	index := map[string][]int{}
	for i, p := range []string{"/fhir/Patient/123/Observation", "/fhir/Patient/124", "/fhir/Patient/123"} {
		for _, pre := range PathPrefixes(p) {
			k := string(v.BlindIndex("audit-path", []byte(pre)))
			index[k] = append(index[k], i)
		}
	}
	q := PathPrefixes("/fhir/Patient/123/")
	if hits := index[string(v.BlindIndex("audit-path", []byte(q[len(q)-1])))]; !slices.Equal(hits, []int{0, 2}) {
		t.Fatalf("prefix search found %v", hits)
	}
}

func TestCreateRefusesAnExistingVaultAndOpenAMissingOne(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := keyProvider(t, randKey(t))
	if _, err := Open(ctx, dir, p, Options{}); !errors.Is(err, ErrNotInitialised) {
		t.Fatalf("open missing: %v", err)
	}
	if Exists(dir) {
		t.Fatal("Open created a vault")
	}
	mustCreate(t, dir, p, Options{}).Close()
	if _, err := Create(ctx, dir, p, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("create twice: %v", err)
	}
}

func TestNewPurposeGetsItsKeyOnFirstUse(t *testing.T) {
	ctx := context.Background()
	ev := &events{}
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{OnEvent: ev.on})
	defer v.Close()
	ct, err := v.EncryptField(ctx, "audit-justification", nil, []byte("why"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := v.DecryptField(ctx, "audit-justification", nil, ct); err != nil || string(pt) != "why" {
		t.Fatal(err)
	}
	if _, err := v.EncryptField(ctx, "Not-Valid", nil, []byte("x")); err == nil {
		t.Fatal("invalid purpose accepted")
	}
	if k := ev.kinds(); !slices.Equal(k, []string{EventDEKCreated + "/" + OutcomeSuccess}) {
		t.Fatalf("events %v", k)
	}
}

func TestBlindIndexIsHMACSHA256(t *testing.T) {
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{})
	defer v.Close()
	m := hmac.New(sha256.New, v.bidx)
	m.Write([]byte("phigate blind index v1\x00audit-patient"))
	key := m.Sum(nil)
	for _, n := range []int{0, 1, 191, 192, 193, 1000} {
		val := bytes.Repeat([]byte{'x'}, n)
		m := hmac.New(sha256.New, key)
		m.Write(val)
		if !bytes.Equal(v.BlindIndex("audit-patient", val), m.Sum(nil)) {
			t.Fatalf("length %d: not HMAC-SHA256 under the derived key", n)
		}
	}
}

// TestEnsureDataKey creates a purpose's data key once, reporting it, and
// is a no-op afterwards; a refused event creates nothing.
func TestEnsureDataKey(t *testing.T) {
	ctx := context.Background()
	ev := &events{}
	v := mustCreate(t, t.TempDir(), keyProvider(t, randKey(t)), Options{OnEvent: ev.on})
	defer v.Close()
	has := func(purpose string) bool {
		for _, k := range v.DataKeys() {
			if k.Purpose == purpose {
				return true
			}
		}
		return false
	}
	ev.list = nil
	ev.fail = errors.New("the audit log refuses")
	if err := v.EnsureDataKey(ctx, "x-refused"); err == nil || has("x-refused") {
		t.Fatalf("refused event: err %v, key created %v", err, has("x-refused"))
	}
	ev.fail = nil
	if err := v.EnsureDataKey(ctx, "x-test"); err != nil || !has("x-test") {
		t.Fatalf("ensure: %v, key %v", err, has("x-test"))
	}
	n := len(ev.list)
	if err := v.EnsureDataKey(ctx, "x-test"); err != nil || len(ev.list) != n {
		t.Fatalf("second ensure: %v, %d new events", err, len(ev.list)-n)
	}
	if err := v.EnsureDataKey(ctx, "Bad Purpose"); err == nil {
		t.Fatal("an invalid purpose was accepted")
	}
}
