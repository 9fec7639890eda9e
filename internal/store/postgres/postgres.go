// Package postgres is phigate's store.Store in PostgreSQL, for several
// nodes sharing one database (a cluster), with github.com/jackc/pgx/v5.
//
// # Guarantees
//
//   - Durability: every change is one PostgreSQL transaction, committed
//     before its method returns nil. Open refuses a server whose
//     synchronous_commit is off (a commit there is not durable when it
//     returns).
//   - No partial writes: a change of several rows (a rotation, a status
//     change of many tokens) is one transaction; a failed one changes
//     nothing.
//   - Concurrency across nodes: ReserveUses is an atomic decrement under
//     the token's row lock (phigate_reserve_uses), so remaining uses never
//     go below zero whichever nodes take them; UpdateToken compares the
//     revision in the UPDATE itself.
//   - OAuth clients (store.ClientStore, clients.go): UseAssertion is one
//     INSERT … ON CONFLICT DO UPDATE that takes a (client, jti) only when
//     absent or past its exp, so an assertion used on one node is refused
//     on every other until its exp; RevokeClient is one UPDATE of the
//     active row. Nodes cache no client: each token request reads it.
//   - Change feed: every change that makes a node's verification cache
//     stale (UpdateToken, SetStatus, RotateSecret/RotateSecretWith) stamps
//     the row with its transaction id and sends NOTIFY on Channel() with
//     "<token id> <revision>" in the same transaction, so a notification is
//     sent only for a change that committed. Follow turns the
//     notifications, and a fallback poll that cannot miss a committed
//     change (see follow.go), into calls of a callback, and reports how old
//     the node's view of the changes is.
//   - Schema: versioned migrations (table schema_migrations), each in its
//     own transaction under a transaction-scoped advisory lock, so that
//     nodes starting at once migrate once. Open refuses a schema written by
//     a newer phigate (ErrSchemaTooNew). The store lives in the connection's
//     current schema (search_path), which lets several phigate installations
//     or tests share one database.
//   - Times are timestamptz: kept to the microsecond (truncated), returned
//     in UTC; the zero time is NULL. Ids sort bytewise (COLLATE "C"), as
//     everywhere in phigate.
//   - Secrets: the DSN's password never appears in an error or a log line
//     of this package.
//
// # Usage
//
//	s, err := postgres.Open(ctx, "postgres://phigate@db.internal/phigate?sslmode=verify-full", postgres.Options{CAFile: "/etc/phigate/db-ca.pem"})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//
// Statements are prepared on each pooled connection on first use (pgx's
// statement cache) and reused from then on.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phigate/phigate/internal/store"
)

// Options tune a Store. The zero value is a sensible default.
type Options struct {
	// Now is the clock: it dates migrations, drops rotated secrets and
	// replays past their end, and measures the age of the change feed
	// (nil: time.Now).
	Now func() time.Time
	// MaxConns bounds the pool (0: 16).
	MaxConns int32
	// CAFile, when set, is the PEM file of the CA that signs the database
	// server's certificate (sslrootcert). It overrides the DSN's.
	CAFile string
	// ConnectTimeout bounds each connection attempt (0: 5s).
	ConnectTimeout time.Duration
	// Logger receives the change feed's reconnections (nil: discard).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is a store.Store in PostgreSQL. It is safe for concurrent use.
type Store struct {
	opts    Options
	pool    *pgxpool.Pool
	schema  string
	channel string
	secret  string // the DSN's password, kept out of errors

	closeMu sync.Mutex
	closed  atomic.Bool
}

var _ store.Store = (*Store)(nil)

// ErrSchemaTooNew is returned by Open for a database whose schema was
// written by a newer phigate.
var ErrSchemaTooNew = errors.New("postgres: database schema is newer than this phigate knows")

// ParseConfig parses dsn (a postgres:// URL or key=value string) with
// opts applied, as Open does. Its errors never hold the password.
func ParseConfig(dsn string, opts Options) (*pgxpool.Config, error) {
	opts = opts.withDefaults()
	pw := password(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: parse the DSN: %w", err), pw)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ShouldPing = shouldPing
	if opts.CAFile != "" {
		// sslrootcert only takes effect through the DSN: parse it again
		// with the option added, keeping everything else.
		dsn2, err := withParam(dsn, "sslrootcert", opts.CAFile)
		if err != nil {
			return nil, redact(err, pw)
		}
		c2, err := pgxpool.ParseConfig(dsn2)
		if err != nil {
			return nil, redact(fmt.Errorf("postgres: the CA file: %w", err), pw)
		}
		c2.MaxConns, c2.ConnConfig.ConnectTimeout, c2.ShouldPing = cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, shouldPing
		cfg = c2
	}
	return cfg, nil
}

// shouldPing checks a pooled connection that sat idle for 200ms before
// handing it out (pgx's default waits a second): after a database restart
// shorter than that, a dead connection would otherwise fail one request.
// Under load connections are rarely idle that long, so the ping costs
// nothing where latency matters.
func shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return p.IdleDuration > 200*time.Millisecond
}

// Open connects to the database of dsn, brings the schema of the
// connection's current schema up to date, and returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := ParseConfig(dsn, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, secret: password(dsn)}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.redact(fmt.Errorf("postgres: open: %w", err))
	}
	if err := s.init(ctx); err != nil {
		s.pool.Close()
		return nil, s.redact(err)
	}
	return s, nil
}

// init checks the server and migrates.
func (s *Store) init(ctx context.Context) error {
	var sync string
	var schema *string
	if err := s.pool.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_schema()").Scan(&sync, &schema); err != nil {
		return fmt.Errorf("postgres: open: %w", err)
	}
	if sync == "off" {
		return errors.New("postgres: open: the server runs with synchronous_commit=off, so a commit is not durable when it returns; set it to on")
	}
	if schema == nil {
		return errors.New("postgres: open: no current schema (does the search_path name an existing schema?)")
	}
	s.schema = *schema
	s.channel = channelFor(s.schema)
	return migrate(ctx, s.pool, s.opts.Now)
}

// channelFor is the NOTIFY channel of the store in schema (63 bytes at
// most, PostgreSQL's identifier limit).
func channelFor(schema string) string {
	c := "phigate_changes"
	if schema != "public" {
		c += "_" + schema
	}
	if len(c) > 63 {
		c = c[:63]
	}
	return c
}

// Pool returns the connection pool (for the parts of a node that keep
// their own tables in the same database: the audit mirror). The store
// owns it: Close closes it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Channel is the NOTIFY channel of the store's changes.
func (s *Store) Channel() string { return s.channel }

// Schema is the schema the store's tables are in.
func (s *Store) Schema() string { return s.schema }

// Close waits for the changes in flight to commit and closes the pool.
// Later calls return store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return fmt.Errorf("postgres: close: %w", store.ErrClosed)
	}
	s.pool.Close() // blocks until every acquired connection is back
	return nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx, "ping"); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// check returns ErrClosed once the store is closed and ctx's error when it
// is done, wrapped with what: a call that gets an error here changed
// nothing.
func (s *Store) check(ctx context.Context, what string) error {
	if s.closed.Load() {
		return fmt.Errorf("postgres: %s: %w", what, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	return nil
}

// fail maps a database error: ErrClosed once closed, ErrNotFound for no
// row, ctx's error when ctx ended, else the error wrapped with what. The
// password is removed from the message.
func (s *Store) fail(ctx context.Context, what string, err error) error {
	switch {
	case s.closed.Load():
		return fmt.Errorf("postgres: %s: %w", what, store.ErrClosed)
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return s.redact(fmt.Errorf("postgres: %s: %w (%w)", what, ctx.Err(), err))
	default:
		return s.redact(fmt.Errorf("postgres: %s: %w", what, err))
	}
}

// isUnique reports a unique or primary key violation (SQLSTATE 23505).
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// redact removes the password from err's message.
func (s *Store) redact(err error) error { return redact(err, s.secret) }

func redact(err error, pw string) error {
	if err == nil || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return redactedError{msg: strings.ReplaceAll(err.Error(), pw, "xxxxx"), err: err}
}

// redactedError is an error whose message had a password removed; it
// still unwraps to the original (for errors.Is), whose message MUST NOT
// be printed.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// password returns the password in dsn, or "".
func password(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if p, ok := u.User.Password(); ok {
			return p
		}
		return u.Query().Get("password")
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok { // a URL that does not parse
		if userinfo, _, ok := strings.Cut(rest, "@"); ok {
			if _, pw, ok := strings.Cut(userinfo, ":"); ok {
				return pw
			}
		}
		return ""
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// Redact returns dsn without its password, for a log line.
func Redact(dsn string) string {
	if pw := password(dsn); pw != "" {
		return strings.ReplaceAll(dsn, pw, "xxxxx")
	}
	return dsn
}

// withParam returns dsn with key=value set.
func withParam(dsn, key, value string) (string, error) {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	if strings.ContainsAny(value, "' \\") {
		return "", fmt.Errorf("postgres: %s %q: quote-free paths only in a key=value DSN", key, value)
	}
	return dsn + " " + key + "=" + value, nil
}
