// Package audit is phigate's tamper-evident audit log: every token
// creation, permission change and use, recorded durably before it takes
// effect, in a Merkle tree whose signed checkpoints let anyone holding only
// the log's public key prove that no entry was changed, removed, inserted or
// reordered.
//
// # Guarantees
//
//   - Durable before acknowledged: Append MUST NOT return nil until the
//     entry is in the journal and fsync'd (it reaches the database behind
//     it; a reader that starts after Append returned finds it). Concurrent
//     appends share one journal write and one fsync (group commit).
//   - Never a hang: Append fails at once with ErrPushback when too many
//     appends wait, with ErrUnavailable while the log cannot be written
//     (an alert is logged and Ready reports it until the database write
//     is retried successfully, or, after a failed journal write, until
//     the log is reopened), and gives up after Options.AppendTimeout. Any error means
//     "not audited": the caller refuses what it was about to do.
//   - No secrets: the Entry type has no field for a token secret, and
//     Append redacts anything in any field that looks like one ("phi_"
//     followed by 32 or more base62 characters becomes "phi_[REDACTED]").
//   - Append-only: no API edits or deletes an entry; the database refuses
//     UPDATE and DELETE (triggers), and Verify detects what gets past them.
//   - Verifiable: Verify recomputes every leaf, rebuilds the tree and checks
//     it against every signed checkpoint (and any checkpoint saved outside
//     the log), naming the first bad entry. A proof bundle proves one entry
//     to someone holding only the public key.
//   - Signed at least every Options.CheckpointInterval (one second) while
//     entries arrive, at Close, and at Open for entries a crash left
//     unsigned. Entries written after the latest checkpoint are protected
//     by nothing but that cadence: a witness (Options.WitnessFile,
//     WitnessURL) keeps the evidence off the machine.
//
// # Usage
//
//	if _, _, err := audit.InitKeys(dataDir, node, nil); err != nil { ... } // at init
//	log, err := audit.Open(ctx, dataDir, audit.Options{Logger: logger})
//	...
//	seq, err := log.Append(ctx, &audit.Entry{
//		Action: audit.ActionAccessGranted, Outcome: audit.OutcomeSuccess,
//		Actor: audit.ActorOf(rec), Source: audit.Source{IP: ip, UserAgent: ua},
//		RequestID: rid, Purpose: "TREAT", Method: "GET", Upstream: "fhir", Path: p,
//	})
//	if err != nil {
//		// refuse the request: 503 (with Retry-After for ErrPushback)
//	}
//	...
//	log.Close() // final checkpoint
//
// # Entry encoding
//
// The leaf of entry n is the RFC 6962 leaf hash SHA-256(0x00 || E) of its
// canonical encoding E:
//
//	E      = version *field
//	version = 0x01
//	field  = tag value
//	tag    = 1 byte, 1..25, strictly increasing (each field at most once)
//	value  = uvarint(v)                  for an integer field
//	       | uvarint(len(s)) || s        for a string field
//
// where uvarint is the unsigned LEB128 varint of encoding/binary, in its
// shortest form (no trailing 0x00 group). A field whose value is zero or
// empty is left out; fields 2 (time) and 4 (action) are always present.
// Strings are UTF-8 (but field 25: bytes); fields 23 and 24 are JSON. The tags:
//
//	 1 seq          integer  sequence number = leaf index (left out for 0)
//	 2 time         integer  nanoseconds since 1970-01-01 UTC (> 0), when the log accepted it
//	 3 node         string   the node that wrote it
//	 4 action       string   e.g. "access.granted" (see the Action constants)
//	 5 outcome      string   "success" | "denied" | "failure"
//	 6 token_id     string   actor: the phigate token id
//	 7 subject      string   actor: the token's subject
//	 8 kind         string   actor: "user" | "service" | "admin"
//	 9 ip           string   source address
//	10 user_agent   string
//	11 request_id   string
//	12 target       string   what the action was done to (a token id, ...)
//	13 reason       string   reason code of a denial or failure, or the operator's reason
//	14 purpose      string   HL7 purpose of use (TREAT, ETREAT, ...)
//	15 break_glass  string   break-glass justification
//	16 patient      string   patient compartment
//	17 method       string   HTTP method
//	18 upstream     string   upstream name
//	19 path         string   request path and query
//	20 status       integer  upstream's HTTP status (< 2^31)
//	21 bytes        integer  response bytes
//	22 duration     integer  nanoseconds
//	23 before       JSON     state before a change (token.updated)
//	24 after        JSON     state after it
//	25 sealed       bytes    fields 15, 16 and 19, encrypted (see seal.go):
//	                         their own encoding (tag, length, bytes, in tag
//	                         order) sealed by the log's Sealer for this seq;
//	                         an entry with it has none of 15, 16, 19
//	26 interaction  string   FHIR interaction of a proxied request ("read",
//	                         "search-type", ..., "route" for an http upstream)
//
// A decoder MUST refuse anything else (unknown version or tag, fields out
// of order, repeated or empty, numbers not in shortest form or out of
// range, invalid UTF-8 or JSON, trailing bytes): every entry has exactly
// one encoding (UnmarshalEntry; MarshalBinary). For example, the entry
//
//	seq 5, time 1767225600123456789 (2026-01-01T00:00:00.123456789Z), node "n1",
//	access.granted, success, token tok_1 of svc:lab (service), from 10.0.0.7,
//	purpose TREAT, GET /fhir/Observation
//
// is encoded as these 108 bytes (hex):
//
//	01                                      version
//	01 05                                   seq 5
//	02 95 9a d7 aa 9f ca 9c c3 18           time
//	03 02 6e 31                             node "n1"
//	04 0e 61 63 63 65 73 73 2e 67 72 61 6e 74 65 64
//	                                        action "access.granted"
//	05 07 73 75 63 63 65 73 73              outcome "success"
//	06 05 74 6f 6b 5f 31                    token_id "tok_1"
//	07 07 73 76 63 3a 6c 61 62              subject "svc:lab"
//	08 07 73 65 72 76 69 63 65              kind "service"
//	09 08 31 30 2e 30 2e 30 2e 37           ip "10.0.0.7"
//	0e 05 54 52 45 41 54                    purpose "TREAT"
//	11 03 47 45 54                          method "GET"
//	13 11 2f 66 68 69 72 2f 4f 62 73 65 72 76 61 74 69 6f 6e
//	                                        path "/fhir/Observation"
//
// and its leaf hash is
// fc181085965caa8a004af35301bddf0ac07a25b14771d06b6e3fe7fdacb77210.
//
// # Tree and checkpoints
//
// The tree is the RFC 6962 Merkle tree of the leaves in sequence order
// (interior node = SHA-256(0x01 || left || right)), built with
// github.com/transparency-dev/merkle. A checkpoint is a C2SP tlog-checkpoint
// signed note (golang.org/x/mod/sumdb/note, Ed25519), whose origin and key
// name are phigate/<node>:
//
//	phigate/node-1
//	<tree size, decimal>
//	<base64 of the 32-byte root hash>
//
//	— phigate/node-1 <base64 of 4-byte key hash || 64-byte signature>
//
// The public verifier key ("phigate/node-1+<hash>+<key>", PublicKey) is
// all an auditor needs. A witness file holds checkpoints one after the
// other, each followed by an empty line (SplitCheckpoints).
//
// A proof bundle (ProofBundle, JSON) is an entry's encoding, its RFC 6962
// inclusion proof, and a signed checkpoint of a tree containing it. A
// consistency proof (ConsistencyProof, JSON; Log.Consistency) proves that
// the tree of one size extends the tree of a smaller one unchanged
// (RFC 6962 §2.1.2): with two signed checkpoints and the public key,
// VerifyConsistency (or any RFC 6962 verifier) checks it.
//
// The log is also served read-only as C2SP tlog-tiles (TileHandler, see
// tlogtiles.go: hash tiles of height 8 and entry bundles of the canonical
// encodings, read from the database), and each checkpoint is submitted to
// C2SP tlog-witness witnesses (Options.Witnesses), whose tlog-cosignature
// cosignatures are kept in <data>/audit.cosigned (see cosign.go).
//
// # Storage
//
// The log has its own SQLite database, <data>/audit.db (WAL), written
// behind a journal, <data>/audit.journal/: an append is acknowledged once
// its group commit is in the journal (one write, one fdatasync), and the
// indexer copies it into the database a few milliseconds later; Open
// replays what the database lacks (see writer.go and journal.go).
// Table entries holds per row the sequence number, the encoding, copies of
// time, token id and subject for searching (Verify checks they match), and
// the Merkle hashes the leaf completes: its leaf hash and one hash per
// perfect subtree it closes, so node (level L, index i) is in row
// ((i+1)<<L)-1. Table tiles also holds every complete subtree of height 8
// whole (255 nodes), so that a proof reads its entry's row and one tile per
// 8 levels (3 for 10 million entries) rather than a row per level. Table
// checkpoints holds every checkpoint issued.
//
// # Retention
//
// Nothing is deleted. Options.Retention (six years by default) says how
// long entries must be kept; Expired counts those older; Archive writes a
// prefix of the log, whole, with a checkpoint signed for exactly that
// prefix, which VerifyArchive checks. Removing an archived prefix from the
// database is not implemented.
package audit
