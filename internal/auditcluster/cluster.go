package auditcluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phigate/phigate/internal/audit"
)

// Errors of the cluster store.
var (
	// ErrConflict is the tamper alarm: the shared database holds, for a
	// node's origin, something its own log does not (another entry or
	// checkpoint under the same number, or more entries than it has).
	ErrConflict = errors.New("auditcluster: the shared audit copy conflicts with the node's log (tampered, or two nodes share one name)")
	// ErrKeyChanged: the origin is registered with another verifier key.
	ErrKeyChanged = errors.New("auditcluster: the origin is registered with another verifier key; a key change is refused")
	// ErrBadCursor: a search cursor that Cursor.String did not print.
	ErrBadCursor = errors.New("auditcluster: malformed cursor")
)

// Options configure a Cluster.
type Options struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Sealer, when not nil, gives the Sealer that opens the sealed fields
	// of an origin's entries (nil: they stay sealed, and match no Patient
	// or PathPrefix filter).
	Sealer func(origin string) audit.Sealer
}

// Cluster is the shared audit store of a cluster in PostgreSQL.
type Cluster struct {
	pool   *pgxpool.Pool
	owned  bool
	now    func() time.Time
	sealer func(string) audit.Sealer
}

// Open connects to the PostgreSQL database at dsn (a postgres:// URL or
// key=value string; TLS as its sslmode says) and creates the audit tables
// when missing.
func Open(ctx context.Context, dsn string, opts Options) (*Cluster, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// the DSN may hold a password: do not repeat it
		return nil, errors.New("auditcluster: the PostgreSQL DSN does not parse")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("auditcluster: connect: %w", err)
	}
	c, err := New(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	c.owned = true
	return c, nil
}

// New is Open on a pool the caller owns (the token store's, say); Close
// then leaves it open.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Cluster, error) {
	c := &Cluster{pool: pool, now: opts.Now, sealer: opts.Sealer}
	if c.now == nil {
		c.now = time.Now
	}
	if err := c.migrate(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close releases the pool when Open made it.
func (c *Cluster) Close() {
	if c.owned {
		c.pool.Close()
	}
}

// lockMigrate is the advisory lock key under which nodes starting together
// create the tables one at a time.
const lockMigrate = 0x70686961756401 // "phiaud" 1

var schema = []string{
	`CREATE TABLE IF NOT EXISTS audit_origins (
		origin     text COLLATE "C" PRIMARY KEY,
		verifier   text NOT NULL,
		registered bigint NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS audit_entries (
		origin   text COLLATE "C" NOT NULL,
		seq      bigint NOT NULL CHECK (seq >= 0),
		time     bigint NOT NULL,
		token_id bytea,
		subject  bytea,
		hashes   bytea NOT NULL,
		body     bytea NOT NULL,
		PRIMARY KEY (origin, seq)
	)`,
	`CREATE INDEX IF NOT EXISTS audit_entries_time ON audit_entries (time, origin, seq)`,
	`CREATE INDEX IF NOT EXISTS audit_entries_token ON audit_entries (token_id, time, origin, seq) WHERE token_id IS NOT NULL`,
	`CREATE INDEX IF NOT EXISTS audit_entries_subject ON audit_entries (subject, time, origin, seq) WHERE subject IS NOT NULL`,
	`CREATE TABLE IF NOT EXISTS audit_checkpoints (
		origin text COLLATE "C" NOT NULL,
		size   bigint NOT NULL CHECK (size > 0),
		time   bigint NOT NULL,
		note   bytea NOT NULL,
		PRIMARY KEY (origin, size)
	)`,
	`CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'phigate audit: % on % refused: the audit log is append-only', TG_OP, TG_TABLE_NAME
			USING ERRCODE = 'insufficient_privilege';
	END $$`,
}

func init() {
	for _, t := range []string{"audit_origins", "audit_entries", "audit_checkpoints"} {
		schema = append(schema,
			fmt.Sprintf(`CREATE OR REPLACE TRIGGER %[1]s_append_only BEFORE UPDATE OR DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION audit_append_only()`, t),
			fmt.Sprintf(`CREATE OR REPLACE TRIGGER %[1]s_no_truncate BEFORE TRUNCATE ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()`, t))
	}
}

func (c *Cluster) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(lockMigrate)); err != nil {
			return fmt.Errorf("auditcluster: migrate: %w", err)
		}
		for _, q := range schema {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("auditcluster: migrate: %w", err)
			}
		}
		return nil
	})
}

// Register records origin's verifier key, once: registering the same key
// again is a no-op, another key for a registered origin is ErrKeyChanged.
// The key must be a valid verifier key named origin.
func (c *Cluster) Register(ctx context.Context, origin, vkey string) error {
	v, err := audit.NewVerifier(vkey)
	if err != nil {
		return err
	}
	if v.Name() != origin {
		return fmt.Errorf("auditcluster: the verifier key is %s's, not %s's", v.Name(), origin)
	}
	if _, err := c.pool.Exec(ctx, `INSERT INTO audit_origins (origin, verifier, registered) VALUES ($1, $2, $3) ON CONFLICT (origin) DO NOTHING`,
		origin, vkey, c.now().UnixNano()); err != nil {
		return fmt.Errorf("auditcluster: register %s: %w", origin, err)
	}
	var got string
	if err := c.pool.QueryRow(ctx, `SELECT verifier FROM audit_origins WHERE origin = $1`, origin).Scan(&got); err != nil {
		return fmt.Errorf("auditcluster: register %s: %w", origin, err)
	}
	if got != vkey {
		return fmt.Errorf("%w: %s", ErrKeyChanged, origin)
	}
	return nil
}

// Origins returns the origins the database knows of (registered, or with
// entries or checkpoints), in byte order, with their registered keys
// ("" for none).
func (c *Cluster) Origins(ctx context.Context) ([]Origin, error) {
	rows, err := c.pool.Query(ctx, originsQuery)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOrigin)
}

const originsQuery = `SELECT o.origin, coalesce(r.verifier, '') FROM (
		SELECT origin FROM audit_origins UNION
		SELECT DISTINCT origin FROM audit_entries UNION
		SELECT DISTINCT origin FROM audit_checkpoints) o
	LEFT JOIN audit_origins r ON r.origin = o.origin ORDER BY o.origin`

func scanOrigin(r pgx.CollectableRow) (Origin, error) {
	var o Origin
	err := r.Scan(&o.Name, &o.Verifier)
	return o, err
}

// Origin is a node's log in the shared database.
type Origin struct {
	Name     string // phigate/<node>
	Verifier string // the registered verifier key; "" when none is
}
