package monitor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestLearnedBaselinesSurviveARestart(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.learnDay("tok", "192.0.2.10", nil)
	fx.learnDay("v6", "2001:db8:7::1", nil)
	for range 600 { // a rate baseline of 2/s
		fx.use("svc", "192.0.2.1", nil)
		fx.clk.Add(500 * time.Millisecond)
	}
	fx.wantAlerts()
	if err := fx.mon.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// a new monitor on the same store: what was learned is known
	fx.mon = fx.open(testConfig())
	if err := fx.mon.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := fx.mon.Stats().Tokens; n != 3 {
		t.Fatalf("%d tokens restored, want 3", n)
	}
	fx.clk.Add(time.Hour)
	fx.use("tok", "192.0.2.77", nil) // the learned /24
	fx.use("v6", "2001:db8:7::2", nil)
	fx.wantAlerts()
	fx.use("tok", "198.51.100.1", nil)
	fx.wantAlerts(DetectorNewNetwork) // learning is over, not restarted
	// the subject's hours too: its new token at night
	fx.clk.Set(fx.clk.Now().Truncate(24 * time.Hour).Add(24*time.Hour + 3*time.Hour))
	o := fx.obs(Grant, "tok-2", "192.0.2.10")
	o.Subject = "subj-tok"
	fx.mon.Check(o)
	fx.mon.Observe(o)
	fx.wantAlerts(DetectorOffHours)
	sh := fx.mon.shard("svc")
	sh.mu.Lock()
	mean := sh.m["svc"].r1.mean
	sh.mu.Unlock()
	if mean < 1 {
		t.Fatalf("rate baseline %v not restored", mean)
	}

	// a snapshot round-trips byte for byte
	a := fx.mon.encode()
	m2 := fx.open(testConfig())
	states, _, err := decodeSnapshot(a, 100)
	if err != nil || len(states) != 4 {
		t.Fatalf("%d states, %v", len(states), err)
	}
	fx.st.Put(context.Background(), SnapshotKey, a)
	if err := m2.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := m2.encode(); len(b) != len(a) {
		t.Fatalf("re-encoded %d bytes, want %d", len(b), len(a))
	}
}

func TestMalformedSnapshotIsRefusedAndNothingLoaded(t *testing.T) {
	fx := newFixture(t, testConfig())
	fx.learnDay("tok", "192.0.2.10", nil)
	good := fx.mon.encode()
	for i := range good {
		for _, b := range []byte{0x00, 0xff, good[i] ^ 0x01} {
			bad := bytes.Clone(good)
			if bad[i] == b {
				continue
			}
			bad[i] = b
			// a mutation may still be a valid snapshot (a byte of an id, a
			// float): it must then decode into bounded states
			states, _, err := decodeSnapshot(bad, 10)
			if err != nil && !errors.Is(err, ErrSnapshot) {
				t.Fatalf("byte %d: %v", i, err)
			}
			if err == nil && len(states) != 1 {
				t.Fatalf("byte %d: %d states", i, len(states))
			}
		}
	}
	for _, bad := range [][]byte{[]byte("PGM"), []byte("PGM2\x00"), append(bytes.Clone(good), 0), good[:len(good)-1]} {
		fx.st.Put(context.Background(), SnapshotKey, bad)
		m := fx.open(testConfig())
		if err := m.Restore(context.Background()); !errors.Is(err, ErrSnapshot) {
			t.Fatalf("%q: %v, want ErrSnapshot", bad, err)
		}
		if n := m.Stats().Tokens; n != 0 {
			t.Fatalf("%d tokens loaded from a malformed snapshot", n)
		}
	}
}

func TestSnapshotKeepsAtMostMaxTokens(t *testing.T) {
	fx := newFixture(t, testConfig())
	for _, id := range []string{"a", "b", "c", "d"} {
		fx.use(id, "192.0.2.1", nil)
	}
	states, _, err := decodeSnapshot(fx.mon.encode(), 2)
	if err != nil || len(states) != 2 {
		t.Fatalf("%d states, %v", len(states), err)
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	fx := newFixture(f, testConfig())
	fx.learnDay("tok", "192.0.2.10", nil)
	fx.learnDay("v6", "2001:db8::1", nil)
	f.Add(fx.mon.encode())
	f.Add([]byte("PGM1\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		states, subjects, err := decodeSnapshot(b, 1000)
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatal(err)
			}
			return
		}
		// what decodes re-encodes to the same bytes
		var out []byte
		for _, st := range states {
			out = appendState(out, st)
		}
		out = binary.AppendUvarint(out, uint64(len(subjects)))
		for _, sl := range subjects {
			out = appendSubject(out, sl)
		}
		if len(states) < 1000 && len(subjects) < 100_000 && !bytes.HasSuffix(b, out) {
			t.Fatalf("re-encoding differs")
		}
	})
}
