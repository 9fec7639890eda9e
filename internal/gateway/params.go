package gateway

import (
	"errors"
	"net/url"
	"strings"

	"github.com/phigate/phigate/internal/fhir"
)

// params are the search parameters of a request: the URL's query and, for
// POST _search, the form body; FHIR combines both (AND).
type params struct {
	raw [2]string
}

// maxParams bounds the parameters of one request.
const maxParams = 256

var errQuery = errors.New("the query string is malformed (bad percent-encoding, a semicolon, or too many parameters)")

// check validates the syntax once: every pair decodes, there are at most
// maxParams, and no ";" appears (some servers split on it; the gateway
// would not see what they do).
func (p *params) check() error {
	n := 0
	for _, raw := range p.raw {
		if strings.IndexByte(raw, ';') >= 0 {
			return errQuery
		}
		for pair := range strings.SplitSeq(raw, "&") {
			if pair == "" {
				continue
			}
			if n++; n > maxParams {
				return errQuery
			}
			k, v, _ := strings.Cut(pair, "=")
			if _, err := url.QueryUnescape(k); err != nil {
				return errQuery
			}
			if _, err := url.QueryUnescape(v); err != nil {
				return errQuery
			}
		}
	}
	return nil
}

// each calls fn with every decoded name and value until fn returns false.
// Call check first: undecodable pairs are skipped here.
func (p *params) each(fn func(name, value string) bool) {
	for _, raw := range p.raw {
		for raw != "" {
			var pair string
			pair, raw, _ = strings.Cut(raw, "&")
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			k, err1 := url.QueryUnescape(k)
			v, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				continue
			}
			if !fn(k, v) {
				return
			}
		}
	}
}

// only reports whether name occurs and every occurrence has value want.
func (p *params) only(name, want string) bool {
	seen, ok := false, true
	p.each(func(k, v string) bool {
		if k == name {
			seen = true
			if v != want {
				ok = false
				return false
			}
		}
		return true
	})
	return seen && ok
}

// compartmentParams are the parameters that bind a search to a patient,
// with the values that name patient id: patient=id and patient=Patient/id;
// subject only typed (subject=Patient/id, subject:Patient=id), since a bare
// subject=id also matches a Group or Device with that id.
var compartmentParams = [...]string{"patient", "patient:Patient", "subject", "subject:Patient"}

// inCompartment reports whether a search of typ is confined to patient
// pid's compartment: for Patient, _id=pid; otherwise at least one of the
// compartment parameters naming pid, every occurrence of any of them
// naming pid, and each of them defined for typ (fhir.HasPatientParam,
// fhir.HasSubjectPatientParam).
func (p *params) inCompartment(typ, pid string) bool {
	if pid == "" {
		return false
	}
	if typ == "Patient" {
		return p.only("_id", pid)
	}
	ref := "Patient/" + pid
	seen, ok := false, true
	p.each(func(k, v string) bool {
		for _, c := range compartmentParams {
			if k != c {
				continue
			}
			if defined := strings.HasPrefix(k, "patient") && fhir.HasPatientParam(typ) || strings.HasPrefix(k, "subject") && fhir.HasSubjectPatientParam(typ); !defined {
				ok = false
				return false
			}
			switch {
			case v == ref, v == pid && (k == "patient" || k == "patient:Patient" || k == "subject:Patient"):
				seen = true
			default:
				ok = false
				return false
			}
		}
		return true
	})
	return seen && ok
}

// includes calls fn with each _include and _revinclude value (with or
// without :iterate) until fn returns false.
func (p *params) includes(fn func(rev bool, value string) bool) {
	p.each(func(k, v string) bool {
		switch k {
		case "_include", "_include:iterate", "_include:recurse":
			return fn(false, v)
		case "_revinclude", "_revinclude:iterate", "_revinclude:recurse":
			return fn(true, v)
		}
		return true
	})
}
