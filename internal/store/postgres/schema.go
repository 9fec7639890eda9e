package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema changes in order; migrations[i] brings the
// schema from version i to version i+1. Each runs in its own transaction,
// with the row that records it. A released migration is never edited.
var migrations = [...]string{
	// 1: the whole store as of SQLite's version 4, plus the client id of
	// OAuth-issued tokens and the change stamps.
	//
	// Durations are bigint nanoseconds; attrs is the JSON of the record's
	// parts that are never filtered (codec.go), kept as text, byte for
	// byte. change_xid is the id of the last transaction that changed
	// what a verification cache holds (NULL until the first such change);
	// the change feed's poll reads the rows whose change_xid is not below
	// the oldest transaction its previous poll could not see.
	`
CREATE TABLE tokens (
    id                text COLLATE "C" NOT NULL PRIMARY KEY,
    subject           text        NOT NULL,
    kind              text        NOT NULL,
    status            text        NOT NULL,
    status_reason     text        NOT NULL DEFAULT '',
    status_changed_at timestamptz,
    parent_id         text COLLATE "C",
    created_by        text,
    client_id         text,
    created_at        timestamptz,
    expires_at        timestamptz,
    updated_at        timestamptz,
    last_used_at      timestamptz,
    not_after         timestamptz,
    remaining_uses    bigint CHECK (remaining_uses >= 0),
    max_lifetime      bigint      NOT NULL DEFAULT 0,
    idle_timeout      bigint      NOT NULL DEFAULT 0,
    rotations         bigint      NOT NULL DEFAULT 0 CHECK (rotations >= 0),
    rotated_at        timestamptz,
    rotated_from      text,
    revision          bigint      NOT NULL,
    attrs             text        NOT NULL DEFAULT '{}',
    change_xid        xid8
);
CREATE INDEX tokens_subject ON tokens (subject, id);
CREATE INDEX tokens_parent  ON tokens (parent_id, id) WHERE parent_id IS NOT NULL;
CREATE INDEX tokens_change  ON tokens (change_xid) WHERE change_xid IS NOT NULL;

CREATE TABLE token_secrets (
    hash           bytea   NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    token_id       text COLLATE "C" NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    pepper_version integer NOT NULL,
    created_at     timestamptz,
    not_after      timestamptz
);
CREATE INDEX token_secrets_token ON token_secrets (token_id);

CREATE TABLE rotation_replays (
    token_id     text COLLATE "C" NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    key_hash     bytea  NOT NULL CHECK (length(key_hash) = 32),
    caller_id    text   NOT NULL,
    request_hash bytea  NOT NULL CHECK (length(request_hash) = 32),
    rotation     bigint NOT NULL,
    sealed       bytea  NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (token_id, key_hash)
);
CREATE INDEX rotation_replays_expiry ON rotation_replays (expires_at);

CREATE TABLE meta (
    key   text  NOT NULL PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE alerts (
    id         text COLLATE "C" NOT NULL PRIMARY KEY,
    detector   text NOT NULL,
    severity   text NOT NULL,
    token_id   text NOT NULL DEFAULT '',
    subject    text NOT NULL DEFAULT '',
    source     text NOT NULL DEFAULT '',
    summary    text NOT NULL DEFAULT '',
    evidence   text NOT NULL DEFAULT '',
    audit_seqs text NOT NULL DEFAULT '[]',
    action     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    state      text NOT NULL CHECK (state IN ('open', 'acked')),
    acked_at   timestamptz,
    acked_by   text NOT NULL DEFAULT '',
    ack_note   text NOT NULL DEFAULT ''
);
CREATE INDEX alerts_token ON alerts (token_id, id);

-- ReserveUses: takes up to n uses under the row lock and returns how many
-- it took; n for a token without a limit; -1 for no such token.
CREATE FUNCTION phigate_reserve_uses(tid text, n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    old bigint;
BEGIN
    SELECT remaining_uses INTO old FROM tokens WHERE id = tid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    IF old IS NULL THEN
        RETURN n;
    END IF;
    IF old > 0 THEN
        UPDATE tokens SET remaining_uses = old - LEAST(n, old) WHERE id = tid;
    END IF;
    RETURN LEAST(n, old);
END $$;
`,
	// 2: the vault (vault.Storage, see vault.go), shared by the nodes: its
	// metadata, wrapped data keys and sealed items, as in the vault's own
	// SQLite file (times in unix nanoseconds, as there). vault_changes
	// counts the vault's changes (one row), for the change feed.
	`
CREATE TABLE vault_meta (
    key   text NOT NULL PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE vault_data_keys (
    purpose    text COLLATE "C" NOT NULL,
    version    bigint NOT NULL,
    wrapped    bytea  NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (purpose, version)
);
CREATE TABLE vault_items (
    purpose     text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    dek_version bigint NOT NULL,
    ciphertext  bytea  NOT NULL,
    created_at  bigint NOT NULL,
    PRIMARY KEY (purpose, name, version)
);
CREATE TABLE vault_changes (
    one integer NOT NULL PRIMARY KEY CHECK (one = 1),
    gen bigint  NOT NULL
);
INSERT INTO vault_changes (one, gen) VALUES (1, 0);
`,
	// 3: SMART Backend Services (store.ClientStore, see clients.go), as in
	// SQLite's version 5. tokens.client_id (there since version 1) gets
	// the index ListTokens' ClientID filter uses. oauth_clients holds
	// store.Client: jwks the inline key set (public keys only) or NULL
	// with jwks_url; attrs the scopes and constraints as JSON text (the
	// attrs of a token, same keys); max_ttl in nanoseconds.
	// oauth_assertions is the replay cache shared by the nodes: one row
	// per (client, jti) until its exp; a row past its exp no longer
	// counts and is replaced or purged.
	`
CREATE INDEX tokens_client ON tokens (client_id, id) WHERE client_id IS NOT NULL;

CREATE TABLE oauth_clients (
    id                text COLLATE "C" NOT NULL PRIMARY KEY,
    name              text   NOT NULL,
    subject           text   NOT NULL,
    jwks              text,
    jwks_url          text,
    attrs             text   NOT NULL DEFAULT '{}',
    max_ttl           bigint NOT NULL DEFAULT 0 CHECK (max_ttl >= 0),
    created_by        text   NOT NULL DEFAULT '',
    status            text   NOT NULL CHECK (status IN ('active', 'revoked')),
    status_reason     text   NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz,
    status_changed_at timestamptz,
    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
);
CREATE INDEX oauth_clients_created_by ON oauth_clients (created_by, id);

CREATE TABLE oauth_assertions (
    client_id  text COLLATE "C" NOT NULL,
    jti        text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_assertions_expiry ON oauth_assertions (expires_at);
`,
}

// SchemaVersion is the schema version this code writes and understands.
const SchemaVersion = len(migrations)

// migrate brings the schema to SchemaVersion, one migration per
// transaction, each under an advisory lock named after the schema, so that
// nodes opening a new database at once apply each migration once.
func migrate(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) error {
	for {
		done, err := migrateOne(ctx, pool, now)
		if err != nil || done {
			return err
		}
	}
}

func migrateOne(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) (done bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('phigate migrate ' || current_schema(), 0))"); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer NOT NULL PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var v int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		switch {
		case v > len(migrations):
			return fmt.Errorf("%w: database has version %d, this phigate knows up to %d; upgrade phigate", ErrSchemaTooNew, v, len(migrations))
		case v == len(migrations):
			done = true
			return nil
		}
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", v+1, now().UTC()); err != nil {
			return fmt.Errorf("to version %d: record version: %w", v+1, err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("postgres: migrate: %w", err)
	}
	return done, nil
}
