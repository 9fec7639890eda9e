package authority

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/phigate/phigate/internal/token"
)

// FieldSealer encrypts the fields of a token record that are PHI before
// the record reaches the store, and opens them again. Seal binds the
// ciphertext to the token id and the field name; Open MUST fail, and
// return no plaintext, for a ciphertext that was altered or sealed for
// another token or field (tampering). Errors never contain the plaintext.
type FieldSealer interface {
	Seal(ctx context.Context, tokenID, field string, plain []byte) ([]byte, error)
	Open(ctx context.Context, tokenID, field string, sealed []byte) ([]byte, error)
}

// FieldPatientID is the field name the patient id is sealed under.
const FieldPatientID = "patient_id"

// sealedPrefix marks a sealed value in a string field of the stored record:
// "enc:v1:" and the sealer's ciphertext in unpadded standard base64
// (strict: unused bits are zero, so one ciphertext has one encoding). A
// value without it is plaintext (stored before sealing, or without a
// sealer); a patient id cannot start with it (a FHIR id has no ':').
const sealedPrefix = "enc:v1:"

// ErrSealed reports a sealed field that cannot be opened: it was altered or
// moved from another token (tampering), or the authority has no sealer.
var ErrSealed = errors.New("authority: a sealed token field cannot be opened")

// sealRecord returns the form of rec to store: rec itself when there is
// nothing to seal, otherwise a copy whose patient id is sealed. rec is not
// changed.
func (a *Authority) sealRecord(ctx context.Context, rec *token.Record) (*token.Record, error) {
	if a.cfg.Sealer == nil || rec.PatientID == "" {
		return rec, nil
	}
	ct, err := a.cfg.Sealer.Seal(ctx, rec.ID, FieldPatientID, []byte(rec.PatientID))
	if err != nil {
		return nil, fmt.Errorf("authority: token %s: sealing the patient id: %w", rec.ID, err)
	}
	c := *rec // shallow: only PatientID differs, and the store retains nothing
	c.PatientID = sealedPrefix + base64.RawStdEncoding.EncodeToString(ct)
	return &c, nil
}

// openRecord opens the sealed fields of a record read from the store, in
// place. A plaintext value (without the prefix) is kept as it is.
func (a *Authority) openRecord(ctx context.Context, rec *token.Record) error {
	enc, ok := strings.CutPrefix(rec.PatientID, sealedPrefix)
	if !ok {
		return nil
	}
	if a.cfg.Sealer == nil {
		return fmt.Errorf("%w: token %s: %s: no sealer configured", ErrSealed, rec.ID, FieldPatientID)
	}
	ct, err := base64.RawStdEncoding.Strict().DecodeString(enc)
	if err != nil {
		return fmt.Errorf("%w: token %s: %s: not base64", ErrSealed, rec.ID, FieldPatientID)
	}
	pt, err := a.cfg.Sealer.Open(ctx, rec.ID, FieldPatientID, ct)
	if err != nil {
		return fmt.Errorf("%w: token %s: %s: %w", ErrSealed, rec.ID, FieldPatientID, err)
	}
	rec.PatientID = string(pt)
	return nil
}

// openRecords opens every record of a list.
func (a *Authority) openRecords(ctx context.Context, recs []*token.Record) error {
	for _, r := range recs {
		if err := a.openRecord(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
