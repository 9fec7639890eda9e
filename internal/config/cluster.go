package config

import (
	"strings"
	"time"
)

// Postgres tunes the PostgreSQL store (store: postgres://…), with which
// several nodes share one database and make one system: a change on any
// node reaches every node's verification cache (NOTIFY, and a poll every
// PollInterval), and a node that cannot learn of changes for longer than
// MaxStaleness refuses every request (503) until it can again.
//
// What is shared and what is per node: tokens, their secrets, remaining
// uses, alerts, the vault (data keys, pepper, upstream credentials) live
// in the database; each node keeps its own data_dir (TLS files, its audit
// log and its lock), its audit.node name, and its rate-limit buckets (a
// token's --rate is enforced per node).
type Postgres struct {
	// CAFile is the PEM file of the CA that signs the database server's
	// certificate; it overrides the DSN's sslrootcert.
	CAFile string `yaml:"ca_file"`
	// MaxConns bounds the connection pool; 1..1000.
	MaxConns int `yaml:"max_conns"`
	// PollInterval is the change feed's fallback poll; > 0.
	PollInterval Duration `yaml:"poll_interval"`
	// MaxStaleness bounds how old the node's view of revocations may be
	// before it refuses to serve; > PollInterval.
	MaxStaleness Duration `yaml:"max_staleness"`
}

// Defaults of the postgres section.
const (
	DefaultPostgresMaxConns     = 16
	DefaultPostgresPollInterval = time.Second
	DefaultPostgresMaxStaleness = 5 * time.Second
)

func defaultPostgres(c *Config) {
	c.Postgres = Postgres{MaxConns: DefaultPostgresMaxConns,
		PollInterval: Duration(DefaultPostgresPollInterval), MaxStaleness: Duration(DefaultPostgresMaxStaleness)}
}

// StoreIsPostgres reports whether store names a PostgreSQL database.
func (c *Config) StoreIsPostgres() bool {
	return strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://")
}

func (ps *problems) postgres(c *Config) {
	pg := c.StoreIsPostgres()
	if c.Store != "" && c.Store != "sqlite" && !pg {
		// never echo the value: it may hold a password
		ps.add("store", "must be sqlite or a postgres:// (postgresql://) DSN")
	}
	p := c.Postgres
	if p.MaxConns < 1 || p.MaxConns > 1000 {
		ps.add("postgres.max_conns", "must be 1..1000 (got %d)", p.MaxConns)
	}
	okPoll := ps.positive("postgres.poll_interval", p.PollInterval)
	if ps.positive("postgres.max_staleness", p.MaxStaleness) && okPoll && p.MaxStaleness <= p.PollInterval {
		ps.add("postgres.max_staleness", "must be greater than postgres.poll_interval (%s)", p.PollInterval)
	}
	if pg && c.Audit.Node == "" {
		ps.add("audit.node", "required with a postgres store: every node of a cluster names itself (its audit log's origin is phigate/<node>)")
	}
}
