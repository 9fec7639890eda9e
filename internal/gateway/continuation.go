package gateway

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Continuations seals and opens the gateway's continuation handles (the
// next and previous pages of a search, see the package doc). Seal MUST
// return a ciphertext that reveals nothing of the plaintext and that Open
// accepts only with the same aad, unaltered; Open MUST fail, returning no
// plaintext, for anything else (another aad, a changed byte, a ciphertext
// it did not make). Seal's errors are technical failures. The server
// passes the vault's data key of purpose "continuation"; without one the
// gateway makes its own key at New, and handles then do not outlive the
// process (nor work on another node).
type Continuations interface {
	Seal(ctx context.Context, aad, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, aad, ciphertext []byte) ([]byte, error)
}

// CodeInvalidContinuation refuses a continuation handle that another
// token presents, that was altered, or that expired.
const CodeInvalidContinuation = "invalid_continuation"

// pagePath is the path, below an upstream's prefix, of the gateway's
// continuation URLs: <prefix>_page/<handle>.
const pagePath = "/_page/"

// maxHandle bounds a handle's length (base64url characters).
const maxHandle = 6 << 10

// handleVersion is the first byte of a handle's plaintext.
const handleVersion = 1

// A handle is base64url (no padding) of Seal(aad, plaintext) with
//
//	aad       = "phigate-continuation-v1" 0x00 <token id> 0x00 <upstream name>
//	plaintext = 0x01 | expiry (unix seconds, 8 bytes big-endian)
//	            | uvarint len | the search's path below the prefix
//	            | uvarint len | the search's query (a POST _search's form included)
//	            | uvarint len | the page: the upstream link below the upstream's base
//
// so that it is bound to the token and the upstream that saw the search,
// and reveals none of the upstream's URL.
type continuation struct {
	expires time.Time
	path    string // the search continued, below the prefix ("/Observation")
	query   string
	page    string // the upstream page, below its base ("?_getpages=…", "/Observation?_offset=5")
}

func handleAAD(tokenID, upstream string) []byte {
	b := make([]byte, 0, 32+len(tokenID)+len(upstream))
	b = append(b, "phigate-continuation-v1\x00"...)
	b = append(b, tokenID...)
	b = append(b, 0)
	return append(b, upstream...)
}

func (c *continuation) marshal() []byte {
	b := make([]byte, 0, 9+3*binary.MaxVarintLen32+len(c.path)+len(c.query)+len(c.page))
	b = append(b, handleVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.expires.Unix()))
	for _, s := range []string{c.path, c.query, c.page} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errHandle = errors.New("malformed continuation")

func (c *continuation) unmarshal(b []byte) error {
	if len(b) < 9 || b[0] != handleVersion {
		return errHandle
	}
	c.expires = time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)
	b = b[9:]
	for _, s := range []*string{&c.path, &c.query, &c.page} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errHandle
		}
		*s = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return errHandle
	}
	return nil
}

// issueHandle seals a continuation of x's search at the upstream page.
func (g *Gateway) issueHandle(x *exchange, page string) (string, error) {
	c := continuation{expires: g.now().Add(x.up.contTTL), path: x.searchPath, query: x.searchQuery, page: page}
	ct, err := g.conts.Seal(x.ctx, handleAAD(x.tokenID, x.up.name), c.marshal())
	if err != nil {
		return "", fmt.Errorf("sealing a continuation handle: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(ct), nil
}

// openHandle opens a handle presented by token tokenID to upstream up.
func (g *Gateway) openHandle(ctx context.Context, tokenID string, up *upstream, h string, now time.Time) (*continuation, *denial) {
	bad := unreachable(CodeInvalidContinuation, "this continuation link was not issued to this token, was altered, or expired: run the search again")
	if h == "" || len(h) > maxHandle {
		return nil, bad
	}
	ct, err := base64.RawURLEncoding.Strict().DecodeString(h) // one spelling per handle: an edit of its last bits is refused too
	if err != nil {
		return nil, bad
	}
	pt, err := g.conts.Open(ctx, handleAAD(tokenID, up.name), ct)
	if err != nil {
		return nil, bad
	}
	var c continuation
	if c.unmarshal(pt) != nil || !now.Before(c.expires) {
		return nil, bad
	}
	if pp, _, _ := strings.Cut(c.page, "?"); pp != "" && !canonicalPath(pp) {
		return nil, bad
	}
	return &c, nil
}

// pageRelation reports whether a Bundle.link relation is one a client
// follows to another page of the same search.
func pageRelation(rel string) bool {
	switch rel {
	case "next", "previous", "prev", "first", "last":
		return true
	}
	return false
}

// continuesSearch reports whether an interaction's answer may carry pages.
func continuesSearch(i string) bool {
	switch i {
	case SearchType.String(), SearchSystem.String(), SearchCompartment.String(),
		HistoryType.String(), HistorySystem.String(), HistoryInstance.String():
		return true
	}
	return false
}

// mapLink is the link rewriter's mapper for exchange x: a URL below the
// upstream's base becomes the gateway's; a page link (next, previous,
// first, last) of a search becomes a continuation URL; any other URL is
// left alone and counted (x.foreign).
func (g *Gateway) mapLink(x *exchange) linkMapper {
	return func(rel, u string) (string, error) {
		rest, ok := x.upstreamRest(u)
		onGateway := false
		if !ok {
			// a server that builds its links from X-Forwarded-Host and
			// -Proto (the demo, HAPI behind a proxy) names the gateway
			// already: its page links still become continuations
			if rest, onGateway = x.gatewayRest(u); !onGateway {
				if strings.Contains(u, "://") {
					x.foreign++
				}
				return u, nil
			}
		}
		if x.pages && pageRelation(rel) && x.tokenID != "" {
			h, err := g.issueHandle(x, rest)
			if err != nil {
				g.log.Error("issuing a continuation handle failed", "request_id", x.ev.RequestID, "err", err)
				return "", err
			}
			return x.gatewayBase() + pagePath + h, nil
		}
		if onGateway {
			return u, nil
		}
		return x.gatewayBase() + restPath(rest), nil
	}
}

// gatewayRest returns what of u follows the gateway's base for x's
// upstream, when u is below it: the same path below the upstream's base.
func (x *exchange) gatewayRest(u string) (string, bool) {
	base := x.gatewayBase()
	if !hasPrefixFold(u, base) {
		return "", false
	}
	rest := u[len(base):]
	if rest != "" && rest[0] != '/' && rest[0] != '?' {
		return "", false
	}
	if strings.HasPrefix(rest, pagePath) {
		return "", false // already a continuation
	}
	return rest, true
}

// localSealer is the Continuations of a gateway without the vault's: an
// AES-256-GCM key of its own, made at New.
type localSealer struct{ aead cipher.AEAD }

func newLocalSealer() (*localSealer, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &localSealer{aead: aead}, nil
}

func (s *localSealer) Seal(_ context.Context, aad, pt []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, pt, aad), nil
}

var errOpen = errors.New("continuation handle does not open")

func (s *localSealer) Open(_ context.Context, aad, ct []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(ct) < ns+s.aead.Overhead() {
		return nil, errOpen
	}
	pt, err := s.aead.Open(nil, ct[:ns], ct[ns:], aad)
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

// continuationRequest reports whether a request below a fhir upstream's
// prefix follows a continuation URL, and its handle. A continuation is a
// GET (or HEAD) without a query: anything else is a malformed one.
func continuationRequest(method, rest, rawQuery string) (handle string, is bool, dn *denial) {
	h, ok := strings.CutPrefix(rest, pagePath)
	if !ok {
		return "", false, nil
	}
	if method != http.MethodGet && method != http.MethodHead {
		return "", true, deny(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "a continuation link is followed with GET")
	}
	if rawQuery != "" || strings.IndexByte(h, '/') >= 0 {
		return "", true, unreachable(CodeInvalidContinuation, "this continuation link was not issued to this token, was altered, or expired: run the search again")
	}
	return h, true, nil
}

// joinQuery joins two raw queries with "&".
func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}
