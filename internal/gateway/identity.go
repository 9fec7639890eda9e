package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/internal/fsync"
)

// Identity headers the gateway sets on every forwarded request (and on a
// forward-auth allow). Any header of the client starting with X-Phigate- is
// removed first.
const (
	HeaderSubject    = "X-Phigate-Subject"
	HeaderTokenID    = "X-Phigate-Token-Id"
	HeaderPurpose    = "X-Phigate-Purpose"
	HeaderBreakGlass = "X-Phigate-Break-Glass"
	HeaderIdentity   = "X-Phigate-Identity"
	// IdentityKeyPath is where the gateway publishes its identity key as a
	// JWK Set.
	IdentityKeyPath = "/.well-known/phigate-identity-key"
)

// IdentityTTL is the lifetime of an identity assertion.
const IdentityTTL = 60 * time.Second

// identityTyp is the JWS "typ" of an identity assertion.
const identityTyp = "phigate-identity+jwt"

// maxSkew is the clock difference VerifyIdentity tolerates.
const maxSkew = 5 * time.Second

// Identity is what the gateway asserts to an upstream about a request: the
// claims of the X-Phigate-Identity JWS.
type Identity struct {
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	TokenID string `json:"tid"`
	Purpose string `json:"purpose,omitempty"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	// QueryHash binds the query: base64url (no padding) of the SHA-256 of
	// the raw query as sent upstream (without "?"); empty (omitted) when
	// there is none. See QueryHash.
	QueryHash string `json:"qh,omitempty"`
	RequestID string `json:"rid"`
	// Audience is the upstream's name.
	Audience   string `json:"aud,omitempty"`
	BreakGlass bool   `json:"bg,omitempty"`
	IssuedAt   int64  `json:"iat"`
	Expires    int64  `json:"exp"`
}

// identityIssuer is the iss of every assertion.
const identityIssuer = "phigate-gateway"

// Signer issues identity assertions with an Ed25519 key.
type Signer struct {
	key  ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
	head string // base64url of the protected header
	jwks []byte
	bufs scratch
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	pub := key.Public().(ed25519.PublicKey)
	s := &Signer{key: key, pub: pub, kid: Thumbprint(pub)}
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "kid": s.kid, "typ": identityTyp})
	s.head = base64.RawURLEncoding.EncodeToString(h)
	s.jwks, _ = json.Marshal(map[string]any{"keys": []any{jwk(pub, s.kid)}})
	return s
}

func jwk(pub ed25519.PublicKey, kid string) map[string]string {
	return map[string]string{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
		"kid": kid, "use": "sig", "alg": "EdDSA",
	}
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub;
// it is the key's "kid".
func Thumbprint(pub ed25519.PublicKey) string {
	// members in lexicographic order, no white space (RFC 7638 §3)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// PublicKey returns the key upstreams verify with.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// JWKS returns the public key as a JSON Web Key Set (RFC 7517), as served
// at IdentityKeyPath.
func (s *Signer) JWKS() []byte { return s.jwks }

// Sign returns the compact JWS of id (RFC 7515, alg EdDSA, RFC 8037).
func (s *Signer) Sign(id *Identity) string {
	bp := s.bufs.get()
	buf := appendSigningInput((*bp)[:0], s.head, id)
	sig := ed25519.Sign(s.key, buf)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	out := string(buf)
	s.bufs.put(bp, buf)
	return out
}

// scratch recycles the buffers in which assertions are built.
type scratch struct{ p sync.Pool }

func (s *scratch) get() *[]byte {
	if bp, ok := s.p.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 1024)
	return &b
}

// put returns bp, now holding buf; an unusually large one is dropped.
func (s *scratch) put(bp *[]byte, buf []byte) {
	if cap(buf) <= 16<<10 {
		*bp = buf
		s.p.Put(bp)
	}
}

// appendSigningInput appends the JWS signing input of id under the
// protected header head (base64url): head "." base64url(claims). It sets
// id.Issuer.
func appendSigningInput(b []byte, head string, id *Identity) []byte {
	id.Issuer = identityIssuer
	b = append(b, head...)
	b = append(b, '.')
	// the claims are written, moved past the room their base64 takes,
	// and encoded into that room
	start := len(b)
	b = id.appendJSON(b)
	claims := len(b) - start
	enc := base64.RawURLEncoding.EncodedLen(claims)
	b = append(b, make([]byte, enc)...) // the compiler allocates nothing for make here
	copy(b[start+enc:], b[start:start+claims])
	base64.RawURLEncoding.Encode(b[start:start+enc], b[start+enc:start+enc+claims])
	return b[:start+enc]
}

// appendJSON appends the claims as one JSON object, as encoding/json
// writes an Identity (same keys, order and omissions), except that <, >
// and & are not escaped.
func (id *Identity) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, id.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, id.Subject)
	b = append(b, `,"tid":`...)
	b = appendJSONString(b, id.TokenID)
	b = appendOpt(b, `,"purpose":`, id.Purpose)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, id.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, id.Path)
	b = appendOpt(b, `,"qh":`, id.QueryHash)
	b = append(b, `,"rid":`...)
	b = appendJSONString(b, id.RequestID)
	b = appendOpt(b, `,"aud":`, id.Audience)
	if id.BreakGlass {
		b = append(b, `,"bg":true`...)
	}
	b = strconv.AppendInt(append(b, `,"iat":`...), id.IssuedAt, 10)
	b = strconv.AppendInt(append(b, `,"exp":`...), id.Expires, 10)
	return append(b, '}')
}

// MinHMACKey is the shortest HS256 identity key accepted, in bytes.
const MinHMACKey = 32

// HMACSigner issues identity assertions authenticated with HMAC-SHA256
// (JWS alg HS256, RFC 7518 §3.2) under a key shared with one upstream.
type HMACSigner struct {
	head string // base64url of the protected header
	kid  string
	hs   sync.Pool // HMAC states keyed with the key
	bufs scratch
}

// NewHMACSigner returns an HMACSigner for key (at least MinHMACKey bytes,
// used as they are). It keeps its own copy of key.
func NewHMACSigner(key []byte) (*HMACSigner, error) {
	if len(key) < MinHMACKey {
		return nil, fmt.Errorf("gateway: an HS256 identity key needs at least %d bytes (got %d)", MinHMACKey, len(key))
	}
	k := bytes.Clone(key)
	s := &HMACSigner{kid: HMACKeyID(k)}
	s.hs.New = func() any { return hmac.New(sha256.New, k) }
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": s.kid, "typ": identityTyp})
	s.head = base64.RawURLEncoding.EncodeToString(h)
	return s, nil
}

// HMACKeyID is the "kid" of an HS256 identity key: the first 16
// characters of base64url(SHA-256("phigate-identity-kid\x00" || key)). It
// names the key (for rotation) without revealing it.
func HMACKeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("phigate-identity-kid\x00"))
	h.Write(key)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))[:16]
}

// KeyID returns the key's "kid" (HMACKeyID).
func (s *HMACSigner) KeyID() string { return s.kid }

// Sign returns the compact JWS of id (alg HS256).
func (s *HMACSigner) Sign(id *Identity) string {
	bp := s.bufs.get()
	buf := appendSigningInput((*bp)[:0], s.head, id)
	h := s.hs.Get().(hash.Hash)
	h.Reset()
	h.Write(buf)
	var sum [sha256.Size]byte
	mac := h.Sum(sum[:0])
	s.hs.Put(h)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, mac)
	out := string(buf)
	s.bufs.put(bp, buf)
	return out
}

// identitySigner is the signer of one upstream's assertions: its HS256
// key when configured, else the gateway's Ed25519 key.
type identitySigner struct {
	ed *Signer
	hs *HMACSigner
}

func (s identitySigner) sign(id *Identity) string {
	if s.hs != nil {
		return s.hs.Sign(id)
	}
	return s.ed.Sign(id)
}

func (s identitySigner) alg() string {
	if s.hs != nil {
		return "HS256"
	}
	return "EdDSA"
}

// ErrIdentity is wrapped by every error of VerifyIdentity and VerifyRequest.
var ErrIdentity = errors.New("invalid phigate identity")

// VerifyIdentity checks a compact JWS from the X-Phigate-Identity header:
// header {"alg":"EdDSA","typ":"phigate-identity+jwt"} (any other alg is
// refused), an Ed25519 signature by pub, iss "phigate-gateway", and
// iat ≤ now+5s < exp+5s with exp−iat at most 5 minutes. It returns the
// claims. Upstreams should use VerifyRequest, which also binds the claims
// to the request.
func VerifyIdentity(jws string, pub ed25519.PublicKey, now time.Time) (*Identity, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrIdentity)
	}
	return verifyJWS(jws, "EdDSA", func(input, sig []byte) bool {
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, input, sig)
	}, now)
}

// VerifyIdentityHS256 is VerifyIdentity for an assertion authenticated
// with HMAC-SHA256 under key (alg HS256 only; any other alg, EdDSA
// included, is refused; the comparison takes constant time). Upstreams
// should use VerifyRequestHS256, which also checks the audience and binds
// the claims to the request.
func VerifyIdentityHS256(jws string, key []byte, now time.Time) (*Identity, error) {
	if len(key) < MinHMACKey {
		return nil, fmt.Errorf("%w: an HS256 key needs at least %d bytes", ErrIdentity, MinHMACKey)
	}
	return verifyJWS(jws, "HS256", func(input, sig []byte) bool {
		m := hmac.New(sha256.New, key)
		m.Write(input)
		return hmac.Equal(m.Sum(nil), sig)
	}, now)
}

// verifyJWS checks the compact JWS jws: its header (alg, typ, no crit),
// its signature (valid reports it on the signing input), then the claims.
func verifyJWS(jws, alg string, valid func(input, sig []byte) bool, now time.Time) (*Identity, error) {
	if len(jws) > 8192 {
		return nil, fmt.Errorf("%w: too long", ErrIdentity)
	}
	h, rest, ok1 := strings.Cut(jws, ".")
	p, sig64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrIdentity)
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding", ErrIdentity)
	}
	var head struct {
		Alg  string `json:"alg"`
		Typ  string `json:"typ"`
		Crit []any  `json:"crit"`
	}
	if err := json.Unmarshal(hb, &head); err != nil || head.Alg != alg || head.Typ != identityTyp || head.Crit != nil {
		return nil, fmt.Errorf("%w: header must be alg %s, typ %s", ErrIdentity, alg, identityTyp)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sig64)
	if err != nil {
		return nil, fmt.Errorf("%w: signature encoding", ErrIdentity)
	}
	if !valid([]byte(jws[:len(h)+1+len(p)]), sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrIdentity)
	}
	pb, err := base64.RawURLEncoding.Strict().DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrIdentity)
	}
	var id Identity
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return nil, fmt.Errorf("%w: claims", ErrIdentity)
	}
	t := now.Unix()
	skew := int64(maxSkew / time.Second)
	switch {
	case id.Issuer != identityIssuer:
		return nil, fmt.Errorf("%w: issuer", ErrIdentity)
	case id.IssuedAt > t+skew:
		return nil, fmt.Errorf("%w: issued in the future", ErrIdentity)
	case t >= id.Expires+skew:
		return nil, fmt.Errorf("%w: expired", ErrIdentity)
	case id.Expires-id.IssuedAt > 300 || id.Expires < id.IssuedAt:
		return nil, fmt.Errorf("%w: lifetime", ErrIdentity)
	case id.Subject == "" || id.TokenID == "":
		return nil, fmt.Errorf("%w: no subject", ErrIdentity)
	}
	return &id, nil
}

// VerifyRequest verifies the identity the gateway attached to r, as
// received by an upstream: the X-Phigate-Identity JWS (see VerifyIdentity),
// its method and path equal to r's, and the plain identity headers, when
// present, equal to its claims. It returns the verified claims; use them,
// not the plain headers.
func VerifyRequest(r *http.Request, pub ed25519.PublicKey, now time.Time) (*Identity, error) {
	jws, err := identityHeader(r)
	if err != nil {
		return nil, err
	}
	id, err := VerifyIdentity(jws, pub, now)
	if err != nil {
		return nil, err
	}
	if err := bindRequest(r, id); err != nil {
		return nil, err
	}
	return id, nil
}

// VerifyRequestFor is VerifyRequest that also requires the assertion's aud
// to be audience, the upstream's name in the gateway's configuration: an
// assertion issued for another upstream (or by forward auth for another
// one) is refused. Upstreams should use it rather than VerifyRequest.
func VerifyRequestFor(r *http.Request, pub ed25519.PublicKey, audience string, now time.Time) (*Identity, error) {
	if audience == "" {
		return nil, fmt.Errorf("%w: an audience is required", ErrIdentity)
	}
	id, err := VerifyRequest(r, pub, now)
	if err != nil {
		return nil, err
	}
	if id.Audience != audience {
		return nil, fmt.Errorf("%w: issued for another upstream", ErrIdentity)
	}
	return id, nil
}

// VerifyRequestHS256 is VerifyRequest for an upstream configured with an
// HS256 identity key: the assertion must be authenticated under key
// (VerifyIdentityHS256) and its aud must be audience, the upstream's name
// in the gateway's configuration (required: a key shared by several
// upstreams then still does not let one pass its requests to another).
func VerifyRequestHS256(r *http.Request, key []byte, audience string, now time.Time) (*Identity, error) {
	if audience == "" {
		return nil, fmt.Errorf("%w: an audience is required", ErrIdentity)
	}
	jws, err := identityHeader(r)
	if err != nil {
		return nil, err
	}
	id, err := VerifyIdentityHS256(jws, key, now)
	if err != nil {
		return nil, err
	}
	if id.Audience != audience {
		return nil, fmt.Errorf("%w: issued for another upstream", ErrIdentity)
	}
	if err := bindRequest(r, id); err != nil {
		return nil, err
	}
	return id, nil
}

func identityHeader(r *http.Request) (string, error) {
	vs := r.Header.Values(HeaderIdentity)
	if len(vs) != 1 {
		return "", fmt.Errorf("%w: want exactly one %s header", ErrIdentity, HeaderIdentity)
	}
	return vs[0], nil
}

// bindRequest checks that id was issued for r: the same method (HEAD for
// GET) and escaped path, and the plain identity headers, when present,
// equal to the claims.
func bindRequest(r *http.Request, id *Identity) error {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	claimed := id.Method
	if claimed == http.MethodHead {
		claimed = http.MethodGet
	}
	if claimed != method || id.Path != r.URL.EscapedPath() || id.QueryHash != QueryHash(r.URL.RawQuery) {
		return fmt.Errorf("%w: issued for another request", ErrIdentity)
	}
	for _, c := range []struct{ h, v string }{{HeaderSubject, id.Subject}, {HeaderTokenID, id.TokenID}, {HeaderPurpose, id.Purpose}} {
		if got := r.Header.Values(c.h); len(got) > 1 || len(got) == 1 && got[0] != c.v {
			return fmt.Errorf("%w: %s does not match the signed claims", ErrIdentity, c.h)
		}
	}
	return nil
}

// QueryHash is the qh claim of a request whose raw query (without "?") is
// rawQuery: base64url without padding of its SHA-256, or "" when the query
// is empty.
func QueryHash(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(rawQuery))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParseJWKS returns the Ed25519 keys of a JWK Set as served at
// IdentityKeyPath, by kid.
func ParseJWKS(data []byte) (map[string]ed25519.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Crv, X, Kid string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: JWK Set: %v", ErrIdentity, err)
	}
	out := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		x, err := base64.RawURLEncoding.Strict().DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: JWK Set: bad Ed25519 key", ErrIdentity)
		}
		out[k.Kid] = ed25519.PublicKey(x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: JWK Set holds no Ed25519 key", ErrIdentity)
	}
	return out, nil
}

// LoadOrCreateKey reads the Ed25519 identity key at path (PEM, PKCS #8),
// or, when there is no file, generates one from rnd (nil: crypto/rand) and
// writes it with mode 0600 (its directory 0700). A key file readable by
// group or others is refused.
func LoadOrCreateKey(path string, rnd io.Reader) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("gateway: identity key: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("gateway: identity key %s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
		}
		return parseKey(path, data)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	_, key, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // created meanwhile by another process
			return LoadOrCreateKey(path, rnd)
		}
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	clear(der)
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("gateway: identity key: %w", err)
	}
	fsync.Dir(filepath.Dir(path)) // best effort
	return key, nil
}

func parseKey(path string, data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("gateway: identity key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("gateway: identity key %s: not a PKCS #8 key", path)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("gateway: identity key %s: not an Ed25519 key", path)
	}
	return key, nil
}
