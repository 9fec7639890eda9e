package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/token"
)

// PurposeCodes are the HL7 v3 PurposeOfUse codes phigate accepts (the
// commonly used subset of v3-PurposeOfUse).
var PurposeCodes = map[string]bool{
	"TREAT": true, "ETREAT": true, "HPAYMT": true, "HOPERAT": true, "HRESCH": true,
	"PATRQT": true, "PUBHLTH": true, "HMARKT": true, "HSYSADMIN": true, "CLINTRL": true,
	"COC": true, "HLEGAL": true, "HDIRECT": true, "FAMRQT": true, "PWATRNY": true,
	"SYSDEV": true, "HTEST": true, "TRAIN": true, "HQUALIMP": true, "CAREMGT": true,
	"DISASTER": true, "THREAT": true, "HACCRED": true, "HCOMPL": true, "HOUTCOMS": true,
	"HPRGRP": true, "MLDISC": true, "BTG": true, "ERTREAT": true,
}

// Validate checks the constraint fields of rec (everything except scopes,
// which the scope package validates). Errors are *FieldError.
func Validate(rec *token.Record) error {
	if rec.Subject == "" {
		return fieldErr("subject", "required")
	}
	if len(rec.Subject) > token.MaxSubject || !printable(rec.Subject) {
		return fieldErr("subject", "at most %d printable characters", token.MaxSubject)
	}
	if err := validateSubjectPrefix(rec.SubjectPrefix); err != nil {
		return err
	}
	if !rec.Kind.Valid() {
		return fieldErr("kind", "%q: want user, service or admin", truncate(string(rec.Kind), 16))
	}
	if rec.ExpiresAt.IsZero() {
		return fieldErr("ttl", "an expiry is required")
	}
	if rec.IdleTimeout < 0 {
		return fieldErr("idle_timeout", "must not be negative")
	}
	if rec.IdleTimeout > 0 && rec.IdleTimeout < time.Second {
		return fieldErr("idle_timeout", "at least 1s")
	}
	if rec.MaxLifetime < 0 {
		return fieldErr("max_lifetime", "must not be negative")
	}
	if !rec.NotAfter.IsZero() && rec.ExpiresAt.After(rec.NotAfter) {
		return fieldErr("expires_at", "%s is after the token's not_after %s", rec.ExpiresAt.UTC().Format(time.RFC3339), rec.NotAfter.UTC().Format(time.RFC3339))
	}
	if rec.RemainingUses != nil && *rec.RemainingUses < 1 {
		return fieldErr("max_uses", "at least 1")
	}
	if len(rec.CIDRs) > token.MaxCIDRs {
		return fieldErr("cidrs", "at most %d", token.MaxCIDRs)
	}
	for i, p := range rec.CIDRs {
		if !p.IsValid() || p != p.Masked() {
			return fieldErr(fmt.Sprintf("cidrs[%d]", i), "%s is not a network address (host bits set?)", p)
		}
	}
	if rec.Hours != nil {
		if _, err := ParseWindow(rec.Hours); err != nil {
			return err
		}
	}
	if rec.Rate != nil {
		if !(rec.Rate.PerSecond > 0) || rec.Rate.PerSecond > 1e6 {
			return fieldErr("rate.per_second", "must be > 0 and ≤ 1000000")
		}
		if rec.Rate.Burst < 1 || rec.Rate.Burst > 1e6 {
			return fieldErr("rate.burst", "must be between 1 and 1000000")
		}
	}
	if len(rec.Purposes) > token.MaxPurposes {
		return fieldErr("purposes", "at most %d", token.MaxPurposes)
	}
	seen := map[string]bool{}
	for i, p := range rec.Purposes {
		if !PurposeCodes[p] {
			return fieldErr(fmt.Sprintf("purposes[%d]", i), "%q is not a known HL7 PurposeOfUse code (e.g. TREAT, HPAYMT, HOPERAT, ETREAT)", truncate(p, 16))
		}
		if seen[p] {
			return fieldErr(fmt.Sprintf("purposes[%d]", i), "%q repeated", p)
		}
		seen[p] = true
	}
	if rec.PatientID != "" && (len(rec.PatientID) > 64 || !fhirID(rec.PatientID)) {
		return fieldErr("patient_id", "not a FHIR id ([A-Za-z0-9-.]{1,64})")
	}
	if len(rec.Metadata) > token.MaxMetadataEntries {
		return fieldErr("metadata", "at most %d entries", token.MaxMetadataEntries)
	}
	for k, v := range rec.Metadata {
		if k == "" || len(k) > token.MaxMetadataKey || !printable(k) {
			return fieldErr("metadata", "keys are 1 to %d printable characters", token.MaxMetadataKey)
		}
		if len(v) > token.MaxMetadataValue || !printable(v) {
			return fieldErr("metadata."+k, "values are at most %d printable characters", token.MaxMetadataValue)
		}
	}
	return nil
}

// validateSubjectPrefix checks a subject_prefix constraint: empty (none),
// or at most token.MaxSubject printable characters that do not start or end
// with a space. The error is a *FieldError naming subject_prefix.
func validateSubjectPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > token.MaxSubject || !printable(p) {
		return fieldErr("subject_prefix", "at most %d printable characters", token.MaxSubject)
	}
	if strings.TrimSpace(p) != p {
		return fieldErr("subject_prefix", "must not start or end with white space")
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func fhirID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return len(s) > 0
}

// Within reports whether child's lifetime and constraints are inside
// parent's (attenuation). Scopes are checked by the scope package. The
// error is a *FieldError naming the first field that is wider.
//
// Rules: child expires no later than parent, and its end (token.Record.End:
// its not_after) is no later than parent's, compared as instants, never as
// durations; where the parent has a subject prefix, the child's subject and
// its own subject prefix start with it; where the
// parent has an idle timeout, rate limit, use limit, CIDR list, hours,
// purpose list, patient or purpose requirement, the child must have one at
// least as strict; break-glass and the admin kind are only passed on by a
// parent that has them.
func Within(child, parent *token.Record) error {
	if child.ExpiresAt.After(parent.ExpiresAt) {
		return fieldErr("ttl", "expiry %s is after the issuing token's expiry %s", child.ExpiresAt.UTC().Format(time.RFC3339), parent.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if ce, pe := child.End(), parent.End(); ce.After(pe) {
		return fieldErr("max_lifetime", "the token would live until %s, after the issuing token's not_after %s", ce.UTC().Format(time.RFC3339), pe.UTC().Format(time.RFC3339))
	}
	if p := parent.SubjectPrefix; p != "" {
		if !strings.HasPrefix(child.Subject, p) {
			return fieldErr("subject", "must start with %q, the issuing token's subject_prefix", p)
		}
		if !strings.HasPrefix(child.SubjectPrefix, p) {
			return fieldErr("subject_prefix", "must start with %q, the issuing token's subject_prefix", p)
		}
	}
	if parent.IdleTimeout > 0 && (child.IdleTimeout == 0 || child.IdleTimeout > parent.IdleTimeout) {
		return fieldErr("idle_timeout", "must be set and at most %s (the issuing token's)", parent.IdleTimeout)
	}
	if parent.RemainingUses != nil && (child.RemainingUses == nil || *child.RemainingUses > *parent.RemainingUses) {
		return fieldErr("max_uses", "must be set and at most %d (the issuing token's remaining uses)", *parent.RemainingUses)
	}
	if len(parent.CIDRs) > 0 {
		if len(child.CIDRs) == 0 {
			return fieldErr("cidrs", "required: the issuing token is restricted to networks")
		}
		for i, c := range child.CIDRs {
			if !prefixWithin(c, parent.CIDRs) {
				return fieldErr(fmt.Sprintf("cidrs[%d]", i), "%s is outside the issuing token's networks", c)
			}
		}
	}
	if parent.Hours != nil {
		if child.Hours == nil {
			return fieldErr("hours", "required: the issuing token is restricted to hours")
		}
		if child.Hours.TZ != parent.Hours.TZ {
			return fieldErr("hours.tz", "must be %q, the issuing token's time zone", parent.Hours.TZ)
		}
		cw, err := ParseWindow(child.Hours)
		if err != nil {
			return err
		}
		pw, err := ParseWindow(parent.Hours)
		if err != nil {
			return err
		}
		if !cw.within(pw) {
			return fieldErr("hours", "the window is not inside the issuing token's hours")
		}
	}
	if parent.Rate != nil {
		if child.Rate == nil || child.Rate.PerSecond > parent.Rate.PerSecond || child.Rate.Burst > parent.Rate.Burst {
			return fieldErr("rate", "must be set and at most %g/s, burst %d (the issuing token's)", parent.Rate.PerSecond, parent.Rate.Burst)
		}
	}
	if len(parent.Purposes) > 0 {
		if len(child.Purposes) == 0 {
			return fieldErr("purposes", "required: the issuing token is restricted to purposes of use")
		}
		for i, p := range child.Purposes {
			if !contains(parent.Purposes, p) {
				return fieldErr(fmt.Sprintf("purposes[%d]", i), "%q is not among the issuing token's purposes", p)
			}
		}
	}
	if parent.PurposeRequired && !child.PurposeRequired {
		return fieldErr("purpose_required", "required: the issuing token requires a purpose of use")
	}
	if parent.PatientID != "" && child.PatientID != parent.PatientID {
		return fieldErr("patient_id", "must be the issuing token's patient")
	}
	if child.BreakGlass && !parent.BreakGlass {
		return fieldErr("break_glass", "the issuing token is not break-glass capable")
	}
	if parent.BreakGlass && !child.BreakGlass {
		// the issuing token's scopes are emergency scopes: a child without
		// the flag would use them with no justification and no ETREAT
		return fieldErr("break_glass", "required: the issuing token is break-glass, so its scopes are usable only under break-glass")
	}
	if child.Kind == token.KindAdmin && parent.Kind != token.KindAdmin {
		return fieldErr("kind", "only an admin token can issue an admin token")
	}
	return nil
}

func prefixWithin(c netip.Prefix, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is4() == c.Addr().Is4() && p.Bits() <= c.Bits() && p.Contains(c.Addr()) {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
