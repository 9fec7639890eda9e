package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// FileName is the vault's SQLite file inside the data directory.
const FileName = "vault.db"

const sqliteSchemaVersion = 1

const sqliteSchema = `
CREATE TABLE vault_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE data_keys (
	purpose    TEXT NOT NULL,
	version    INTEGER NOT NULL,
	wrapped    BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (purpose, version)
) WITHOUT ROWID;
CREATE TABLE items (
	purpose     TEXT NOT NULL,
	name        TEXT NOT NULL,
	version     INTEGER NOT NULL,
	dek_version INTEGER NOT NULL,
	ciphertext  BLOB NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (purpose, name, version)
) WITHOUT ROWID;
PRAGMA user_version = 1;
`

// SQLiteStorage is the vault's Storage in one SQLite file (WAL,
// synchronous=FULL, secure_delete, mode 0600). Writes are rare
// (rotations, secret changes) and run in BEGIN IMMEDIATE transactions.
type SQLiteStorage struct {
	db *sql.DB
}

var _ Storage = (*SQLiteStorage)(nil)

// OpenSQLite opens the vault file at path. With create it makes a new file
// (mode 0600) and its schema, and fails with ErrExists if one is there;
// without, it fails with ErrNotInitialised if there is none. Opening an
// existing file only reads it.
func OpenSQLite(ctx context.Context, path string, create bool) (*SQLiteStorage, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	_, err = os.Stat(abs)
	switch {
	case err == nil && create:
		return nil, fmt.Errorf("%w: %s", ErrExists, abs)
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil, fmt.Errorf("%w: no %s", ErrNotInitialised, abs)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("vault: %w", err)
	}
	if create {
		f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		f.Close()
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "secure_delete(1)", "cache_size(-8192)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", OmitHost: true, Path: abs, RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(0)
	s := &SQLiteStorage{db: db}
	if err := s.init(ctx, create); err != nil {
		db.Close()
		if create {
			os.Remove(abs)
		}
		return nil, fmt.Errorf("vault: %s: %w", abs, err)
	}
	return s, nil
}

func (s *SQLiteStorage) init(ctx context.Context, create bool) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal", mode)
	}
	if create {
		_, err := s.db.ExecContext(ctx, sqliteSchema)
		return err
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v != sqliteSchemaVersion {
		return fmt.Errorf("schema version %d, this phigate knows %d", v, sqliteSchemaVersion)
	}
	return nil
}

// Close closes the file.
func (s *SQLiteStorage) Close() error { return s.db.Close() }

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func isConstraint(err error) bool {
	return err != nil && strings.Contains(err.Error(), "constraint failed")
}

// tx runs f in one write transaction.
func (s *SQLiteStorage) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *SQLiteStorage) DataKeys(ctx context.Context) ([]WrappedKey, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT purpose, version, wrapped, created_at FROM data_keys ORDER BY purpose, version")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WrappedKey
	for rows.Next() {
		var k WrappedKey
		var v, at int64
		if err := rows.Scan(&k.Purpose, &v, &k.Wrapped, &at); err != nil {
			return nil, err
		}
		if k.Version, err = versionOf(v); err != nil {
			return nil, err
		}
		k.CreatedAt = fromNanos(at)
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQLiteStorage) AddDataKey(ctx context.Context, k WrappedKey) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO data_keys (purpose, version, wrapped, created_at) VALUES (?, ?, ?, ?)",
		k.Purpose, int64(k.Version), k.Wrapped, nanos(k.CreatedAt))
	if isConstraint(err) {
		return fmt.Errorf("%w: data key %s v%d exists", ErrConflict, k.Purpose, k.Version)
	}
	return err
}

func (s *SQLiteStorage) RewrapDataKeys(ctx context.Context, ks []WrappedKey, kek string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, k := range ks {
			r, err := tx.ExecContext(ctx, "UPDATE data_keys SET wrapped = ? WHERE purpose = ? AND version = ?", k.Wrapped, k.Purpose, int64(k.Version))
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: data key %s v%d", ErrNotFound, k.Purpose, k.Version)
			}
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO vault_meta (key, value) VALUES ('kek', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", kek)
		return err
	})
}

func (s *SQLiteStorage) PutItem(ctx context.Context, it Item, prune bool) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO items (purpose, name, version, dek_version, ciphertext, created_at) VALUES (?, ?, ?, ?, ?, ?)",
			it.Purpose, it.Name, it.Version, int64(it.DEKVersion), it.Ciphertext, nanos(it.CreatedAt)); err != nil {
			return err
		}
		if prune {
			_, err := tx.ExecContext(ctx, "DELETE FROM items WHERE purpose = ? AND name = ? AND version < ?", it.Purpose, it.Name, it.Version)
			return err
		}
		return nil
	})
	if isConstraint(err) {
		return fmt.Errorf("%w: %s/%s v%d exists", ErrConflict, it.Purpose, it.Name, it.Version)
	}
	return err
}

const itemCols = "purpose, name, version, dek_version, ciphertext, created_at"

func scanItem(sc interface{ Scan(...any) error }) (Item, error) {
	var it Item
	var dv, at int64
	if err := sc.Scan(&it.Purpose, &it.Name, &it.Version, &dv, &it.Ciphertext, &at); err != nil {
		return Item{}, err
	}
	it.DEKVersion, it.CreatedAt = uint32(dv), fromNanos(at)
	return it, nil
}

func (s *SQLiteStorage) Item(ctx context.Context, purpose, name string, version int) (Item, error) {
	var row *sql.Row
	if version == 0 {
		row = s.db.QueryRowContext(ctx, "SELECT "+itemCols+" FROM items WHERE purpose = ? AND name = ? ORDER BY version DESC LIMIT 1", purpose, name)
	} else {
		row = s.db.QueryRowContext(ctx, "SELECT "+itemCols+" FROM items WHERE purpose = ? AND name = ? AND version = ?", purpose, name, version)
	}
	it, err := scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("%w: %s %q", ErrNotFound, purpose, name)
	}
	return it, err
}

func (s *SQLiteStorage) queryItems(ctx context.Context, q string, args ...any) ([]Item, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

func (s *SQLiteStorage) Items(ctx context.Context, purpose, name string) ([]Item, error) {
	out, err := s.queryItems(ctx, "SELECT "+itemCols+" FROM items WHERE purpose = ? AND name = ? ORDER BY version", purpose, name)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %s %q", ErrNotFound, purpose, name)
	}
	return out, err
}

func (s *SQLiteStorage) ListItems(ctx context.Context, purpose string) ([]Item, error) {
	return s.queryItems(ctx, `SELECT purpose, name, version, dek_version, x'', created_at FROM items i
		WHERE purpose = ? AND version = (SELECT MAX(version) FROM items j WHERE j.purpose = i.purpose AND j.name = i.name)
		ORDER BY name`, purpose)
}

func (s *SQLiteStorage) DeleteItem(ctx context.Context, purpose, name string, version int) error {
	r, err := s.db.ExecContext(ctx, "DELETE FROM items WHERE purpose = ? AND name = ? AND version = ?", purpose, name, version)
	if err != nil {
		return err
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s %q v%d", ErrNotFound, purpose, name, version)
	}
	return nil
}

func (s *SQLiteStorage) StaleItems(ctx context.Context, purpose string, dek uint32, afterName string, afterVersion, limit int) ([]Item, error) {
	return s.queryItems(ctx, "SELECT "+itemCols+` FROM items
		WHERE purpose = ? AND (name, version) > (?, ?) AND dek_version < ?
		ORDER BY name, version LIMIT ?`, purpose, afterName, afterVersion, int64(dek), limit)
}

func (s *SQLiteStorage) ReplaceCiphertexts(ctx context.Context, rs []Replacement) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, "UPDATE items SET ciphertext = ?, dek_version = ? WHERE purpose = ? AND name = ? AND version = ? AND ciphertext = ?")
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rs {
			res, err := st.ExecContext(ctx, r.New, int64(r.DEKVersion), r.Purpose, r.Name, r.Version, r.Old)
			if err != nil {
				return err
			}
			c, _ := res.RowsAffected()
			n += int(c)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *SQLiteStorage) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT value FROM vault_meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: meta %q", ErrNotFound, key)
	}
	return v, err
}

func (s *SQLiteStorage) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO vault_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return err
}
