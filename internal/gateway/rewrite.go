package gateway

import (
	"bytes"
	"errors"
	"io"

	"github.com/phigate/phigate/internal/jsonscan"
)

// The link rewriter: a streaming pass over a FHIR JSON body that replaces
// the upstream's URLs in Bundle.link[].url, Bundle.entry[].fullUrl,
// Bundle.entry[].link[].url, Bundle.entry[].response.location and
// CapabilityStatement.implementation.url with the gateway's (see
// modifyResponse). It tokenises the body with a small state machine (no
// decoding, no allocation per token) and holds at most one URL string
// (maxURLBytes) or the root "link" array (maxLinkBytes) at a time, whatever
// the body's size: memory is bounded by those and by its read buffer.
// Bundle.link is held whole because a link's relation may follow its url:
// next, previous (prev), first and last become continuation URLs.
//
// A body that is not well-formed where the rewriter has to follow it (an
// escaped key among the ones it looks for, a URL or link array over its
// bound, nesting deeper than maxRewriteDepth, bytes that are no JSON) ends
// the answer with an error: the proxy then drops the connection rather
// than pass on a body it could not rewrite.

// Bounds of the link rewriter.
const (
	maxURLBytes     = 8 << 10
	maxLinkBytes    = 64 << 10
	maxRewriteDepth = 128
	rewriteBufLen   = 32 << 10
)

var errRewrite = errors.New("the upstream's FHIR JSON body could not be rewritten (malformed, or a URL or Bundle.link over the gateway's bounds)")

// linkMapper maps one URL of the body; rel is the link's relation for
// Bundle.link, "" elsewhere. It returns the URL to send; an error ends the
// body (a continuation handle could not be issued).
type linkMapper func(rel, u string) (string, error)

// scanner states
const (
	stValue    = iota // a value is expected
	stArrFirst        // after '[': a value or ']'
	stObjFirst        // after '{': a key or '}'
	stObjKey          // after ',' in an object: a key
	stKey             // inside a key string
	stColon           // after a key
	stAfter           // after a value: ',' or the container's end
	stString          // inside a string value passed through
	stCapture         // inside a string value held for rewriting
	stLiteral         // inside a number, true, false or null
	stLinks           // inside the root "link" array, held whole
	stEnd             // after the root value
)

// contexts of a container: where it sits in the document
const (
	ctxOther      = iota
	ctxRoot       // the root object
	ctxEntries    // Bundle.entry
	ctxEntry      // Bundle.entry[i]
	ctxResponse   // Bundle.entry[i].response
	ctxEntryLinks // Bundle.entry[i].link
	ctxEntryLink  // Bundle.entry[i].link[j]
	ctxImpl       // CapabilityStatement.implementation
)

type frame struct {
	obj bool
	ctx uint8
}

// keys the rewriter looks for
const (
	keyOther = iota
	keyEntry
	keyLink
	keyImplementation
	keyFullURL
	keyResponse
	keyLocation
	keyURL
)

// keyID names a key, ignoring ASCII letter case: Go clients
// (encoding/json) read "fullURL" as fullUrl.
func keyID(k []byte) uint8 {
	var low [16]byte
	n := copy(low[:], k)
	for i := range n {
		if c := low[i]; 'A' <= c && c <= 'Z' {
			low[i] = c + 'a' - 'A'
		}
	}
	switch string(low[:n]) {
	case "entry":
		return keyEntry
	case "link":
		return keyLink
	case "implementation":
		return keyImplementation
	case "fullurl":
		return keyFullURL
	case "response":
		return keyResponse
	case "location":
		return keyLocation
	case "url":
		return keyURL
	}
	return keyOther
}

// linkRewriter is an io.ReadCloser over an upstream body that rewrites it.
type linkRewriter struct {
	src  io.ReadCloser
	m    linkMapper
	in   []byte // the read buffer
	out  []byte // rewritten bytes not yet read
	off  int    // read offset in out
	err  error  // sticky: io.EOF or the failure
	st   int
	esc  bool // the previous byte of a string was a backslash
	key  [16]byte
	klen int  // bytes of the key so far (klen > len(key): too long to be one we look for)
	kesc bool // the key held an escape
	cur  uint8
	stk  []frame
	hold []byte // the URL string or the link array being held
	// in the link array: nesting depth and string state
	ldepth int
	lstr   bool
	lesc   bool
	// rewritten counts URLs replaced
	rewritten int
	pool      *bufferPool
	stkBuf    [16]frame
}

// newLinkRewriter rewrites src with m; pool, when set, lends the read and
// output buffers (given back by Close).
func newLinkRewriter(src io.ReadCloser, m linkMapper, pool *bufferPool) *linkRewriter {
	r := &linkRewriter{src: src, m: m, pool: pool}
	if pool != nil {
		r.in, r.out = pool.Get(), pool.Get()[:0]
	} else {
		r.in, r.out = make([]byte, rewriteBufLen), make([]byte, 0, rewriteBufLen)
	}
	r.stk = r.stkBuf[:0]
	return r
}

// rewriteWhole rewrites the whole body b with m.
// The result is appended to dst.
func rewriteWhole(dst, b []byte, m linkMapper) ([]byte, error) {
	r := &linkRewriter{m: m, out: dst}
	r.stk = r.stkBuf[:0]
	if err := r.feed(b); err != nil {
		return nil, err
	}
	if !r.complete() {
		return nil, errRewrite
	}
	return r.out, nil
}

// Read implements io.Reader. It fills p as far as the body goes: the
// proxy flushes every read of a body without a length to the client, and
// a read per upstream TLS record would cost a write (and a record) each.
func (r *linkRewriter) Read(p []byte) (int, error) {
	for len(r.out)-r.off < len(p) && r.err == nil {
		if r.off > 0 { // keep out within its buffer
			r.out = r.out[:copy(r.out, r.out[r.off:])]
			r.off = 0
		}
		n, err := r.src.Read(r.in)
		if n > 0 {
			if perr := r.feed(r.in[:n]); perr != nil {
				r.err = perr
				r.out, r.off = r.out[:0], 0
				return 0, perr
			}
		}
		if err != nil {
			if err == io.EOF && !r.complete() {
				err = errRewrite
			}
			r.err = err
		}
	}
	if r.off == len(r.out) {
		return 0, r.err
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// Close implements io.Closer.
func (r *linkRewriter) Close() error {
	if r.pool != nil && r.in != nil {
		r.pool.Put(r.in)
		r.pool.Put(r.out[:cap(r.out)])
		r.in, r.out, r.off = nil, nil, 0
		r.err = errRewrite // no read after Close
	}
	return r.src.Close()
}

// complete reports whether the body ended after a whole value.
func (r *linkRewriter) complete() bool {
	return r.st == stEnd || (r.st == stAfter || r.st == stLiteral) && len(r.stk) == 0
}

// feed scans b, appending what is to be sent to r.out.
func (r *linkRewriter) feed(b []byte) error {
	emit := 0 // b[emit:i] is still to be sent as it is
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch r.st {
		case stString:
			if r.esc { // b[i] was escaped at the end of the last chunk
				r.esc = false
				continue
			}
			// skip to the next quote, or a backslash before it
			j := bytes.IndexByte(b[i:], '"')
			seg := b[i:]
			if j >= 0 {
				seg = b[i : i+j]
			}
			if k := bytes.IndexByte(seg, '\\'); k >= 0 {
				j = k
			} else if j < 0 {
				i = len(b)
				continue
			}
			i += j
			if b[i] == '\\' {
				if i+1 < len(b) {
					i++ // the escaped byte
				} else {
					r.esc = true
				}
				continue
			}
			r.st = stAfter
			if len(r.stk) == 0 {
				r.st = stEnd
			}
		case stCapture:
			start := i
			for ; i < len(b); i++ {
				if r.esc {
					r.esc = false
					continue
				}
				if b[i] == '\\' {
					r.esc = true
				} else if b[i] == '"' {
					break
				}
			}
			if i == len(b) {
				r.hold = append(r.hold, b[start:]...)
				emit = len(b)
				if len(r.hold) > maxURLBytes {
					return errRewrite
				}
				continue
			}
			r.hold = append(r.hold, b[start:i+1]...)
			emit = i + 1
			if len(r.hold) > maxURLBytes {
				return errRewrite
			}
			if err := r.replaceString(); err != nil {
				return err
			}
			r.st = stAfter
			if len(r.stk) == 0 {
				r.st = stEnd
			}
		case stLinks:
			start := i
			done := false
			for ; i < len(b) && !done; i++ {
				d := b[i]
				switch {
				case r.lstr && r.lesc:
					r.lesc = false
				case r.lstr && d == '\\':
					r.lesc = true
				case r.lstr && d == '"':
					r.lstr = false
				case r.lstr:
				case d == '"':
					r.lstr = true
				case d == '[' || d == '{':
					r.ldepth++
				case d == ']' || d == '}':
					r.ldepth--
					done = r.ldepth == 0
				}
			}
			r.hold = append(r.hold, b[start:i]...)
			emit = i
			if len(r.hold) > maxLinkBytes {
				return errRewrite
			}
			i-- // the loop's i++
			if done {
				if err := r.replaceLinks(); err != nil {
					return err
				}
				r.st = stAfter
			}
		case stKey:
			if r.esc {
				r.esc = false
				r.kesc = true
				r.klen++
				continue
			}
			switch c {
			case '\\':
				r.esc = true
			case '"':
				r.cur = keyOther
				if r.klen <= len(r.key) {
					r.cur = keyID(r.key[:r.klen])
				}
				if r.kesc && r.interesting() {
					return errRewrite // an escaped key where the rewriter looks: it cannot tell
				}
				r.st = stColon
			default:
				if r.klen < len(r.key) {
					r.key[r.klen] = c
				}
				r.klen++
			}
		case stLiteral:
			if isLiteralByte(c) {
				continue
			}
			r.st = stAfter
			i--
		default:
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				continue
			}
			switch r.st {
			case stValue, stArrFirst:
				if r.st == stArrFirst && c == ']' {
					if err := r.pop(false); err != nil {
						return err
					}
					continue
				}
				switch {
				case c == '{' || c == '[':
					ctx := r.childCtx(c == '{')
					if ctx == ctxLinksHold {
						r.out = append(r.out, b[emit:i]...)
						emit = i
						r.hold = append(r.hold[:0], c)
						r.ldepth, r.lstr, r.lesc = 1, false, false
						r.st = stLinks
						emit = i + 1
						continue
					}
					if len(r.stk) == maxRewriteDepth {
						return errRewrite
					}
					r.stk = append(r.stk, frame{obj: c == '{', ctx: ctx})
					r.st = stArrFirst
					if c == '{' {
						r.st = stObjFirst
					}
				case c == '"':
					if r.target() {
						r.out = append(r.out, b[emit:i]...)
						r.hold = append(r.hold[:0], c)
						emit = i + 1
						r.st, r.esc = stCapture, false
					} else {
						r.st, r.esc = stString, false
					}
				case isLiteralByte(c):
					r.st = stLiteral
				default:
					return errRewrite
				}
			case stObjFirst, stObjKey:
				switch {
				case c == '"':
					r.st, r.klen, r.kesc, r.esc = stKey, 0, false, false
				case c == '}' && r.st == stObjFirst:
					if err := r.pop(true); err != nil {
						return err
					}
				default:
					return errRewrite
				}
			case stColon:
				if c != ':' {
					return errRewrite
				}
				r.st = stValue
			case stAfter:
				if len(r.stk) == 0 {
					return errRewrite
				}
				top := r.stk[len(r.stk)-1]
				switch {
				case c == ',' && top.obj:
					r.st = stObjKey
				case c == ',':
					r.st = stValue
				case c == '}' || c == ']':
					if err := r.pop(c == '}'); err != nil {
						return err
					}
				default:
					return errRewrite
				}
			case stEnd:
				return errRewrite
			}
		}
	}
	r.out = append(r.out, b[emit:]...)
	return nil
}

// ctxLinksHold: the value is the root "link" array, to be held whole.
const ctxLinksHold = 255

// childCtx is the context of a container opening at the current position.
func (r *linkRewriter) childCtx(obj bool) uint8 {
	if len(r.stk) == 0 {
		if obj {
			return ctxRoot
		}
		return ctxOther
	}
	top := r.stk[len(r.stk)-1]
	if !top.obj {
		switch {
		case top.ctx == ctxEntries && obj:
			return ctxEntry
		case top.ctx == ctxEntryLinks && obj:
			return ctxEntryLink
		}
		return ctxOther
	}
	switch {
	case top.ctx == ctxRoot && r.cur == keyEntry && !obj:
		return ctxEntries
	case top.ctx == ctxRoot && r.cur == keyLink && !obj:
		return ctxLinksHold
	case top.ctx == ctxRoot && r.cur == keyImplementation && obj:
		return ctxImpl
	case top.ctx == ctxEntry && r.cur == keyResponse && obj:
		return ctxResponse
	case top.ctx == ctxEntry && r.cur == keyLink && !obj:
		return ctxEntryLinks
	}
	return ctxOther
}

// interesting reports whether the keys of the current object are ones the
// rewriter looks at.
func (r *linkRewriter) interesting() bool {
	return len(r.stk) > 0 && r.stk[len(r.stk)-1].ctx != ctxOther
}

// target reports whether a string value at the current position is a URL
// to rewrite.
func (r *linkRewriter) target() bool {
	if len(r.stk) == 0 {
		return false
	}
	top := r.stk[len(r.stk)-1]
	if !top.obj {
		return false
	}
	switch top.ctx {
	case ctxEntry:
		return r.cur == keyFullURL
	case ctxResponse:
		return r.cur == keyLocation
	case ctxImpl, ctxEntryLink:
		return r.cur == keyURL
	}
	return false
}

func (r *linkRewriter) pop(obj bool) error {
	if len(r.stk) == 0 || r.stk[len(r.stk)-1].obj != obj {
		return errRewrite
	}
	r.stk = r.stk[:len(r.stk)-1]
	r.st = stAfter
	if len(r.stk) == 0 {
		r.st = stEnd
	}
	return nil
}

func isLiteralByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E'
}

// replaceString appends the held string, mapped, to r.out.
func (r *linkRewriter) replaceString() error {
	u, ok := jsonscan.String(r.hold)
	if !ok {
		return errRewrite
	}
	v, err := r.m("", u)
	if err != nil {
		return err
	}
	if v != u {
		r.rewritten++
		r.out = appendJSONString(r.out, v)
		return nil
	}
	r.out = append(r.out, r.hold...)
	return nil
}

// replaceLinks appends the held Bundle.link array, each url mapped with
// its link's relation, to r.out; everything else stays as it was.
func (r *linkRewriter) replaceLinks() error {
	ok := true
	r.out = append(r.out, '[')
	first := true
	valid := jsonscan.Elems(r.hold, func(l []byte) bool {
		if !first {
			r.out = append(r.out, ',')
		}
		first = false
		if len(l) == 0 || l[0] != '{' {
			r.out = append(r.out, l...) // not an object: nothing to rewrite
			return true
		}
		if err := r.replaceLink(l); err != nil {
			ok = false
			return false
		}
		return true
	})
	if !valid || !ok {
		return errRewrite
	}
	r.out = append(r.out, ']')
	return nil
}

// replaceLink appends the link object l with its url values mapped.
func (r *linkRewriter) replaceLink(l []byte) error {
	rel, relSeen, ok := "", false, true
	jsonscan.Fields(l, func(k, v []byte) bool {
		if foldEq(k, "relation") {
			s, isStr := jsonscan.String(v)
			if !isStr || relSeen && s != rel {
				ok = false // two relations: which one a client reads is anyone's guess
				return false
			}
			rel, relSeen = s, true
		}
		return true
	})
	if !ok {
		return errRewrite
	}
	pos := 0
	var err error
	jsonscan.Fields(l, func(k, v []byte) bool {
		if !foldEq(k, "url") {
			return true
		}
		u, isStr := jsonscan.String(v)
		if !isStr {
			return true
		}
		var m string
		if m, err = r.m(rel, u); err != nil {
			return false
		}
		if m != u {
			o := cap(l) - cap(v) // where v starts in l
			r.out = append(r.out, l[pos:o]...)
			r.out = appendJSONString(r.out, m)
			pos = o + len(v)
			r.rewritten++
		}
		return true
	})
	if err != nil {
		return err
	}
	r.out = append(r.out, l[pos:]...)
	return nil
}
