package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// A Provider holds the master key (the key-encryption key, KEK) and wraps
// and unwraps data keys with it. The master key never leaves the provider
// and is never written to the vault's storage.
//
// WrapKey encrypts key, binding it to label; UnwrapKey MUST be given the
// same label. UnwrapKey MUST return an error wrapping ErrWrongMasterKey
// when wrapped was made by another master key (or another kind of
// provider), and one wrapping ErrTampered when it was made by this master
// key but was altered or the label differs. Any other error means the key
// is unavailable for now (a network or permission failure): the vault
// fails closed. Both MUST be safe for concurrent use.
//
// A Provider that implements fmt.Stringer describes itself (never with
// secret material) in errors and rotation events.
type Provider interface {
	WrapKey(ctx context.Context, key []byte, label string) ([]byte, error)
	UnwrapKey(ctx context.Context, wrapped []byte, label string) ([]byte, error)
}

// describe is a provider's non-secret description.
func describe(p Provider) string {
	if s, ok := p.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", p)
}

// Kinds of provider spec.
const (
	KindFile       = "file"
	KindEnv        = "env"
	KindPassphrase = "passphrase"
	KindAWSKMS     = "awskms"
)

// Spec is a parsed master-key provider spec. Specs name where the master
// key is; they never contain it.
//
//	file:PATH                       32 random bytes (or their base64) in a file
//	                                of mode 0600 or stricter
//	env:NAME                        base64 of 32 bytes in environment variable NAME
//	passphrase                      a passphrase typed at the terminal (argon2id)
//	passphrase:fd:N                 a passphrase read from file descriptor N
//	awskms:KEY_ID[?region=R&endpoint=URL]
//	                                an AWS KMS symmetric key (id, ARN or alias/NAME)
type Spec struct {
	Kind string
	// Path of a file key.
	Path string
	// Env is the variable of an env key.
	Env string
	// FD is the descriptor a passphrase is read from; -1 is the terminal.
	FD int
	// KeyID, Region and Endpoint locate an AWS KMS key. Endpoint is for
	// tests and VPC endpoints (https, or http on a loopback host).
	KeyID, Region, Endpoint string
}

// String is the canonical form of s; ParseSpec(s.String()) == s.
func (s Spec) String() string {
	switch s.Kind {
	case KindFile:
		return "file:" + s.Path
	case KindEnv:
		return "env:" + s.Env
	case KindPassphrase:
		if s.FD < 0 {
			return "passphrase"
		}
		return "passphrase:fd:" + strconv.Itoa(s.FD)
	case KindAWSKMS:
		q := url.Values{}
		if s.Region != "" {
			q.Set("region", s.Region)
		}
		if s.Endpoint != "" {
			q.Set("endpoint", s.Endpoint)
		}
		if len(q) == 0 {
			return "awskms:" + s.KeyID
		}
		return "awskms:" + s.KeyID + "?" + q.Encode()
	}
	return ""
}

// maxSpec bounds a spec string.
const maxSpec = 2048

// ParseSpec parses a master-key provider spec (see Spec). It does no I/O.
func ParseSpec(spec string) (Spec, error) {
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, &InputError{Field: "master_key", Msg: fmt.Sprintf(format, a...)}
	}
	if spec == "" {
		return bad("empty master key spec (want file:PATH, env:NAME, passphrase[:fd:N] or awskms:KEY_ID)")
	}
	if len(spec) > maxSpec {
		return bad("master key spec longer than %d bytes", maxSpec)
	}
	for i := 0; i < len(spec); i++ {
		if c := spec[i]; c < ' ' || c == 0x7f {
			return bad("control character in the master key spec")
		}
	}
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case KindFile:
		if rest == "" {
			return bad("file: needs a path")
		}
		return Spec{Kind: KindFile, Path: rest}, nil
	case KindEnv:
		if !validEnvName(rest) {
			return bad("env: needs a variable name ([A-Za-z_][A-Za-z0-9_]*)")
		}
		return Spec{Kind: KindEnv, Env: rest}, nil
	case KindPassphrase:
		if spec == KindPassphrase {
			return Spec{Kind: KindPassphrase, FD: -1}, nil
		}
		n, ok := strings.CutPrefix(rest, "fd:")
		if !ok {
			return bad("passphrase takes no argument or fd:N (the passphrase itself never goes in the spec)")
		}
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 0 || fd > 1<<16 || strconv.Itoa(fd) != n {
			return bad("passphrase:fd:N needs a file descriptor number")
		}
		return Spec{Kind: KindPassphrase, FD: fd}, nil
	case KindAWSKMS:
		id, query, _ := strings.Cut(rest, "?")
		if id == "" || strings.ContainsAny(id, " #") {
			return bad("awskms: needs a key id, key ARN or alias/NAME")
		}
		s := Spec{Kind: KindAWSKMS, KeyID: id}
		q, err := url.ParseQuery(query)
		if err != nil {
			return bad("awskms: malformed query")
		}
		for k, vs := range q {
			if len(vs) != 1 {
				return bad("awskms: %s given more than once", k)
			}
			switch k {
			case "region":
				if !validRegion(vs[0]) {
					return bad("awskms: bad region")
				}
				s.Region = vs[0]
			case "endpoint":
				if err := checkEndpoint(vs[0]); err != nil {
					return bad("awskms: endpoint: %v", err)
				}
				s.Endpoint = vs[0]
			default:
				return bad("awskms: unknown parameter %q (want region, endpoint)", k)
			}
		}
		return s, nil
	}
	return bad("unknown master key provider %q (want file:, env:, passphrase or awskms:)", kind)
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validRegion(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return errors.New("want https://host[:port]")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("plain http only to a loopback host")
	}
	return errors.New("want https://host[:port]")
}

// ProviderOptions are what ParseProvider may need besides the spec. The
// zero value uses the process's environment, terminal and file
// descriptors.
type ProviderOptions struct {
	// Getenv reads env: keys (default os.Getenv).
	Getenv func(string) string
	// ReadPassphrase asks for a passphrase at the terminal (default: the
	// controlling terminal, without echo).
	ReadPassphrase func(prompt string) ([]byte, error)
	// OpenFD opens a file descriptor for passphrase:fd:N (default
	// os.NewFile).
	OpenFD func(fd int) (io.ReadCloser, error)
	// Argon2 are the parameters of new passphrase wraps (default
	// DefaultArgon2). Parameters of existing wraps travel with them.
	Argon2 Argon2Params
	// Rand is the randomness for nonces and salts (default crypto/rand).
	Rand io.Reader
	// AWSCredentials overrides the AWS default credential chain.
	AWSCredentials aws.CredentialsProvider
	// HTTPClient is used for AWS KMS calls (default: the SDK's).
	HTTPClient *http.Client
}

// ParseProvider parses spec and opens the provider it names: it reads the
// key file (refusing one readable by group or others), the environment
// variable, or the passphrase; an awskms provider only configures the
// client (its first call reaches KMS). A missing or malformed key is an
// error here, before any storage is touched.
func ParseProvider(ctx context.Context, spec string, opts ProviderOptions) (Provider, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	return OpenProvider(ctx, s, opts)
}

// OpenProvider opens the provider of a parsed spec (see ParseProvider).
func OpenProvider(ctx context.Context, s Spec, opts ProviderOptions) (Provider, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	switch s.Kind {
	case KindFile:
		return openFileKey(s, opts)
	case KindEnv:
		return openEnvKey(s, opts)
	case KindPassphrase:
		return openPassphrase(s, opts)
	case KindAWSKMS:
		return openAWSKMS(ctx, s, opts)
	}
	return nil, &InputError{Field: "master_key", Msg: "unknown provider kind"}
}
