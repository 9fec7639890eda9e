package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Secret describes an upstream credential kept in phigate's vault. The
// value never travels back from the server.
type Secret struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SecretList is the answer of GET /v1/secrets.
type SecretList struct {
	Secrets []Secret `json:"secrets"`
}

// SetSecretRequest is the body of PUT /v1/secrets/{name}.
type SetSecretRequest struct {
	Value string `json:"value"`
}

// RotateKEKRequest is the body of POST /v1/keys/rotate-kek. An empty
// NewMasterKey re-wraps the data keys under the current master key (for
// AWS KMS, its newest backing key); otherwise it is the spec of the new
// master key as the server sees it (file:PATH or awskms:KEY_ID...).
type RotateKEKRequest struct {
	NewMasterKey string `json:"new_master_key,omitempty"`
}

// KEKRotation is the answer of POST /v1/keys/rotate-kek.
type KEKRotation struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	DataKeys  int       `json:"data_keys"`
	RotatedAt time.Time `json:"rotated_at"`
}

// DEKRotation is the answer of POST /v1/keys/rotate-dek/{purpose}.
type DEKRotation struct {
	Purpose   string    `json:"purpose"`
	Version   int       `json:"version"`
	RotatedAt time.Time `json:"rotated_at"`
}

// Pepper is one live version of the token pepper (GET /v1/keys/peppers).
// LiveSecrets counts the token secrets hashed with it whose token is
// neither expired nor revoked: a version can be retired once it is 0.
type Pepper struct {
	Version     int   `json:"version"`
	Current     bool  `json:"current,omitempty"`
	LiveSecrets int64 `json:"live_secrets"`
}

// PepperList is the answer of GET /v1/keys/peppers, newest version first.
type PepperList struct {
	Peppers []Pepper `json:"peppers"`
}

// PepperRotation is the answer of POST /v1/keys/rotate-pepper.
type PepperRotation struct {
	Version   int       `json:"version"`
	RotatedAt time.Time `json:"rotated_at"`
}

// PepperRetirement is the answer of POST /v1/keys/retire-pepper/{version}.
type PepperRetirement struct {
	Version   int       `json:"version"`
	RetiredAt time.Time `json:"retired_at"`
}

var errEmptyName = errors.New("phigate: empty name")

// SetSecret stores value as the new version of the upstream credential
// name (PUT /v1/secrets/{name}). The value is kept out of any error.
func (c *Client) SetSecret(ctx context.Context, name string, value []byte) (*Secret, error) {
	if name == "" {
		return nil, errEmptyName
	}
	var out Secret
	err := c.do(ctx, request{method: http.MethodPut, path: "/v1/secrets/" + url.PathEscape(name),
		json: SetSecretRequest{Value: string(value)}, auth: true, redact: []string{string(value)}}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSecrets lists the upstream credentials: names, versions and update
// times (GET /v1/secrets).
func (c *Client) ListSecrets(ctx context.Context) (*SecretList, error) {
	var out SecretList
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/secrets", auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateKEK re-wraps every data key under a new master key (POST
// /v1/keys/rotate-kek); see RotateKEKRequest.
func (c *Client) RotateKEK(ctx context.Context, req RotateKEKRequest) (*KEKRotation, error) {
	var out KEKRotation
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/keys/rotate-kek", json: req, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateDEK starts a new data key version for purpose ("audit-fields",
// "upstream-credentials", ...): new data is sealed with it, older data
// stays readable (POST /v1/keys/rotate-dek/{purpose}).
func (c *Client) RotateDEK(ctx context.Context, purpose string) (*DEKRotation, error) {
	if purpose == "" {
		return nil, errEmptyName
	}
	var out DEKRotation
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/keys/rotate-dek/" + url.PathEscape(purpose), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Peppers lists the live token pepper versions with the number of live
// secrets each hashes (GET /v1/keys/peppers).
func (c *Client) Peppers(ctx context.Context) (*PepperList, error) {
	var out PepperList
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/keys/peppers", auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotatePepper starts a new token pepper version: new secrets are hashed
// with it, tokens hashed with older versions keep working (POST
// /v1/keys/rotate-pepper).
func (c *Client) RotatePepper(ctx context.Context) (*PepperRotation, error) {
	var out PepperRotation
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/keys/rotate-pepper", auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetirePepper deletes an old token pepper version (POST
// /v1/keys/retire-pepper/{version}). The server refuses with 409
// (pepper_in_use) while a token that is neither expired nor revoked is
// hashed with it, and with 409 (pepper_current) for the current version.
func (c *Client) RetirePepper(ctx context.Context, version int) (*PepperRetirement, error) {
	var out PepperRetirement
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/keys/retire-pepper/" + strconv.Itoa(version), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
