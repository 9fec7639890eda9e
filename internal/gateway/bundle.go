package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// bundleEntry is the request of one entry of a batch or transaction.
type bundleEntry struct {
	method string
	// path is relative to the FHIR base, query without "?".
	path, query string
	resource    json.RawMessage
	// ifNoneExist is request.ifNoneExist (a conditional create's search).
	ifNoneExist string
}

// maxJSONDepth bounds the nesting of inspected JSON documents.
const maxJSONDepth = 64

var errBundle = errors.New("not a valid batch or transaction Bundle")

// parseBundle reads a batch or transaction Bundle (JSON): resourceType
// "Bundle", type "batch" or "transaction", at most maxEntries entries,
// each with request.method (GET, HEAD, POST, PUT, PATCH, DELETE) and a
// request.url relative to the base ("Patient/1", "Observation?code=x").
// The document must be valid UTF-8 JSON without duplicate object keys
// anywhere (two readers could disagree on which one counts), nested at
// most 64 deep. An absolute URL, a leading "/", a fragment, or an entry
// at the base itself (a nested batch) is refused.
func parseBundle(body []byte, maxEntries int) (string, []bundleEntry, error) {
	if err := checkJSON(body); err != nil {
		return "", nil, err
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Request *struct {
				Method      string `json:"method"`
				URL         string `json:"url"`
				IfNoneExist string `json:"ifNoneExist"`
			} `json:"request"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, fmt.Errorf("%w: %v", errBundle, jsonErr(err))
	}
	if b.ResourceType != "Bundle" {
		return "", nil, fmt.Errorf("%w: resourceType must be Bundle", errBundle)
	}
	if b.Type != "batch" && b.Type != "transaction" {
		return "", nil, fmt.Errorf("%w: type must be batch or transaction", errBundle)
	}
	if len(b.Entry) > maxEntries {
		return "", nil, fmt.Errorf("%w: more than %d entries", errBundle, maxEntries)
	}
	out := make([]bundleEntry, len(b.Entry))
	for i, e := range b.Entry {
		if e.Request == nil {
			return "", nil, fmt.Errorf("%w: entry %d has no request", errBundle, i)
		}
		switch e.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return "", nil, fmt.Errorf("%w: entry %d: request.method must be GET, HEAD, POST, PUT, PATCH or DELETE", errBundle, i)
		}
		u := e.Request.URL
		if u == "" || len(u) > maxOriginalURI || u[0] == '/' || u[0] == '?' || strings.Contains(u, "://") || strings.ContainsAny(u, "# \t\r\n") {
			return "", nil, fmt.Errorf("%w: entry %d: request.url must be relative to the base, such as Patient/1 or Observation?code=x", errBundle, i)
		}
		path, query, _ := strings.Cut(u, "?")
		out[i] = bundleEntry{method: e.Request.Method, path: path, query: query, resource: e.Resource, ifNoneExist: e.Request.IfNoneExist}
	}
	return b.Type, out, nil
}

// jsonFrame is an open object or array of checkJSON.
type jsonFrame struct {
	obj  bool
	keys map[string]struct{}
	key  bool // the next token of this object is a key (or its end)
}

// foldKey maps k to one representative of the keys encoding/json takes for
// it: every rune to the smallest of its Unicode simple case folding orbit
// (so "Subject", "SUBJECT" and "ſubject" fold alike).
func foldKey(k string) string {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii { // the smallest of an ASCII letter's orbit is its upper case
		return strings.ToUpper(k)
	}
	var b strings.Builder
	b.Grow(len(k))
	for _, r := range k {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// checkJSON verifies that doc is one valid UTF-8 JSON value without
// duplicate keys in any object, nested at most maxJSONDepth deep. Keys that
// differ only in case count as duplicates: encoding/json matches keys
// without regard to case (the last one wins), while a FHIR server reads
// "subject" and ignores "Subject", so the gateway would check another
// value than the one the server acts on.
func checkJSON(doc []byte) error {
	if !utf8.Valid(doc) {
		return fmt.Errorf("%w: not UTF-8", errBundle)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var stack []jsonFrame
	// valueDone notes that a whole value was read: in an object, a key
	// comes next.
	valueDone := func() {
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
	seen := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) != 0 || !seen {
				return fmt.Errorf("%w: truncated JSON", errBundle)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errBundle, jsonErr(err))
		}
		if len(stack) == 0 && seen {
			return fmt.Errorf("%w: more than one JSON value", errBundle)
		}
		seen = true
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].key {
			top := &stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, _ := tok.(string)
			fk := foldKey(k)
			if _, dup := top.keys[fk]; dup {
				return fmt.Errorf("%w: duplicate key %q (keys may not differ only in case)", errBundle, truncateString(k, 40))
			}
			top.keys[fk] = struct{}{}
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("%w: nested deeper than %d", errBundle, maxJSONDepth)
			}
			f := jsonFrame{}
			if tok == json.Delim('{') {
				f = jsonFrame{obj: true, keys: map[string]struct{}{}, key: true}
			}
			stack = append(stack, f)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s has the wrong type", te.Field)
	}
	return "invalid JSON"
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// resourceRefs reads the resource of a create or update: its resourceType,
// and the references of its subject and patient elements ("" when absent).
// ok is false when it is not a JSON object with a string resourceType (or
// when subject/patient are not references).
func resourceRefs(doc []byte) (typ, subject, patient string, ok bool) {
	if checkJSON(doc) != nil {
		return "", "", "", false
	}
	var r struct {
		ResourceType string `json:"resourceType"`
		Subject      *struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		Patient *struct {
			Reference string `json:"reference"`
		} `json:"patient"`
	}
	if err := json.Unmarshal(doc, &r); err != nil || r.ResourceType == "" {
		return "", "", "", false
	}
	if r.Subject != nil {
		subject = r.Subject.Reference
		if subject == "" {
			return "", "", "", false
		}
	}
	if r.Patient != nil {
		patient = r.Patient.Reference
		if patient == "" {
			return "", "", "", false
		}
	}
	return r.ResourceType, subject, patient, true
}
