// Package auditcluster keeps the audit logs of a cluster's nodes in the
// shared PostgreSQL database, verifies them together and searches and
// exports them merged by time.
//
// # Design: a mirror, not the durable commit
//
// Each node's log stays what package audit makes it: its own Merkle log
// (origin phigate/<node>), durable in the node's journal and SQLite
// database on its own disk before Append returns, signed by the node's own
// key. A Mirror copies it into PostgreSQL asynchronously: each entry's
// canonical bytes (sealed PHI stays sealed), its search columns and the
// Merkle hashes its leaf completes, every signed checkpoint, and once the
// node's public verifier key.
//
// This was chosen over making PostgreSQL the log's durable commit because
// the request path then keeps the local group commit (one fdatasync shared
// by concurrent appends) rather than a network round
// trip and a remote commit per group (and package audit's journal, tiles and
// replay stay as they are, tested); because a node that loses the
// database keeps an audit record of every grant it made until then (it
// still fails closed when its own disk fails); and because nothing in
// package audit's verified format changes. The price, stated exactly:
//
//   - The node's local log is the durable record; the shared copy lags
//     behind it. Status reports by how much (entries and age of the oldest
//     entry not yet copied), and Status.Err is set when the lag exceeds
//     MirrorOptions.MaxLag, for /readyz. After kill -9 of a node nothing
//     acknowledged is lost: it is in the node's journal, the node's log
//     replays it at Open, and the mirror copies it when it runs again.
//   - A node whose disk is destroyed before its mirror caught up loses
//     from the shared copy what was not copied yet (at most the lag).
//
// # Guarantees
//
//   - Append-only: triggers refuse UPDATE, DELETE and TRUNCATE of every
//     table (defence in depth; Verify detects what gets past them).
//   - Idempotent and resumable: a Mirror copies a batch of entries and the
//     checkpoints they complete in one transaction, under a per-origin
//     advisory lock; it starts again from the highest seq the database
//     holds, after comparing that entry with its own. Killed anywhere, it
//     leaves no gap and no duplicate.
//   - Tamper alarm: a Mirror refuses (ErrConflict, and stops) when the
//     database holds, for its origin, an entry or checkpoint that differs
//     from its own log's, or entries its log does not have; a node whose
//     origin is registered with another key is refused (ErrKeyChanged).
//   - Verifiable with the public keys only: Verify rebuilds each origin's
//     tree from its entries and checks it against each of its signed
//     checkpoints (audit.VerifyRows, the checks of audit.Verify). The keys
//     registered in the database prove nothing on their own (whoever can
//     write the database can register a key of their own and re-sign):
//     the auditor passes the nodes' keys (VerifyOptions.Keys), and then an
//     origin without a supplied key, or a registered key that differs
//     from the supplied one, is a failure.
//
// # Usage
//
//	cl, err := auditcluster.New(ctx, pool, auditcluster.Options{Now: clock}) // or Open(ctx, dsn, ...)
//	m, err := cl.NewMirror(log, auditcluster.MirrorOptions{Verifier: log.PublicKey(), Logger: logger})
//	go m.Run(ctx)             // stop it before log.Close
//	ready := m.Status().Err   // for /readyz: lag beyond MaxLag, or the tamper alarm
//	apiOpts.AuditSearch = cl  // GET /v1/audit serves the merged view
//
// The open *audit.Log is the Source to mirror in the node's process: it
// hurries its indexer for what it acknowledged, where an *audit.Reader
// sees entries only once the indexer wrote them (up to 50 ms later).
//
// # Tables
//
//	audit_origins      origin (phigate/<node>), verifier key, registered (ns)
//	audit_entries      origin, seq, time (ns), token_id, subject, hashes, body
//	                   primary key (origin, seq); indexes (time, origin, seq),
//	                   (token_id, time, origin, seq), (subject, time, origin, seq)
//	audit_checkpoints  origin, size, time (ns), note; primary key (origin, size)
//
// # Merged search
//
// Search orders the entries of every origin by (time, origin, seq): time,
// then the origin in byte order, then the sequence number, so that the
// order is total and stable. A page's Next is a cursor naming the last
// entry it read, "<time>.<seq>.<origin>" (time in nanoseconds since 1970,
// both decimal); ParseCursor accepts exactly what Cursor.String prints.
package auditcluster
