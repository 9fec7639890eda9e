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
//   - Subject prefixes: a token with a subject_prefix issues only tokens
//     whose subject and own prefix start with it; a child without a prefix
//     inherits its issuer's; Update may narrow a prefix, never widen or
//     remove it. The bootstrap token has none, so the root is unrestricted.
//     A subject is an asserted name; created_by is the proof of who
//     asserted it.
package authority
