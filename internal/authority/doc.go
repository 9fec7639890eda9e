// Package authority is phigate's token authority: it issues, verifies,
// changes, rotates and revokes tokens. It is the domain core between the
// edges (admin API, gateway, CLI) and storage; it knows nothing of HTTP.
//
// Guarantees:
//
//   - A secret exists in plaintext only in the value returned by Create,
//     Rotate and Bootstrap. The store receives only its keyed hash.
//   - Pepper rotation without downtime (Config.Peppers): new secrets are
//     hashed with the newest pepper from the moment RotatePepper returns;
//     secrets hashed with an older live pepper keep verifying (a cache miss
//     tries the current pepper's hash first, then each older one). A cached
//     token costs one hash whatever the number of peppers. RetirePepper
//     refuses a version while a token that is neither expired nor revoked
//     still has a secret hashed with it, and never retires the current one.
//   - A token's PHI (its patient id) reaches the store only sealed
//     (Config.Sealer), bound to the token and the field, and is opened on
//     every read: callers only ever see plaintext, and a sealed value that
//     fails to open is an error (ErrSealed), never garbage.
//   - Verify is deny by default and fails closed: a technical failure is an
//     error and never an allow. A malformed secret is rejected before any
//     store lookup.
//   - A change (update, revoke, suspend, rotate) is durable in the store
//     before it returns, and the verification cache forgets the token before
//     it returns, so the very next Verify on this node sees the change.
//   - Remaining uses are never exceeded: uses are reserved from the store in
//     small leases (an atomic decrement), spent from memory, and unspent
//     leases are given back at Close. A crash can only lose uses, never add.
//   - Last-used times are kept in memory and written in batches every
//     FlushInterval, not once per request.
//   - Attenuation: a token can only create or change tokens whose scopes,
//     lifetime and constraints are within its own. The scope admin:* is the
//     root scope and covers every scope; its holder's lifetime and
//     constraints still bound what it issues.
//   - No token outlives its issuer. Each token's not_after is fixed at issue
//     (created_at + max_lifetime, or its expiry without one, never later
//     than the issuer's not_after) and never moves; rotation, self-rotation
//     and Update never push the expiry past it, nor past any issuer's up the
//     chain. A token whose issuer (or an issuer further up) is revoked can
//     no longer be rotated (ErrIssuerRevoked), nor one whose not_after has
//     passed (ErrLifetimeEnded). The rule lives in lifetime.go.
//   - Rotation chains (rotate.go). A token's TTL is its rotation period:
//     a rotation (RotateWith, by a manager of the token or by the token
//     itself) gives it a new secret expiring TTL later, capped at
//     not_after by the rule above; the previous secret keeps working for
//     the token's Grace (0..TTL, set at Create or Update), which a rotation
//     may shorten, never lengthen (likewise its TTL). Scopes, constraints
//     and the id never change: rotation never widens anything. The chain
//     ends at not_after: created_at + max_lifetime, and a token created
//     without one gets Config.DefaultMaxLifetime (90 days; at least its
//     TTL). A token that nobody rotates simply expires. Two rotations of
//     one revision make one link (the loser gets ErrConflict).
//   - Lineage. The id stays the same along the chain, so rotated_from is
//     not a token id: the record keeps Rotations (the link number: 0 for
//     the secret issued by Create), RotatedAt, and RotatedFrom, the
//     fingerprint (token.Fingerprint: a one-way function of the stored
//     keyed hash) of the secret the last rotation replaced. The audit entry
//     of every rotation names its number and the fingerprints of both the
//     replaced and the new secret, so the whole chain can be followed in
//     the log without any secret in it.
//   - A superseded secret (replaced by a rotation, living out its grace)
//     still authenticates, but never starts a rotation: ErrAlreadyRotated.
//   - Idempotent rotation. With RotateRequest.IdempotencyKey, the answer
//     (new secret, record, previous secret's end) is sealed by
//     Config.ReplaySealer — the vault's own data-key purpose, bound to the
//     token id and the key's SHA-256 — and stored with the rotation in one
//     transaction, until the previous secret's grace ends (nothing when
//     there is no grace). A retry by the same caller with the same key and
//     request gets it again, rotates nothing, and is recorded as
//     ActionRetried, never as a second ActionRotated; the same key with
//     another request or caller is ErrIdempotencyKeyReused. Racing retries
//     make one rotation (the store refuses a second replay of one key).
//     Why encryption rather than deriving the secret again from a keyed
//     function: a derived secret is a pure function of a long-lived server
//     key and public inputs (token id, rotation number, key), so whoever
//     learns that key can compute every current secret of every token, for
//     as long as the key lives. A sealed answer exists only for the grace
//     period (never served after it, and deleted by the next rotation's
//     write, of any token), opens only for its own token and key,
//     and its data key rotates with the vault's (keys rotate-dek
//     rotation-replay) without changing any secret; secrets stay
//     random, as everywhere else.
//   - Subject prefixes: a token with a subject_prefix issues only tokens
//     whose subject and own prefix start with it; a child without a prefix
//     inherits its issuer's; Update may narrow a prefix, never widen or
//     remove it. The bootstrap token has none, so the root is unrestricted.
//     A subject is an asserted name; created_by is the proof of who
//     asserted it.
package authority
