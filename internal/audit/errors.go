package audit

import "errors"

var (
	// ErrPushback: the append queue is full. The entry was not accepted;
	// the caller should refuse its own request (503 with Retry-After) and
	// may retry later. Nothing was written.
	ErrPushback = errors.New("audit: too many appends waiting (pushback)")

	// ErrUnavailable: the log cannot be written at the moment (storage
	// failure, or a commit stalled for longer than Options.StallTimeout).
	// The entry was not accepted. Ready reports the same until a probe
	// write succeeds.
	ErrUnavailable = errors.New("audit: log unavailable")

	// ErrUnknownOutcome: the caller stopped waiting (its context ended, or
	// Options.AppendTimeout passed) after the writer had taken the entry;
	// it may or may not be committed. Treat it as a failure (fail closed).
	ErrUnknownOutcome = errors.New("audit: stopped waiting; the entry may or may not be committed")

	// ErrClosed: the log is closed.
	ErrClosed = errors.New("audit: log closed")

	// ErrInvalidEntry: Append refused an entry that does not fit the
	// schema (unknown action or outcome, before/after not JSON or too
	// large). A caller bug; nothing was written.
	ErrInvalidEntry = errors.New("audit: invalid entry")

	// ErrMalformedEntry: bytes that are not the canonical encoding of an
	// entry (see UnmarshalEntry).
	ErrMalformedEntry = errors.New("audit: malformed entry encoding")

	// ErrNotFound: no entry with that sequence number (yet).
	ErrNotFound = errors.New("audit: no such entry")

	// ErrNoKey: the data directory has no audit signing key (run
	// InitKeys, which phigate init does).
	ErrNoKey = errors.New("audit: no signing key (run phigate init)")

	// ErrBadCheckpoint: a checkpoint that does not parse, is not signed by
	// the expected key, or names another log.
	ErrBadCheckpoint = errors.New("audit: invalid checkpoint")

	// ErrBadProof: a proof bundle that does not parse or does not prove
	// what it claims.
	ErrBadProof = errors.New("audit: invalid proof")

	// ErrTampered: the stored log does not match its signed checkpoints
	// (Open refuses such a log; Verify says where).
	ErrTampered = errors.New("audit: log does not match its signed checkpoint")
)
