package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/phigate/phigate/internal/fhir"
	"github.com/phigate/phigate/internal/scope"
)

// Response-side compartment checks: what a patient/ token may read only
// once the gateway has seen the answer (an instance read, vread or
// history of a type of the Patient compartment; the entries a search's
// _include adds). The answer is read whole, up to the upstream's
// max_checked_body, checked against the token's patient with
// fhir.InPatientCompartment, and only then sent on; nothing of a refused
// answer reaches the client.

// checkKind is the check an answer needs before it may reach the client.
type checkKind uint8

const (
	checkNone checkKind = iota
	// checkResource: the answer is the resource read (read, vread); it
	// must be of the type and id asked for and in the compartment.
	checkResource
	// checkHistory: the answer is the resource's history (a Bundle);
	// versions outside the compartment are removed, and when none is in
	// it the answer is refused.
	checkHistory
	// checkIncluded: the answer is a searchset whose included entries
	// (search.mode "include", or no "match"/"outcome" mode) outside the
	// compartment are removed.
	checkIncluded
)

var errUncheckable = errors.New("the upstream's answer cannot be checked against the compartment (not FHIR JSON, or encoded)")

// checkAnswer reads the body of resp (the answer to x, needing check) and
// returns the body the client may see, or the refusal.
func checkAnswer(x *exchange, resp *http.Response) ([]byte, error) {
	limit := x.up.maxChecked
	if resp.ContentLength > limit {
		return nil, &responseRefusal{deny(http.StatusBadGateway, CodeResponseTooLarge, fmt.Sprintf("the upstream's answer is larger than the %d bytes the gateway checks against the token's patient compartment", limit))}
	}
	if !isJSON(resp.Header.Get("Content-Type")) || encodedResponse(resp.Header) {
		return nil, errUncheckable
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, &responseRefusal{deny(http.StatusBadGateway, CodeResponseTooLarge, fmt.Sprintf("the upstream's answer is larger than the %d bytes the gateway checks against the token's patient compartment", limit))}
	}
	out, removed, ok := checkBody(x.check, x.typ, x.id, x.pid, body, func(typ string) bool { return readable(x.set, typ) })
	x.removed += removed
	if !ok {
		if x.up.hideExistence {
			return nil, &responseRefusal{deny(http.StatusNotFound, CodeNotFound, "no such resource")}
		}
		return nil, &responseRefusal{outsideCompartment(x.pid, x.ev.Scope)}
	}
	return out, nil
}

// checkBody applies check to the answer body of a request for typ/id by a
// token bound to patient pid. It returns the body to send (body itself,
// or a copy without the entries removed), how many entries it removed,
// and false when the answer must be refused whole. Any input is answered:
// what cannot be parsed is refused.
//
// readable reports whether the token may read an included entry's type.
func checkBody(check checkKind, typ, id, pid string, body []byte, readable func(typ string) bool) ([]byte, int, bool) {
	switch check {
	case checkNone:
		return body, 0, true
	case checkResource:
		m, ok := exactFields(body, "id")
		var rid string
		if !ok || json.Unmarshal(m["id"], &rid) != nil || rid != id || !fhir.InPatientCompartment(typ, body, pid) {
			return nil, 0, false
		}
		return body, 0, true
	}
	// a Bundle: history or searchset
	keptVersions := 0
	out, removed, _, withResource, ok := filterEntries(body, func(e *bundleAnswerEntry) bool {
		if check == checkIncluded && (e.Search.Mode == "match" || e.Search.Mode == "outcome") {
			return true
		}
		if check == checkHistory && len(e.Resource) == 0 {
			return true // a deletion: no content
		}
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(e.Resource, &r) != nil {
			return false
		}
		if check == checkHistory {
			in := r.ResourceType == typ && r.ID == id && fhir.InPatientCompartment(r.ResourceType, e.Resource, pid)
			if in {
				keptVersions++
			}
			return in
		}
		return readable(r.ResourceType) && fhir.InPatientCompartment(r.ResourceType, e.Resource, pid)
	})
	if !ok {
		return nil, 0, false
	}
	if check == checkHistory && (withResource == 0 || keptVersions == 0) {
		return nil, removed, false // no version of it is the patient's
	}
	return out, removed, true
}

type bundleAnswerEntry struct {
	Resource json.RawMessage `json:"resource"`
	Search   struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

// exactFields decodes the JSON object raw, refusing (ok false) a key
// that differs from one of names only in letter case: encoding/json (and
// so Go clients) matches keys that way, the checks here do not, and the
// two would read different entries or resources.
func exactFields(raw []byte, names ...string) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	for k := range m {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return nil, false
			}
		}
	}
	return m, true
}

// decodeEntry reads the resource and search.mode of a Bundle entry, by
// their exact keys.
func decodeEntry(raw []byte, e *bundleAnswerEntry) bool {
	m, ok := exactFields(raw, "resource", "search")
	if !ok {
		return false
	}
	e.Resource = m["resource"]
	if s, has := m["search"]; has {
		sm, ok := exactFields(s, "mode")
		if !ok {
			return false
		}
		if mode, has := sm["mode"]; has && json.Unmarshal(mode, &e.Search.Mode) != nil {
			return false
		}
	}
	return true
}

// filterEntries returns the Bundle body without the entries keep refuses
// (the kept entries, and every byte outside Bundle.entry, as they were).
// ok is false when body is not a JSON Bundle object, holds "entry" twice,
// or an entry that is not an object.
func filterEntries(body []byte, keep func(*bundleAnswerEntry) bool) (out []byte, removed, kept, withResource int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, 0, 0, 0, false
	}
	var keptRaw []json.RawMessage
	open, end := int64(-1), int64(-1) // Bundle.entry's "[" and after its "]"
	bundle := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, 0, 0, 0, false
		}
		k, _ := t.(string)
		if k != "entry" && strings.EqualFold(k, "entry") {
			return nil, 0, 0, 0, false // what a Go client would read as entry
		}
		if k != "entry" {
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				return nil, 0, 0, 0, false
			}
			if k == "resourceType" {
				var rt string
				bundle = json.Unmarshal(v, &rt) == nil && rt == "Bundle"
			}
			continue
		}
		if open >= 0 {
			return nil, 0, 0, 0, false // two entry arrays: clients disagree on which counts
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return nil, 0, 0, 0, false
		}
		open = dec.InputOffset() - 1
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, 0, 0, 0, false
			}
			var e bundleAnswerEntry
			if !decodeEntry(raw, &e) {
				return nil, 0, 0, 0, false
			}
			if len(e.Resource) > 0 {
				withResource++
			}
			if keep(&e) {
				kept++
				keptRaw = append(keptRaw, raw)
			} else {
				removed++
			}
		}
		if _, err := dec.Token(); err != nil { // "]"
			return nil, 0, 0, 0, false
		}
		end = dec.InputOffset()
	}
	if _, err := dec.Token(); err != nil { // "}"
		return nil, 0, 0, 0, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, 0, 0, 0, false // trailing bytes
	}
	if !bundle {
		return nil, 0, 0, 0, false
	}
	if removed == 0 {
		return body, 0, kept, withResource, true
	}
	out = make([]byte, 0, len(body))
	out = append(out, body[:open]...)
	out = append(out, '[')
	for i, raw := range keptRaw {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, raw...)
	}
	out = append(out, ']')
	out = append(out, body[end:]...)
	return out, removed, kept, withResource, true
}

// encodedResponse reports a Content-Encoding other than identity.
func encodedResponse(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		if v != "" && v != "identity" {
			return true
		}
	}
	return false
}

// fhirAnswer prepares the body of a fhir upstream's answer: the
// compartment check it needs (a 2xx answer read whole, up to
// max_checked_body, and refused or trimmed), then the link rewriter over a
// FHIR JSON body. A body that is not JSON passes unrewritten (recorded in
// the completion); one with a Content-Encoding (the gateway asked for
// none) is refused.
func (g *Gateway) fhirAnswer(x *exchange, resp *http.Response) error {
	noBody := resp.Body == nil || resp.Body == http.NoBody || resp.Request.Method == http.MethodHead
	if x.check != checkNone && resp.StatusCode >= 200 && resp.StatusCode < 300 && !noBody {
		body, err := checkAnswer(x, resp)
		if err != nil {
			return err
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
	}
	if noBody {
		return nil
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		x.unrewritten = true
		return nil
	}
	if encodedResponse(resp.Header) {
		return errUncheckable
	}
	resp.Body = newLinkRewriter(resp.Body, g.mapLink(x))
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// notes is the completion's Notes (see Event).
func (x *exchange) notes() string {
	if x.removed == 0 && x.foreign == 0 && !x.unrewritten {
		return ""
	}
	var b []byte
	add := func(s string, n int) {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
		if n >= 0 {
			b = strconv.AppendInt(append(b, '='), int64(n), 10)
		}
	}
	if x.removed > 0 {
		add("include_removed", x.removed)
	}
	if x.foreign > 0 {
		add("foreign_links", x.foreign)
	}
	if x.unrewritten {
		add("not_rewritten", -1)
	}
	return string(b)
}

// readable reports whether set grants an unrestricted read of typ.
func readable(set scope.Set, typ string) bool {
	for g := range set.Grants(typ, scope.OpRead) {
		if !g.Restricted() {
			return true
		}
	}
	return false
}
