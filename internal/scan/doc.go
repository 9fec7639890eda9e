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
// Paths walks directories: inside a git work tree the files come from
// `git ls-files --cached --others --exclude-standard` (git's own .gitignore
// rules); outside one, Ignore, a small .gitignore matcher, decides. Only
// regular files are read (no links, devices or .git), and one window buffer
// serves all the files of a scan. History scans every blob reachable from a
// ref once (`git rev-list --objects --all`, then one streamed `git cat-file
// --batch`); Staged scans the index blobs of the files `git diff --cached`
// names (what the pre-commit hook checks). No clock is read.
package scan
