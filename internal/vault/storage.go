package vault

import (
	"context"
	"time"
)

// Storage keeps what the vault persists: wrapped data keys, sealed items
// (secrets, key blobs, peppers) and a little metadata. It never sees a
// plaintext key or value. The SQLite file vault.db is the default; the
// conformance suite in package storagetest is what every implementation
// MUST pass.
//
// Methods MUST NOT return before their change is durable. Not-found cases
// return an error wrapping ErrNotFound; a write that would take an
// existing (purpose, version) or (purpose, name, version) returns one
// wrapping ErrConflict and changes nothing.
type Storage interface {
	// DataKeys returns every wrapped data key.
	DataKeys(ctx context.Context) ([]WrappedKey, error)
	// AddDataKey stores a new data key version.
	AddDataKey(ctx context.Context, k WrappedKey) error
	// RewrapDataKeys replaces the Wrapped bytes of existing data keys and
	// sets the metadata "kek" to kek, all in one transaction: either every
	// key is re-wrapped or none is (ErrNotFound when one is missing).
	RewrapDataKeys(ctx context.Context, ks []WrappedKey, kek string) error

	// PutItem stores a new item version. When prune is set, older versions
	// of the same (purpose, name) are deleted in the same transaction.
	PutItem(ctx context.Context, it Item, prune bool) error
	// Item returns one version of an item; version 0 means the latest.
	Item(ctx context.Context, purpose, name string, version int) (Item, error)
	// Items returns every version of an item, oldest first (ErrNotFound
	// when there is none).
	Items(ctx context.Context, purpose, name string) ([]Item, error)
	// ListItems returns the latest version of each item of purpose, by
	// name, without ciphertexts.
	ListItems(ctx context.Context, purpose string) ([]Item, error)
	// DeleteItem deletes one version of an item.
	DeleteItem(ctx context.Context, purpose, name string, version int) error
	// StaleItems returns up to limit items of purpose whose DEKVersion is
	// below dek, ordered by (name, version), after the item (name, version)
	// given (empty name: from the start).
	StaleItems(ctx context.Context, purpose string, dek uint32, afterName string, afterVersion, limit int) ([]Item, error)
	// ReplaceCiphertexts swaps, in one transaction, the ciphertext of each
	// item whose current ciphertext is still Old (others are skipped) and
	// reports how many were replaced.
	ReplaceCiphertexts(ctx context.Context, rs []Replacement) (int, error)

	// Meta and SetMeta keep small non-secret values ("kek": the
	// description of the master key that wrapped the data keys).
	Meta(ctx context.Context, key string) (string, error)
	SetMeta(ctx context.Context, key, value string) error

	Close() error
}

// WrappedKey is a data key as stored: wrapped by the master key.
type WrappedKey struct {
	Purpose   string
	Version   uint32
	Wrapped   []byte
	CreatedAt time.Time
}

// Item is a sealed value as stored. Ciphertext is a vault ciphertext (see
// the package documentation) sealed by data key (Purpose, DEKVersion) for
// the location itemAAD(Purpose, Name, Version).
type Item struct {
	Purpose    string
	Name       string
	Version    int
	DEKVersion uint32
	Ciphertext []byte
	CreatedAt  time.Time
}

// Replacement is one re-encrypted item for ReplaceCiphertexts.
type Replacement struct {
	Purpose    string
	Name       string
	Version    int
	Old, New   []byte
	DEKVersion uint32 // of New
}
