package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/phigate/phigate/internal/fhir"
	"github.com/phigate/phigate/internal/jsonscan"
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
func (g *Gateway) checkAnswer(x *exchange, resp *http.Response) ([]byte, error) {
	limit := x.up.maxChecked
	if resp.ContentLength > limit {
		return nil, &responseRefusal{deny(http.StatusBadGateway, CodeResponseTooLarge, fmt.Sprintf("the upstream's answer is larger than the %d bytes the gateway checks against the token's patient compartment", limit))}
	}
	if !isJSON(resp.Header.Get("Content-Type")) || encodedResponse(resp.Header) {
		return nil, errUncheckable
	}
	body, err := g.readAnswer(x, resp.Body, resp.ContentLength, limit)
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
// what cannot be parsed is refused. readable reports whether the token
// may read an included entry's type.
func checkBody(check checkKind, typ, id, pid string, body []byte, readable func(typ string) bool) ([]byte, int, bool) {
	switch check {
	case checkNone:
		return body, 0, true
	case checkResource:
		rt, rid, ok, in := fhir.ResourceInPatientCompartment(body, pid)
		if !ok || rt != typ || rid != id || !in {
			return nil, 0, false
		}
		return body, 0, true
	}
	// a Bundle: history or searchset
	keptVersions, withResource := 0, 0
	out, removed, ok := filterEntries(body, func(e *bundleAnswerEntry) bool {
		if len(e.Resource) > 0 {
			withResource++
		}
		if check == checkIncluded && (e.Mode == "match" || e.Mode == "outcome") {
			return true
		}
		if check == checkHistory && len(e.Resource) == 0 {
			return true // a deletion: no content
		}
		rt, rid, ok, in := fhir.ResourceInPatientCompartment(e.Resource, pid)
		if !ok {
			return false
		}
		if check == checkHistory {
			in = in && rt == typ && rid == id
			if in {
				keptVersions++
			}
			return in
		}
		return in && readable(rt)
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
	Resource []byte // nil without one
	Mode     string
}

// foldEq reports whether k equals lower (lower case ASCII) ignoring ASCII
// case: what encoding/json (and so Go clients) matches a key against.
func foldEq(k []byte, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i := range k {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// decodeEntry reads the resource and search.mode of a Bundle entry, by
// their exact keys; a key that differs from resource, search or mode only
// in letter case refuses the entry: encoding/json matches keys that way,
// the checks here do not, and the two would read different entries.
func decodeEntry(raw []byte, e *bundleAnswerEntry) bool {
	var search []byte
	ok := true
	if !jsonscan.Fields(raw, func(k, v []byte) bool {
		switch {
		case string(k) == "resource":
			e.Resource = v
		case string(k) == "search":
			search = v
		case foldEq(k, "resource") || foldEq(k, "search"):
			ok = false
			return false
		}
		return true
	}) || !ok {
		return false
	}
	if search == nil {
		return true
	}
	var mode []byte
	if !jsonscan.Fields(search, func(k, v []byte) bool {
		switch {
		case string(k) == "mode":
			mode = v
		case foldEq(k, "mode"):
			ok = false
			return false
		}
		return true
	}) || !ok {
		return false
	}
	if mode != nil {
		e.Mode, ok = jsonscan.String(mode)
	}
	return ok
}

// filterEntries returns the Bundle body without the entries keep refuses
// (the kept entries, and every byte outside Bundle.entry, as they were).
// ok is false when body is not a JSON Bundle object, holds "entry" twice
// (or a key that is entry in another case), or an entry that is not an
// object.
func filterEntries(body []byte, keep func(*bundleAnswerEntry) bool) (out []byte, removed int, ok bool) {
	var entries []byte
	bundle, n := false, 0
	ok = true
	if !jsonscan.Fields(body, func(k, v []byte) bool {
		switch {
		case string(k) == "entry":
			n++
			entries = v
		case string(k) == "resourceType":
			bundle = jsonscan.StringIs(v, "Bundle")
		case foldEq(k, "entry"):
			ok = false
			return false
		}
		return true
	}) || !ok || !bundle || n > 1 {
		return nil, 0, false // two entry arrays: clients disagree on which counts
	}
	if entries == nil {
		return body, 0, true
	}
	var drop [][2]int // offsets in body of the entries removed
	base := offset(body, entries)
	if !jsonscan.Elems(entries, func(raw []byte) bool {
		var e bundleAnswerEntry
		if !decodeEntry(raw, &e) {
			ok = false
			return false
		}
		if !keep(&e) {
			o := base + offset(entries, raw)
			drop = append(drop, [2]int{o, o + len(raw)})
		}
		return true
	}) || !ok {
		return nil, 0, false
	}
	if len(drop) == 0 {
		return body, 0, true
	}
	removed = len(drop)
	// the entries kept, joined by ",", in place of the array's content
	end := base + len(entries)
	out = make([]byte, 0, len(body))
	out = append(out, body[:base+1]...) // up to the array's "["
	first := true
	jsonscan.Elems(entries, func(raw []byte) bool {
		o := base + offset(entries, raw)
		if len(drop) > 0 && drop[0][0] == o {
			drop = drop[1:]
			return true
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, raw...)
		return true
	})
	out = append(out, ']')
	out = append(out, body[end:]...)
	return out, removed, true
}

// offset is where sub, a subslice of b, starts in b.
func offset(b, sub []byte) int { return cap(b) - cap(sub) }

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
	var body []byte // the whole answer, when it was read
	if x.check != checkNone && resp.StatusCode >= 200 && resp.StatusCode < 300 && !noBody {
		var err error
		if body, err = g.checkAnswer(x, resp); err != nil {
			return err
		}
	}
	if noBody {
		return nil
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		x.unrewritten = true
		if body != nil {
			setBody(resp, body)
		}
		return nil
	}
	if encodedResponse(resp.Header) {
		return errUncheckable
	}
	if body == nil && resp.ContentLength >= 0 && resp.ContentLength <= smallAnswer {
		// small enough to rewrite whole: the client gets a Content-Length,
		// and the answer one write (a body without a length is flushed at
		// every read)
		var err error
		if body, err = g.readAnswer(x, resp.Body, resp.ContentLength, smallAnswer); err != nil {
			return err
		}
		if int64(len(body)) > smallAnswer {
			return errUncheckable // longer than it said
		}
	}
	resp.Header.Del("Content-Length")
	if body != nil {
		out, err := rewriteWhole(g.answerBuf(x, len(body)+len(body)/8+512), body, g.mapLink(x))
		if err != nil {
			return err
		}
		setBody(resp, out) // out is the lent buffer, or a larger one it grew into
		return nil
	}
	resp.Body = newLinkRewriter(resp.Body, g.mapLink(x), &g.bufs)
	resp.ContentLength = -1
	return nil
}

// readAnswer reads an answer body of declared length n (-1: unknown) up to
// limit+1 bytes, into a buffer of the gateway's pool when the length is
// known (given back when the exchange ends).
func (g *Gateway) readAnswer(x *exchange, r io.Reader, n, limit int64) ([]byte, error) {
	if n < 0 || n > limit {
		return io.ReadAll(io.LimitReader(r, limit+1))
	}
	buf := g.answerBuf(x, int(n)+1)[:n+1]
	k, err := io.ReadFull(r, buf)
	switch err {
	case io.ErrUnexpectedEOF, io.EOF:
		if int64(k) < n {
			return nil, io.ErrUnexpectedEOF // shorter than it said
		}
		return buf[:k], nil
	case nil:
		return buf, nil // longer than it said: the caller refuses it
	}
	return nil, err
}

// answerBuf lends a buffer of capacity at least n for an answer of x,
// from the gateway's pool; finish gives it back.
func (g *Gateway) answerBuf(x *exchange, n int) []byte {
	if p, ok := g.answers.Get().(*[]byte); ok && cap(*p) >= n {
		x.bufs = append(x.bufs, (*p)[:0])
		return (*p)[:0]
	} else if ok {
		g.answers.Put(p)
	}
	size := max(n, answerBufSize)
	b := make([]byte, 0, size)
	x.bufs = append(x.bufs, b)
	return b
}

// answerBufSize is the size of the pooled answer buffers.
const answerBufSize = smallAnswer + smallAnswer/8 + 1024

// releaseAnswers gives x's answer buffers back to the pool, once the
// answer is sent.
func (g *Gateway) releaseAnswers(x *exchange) {
	for i, b := range x.bufs {
		if cap(b) <= 2*answerBufSize {
			b = b[:0]
			g.answers.Put(&b)
		}
		x.bufs[i] = nil
	}
	x.bufs = x.bufs[:0]
}

// setBody makes b resp's body, with its length (the proxy passes on the
// header, not resp.ContentLength).
func setBody(resp *http.Response, b []byte) {
	resp.Body.Close()
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(b))}
}

// smallAnswer is the largest FHIR JSON answer rewritten whole rather than
// streamed.
const smallAnswer = 64 << 10

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
