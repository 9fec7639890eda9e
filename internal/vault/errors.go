package vault

import (
	"errors"
	"strconv"
)

var (
	// ErrNotInitialised: the data directory holds no vault (vault.db).
	ErrNotInitialised = errors.New("vault: not initialised (run phigate init)")
	// ErrExists: Create found a vault already there.
	ErrExists = errors.New("vault: a vault already exists here")
	// ErrWrongMasterKey: the master key cannot unwrap the vault's data keys
	// because they were wrapped by another master key. Open changes
	// nothing when it returns this.
	ErrWrongMasterKey = errors.New("vault: wrong master key")
	// ErrTampered: a ciphertext or a wrapped key failed authentication:
	// it was altered, moved to another row or column, or sealed by a key
	// this vault does not have. Nothing of its content is returned. Test
	// with errors.Is; errors.As with *TamperError gives the details.
	ErrTampered = errors.New("vault: ciphertext failed authentication (tampering)")
	// ErrNotFound: no secret or key of that name.
	ErrNotFound = errors.New("vault: not found")
	// ErrConflict: a storage write lost a race (another writer took the
	// version); the vault retries it.
	ErrConflict = errors.New("vault: conflicting write")
	// ErrRefused: Options.OnEvent refused the change (typically because
	// the audit log could not record it); nothing was changed.
	ErrRefused = errors.New("vault: change refused: the event could not be recorded")
	// ErrClosed: the vault was closed.
	ErrClosed = errors.New("vault: closed")
)

// TamperError is the detailed form of ErrTampered. It names the key and
// what failed, never any content.
type TamperError struct {
	Purpose string
	Version uint32
	Reason  string
}

func (e *TamperError) Error() string {
	s := "vault: tampering detected"
	if e.Purpose != "" {
		s += " (" + e.Purpose + " key v" + strconv.FormatUint(uint64(e.Version), 10) + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is makes errors.Is(err, ErrTampered) hold.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// InputError is a caller mistake: a name, purpose or value that the vault
// does not accept. Field says which ("name", "purpose", "value").
type InputError struct {
	Field string
	Msg   string
}

func (e *InputError) Error() string { return "vault: " + e.Field + ": " + e.Msg }
