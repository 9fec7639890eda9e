package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrSchemaTooNew is returned by Open for a database whose schema was
// written by a newer phigate: opening it could misread or damage data.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this phigate knows")

// migrations are the schema changes in order; migrations[i] brings the
// schema from version i to version i+1. Each runs in its own transaction,
// together with the row that records it in schema_migrations. A released
// migration is never edited: a change is a new migration appended here.
var migrations = [...]string{
	// 1: tokens, their secrets, and named values.
	//
	// Times are INTEGER unix nanoseconds UTC, NULL for the zero time.
	// Durations are INTEGER nanoseconds. parent_id and created_by are NULL
	// when empty. attrs holds the rest of token.Record as JSON (see attrs
	// in codec.go); the columns are what is filtered, indexed or changed on
	// its own.
	`
CREATE TABLE tokens (
    id                TEXT    NOT NULL PRIMARY KEY,
    subject           TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    status_reason     TEXT    NOT NULL DEFAULT '',
    status_changed_at INTEGER,
    parent_id         TEXT,
    created_by        TEXT,
    created_at        INTEGER,
    expires_at        INTEGER,
    updated_at        INTEGER,
    last_used_at      INTEGER,
    remaining_uses    INTEGER CHECK (remaining_uses >= 0),
    max_lifetime      INTEGER NOT NULL DEFAULT 0,
    idle_timeout      INTEGER NOT NULL DEFAULT 0,
    revision          INTEGER NOT NULL,
    attrs             TEXT    NOT NULL DEFAULT '{}'
) STRICT, WITHOUT ROWID;
CREATE INDEX tokens_subject ON tokens (subject, id);
CREATE INDEX tokens_parent  ON tokens (parent_id, id) WHERE parent_id IS NOT NULL;

CREATE TABLE token_secrets (
    hash           BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    token_id       TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    pepper_version INTEGER NOT NULL,
    created_at     INTEGER,
    not_after      INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX token_secrets_token ON token_secrets (token_id);

CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
`,
	// 2: tokens.not_after, the absolute end of a token (token.Record.NotAfter).
	//
	// An existing token's own bound is created_at + max_lifetime, or its
	// expires_at when it has no max lifetime; its not_after is the earliest
	// own bound up its parent chain (at most 64 issuers up, so that a cycle
	// of parent ids ends), so that no token outlives its issuer. An expiry
	// already past that (a token that had outlived its issuer) is brought
	// back to it. The sum saturates instead of overflowing.
	`
ALTER TABLE tokens ADD COLUMN not_after INTEGER;

CREATE TEMP TABLE token_bounds (
    id        TEXT    NOT NULL PRIMARY KEY,
    not_after INTEGER
) STRICT, WITHOUT ROWID;
INSERT INTO token_bounds (id, not_after)
WITH RECURSIVE up (id, anc, depth) AS (
    SELECT id, id, 0 FROM tokens
    UNION
    SELECT up.id, t.parent_id, up.depth + 1
    FROM up JOIN tokens t ON t.id = up.anc
    WHERE t.parent_id IS NOT NULL AND up.depth < 64
)
SELECT up.id, MIN(CASE
        WHEN a.max_lifetime <= 0 THEN a.expires_at
        WHEN a.created_at > 9223372036854775807 - a.max_lifetime THEN 9223372036854775807
        ELSE a.created_at + a.max_lifetime END)
FROM up JOIN tokens a ON a.id = up.anc
GROUP BY up.id;
UPDATE tokens SET not_after = (SELECT b.not_after FROM token_bounds b WHERE b.id = tokens.id);
UPDATE tokens SET expires_at = not_after WHERE expires_at > not_after;
DROP TABLE temp.token_bounds;
`,
	// 3: rotation chains and idempotent rotations.
	//
	// rotations, rotated_at and rotated_from are token.Record's Rotations,
	// RotatedAt and RotatedFrom: written only by a rotation. rotation_replays
	// holds store.Replay: the sealed answer of an idempotent rotation, one
	// per (token, idempotency key hash), deleted once expired.
	`
ALTER TABLE tokens ADD COLUMN rotations INTEGER NOT NULL DEFAULT 0 CHECK (rotations >= 0);
ALTER TABLE tokens ADD COLUMN rotated_at INTEGER;
ALTER TABLE tokens ADD COLUMN rotated_from TEXT;

CREATE TABLE rotation_replays (
    token_id     TEXT    NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    key_hash     BLOB    NOT NULL CHECK (length(key_hash) = 32),
    caller_id    TEXT    NOT NULL,
    request_hash BLOB    NOT NULL CHECK (length(request_hash) = 32),
    rotation     INTEGER NOT NULL,
    sealed       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (token_id, key_hash)
) STRICT, WITHOUT ROWID;
CREATE INDEX rotation_replays_expiry ON rotation_replays (expires_at);
`,
	// 4: alerts raised by the monitor (store.Alert).
	//
	// evidence is the JSON object as given; audit_seqs a JSON array of
	// integers; acked_at NULL while the alert is open.
	`
CREATE TABLE alerts (
    id         TEXT    NOT NULL PRIMARY KEY,
    detector   TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    token_id   TEXT    NOT NULL DEFAULT '',
    subject    TEXT    NOT NULL DEFAULT '',
    source     TEXT    NOT NULL DEFAULT '',
    summary    TEXT    NOT NULL DEFAULT '',
    evidence   TEXT    NOT NULL DEFAULT '',
    audit_seqs TEXT    NOT NULL DEFAULT '[]',
    action     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('open', 'acked')),
    acked_at   INTEGER,
    acked_by   TEXT    NOT NULL DEFAULT '',
    ack_note   TEXT    NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;
CREATE INDEX alerts_token ON alerts (token_id, id);
`,
	// 5: SMART Backend Services (store.ClientStore).
	//
	// tokens.client_id is token.Record.ClientID, NULL when empty, fixed at
	// creation. oauth_clients holds store.Client: jwks the inline key set
	// (public keys only) or NULL with jwks_url; attrs the scopes and
	// constraints as JSON (the attrs of a token, same keys) and max_ttl in
	// nanoseconds. oauth_assertions is the replay cache: one row per
	// (client, jti) until its exp, deleted after.
	`
ALTER TABLE tokens ADD COLUMN client_id TEXT;
CREATE INDEX tokens_client ON tokens (client_id, id) WHERE client_id IS NOT NULL;

CREATE TABLE oauth_clients (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    jwks              TEXT,
    jwks_url          TEXT,
    attrs             TEXT    NOT NULL DEFAULT '{}',
    max_ttl           INTEGER NOT NULL DEFAULT 0,
    created_by        TEXT    NOT NULL DEFAULT '',
    status            TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    status_reason     TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER,
    status_changed_at INTEGER,
    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
) STRICT, WITHOUT ROWID;

CREATE TABLE oauth_assertions (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT, WITHOUT ROWID;
CREATE INDEX oauth_assertions_expiry ON oauth_assertions (expires_at);
`,
	// 6: counting tokens by status without reading them (CountTokens,
	// the console's overview): a covering index.
	`
CREATE INDEX tokens_status ON tokens (status, expires_at, parent_id);
`,
}

// SchemaVersion is the schema version this code writes and understands.
const SchemaVersion = len(migrations)

const createMigrationsTable = `
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT`

// migrate brings the database on conn to SchemaVersion, one migration per
// transaction. BEGIN IMMEDIATE takes the write lock before the version is
// read, so two processes opening the same new file do not both migrate it.
func migrate(ctx context.Context, conn *sql.Conn, now func() time.Time) error {
	if _, err := conn.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("sqlite: create schema_migrations: %w", err)
	}
	for {
		done, err := migrateOne(ctx, conn, now)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, if any, and reports whether the
// schema is up to date.
func migrateOne(ctx context.Context, conn *sql.Conn, now func() time.Time) (done bool, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer func() {
		if err != nil || done {
			// Nothing to keep: roll back the failed or empty transaction.
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return false, fmt.Errorf("sqlite: migrate: read schema version: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("%w: database has version %d, this phigate knows up to %d; upgrade phigate", ErrSchemaTooNew, v, len(migrations))
	case v == len(migrations):
		return true, nil
	}
	if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("sqlite: migrate to version %d: %w", v+1, err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", v+1, now().UnixNano()); err != nil {
		return false, fmt.Errorf("sqlite: migrate to version %d: record version: %w", v+1, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return false, fmt.Errorf("sqlite: migrate to version %d: commit: %w", v+1, err)
	}
	return false, nil
}
