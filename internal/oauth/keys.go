package oauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Limits of a key set.
const (
	// MaxJWKS bounds a key set's JSON, inline or fetched.
	MaxJWKS = 64 << 10
	// MaxKeys bounds the keys of a set.
	MaxKeys = 16
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
)

// ErrInvalidJWKS: a key set is malformed or holds a key that is not
// accepted (a private key, RSA under 2048 bits, an EC curve other than
// P-384, a symmetric key, a key for encryption).
var ErrInvalidJWKS = errors.New("oauth: invalid JWKS")

// ParseJWKS parses and checks a key set: at most MaxKeys keys, each an
// RSA (≥ 2048 bits) or EC P-384 public key meant for signatures, with
// distinct kids. A set holding any private key is refused whole.
func ParseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	if len(b) > MaxJWKS {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrInvalidJWKS, MaxJWKS)
	}
	var set jose.JSONWebKeySet
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJWKS, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the key set", ErrInvalidJWKS)
	}
	if len(set.Keys) == 0 || len(set.Keys) > MaxKeys {
		return nil, fmt.Errorf("%w: want 1..%d keys, got %d", ErrInvalidJWKS, MaxKeys, len(set.Keys))
	}
	kids := map[string]bool{}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("%w: keys[%d] is a private key; register public keys only (and treat this one as exposed)", ErrInvalidJWKS, i)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("%w: keys[%d]: use %q, want sig", ErrInvalidJWKS, i, k.Use)
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < MinRSABits {
				return nil, fmt.Errorf("%w: keys[%d]: RSA key of %d bits, want at least %d", ErrInvalidJWKS, i, pk.N.BitLen(), MinRSABits)
			}
			if k.Algorithm != "" && k.Algorithm != string(jose.RS384) {
				return nil, fmt.Errorf("%w: keys[%d]: alg %q, want RS384", ErrInvalidJWKS, i, k.Algorithm)
			}
		case *ecdsa.PublicKey:
			if pk.Curve != elliptic.P384() {
				return nil, fmt.Errorf("%w: keys[%d]: EC curve %s, want P-384", ErrInvalidJWKS, i, pk.Curve.Params().Name)
			}
			if k.Algorithm != "" && k.Algorithm != string(jose.ES384) {
				return nil, fmt.Errorf("%w: keys[%d]: alg %q, want ES384", ErrInvalidJWKS, i, k.Algorithm)
			}
		default:
			return nil, fmt.Errorf("%w: keys[%d]: key type %T; only RSA and EC P-384 public keys are accepted", ErrInvalidJWKS, i, k.Key)
		}
		if kids[k.KeyID] {
			return nil, fmt.Errorf("%w: two keys with kid %q", ErrInvalidJWKS, k.KeyID)
		}
		kids[k.KeyID] = true
	}
	return &set, nil
}

// CheckJWKSURL checks that u is an absolute https URL without user info
// or fragment.
func CheckJWKSURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || p.Fragment != "" || len(u) > 2048 {
		return fmt.Errorf("%w: jwks_url must be an absolute https URL", ErrInvalidJWKS)
	}
	return nil
}

// FetcherOptions tune a Fetcher. Zero values take the defaults noted.
type FetcherOptions struct {
	// Client fetches key sets; it MUST verify TLS (the server's outbound
	// TLS config). Its Timeout is replaced by Timeout.
	Client *http.Client
	// Timeout bounds one fetch (default 5s).
	Timeout time.Duration
	// MinAge and MaxAge bound how long a fetched set is used: its
	// Cache-Control max-age, clamped (defaults 1m and 1h; DefaultAge, 5m,
	// without one).
	MinAge, MaxAge, DefaultAge time.Duration
	// RefetchEvery is how often at most an unknown kid makes a client's
	// set be fetched again (default 30s): no amplification.
	RefetchEvery time.Duration
	// MaxEntries bounds the sets cached (default 10000).
	MaxEntries int
	Now        func() time.Time
}

// Fetcher fetches key sets from jwks_url over TLS and caches them. It is
// safe for concurrent use; concurrent misses of one URL make one fetch.
type Fetcher struct {
	opts FetcherOptions
	mu   sync.Mutex
	sets map[string]*cachedSet
}

type cachedSet struct {
	mu        sync.Mutex // held during a fetch
	set       *jose.JSONWebKeySet
	expires   time.Time
	lastFetch time.Time
	err       error
}

// NewFetcher returns a Fetcher.
func NewFetcher(opts FetcherOptions) *Fetcher {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MinAge <= 0 {
		opts.MinAge = time.Minute
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = time.Hour
	}
	if opts.DefaultAge <= 0 {
		opts.DefaultAge = 5 * time.Minute
	}
	if opts.RefetchEvery <= 0 {
		opts.RefetchEvery = 30 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := *opts.Client
	c.Timeout = opts.Timeout
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" || len(via) > 3 {
			return errors.New("redirect refused")
		}
		return nil
	}
	opts.Client = &c
	return &Fetcher{opts: opts, sets: map[string]*cachedSet{}}
}

// Keys returns the key set at u: the cached one while fresh; fetched
// again when stale, or when kid is not in it and the last fetch is older
// than RefetchEvery.
func (f *Fetcher) Keys(ctx context.Context, u, kid string) (*jose.JSONWebKeySet, error) {
	f.mu.Lock()
	e := f.sets[u]
	if e == nil {
		if len(f.sets) >= f.opts.MaxEntries {
			for k := range f.sets { // drop one at random
				delete(f.sets, k)
				break
			}
		}
		e = &cachedSet{}
		f.sets[u] = e
	}
	f.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := f.opts.Now()
	fresh := e.set != nil && now.Before(e.expires)
	if fresh && hasKid(e.set, kid) {
		return e.set, nil
	}
	if e.lastFetch.IsZero() || !now.Before(e.lastFetch.Add(f.opts.RefetchEvery)) {
		set, age, err := f.fetch(ctx, u)
		e.lastFetch = now
		if err == nil {
			e.set, e.err, e.expires = set, nil, now.Add(age)
			return e.set, nil
		}
		e.err = err
	}
	if fresh {
		return e.set, nil // the kid is unknown: the caller refuses it
	}
	if e.err != nil {
		return nil, e.err // a stale set is not used (fail closed)
	}
	return nil, fmt.Errorf("%w: the key set is stale and was fetched less than %s ago", ErrInvalidJWKS, f.opts.RefetchEvery)
}

func hasKid(set *jose.JSONWebKeySet, kid string) bool {
	for _, k := range set.Keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

func (f *Fetcher) fetch(ctx context.Context, u string) (*jose.JSONWebKeySet, time.Duration, error) {
	if err := CheckJWKSURL(u); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("oauth: fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := f.opts.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("oauth: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("oauth: fetch JWKS: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKS+1))
	if err != nil {
		return nil, 0, fmt.Errorf("oauth: fetch JWKS: %w", err)
	}
	set, err := ParseJWKS(b)
	if err != nil {
		return nil, 0, err
	}
	return set, f.age(resp.Header.Get("Cache-Control")), nil
}

// age is the max-age of a Cache-Control value within [MinAge, MaxAge],
// DefaultAge without one.
func (f *Fetcher) age(cc string) time.Duration {
	age := f.opts.DefaultAge
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 && n < 1<<31 {
				age = time.Duration(n) * time.Second
			}
		}
	}
	return min(max(age, f.opts.MinAge), f.opts.MaxAge)
}
