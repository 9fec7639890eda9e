package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// ListOptions filters GET /v1/tokens. Zero fields are not sent.
type ListOptions struct {
	Subject string
	Status  string // "active", "suspended", "revoked", "expired"
	Parent  string // tokens created by this token id
	After   string // cursor: TokenList.Next of the previous page
	Limit   int    // page size; the server caps it
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("subject", o.Subject)
	set("status", o.Status)
	set("parent", o.Parent)
	set("after", o.After)
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

var errEmptyID = errors.New("phigate: empty token id")

// tokenPath returns /v1/tokens/{id}[suffix] with id escaped.
func tokenPath(id, suffix string) (string, error) {
	if id == "" {
		return "", errEmptyID
	}
	return "/v1/tokens/" + url.PathEscape(id) + suffix, nil
}

// CreateToken issues a token (POST /v1/tokens). The answer carries the
// secret, which the server will never show again.
func (c *Client) CreateToken(ctx context.Context, req CreateTokenRequest) (*IssuedToken, error) {
	var out IssuedToken
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/tokens", json: req, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTokens returns one page of tokens (GET /v1/tokens). Pass the page's
// Next as opts.After for the next one, or use AllTokens.
func (c *Client) ListTokens(ctx context.Context, opts ListOptions) (*TokenList, error) {
	var out TokenList
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/tokens", query: opts.query(), auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllTokens iterates over every token matching opts, following the cursor
// from opts.After. The iteration stops at the first error, which it yields.
func (c *Client) AllTokens(ctx context.Context, opts ListOptions) iter.Seq2[Token, error] {
	return pages("list", func() ([]Token, string, error) {
		page, err := c.ListTokens(ctx, opts)
		if err != nil {
			return nil, "", err
		}
		opts.After = page.Next
		return page.Tokens, page.Next, nil
	})
}

// pages iterates over the items of the pages next returns, one page a call,
// until a page has no cursor; it stops at the first error, which it
// yields, and refuses a server that repeats a cursor (what names the
// listing in that error).
func pages[T any](what string, next func() (items []T, cursor string, err error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		seen := map[string]bool{}
		for {
			items, cursor, err := next()
			if err != nil {
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if cursor == "" {
				return
			}
			if seen[cursor] {
				yield(zero, fmt.Errorf("phigate: the server repeated %s cursor %q", what, cursor))
				return
			}
			seen[cursor] = true
		}
	}
}

// Token returns a token's public view (GET /v1/tokens/{id}).
func (c *Client) Token(ctx context.Context, id string) (*Token, error) {
	return c.tokenCall(ctx, http.MethodGet, id, "", nil)
}

// UpdateToken changes a token's scopes or constraints (PATCH
// /v1/tokens/{id}); only the fields set in req change.
func (c *Client) UpdateToken(ctx context.Context, id string, req UpdateTokenRequest) (*Token, error) {
	return c.tokenCall(ctx, http.MethodPatch, id, "", req)
}

// RevokeToken revokes a token for good (DELETE /v1/tokens/{id}); with
// cascade, the tokens it created too. reason, when not empty, is recorded.
func (c *Client) RevokeToken(ctx context.Context, id string, cascade bool, reason string) (*RevokeResult, error) {
	p, err := tokenPath(id, "")
	if err != nil {
		return nil, err
	}
	r := request{method: http.MethodDelete, path: p, auth: true}
	if cascade {
		r.query = url.Values{"cascade": {"true"}}
	}
	if reason != "" {
		r.json = StatusRequest{Reason: reason}
	}
	var out RevokeResult
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateToken gives a token a new secret (POST /v1/tokens/{id}/rotate); the
// previous one keeps working for req.Grace.
func (c *Client) RotateToken(ctx context.Context, id string, req RotateRequest) (*IssuedToken, error) {
	p, err := tokenPath(id, "/rotate")
	if err != nil {
		return nil, err
	}
	return c.rotate(ctx, p, req)
}

// SuspendToken suspends a token until it is reinstated (POST
// /v1/tokens/{id}/suspend).
func (c *Client) SuspendToken(ctx context.Context, id, reason string) (*Token, error) {
	return c.tokenCall(ctx, http.MethodPost, id, "/suspend", StatusRequest{Reason: reason})
}

// ReinstateToken lifts a suspension (POST /v1/tokens/{id}/reinstate).
func (c *Client) ReinstateToken(ctx context.Context, id, reason string) (*Token, error) {
	return c.tokenCall(ctx, http.MethodPost, id, "/reinstate", StatusRequest{Reason: reason})
}

// Self returns the caller's own token (GET /v1/tokens/self).
func (c *Client) Self(ctx context.Context) (*Token, error) {
	var out Token
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/tokens/self", auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateSelf rotates the caller's own token (POST /v1/tokens/self/rotate).
// The client keeps using the token it was given: switch to the new secret
// (for example with WithTokenSource) before the grace period ends.
func (c *Client) RotateSelf(ctx context.Context, req RotateRequest) (*IssuedToken, error) {
	return c.rotate(ctx, "/v1/tokens/self/rotate", req)
}

func (c *Client) rotate(ctx context.Context, path string, req RotateRequest) (*IssuedToken, error) {
	var out IssuedToken
	if err := c.do(ctx, request{method: http.MethodPost, path: path, json: req, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) tokenCall(ctx context.Context, method, id, suffix string, body any) (*Token, error) {
	p, err := tokenPath(id, suffix)
	if err != nil {
		return nil, err
	}
	var out Token
	if err := c.do(ctx, request{method: method, path: p, json: body, auth: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Introspect asks whether secret is an active token, and what it may do
// (RFC 7662, POST /v1/introspect). An unknown, expired or revoked secret is
// not an error: the answer has Active false.
func (c *Client) Introspect(ctx context.Context, secret string) (*Introspection, error) {
	if secret == "" {
		return nil, errors.New("phigate: empty token to introspect")
	}
	var out Introspection
	r := request{method: http.MethodPost, path: "/v1/introspect", form: url.Values{"token": {secret}}, auth: true, redact: []string{secret}}
	if err := c.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Revoke revokes the token whose secret is given (RFC 7009, POST
// /v1/revoke). As the RFC says, an unknown secret is not an error.
func (c *Client) Revoke(ctx context.Context, secret string) error {
	if secret == "" {
		return errors.New("phigate: empty token to revoke")
	}
	r := request{method: http.MethodPost, path: "/v1/revoke", form: url.Values{"token": {secret}}, auth: true, redact: []string{secret}}
	return c.do(ctx, r, nil)
}

// Health reports whether the server is up (GET /healthz). It sends no
// credentials.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, request{method: http.MethodGet, path: "/healthz"}, nil)
}

// Ready reports whether the server is ready to serve (GET /readyz): its
// store, vault and audit log are open. It sends no credentials.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, request{method: http.MethodGet, path: "/readyz"}, nil)
}
