package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// RegisterClientRequest registers a SMART Backend Services client (POST
// /v1/clients). Exactly one of JWKS (the key set's JSON, public keys only)
// and JWKSURL (https) is set. Constraints are those of a token; MaxTTL is
// a duration such as "5m" (at most the server's token endpoint TTL).
type RegisterClientRequest struct {
	Name            string          `json:"name"`
	Subject         string          `json:"subject,omitempty"`
	JWKS            json.RawMessage `json:"jwks,omitempty"`
	JWKSURL         string          `json:"jwks_url,omitempty"`
	Scopes          []string        `json:"scopes"`
	CIDRs           []string        `json:"cidrs,omitempty"`
	Hours           *Hours          `json:"hours,omitempty"`
	Rate            *Rate           `json:"rate,omitempty"`
	Purposes        []string        `json:"purposes,omitempty"`
	PurposeRequired bool            `json:"purpose_required,omitempty"`
	MaxTTL          string          `json:"max_ttl,omitempty"`
}

// OAuthClient is a registered client as the server shows it.
type OAuthClient struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	Subject         string          `json:"subject"`
	JWKSURL         string          `json:"jwks_url,omitempty"`
	JWKS            json.RawMessage `json:"jwks,omitempty"`
	Scopes          []string        `json:"scopes"`
	CIDRs           []string        `json:"cidrs,omitempty"`
	Hours           *Hours          `json:"hours,omitempty"`
	Rate            *Rate           `json:"rate,omitempty"`
	Purposes        []string        `json:"purposes,omitempty"`
	PurposeRequired bool            `json:"purpose_required,omitempty"`
	MaxTTL          string          `json:"max_ttl"`
	CreatedBy       string          `json:"created_by"`
	Status          string          `json:"status"`
	StatusReason    string          `json:"status_reason,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	// RevokedTokens lists the tokens a revocation revoked with the client.
	RevokedTokens []string `json:"revoked_tokens,omitempty"`
}

// ClientList is one page of clients.
type ClientList struct {
	Clients []OAuthClient `json:"clients"`
	Next    string        `json:"next,omitempty"`
}

var errEmptyClientID = errors.New("phigate: empty client id")

// RegisterClient registers a client (POST /v1/clients).
func (c *Client) RegisterClient(ctx context.Context, req RegisterClientRequest) (*OAuthClient, error) {
	var out OAuthClient
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/clients", json: req, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListClients returns one page of clients (GET /v1/clients); status
// ("active", "revoked") filters when set, after is the previous page's
// Next.
func (c *Client) ListClients(ctx context.Context, status, after string, limit int) (*ClientList, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out ClientList
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/clients", query: q, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// OAuthClient returns one client (GET /v1/clients/{id}).
func (c *Client) OAuthClient(ctx context.Context, id string) (*OAuthClient, error) {
	if id == "" {
		return nil, errEmptyClientID
	}
	var out OAuthClient
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/clients/" + url.PathEscape(id), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeClient revokes a client and every live token issued to it
// (DELETE /v1/clients/{id}).
func (c *Client) RevokeClient(ctx context.Context, id, reason string) (*OAuthClient, error) {
	if id == "" {
		return nil, errEmptyClientID
	}
	q := url.Values{}
	if reason != "" {
		q.Set("reason", reason)
	}
	var out OAuthClient
	if err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/clients/" + url.PathEscape(id), query: q, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
