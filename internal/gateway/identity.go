package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	TokenID   string `json:"tid"`
	Purpose   string `json:"purpose,omitempty"`
	Method    string `json:"method"`
	Path      string `json:"path"`
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
	id.Issuer = identityIssuer
	payload, _ := json.Marshal(id) // strings, ints and a bool: cannot fail
	n := len(s.head) + 1 + base64.RawURLEncoding.EncodedLen(len(payload))
	buf := make([]byte, 0, n+1+base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize))
	buf = append(buf, s.head...)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, payload)
	sig := ed25519.Sign(s.key, buf)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	return string(buf)
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
	if len(jws) > 8192 || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: too long, or not an Ed25519 key", ErrIdentity)
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
	if err := json.Unmarshal(hb, &head); err != nil || head.Alg != "EdDSA" || head.Typ != identityTyp || head.Crit != nil {
		return nil, fmt.Errorf("%w: header must be alg EdDSA, typ %s", ErrIdentity, identityTyp)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sig64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature encoding", ErrIdentity)
	}
	if !ed25519.Verify(pub, []byte(jws[:len(h)+1+len(p)]), sig) {
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
	vs := r.Header.Values(HeaderIdentity)
	if len(vs) != 1 {
		return nil, fmt.Errorf("%w: want exactly one %s header", ErrIdentity, HeaderIdentity)
	}
	id, err := VerifyIdentity(vs[0], pub, now)
	if err != nil {
		return nil, err
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	claimed := id.Method
	if claimed == http.MethodHead {
		claimed = http.MethodGet
	}
	if claimed != method || id.Path != r.URL.EscapedPath() {
		return nil, fmt.Errorf("%w: issued for another request", ErrIdentity)
	}
	for _, c := range []struct{ h, v string }{{HeaderSubject, id.Subject}, {HeaderTokenID, id.TokenID}, {HeaderPurpose, id.Purpose}} {
		if got := r.Header.Values(c.h); len(got) > 1 || len(got) == 1 && got[0] != c.v {
			return nil, fmt.Errorf("%w: %s does not match the signed claims", ErrIdentity, c.h)
		}
	}
	return id, nil
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
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
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
