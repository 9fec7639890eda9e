package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/internal/vault"
)

// VaultStorage is a vault.Storage in the store's database, so that every
// node of a cluster shares one vault: its data keys, the token pepper, the
// upstream credentials. It never sees a plaintext key or value (the vault
// seals them before). Every write is one transaction that also bumps
// vault_changes and sends NOTIFY "!vault <generation>" on the store's
// channel; the change feed tells the other nodes (FollowOptions.OnVault),
// which reload their vault.
type VaultStorage struct {
	s      *Store
	closed atomic.Bool
}

var _ vault.Storage = (*VaultStorage)(nil)

// VaultStorage returns the vault storage of the store's database. Its
// Close does not close the store.
func (s *Store) VaultStorage() *VaultStorage { return &VaultStorage{s: s} }

// vaultPayload prefixes the notification of a vault change (token ids
// never start with "!").
const vaultPayload = "!vault"

// Empty reports whether the database holds no vault yet (no data key).
func (v *VaultStorage) Empty(ctx context.Context) (bool, error) {
	var n int64
	if err := v.s.pool.QueryRow(ctx, "SELECT count(*) FROM vault_data_keys").Scan(&n); err != nil {
		return false, v.s.fail(ctx, "vault: count data keys", err)
	}
	return n == 0, nil
}

func (v *VaultStorage) check() error {
	if v.closed.Load() || v.s.closed.Load() {
		return fmt.Errorf("postgres: vault: %w", vault.ErrClosed)
	}
	return nil
}

// write runs f in one transaction that records the vault change.
func (v *VaultStorage) write(ctx context.Context, f func(tx pgx.Tx) error) error {
	if err := v.check(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, v.s.pool, func(tx pgx.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `WITH u AS (UPDATE vault_changes SET gen = gen + 1 RETURNING gen)
			SELECT pg_notify($1, $2 || ' ' || u.gen::text) FROM u`, v.s.channel, vaultPayload)
		return err
	})
	return v.s.redact(err)
}

// DataKeys implements vault.Storage.
func (v *VaultStorage) DataKeys(ctx context.Context) ([]vault.WrappedKey, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	rows, err := v.s.pool.Query(ctx, "SELECT purpose, version, wrapped, created_at FROM vault_data_keys ORDER BY purpose, version")
	if err != nil {
		return nil, v.s.redact(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.WrappedKey, error) {
		var k vault.WrappedKey
		var ver, at int64
		if err := r.Scan(&k.Purpose, &ver, &k.Wrapped, &at); err != nil {
			return k, err
		}
		if ver < 0 || ver > 1<<32-1 {
			return k, fmt.Errorf("data key %s: version %d out of range", k.Purpose, ver)
		}
		k.Version, k.CreatedAt = uint32(ver), time.Unix(0, at).UTC()
		return k, nil
	})
}

// AddDataKey implements vault.Storage.
func (v *VaultStorage) AddDataKey(ctx context.Context, k vault.WrappedKey) error {
	err := v.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO vault_data_keys (purpose, version, wrapped, created_at) VALUES ($1, $2, $3, $4)",
			k.Purpose, int64(k.Version), k.Wrapped, k.CreatedAt.UnixNano())
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("%w: data key %s v%d exists", vault.ErrConflict, k.Purpose, k.Version)
	}
	return err
}

// RewrapDataKeys implements vault.Storage.
func (v *VaultStorage) RewrapDataKeys(ctx context.Context, ks []vault.WrappedKey, kek string) error {
	return v.write(ctx, func(tx pgx.Tx) error {
		for _, k := range ks {
			tag, err := tx.Exec(ctx, "UPDATE vault_data_keys SET wrapped = $1 WHERE purpose = $2 AND version = $3", k.Wrapped, k.Purpose, int64(k.Version))
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("%w: data key %s v%d", vault.ErrNotFound, k.Purpose, k.Version)
			}
		}
		_, err := tx.Exec(ctx, "INSERT INTO vault_meta (key, value) VALUES ('kek', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", kek)
		return err
	})
}

// PutItem implements vault.Storage.
func (v *VaultStorage) PutItem(ctx context.Context, it vault.Item, prune bool) error {
	err := v.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO vault_items (purpose, name, version, dek_version, ciphertext, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
			it.Purpose, it.Name, int64(it.Version), int64(it.DEKVersion), it.Ciphertext, it.CreatedAt.UnixNano()); err != nil {
			return err
		}
		if prune {
			_, err := tx.Exec(ctx, "DELETE FROM vault_items WHERE purpose = $1 AND name = $2 AND version < $3", it.Purpose, it.Name, int64(it.Version))
			return err
		}
		return nil
	})
	if isUnique(err) {
		return fmt.Errorf("%w: %s/%s v%d exists", vault.ErrConflict, it.Purpose, it.Name, it.Version)
	}
	return err
}

const vaultItemCols = "purpose, name, version, dek_version, ciphertext, created_at"

func scanVaultItem(r pgx.CollectableRow) (vault.Item, error) {
	var it vault.Item
	var ver, dv, at int64
	if err := r.Scan(&it.Purpose, &it.Name, &ver, &dv, &it.Ciphertext, &at); err != nil {
		return it, err
	}
	it.Version, it.DEKVersion, it.CreatedAt = int(ver), uint32(dv), time.Unix(0, at).UTC()
	return it, nil
}

func (v *VaultStorage) items(ctx context.Context, q string, args ...any) ([]vault.Item, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	rows, err := v.s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, v.s.redact(err)
	}
	out, err := pgx.CollectRows(rows, scanVaultItem)
	return out, v.s.redact(err)
}

// Item implements vault.Storage.
func (v *VaultStorage) Item(ctx context.Context, purpose, name string, version int) (vault.Item, error) {
	var out []vault.Item
	var err error
	if version == 0 {
		out, err = v.items(ctx, "SELECT "+vaultItemCols+" FROM vault_items WHERE purpose = $1 AND name = $2 ORDER BY version DESC LIMIT 1", purpose, name)
	} else {
		out, err = v.items(ctx, "SELECT "+vaultItemCols+" FROM vault_items WHERE purpose = $1 AND name = $2 AND version = $3", purpose, name, int64(version))
	}
	if err != nil {
		return vault.Item{}, err
	}
	if len(out) == 0 {
		return vault.Item{}, fmt.Errorf("%w: %s %q", vault.ErrNotFound, purpose, name)
	}
	return out[0], nil
}

// Items implements vault.Storage.
func (v *VaultStorage) Items(ctx context.Context, purpose, name string) ([]vault.Item, error) {
	out, err := v.items(ctx, "SELECT "+vaultItemCols+" FROM vault_items WHERE purpose = $1 AND name = $2 ORDER BY version", purpose, name)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %s %q", vault.ErrNotFound, purpose, name)
	}
	return out, err
}

// ListItems implements vault.Storage.
func (v *VaultStorage) ListItems(ctx context.Context, purpose string) ([]vault.Item, error) {
	return v.items(ctx, `SELECT DISTINCT ON (name) purpose, name, version, dek_version, ''::bytea, created_at
		FROM vault_items WHERE purpose = $1 ORDER BY name, version DESC`, purpose)
}

// DeleteItem implements vault.Storage.
func (v *VaultStorage) DeleteItem(ctx context.Context, purpose, name string, version int) error {
	return v.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM vault_items WHERE purpose = $1 AND name = $2 AND version = $3", purpose, name, int64(version))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s %q v%d", vault.ErrNotFound, purpose, name, version)
		}
		return nil
	})
}

// StaleItems implements vault.Storage.
func (v *VaultStorage) StaleItems(ctx context.Context, purpose string, dek uint32, afterName string, afterVersion, limit int) ([]vault.Item, error) {
	return v.items(ctx, "SELECT "+vaultItemCols+` FROM vault_items
		WHERE purpose = $1 AND (name, version) > ($2, $3) AND dek_version < $4
		ORDER BY name, version LIMIT $5`, purpose, afterName, int64(afterVersion), int64(dek), limit)
}

// ReplaceCiphertexts implements vault.Storage.
func (v *VaultStorage) ReplaceCiphertexts(ctx context.Context, rs []vault.Replacement) (int, error) {
	n := 0
	err := v.write(ctx, func(tx pgx.Tx) error {
		for _, r := range rs {
			tag, err := tx.Exec(ctx, `UPDATE vault_items SET ciphertext = $1, dek_version = $2
				WHERE purpose = $3 AND name = $4 AND version = $5 AND ciphertext = $6`,
				r.New, int64(r.DEKVersion), r.Purpose, r.Name, int64(r.Version), r.Old)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Meta implements vault.Storage.
func (v *VaultStorage) Meta(ctx context.Context, key string) (string, error) {
	if err := v.check(); err != nil {
		return "", err
	}
	var val string
	err := v.s.pool.QueryRow(ctx, "SELECT value FROM vault_meta WHERE key = $1", key).Scan(&val)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: meta %q", vault.ErrNotFound, key)
	}
	return val, v.s.redact(err)
}

// SetMeta implements vault.Storage.
func (v *VaultStorage) SetMeta(ctx context.Context, key, value string) error {
	return v.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO vault_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
		return err
	})
}

// Close implements vault.Storage; the store stays open.
func (v *VaultStorage) Close() error {
	v.closed.Store(true)
	return nil
}
