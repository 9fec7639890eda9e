package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// kmsContextKey is the encryption-context key that carries the label: KMS
// binds the ciphertext to it as GCM binds the local wraps to their
// additional data.
const kmsContextKey = "phigate-vault"

// kmsAPI is the part of the KMS client the provider uses.
type kmsAPI interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, opts ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// awsKMSProvider wraps data keys with KMS Encrypt and unwraps them with
// KMS Decrypt: the master key never leaves KMS. Only data keys (32 bytes)
// travel, over TLS.
type awsKMSProvider struct {
	client kmsAPI
	keyID  string
	desc   string
}

func openAWSKMS(ctx context.Context, s Spec, opts ProviderOptions) (Provider, error) {
	region := s.Region
	if region == "" {
		region = opts.Getenv("AWS_REGION")
	}
	if region == "" {
		region = regionFromARN(s.KeyID)
	}
	lo := []func(*awsconfig.LoadOptions) error{}
	if region != "" {
		lo = append(lo, awsconfig.WithRegion(region))
	}
	if opts.AWSCredentials != nil {
		lo = append(lo, awsconfig.WithCredentialsProvider(opts.AWSCredentials))
	}
	if opts.HTTPClient != nil {
		lo = append(lo, awsconfig.WithHTTPClient(opts.HTTPClient))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("vault: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("vault: awskms: no region (add ?region=R to the spec, set AWS_REGION, or use a key ARN)")
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if s.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.Endpoint)
		}
	})
	return &awsKMSProvider{client: client, keyID: s.KeyID, desc: s.String()}, nil
}

// regionFromARN returns the region of arn:aws:kms:REGION:ACCOUNT:key/ID.
func regionFromARN(id string) string {
	parts := strings.SplitN(id, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "kms" {
		return parts[3]
	}
	return ""
}

func (p *awsKMSProvider) String() string { return p.desc }

func (p *awsKMSProvider) WrapKey(ctx context.Context, key []byte, label string) ([]byte, error) {
	out, err := p.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(p.keyID),
		Plaintext:         key,
		EncryptionContext: map[string]string{kmsContextKey: label},
	})
	if err != nil {
		return nil, fmt.Errorf("vault: KMS Encrypt with %s: %w", p.desc, err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, fmt.Errorf("vault: KMS Encrypt with %s returned no ciphertext", p.desc)
	}
	w := make([]byte, 0, len(wrapMagic)+1+len(out.CiphertextBlob))
	return append(append(append(w, wrapMagic...), wrapKMS), out.CiphertextBlob...), nil
}

func (p *awsKMSProvider) UnwrapKey(ctx context.Context, w []byte, label string) ([]byte, error) {
	if k := wrappedKind(w); k != wrapKMS {
		if k == 0 {
			return nil, &TamperError{Reason: "not a wrapped data key"}
		}
		return nil, fmt.Errorf("%w: the data keys were wrapped by %s, but the configured master key is %s", ErrWrongMasterKey, kindName(k), p.desc)
	}
	out, err := p.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(p.keyID),
		CiphertextBlob:    w[len(wrapMagic)+1:],
		EncryptionContext: map[string]string{kmsContextKey: label},
	})
	var incorrect *types.IncorrectKeyException
	var notFound *types.NotFoundException
	var invalid *types.InvalidCiphertextException
	switch {
	case err == nil:
	case errors.As(err, &incorrect), errors.As(err, &notFound):
		return nil, fmt.Errorf("%w: KMS says the data keys were not wrapped by %s (%v)", ErrWrongMasterKey, p.desc, err)
	case errors.As(err, &invalid):
		return nil, &TamperError{Reason: "KMS refused the wrapped data key as invalid ciphertext"}
	default:
		return nil, fmt.Errorf("vault: KMS Decrypt with %s: %w", p.desc, err)
	}
	if len(out.Plaintext) != dataKeySize {
		return nil, &TamperError{Reason: "KMS returned a data key of the wrong size"}
	}
	return out.Plaintext, nil
}
