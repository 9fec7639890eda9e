// Package storagetest is the conformance suite of vault.Storage: every
// implementation (SQLite today, PostgreSQL later) MUST pass Run.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/vault"
)

// Run runs the suite. open returns a new, empty storage for each subtest
// (the suite closes it).
func Run(t *testing.T, open func(t *testing.T) vault.Storage) {
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	fresh := func(t *testing.T) vault.Storage {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		return s
	}
	item := func(name string, version int, dek uint32, ct string) vault.Item {
		return vault.Item{Purpose: "p", Name: name, Version: version, DEKVersion: dek, Ciphertext: []byte(ct), CreatedAt: at}
	}

	t.Run("DataKeysRoundTrip", func(t *testing.T) {
		s := fresh(t)
		if ks, err := s.DataKeys(ctx); err != nil || len(ks) != 0 {
			t.Fatalf("empty storage: %v %v", ks, err)
		}
		for _, k := range []vault.WrappedKey{wk("b", 1, "w-b1", at), wk("a", 2, "w-a2", at), wk("a", 1, "w-a1", at)} {
			if err := s.AddDataKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		ks, err := s.DataKeys(ctx)
		if err != nil || len(ks) != 3 || ks[0].Purpose != "a" || ks[0].Version != 1 || ks[2].Purpose != "b" ||
			string(ks[1].Wrapped) != "w-a2" || !ks[0].CreatedAt.Equal(at) {
			t.Fatalf("DataKeys = %+v, %v (want sorted by purpose, version)", ks, err)
		}
	})
	t.Run("AddDataKeyTwiceIsConflict", func(t *testing.T) {
		s := fresh(t)
		s.AddDataKey(ctx, wk("a", 1, "x", at))
		if err := s.AddDataKey(ctx, wk("a", 1, "y", at)); !errors.Is(err, vault.ErrConflict) {
			t.Fatalf("second add: %v, want ErrConflict", err)
		}
		ks, _ := s.DataKeys(ctx)
		if string(ks[0].Wrapped) != "x" {
			t.Fatal("conflicting add changed the key")
		}
	})
	t.Run("RewrapIsAllOrNothing", func(t *testing.T) {
		s := fresh(t)
		s.AddDataKey(ctx, wk("a", 1, "old-a", at))
		s.AddDataKey(ctx, wk("b", 1, "old-b", at))
		s.SetMeta(ctx, "kek", "k1")
		err := s.RewrapDataKeys(ctx, []vault.WrappedKey{{Purpose: "a", Version: 1, Wrapped: []byte("new-a")}, {Purpose: "zz", Version: 9, Wrapped: []byte("?")}}, "k2")
		if !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("rewrap with a missing key: %v, want ErrNotFound", err)
		}
		ks, _ := s.DataKeys(ctx)
		if kek, _ := s.Meta(ctx, "kek"); string(ks[0].Wrapped) != "old-a" || kek != "k1" {
			t.Fatal("a failed rewrap changed something")
		}
		if err := s.RewrapDataKeys(ctx, []vault.WrappedKey{{Purpose: "a", Version: 1, Wrapped: []byte("new-a")}, {Purpose: "b", Version: 1, Wrapped: []byte("new-b")}}, "k2"); err != nil {
			t.Fatal(err)
		}
		ks, _ = s.DataKeys(ctx)
		if kek, _ := s.Meta(ctx, "kek"); string(ks[0].Wrapped) != "new-a" || string(ks[1].Wrapped) != "new-b" || kek != "k2" {
			t.Fatalf("rewrap: %+v kek=%q", ks, kek)
		}
	})
	t.Run("ItemVersions", func(t *testing.T) {
		s := fresh(t)
		if _, err := s.Item(ctx, "p", "n", 0); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("missing item: %v", err)
		}
		if _, err := s.Items(ctx, "p", "n"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("missing items: %v", err)
		}
		for v := 1; v <= 3; v++ {
			if err := s.PutItem(ctx, item("n", v, 1, "ct"+string(rune('0'+v))), false); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutItem(ctx, item("n", 2, 1, "dup"), false); !errors.Is(err, vault.ErrConflict) {
			t.Fatalf("duplicate version: %v, want ErrConflict", err)
		}
		it, err := s.Item(ctx, "p", "n", 0)
		if err != nil || it.Version != 3 || string(it.Ciphertext) != "ct3" || !it.CreatedAt.Equal(at) || it.DEKVersion != 1 {
			t.Fatalf("latest = %+v, %v", it, err)
		}
		if it, _ := s.Item(ctx, "p", "n", 2); string(it.Ciphertext) != "ct2" {
			t.Fatalf("version 2 = %+v", it)
		}
		its, _ := s.Items(ctx, "p", "n")
		if len(its) != 3 || its[0].Version != 1 || its[2].Version != 3 {
			t.Fatalf("Items = %+v", its)
		}
		if err := s.DeleteItem(ctx, "p", "n", 1); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteItem(ctx, "p", "n", 1); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		if err := s.PutItem(ctx, item("n", 4, 1, "ct4"), true); err != nil {
			t.Fatal(err)
		}
		if its, _ := s.Items(ctx, "p", "n"); len(its) != 1 || its[0].Version != 4 {
			t.Fatalf("prune left %+v", its)
		}
	})
	t.Run("ListItemsLatestPerNameWithoutCiphertext", func(t *testing.T) {
		s := fresh(t)
		s.PutItem(ctx, item("b", 1, 1, "x"), false)
		s.PutItem(ctx, item("b", 2, 1, "y"), false)
		s.PutItem(ctx, item("a", 1, 1, "z"), false)
		other := item("c", 1, 1, "w")
		other.Purpose = "q"
		s.PutItem(ctx, other, false)
		ls, err := s.ListItems(ctx, "p")
		if err != nil || len(ls) != 2 || ls[0].Name != "a" || ls[1].Name != "b" || ls[1].Version != 2 {
			t.Fatalf("ListItems = %+v, %v", ls, err)
		}
		for _, it := range ls {
			if len(it.Ciphertext) != 0 {
				t.Fatal("ListItems returned ciphertexts")
			}
		}
	})
	t.Run("StaleItemsAndReplace", func(t *testing.T) {
		s := fresh(t)
		s.PutItem(ctx, item("a", 1, 1, "a1"), false)
		s.PutItem(ctx, item("b", 1, 2, "b1"), false)
		s.PutItem(ctx, item("c", 1, 1, "c1"), false)
		s.PutItem(ctx, item("c", 2, 1, "c2"), false)
		st, err := s.StaleItems(ctx, "p", 2, "", 0, 2)
		if err != nil || len(st) != 2 || st[0].Name != "a" || st[1].Name != "c" || st[1].Version != 1 {
			t.Fatalf("page 1 = %+v, %v", st, err)
		}
		st2, _ := s.StaleItems(ctx, "p", 2, "c", 1, 2)
		if len(st2) != 1 || st2[0].Version != 2 {
			t.Fatalf("page 2 = %+v", st2)
		}
		n, err := s.ReplaceCiphertexts(ctx, []vault.Replacement{
			{Purpose: "p", Name: "a", Version: 1, Old: []byte("a1"), New: []byte("A1"), DEKVersion: 2},
			{Purpose: "p", Name: "c", Version: 1, Old: []byte("changed meanwhile"), New: []byte("C1"), DEKVersion: 2},
		})
		if err != nil || n != 1 {
			t.Fatalf("replace: %d %v, want 1 (the stale Old is skipped)", n, err)
		}
		if it, _ := s.Item(ctx, "p", "a", 1); !bytes.Equal(it.Ciphertext, []byte("A1")) || it.DEKVersion != 2 {
			t.Fatalf("after replace: %+v", it)
		}
		if it, _ := s.Item(ctx, "p", "c", 1); string(it.Ciphertext) != "c1" {
			t.Fatal("a skipped replacement changed the item")
		}
	})
	t.Run("Meta", func(t *testing.T) {
		s := fresh(t)
		if _, err := s.Meta(ctx, "x"); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("missing meta: %v", err)
		}
		s.SetMeta(ctx, "x", "1")
		s.SetMeta(ctx, "x", "2")
		if v, err := s.Meta(ctx, "x"); v != "2" || err != nil {
			t.Fatalf("meta = %q %v", v, err)
		}
	})
}

func wk(purpose string, version uint32, wrapped string, at time.Time) vault.WrappedKey {
	return vault.WrappedKey{Purpose: purpose, Version: version, Wrapped: []byte(wrapped), CreatedAt: at}
}
