package scope

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInvalid is matched, with errors.Is, by every error this package returns:
// each one is an [*Error] saying which scope was rejected and why.
var ErrInvalid = errors.New("invalid scope")

// Error reports a malformed scope or scope set.
type Error struct {
	// Scope is the offending scope as given, truncated to 80 bytes (a cut is
	// marked with "…"). It is empty for an error about a set as a whole, and
	// a placeholder when the input looks as if it holds a token secret.
	Scope string
	// Reason says what is wrong, in words fit for a client.
	Reason string
	// set marks an error about a set as a whole rather than one scope.
	set bool
	// unknownType marks an error of ResourceTypes.Check.
	unknownType bool
}

func (e *Error) Error() string {
	if e.set {
		return "invalid scope set: " + e.Reason
	}
	return fmt.Sprintf("invalid scope %q: %s", e.Scope, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Is reports whether target is ErrUnknownResourceType and e is about an
// unknown resource type.
func (e *Error) Is(target error) bool { return e.unknownType && target == ErrUnknownResourceType }

const (
	// displayLen bounds how much of an offending scope an error repeats.
	displayLen = 80
	// secretMarker starts every phigate token secret (token.Prefix). It is
	// repeated here so that the grammar depends on nothing else.
	secretMarker = "phi_"
	redacted     = "[redacted: looks like a token secret]"
)

// newError builds the error for the scope s. reason MUST NOT quote more of s
// than a single byte: only the Scope field repeats the input, so that
// redaction and truncation apply to everything the error says.
func newError(s, reason string) *Error {
	return &Error{Scope: display(s), Reason: reason}
}

// faultError builds the error for a fault found at byte offset f.at of s.
func faultError(s string, f fault) *Error {
	return newError(s, fmt.Sprintf("%s (at byte %d)", f.why, f.at))
}

func setError(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...), set: true}
}

// display returns what an error may repeat of the input s.
func display(s string) string {
	if strings.Contains(s, secretMarker) {
		return redacted
	}
	if len(s) <= displayLen {
		return s
	}
	i := displayLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// fault is a grammar violation found without allocating: why is a constant
// and at the byte offset where it was found.
type fault struct {
	at  int
	why string
}

func (f fault) ok() bool { return f.why == "" }
