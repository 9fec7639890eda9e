// Package scan finds phigate token secrets in text: files, directories,
// standard input and git history.
//
// The hot path does not use regular expressions: bytes.Index finds the
// prefix "phi_", then a hand-written check looks at the 49 base62
// characters after it (and that the run does not continue) and at the
// checksum (token.CheckBytes). Only a token whose checksum is valid is a
// Finding, so random strings of the right shape do not raise alarms.
//
// Readers are scanned in fixed-size windows (BufSize) that overlap by less
// than a token, so memory is bounded whatever the input. Binary input (a NUL
// byte in the first BinarySniff bytes) is skipped. Line numbers count '\n'.
//
// A Finding carries the public fingerprint (token.PublicFingerprint) for
// output; the secret itself is reachable only through Finding.Secret, for
// the leak report, and is never marshalled.
//
// Git support (Git) runs the git binary: the work tree's files come from
// `git ls-files --cached --others --exclude-standard` (so .gitignore is
// honoured), history from `git rev-list --objects --all` and one streamed
// `git cat-file --batch` (every blob once), staged content from the index
// blobs of the files `git diff --cached` names.
package scan
